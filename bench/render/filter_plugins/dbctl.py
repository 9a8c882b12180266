"""dbctl's template filters for Ansible, so the benchmark renders the same templates."""
import hashlib


def pg_ident(s):
    return '"' + str(s).replace('"', '""') + '"'


def pg_literal(s):
    return "'" + str(s).replace("'", "''") + "'"


def my_ident(s):
    return "`" + str(s).replace("`", "``") + "`"


def my_literal(s):
    return "'" + str(s).replace("\\", "\\\\").replace("'", "\\'") + "'"


def sha256(s):
    return hashlib.sha256(str(s).encode()).hexdigest()


def xml(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def sh(s):
    return "'" + str(s).replace("'", "'\\''") + "'"


class FilterModule:
    def filters(self):
        return {"pg_ident": pg_ident, "pg_literal": pg_literal, "my_ident": my_ident,
                "my_literal": my_literal, "sha256": sha256, "xml": xml, "sh": sh}
