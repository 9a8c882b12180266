#!/usr/bin/env python3
"""Prepares the Ansible side of the render benchmark from `dbctl render --all
--context -o json` (stdin): the same templates (static includes that set variables
inlined, since Jinja2 scopes those to the included file while minijinja shares them),
one item per artifact with its template context, and a playbook that renders every
item with the template module. Usage: ansible_prepare.py TEMPLATES_DIR WORK_DIR < contexts.json"""
import json
import os
import re
import shutil
import sys

SETTERS = ["nomad/engine.j2", "kubernetes/common.j2", "terraform/variables.j2", "terraform/aws/common.j2"]
INCLUDE = re.compile(r'\{%-?\s*include\s+"([^"]+)"\s*-?%\}')


def inline(text, root):
    def repl(m):
        name = m.group(1)
        if name not in SETTERS:
            return m.group(0)
        with open(os.path.join(root, name)) as f:
            return inline(f.read().rstrip("\n"), root)
    return INCLUDE.sub(repl, text)


def main():
    templates, work = sys.argv[1], sys.argv[2]
    out_templates = os.path.join(work, "templates")
    shutil.rmtree(out_templates, ignore_errors=True)
    for dirpath, _, names in os.walk(templates):
        for name in names:
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, templates)
            dst = os.path.join(out_templates, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(src) as f:
                text = f.read()
            with open(dst, "w") as f:
                f.write(inline(text, templates))
    databases = json.load(sys.stdin)["contexts"]
    items, dirs = [], set()
    for db in databases:
        for artifact in db["artifacts"]:
            ctx = dict(db["context"])
            ctx.update(artifact.get("vars") or {})
            items.append({"template": artifact["template"], "path": artifact["path"], "ctx": ctx})
            dirs.add(os.path.dirname(artifact["path"]))
    with open(os.path.join(work, "items.json"), "w") as f:
        json.dump({"artifacts": items, "dirs": sorted(dirs)}, f)
    keys = sorted({k for item in items for k in item["ctx"]})
    task_vars = "\n".join(f"        {k}: \"{{{{ item.ctx.{k} | default(omit) }}}}\"" for k in keys)
    with open(os.path.join(work, "render.yml"), "w") as f:
        f.write(f"""- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [items.json]
  tasks:
    - name: artifact directories
      ansible.builtin.file:
        path: "{{{{ out }}}}/{{{{ item }}}}"
        state: directory
      loop: "{{{{ dirs }}}}"
    - name: artifacts
      ansible.builtin.template:
        src: "templates/{{{{ item.template }}}}"
        dest: "{{{{ out }}}}/{{{{ item.path }}}}"
        trim_blocks: false
      vars:
{task_vars}
      loop: "{{{{ artifacts }}}}"
      loop_control:
        label: "{{{{ item.path }}}}"
""")
    print(f"{len(items)} artifacts of {len(databases)} databases")


if __name__ == "__main__":
    main()
