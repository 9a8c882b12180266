//! Rendering: a minijinja environment whose templates come from [`Assets`] (GitOps
//! repo override first, then built-in), with strict undefined handling and quoting
//! filters for SQL and configuration files. Rendering does no I/O beyond reading
//! templates.
//!
//! Filters (all return strings):
//! - `pg_ident` / `pg_literal`: PostgreSQL identifier `"…"` / string literal `'…'`.
//! - `my_ident` / `my_literal`: MariaDB identifier `` `…` `` / string literal `'…'`.
//! - `my_host`: an IPv4 CIDR as a MariaDB account host (`10.0.0.0/8` →
//!   `10.0.0.0/255.0.0.0`, MariaDB "CREATE USER: Host Name Component").
//! - `sha256`: lowercase hex SHA-256 of the text (Redis ACL `#<hash>` passwords).
//! - `xml`: XML attribute/text escaping (`&`, `<`, `>`, `"`, `'`).
//! - `sh`: POSIX shell single-quoting.

use minijinja::{Environment, UndefinedBehavior, Value};
use sha2::{Digest, Sha256};

use crate::assets::{Assets, Tree};

/// A CIDR as a MariaDB account host: `a.b.c.d/len` → `a.b.c.d/netmask` (IPv4; specs
/// give MariaDB IPv4 networks only), `/32` → the address.
fn my_host(cidr: &str) -> String {
    let Some((ip, len)) = cidr.split_once('/') else {
        return cidr.to_owned();
    };
    match (ip.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) {
        (Ok(ip), Ok(32)) => ip.to_string(),
        (Ok(ip), Ok(len)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            let net = std::net::Ipv4Addr::from(u32::from(ip) & mask);
            format!("{net}/{}", std::net::Ipv4Addr::from(mask))
        }
        _ => cidr.to_owned(),
    }
}

/// A validated MariaDB setting value as `SET GLOBAL` takes it: `256M` → bytes, a
/// number as it is, a word as a string literal (`'READ-COMMITTED'`); `ON`/`OFF` as
/// they are.
fn my_setting(value: &str) -> String {
    let (digits, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let factor: Option<u64> = match unit.to_ascii_uppercase().as_str() {
        "" => Some(1),
        "K" => Some(1 << 10),
        "M" => Some(1 << 20),
        "G" => Some(1 << 30),
        "T" => Some(1 << 40),
        _ => None,
    };
    match (digits.parse::<u64>(), factor) {
        (Ok(n), Some(f)) => n.saturating_mul(f).to_string(),
        _ if value == "ON" || value == "OFF" => value.to_owned(),
        _ if value.parse::<f64>().is_ok() => value.to_owned(),
        _ => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'")),
    }
}

/// Rendering failures.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template does not exist in the repo or the binary.
    #[error("template `templates/{0}` does not exist (neither in the GitOps repo nor built in)")]
    Missing(String),
    /// A template failed to parse or render; `message` has the line.
    #[error("cannot render `{name}`: {message}")]
    Template {
        /// Template name (`local/postgresql/postgresql.conf.j2`) or a description.
        name: String,
        /// minijinja's message with line numbers.
        message: String,
    },
}

/// A template environment bound to one GitOps repo's assets.
pub struct Renderer {
    env: Environment<'static>,
    assets: Assets,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("assets", &self.assets)
            .finish_non_exhaustive()
    }
}

fn describe(err: &minijinja::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl Renderer {
    /// An environment loading `templates/…` from `assets`.
    pub fn new(assets: &Assets) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Quoting is explicit in every template (`tojson`, `e`, the SQL filters), except
        // HTML pages (`*.html.j2`, the status page), which escape every value.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html.j2") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        let loader_assets = assets.clone();
        env.set_loader(move |name| {
            loader_assets
                .get(Tree::Templates, name)
                .map(|asset| asset.map(|a| a.text))
                .map_err(|e| {
                    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
                })
        });
        env.add_filter("pg_ident", |s: &str| {
            format!("\"{}\"", s.replace('"', "\"\""))
        });
        env.add_filter("pg_literal", |s: &str| {
            format!("'{}'", s.replace('\'', "''"))
        });
        env.add_filter("my_ident", |s: &str| format!("`{}`", s.replace('`', "``")));
        env.add_filter("my_literal", |s: &str| {
            format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
        });
        env.add_filter("my_host", |s: &str| my_host(s));
        // A word of a systemd unit file (systemd.syntax(7)): double-quoted, `\` and `"`
        // escaped, `%` doubled (it starts a specifier).
        env.add_filter("systemd_word", |s: &str| {
            format!(
                "\"{}\"",
                s.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('%', "%%")
            )
        });
        env.add_filter("my_setting", |s: &str| my_setting(s));
        env.add_filter("sha256", |s: &str| {
            hex::encode(Sha256::digest(s.as_bytes()))
        });
        // Any value: a number or an unset option (`none` renders as empty) must not
        // break a template.
        env.add_filter("xml", |v: Value| {
            let s = if v.is_none() || v.is_undefined() {
                String::new()
            } else {
                v.to_string()
            };
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&apos;")
        });
        env.add_filter("sh", |s: &str| sh_quote(s));
        Self {
            env,
            assets: assets.clone(),
        }
    }

    /// The text of `templates/<name>` (the repo's override, else built in).
    ///
    /// # Errors
    /// [`RenderError::Missing`], or an override that cannot be read (as a template
    /// error).
    pub fn source(&self, name: &str) -> Result<String, RenderError> {
        match self.assets.get(Tree::Templates, name) {
            Ok(Some(asset)) => Ok(asset.text),
            Ok(None) => Err(RenderError::Missing(name.to_owned())),
            Err(e) => Err(RenderError::Template {
                name: name.to_owned(),
                message: e.to_string(),
            }),
        }
    }

    /// True when `templates/<name>` exists (repo or built in).
    pub fn has_template(&self, name: &str) -> bool {
        self.assets
            .get(Tree::Templates, name)
            .is_ok_and(|a| a.is_some())
    }

    /// Renders `templates/<name>` with `ctx`.
    ///
    /// # Errors
    /// [`RenderError::Missing`], [`RenderError::Template`] (syntax, undefined variable).
    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
        let template = self.env.get_template(name).map_err(|e| {
            if e.kind() == minijinja::ErrorKind::TemplateNotFound {
                RenderError::Missing(name.to_owned())
            } else {
                RenderError::Template {
                    name: name.to_owned(),
                    message: describe(&e),
                }
            }
        })?;
        template.render(ctx).map_err(|e| RenderError::Template {
            name: name.to_owned(),
            message: describe(&e),
        })
    }

    /// Evaluates a template expression (a playbook step's `when`) to its truth.
    ///
    /// # Errors
    /// [`RenderError::Template`] for an expression that does not parse or evaluate.
    pub fn eval(&self, expression: &str, ctx: &Value) -> Result<bool, RenderError> {
        let fail = |e: minijinja::Error| RenderError::Template {
            name: format!("when: {expression}"),
            message: describe(&e),
        };
        let compiled = self.env.compile_expression(expression).map_err(fail)?;
        Ok(compiled.eval(ctx).map_err(fail)?.is_true())
    }

    /// Renders an inline template string (a playbook argument); `what` names it in errors.
    ///
    /// # Errors
    /// [`RenderError::Template`].
    pub fn render_str(&self, source: &str, ctx: &Value, what: &str) -> Result<String, RenderError> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_owned());
        }
        self.env
            .render_str(source, ctx)
            .map_err(|e| RenderError::Template {
                name: what.to_owned(),
                message: describe(&e),
            })
    }
}

/// `s` as one POSIX shell word (single-quoted).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn quoting_filters_escape_their_quotes() {
        let r = Renderer::new(&Assets::new(None));
        let ctx = context! { v => "a\"b'c`d\\" };
        let sh = r
            .render_str("{{ v|sh }} {{ '<&>'|xml }}", &ctx, "t")
            .unwrap();
        assert_eq!(sh, r#"'a"b'\''c`d\' &lt;&amp;&gt;"#);
        let out = r
            .render_str(
                "{{ v|pg_ident }} {{ v|pg_literal }} {{ v|my_ident }} {{ v|my_literal }}",
                &ctx,
                "test",
            )
            .unwrap();
        assert_eq!(out, r#""a""b'c`d\" 'a"b''c`d\' `a"b'c``d\` 'a"b\'c`d\\'"#);
    }

    #[test]
    fn undefined_variables_are_errors() {
        let r = Renderer::new(&Assets::new(None));
        let err = r
            .render_str("{{ nope }}", &context! {}, "inline")
            .unwrap_err();
        assert!(err.to_string().contains("inline"), "{err}");
    }
}
