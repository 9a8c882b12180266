//! `dbctl connection`: print a database's connection file, optionally with the
//! password decrypted by the user's age identity.

use std::path::Path;

use anyhow::{Context, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::Session;
use crate::gitops::Repo;
use crate::gitops::connection::ConnectionFile;
use crate::output::Report;
use crate::secret;

/// How to print the connection (`--format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ConnectionFormat {
    /// The connection file's YAML.
    #[default]
    Yaml,
    /// A URI (`postgresql://user:password@host:port/db` with `--reveal`).
    Uri,
    /// Shell `KEY=value` lines (`DATABASE_URL`, `DB_HOST`, …).
    Env,
}

/// Flags of `dbctl connection`.
#[derive(Debug, Clone, Default)]
pub struct ConnectionOptions {
    /// Database name.
    pub name: String,
    /// `--reveal`: decrypt the password.
    pub reveal: bool,
    /// `--format`.
    pub format: ConnectionFormat,
}

/// The connection, possibly with the password revealed.
#[derive(Debug, Serialize)]
pub struct ConnectionReport {
    /// The file's fields; `password` is plaintext when revealed.
    #[serde(flatten)]
    pub file: ConnectionFile,
    /// True when `password` holds the plaintext (and `uri` carries it).
    pub revealed: bool,
    /// With `--format env`: the variables, as the human view prints them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip)]
    format: ConnectionFormat,
    #[serde(skip)]
    uri_with_password: String,
}

impl ConnectionReport {
    fn env_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("DATABASE_URL", self.uri_with_password.clone()),
            ("DB_HOST", self.file.host.clone()),
            ("DB_PORT", self.file.port.to_string()),
            ("DB_NAME", self.file.database.clone()),
            ("DB_USER", self.file.username.clone()),
        ];
        if self.revealed {
            vars.push(("DB_PASSWORD", self.file.password.clone()));
        }
        vars
    }
}

impl Report for ConnectionReport {
    fn human(&self) -> String {
        match self.format {
            ConnectionFormat::Yaml => self.file.to_yaml(),
            ConnectionFormat::Uri => format!("{}\n", self.uri_with_password),
            ConnectionFormat::Env => self
                .env_vars()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect(),
        }
    }
}

/// Runs `dbctl connection`.
///
/// # Errors
/// No connection file, a damaged one, or (with `--reveal`) an identity that cannot
/// decrypt it.
pub fn connection(session: &Session, opts: &ConnectionOptions) -> Result<ConnectionReport> {
    let repo = session.repo()?;
    crate::spec::check_name(&opts.name).map_err(|m| anyhow::anyhow!("database name {m}"))?;
    let rel = Repo::connection_rel(&opts.name);
    let mut file = repo.require_connection(&opts.name)?;
    let mut uri_with_password = file.uri.clone();
    if opts.reveal {
        let password = secret::decrypt(
            &file.password,
            &session.identity,
            &format!("{}: password", rel.display()),
        )?;
        uri_with_password = with_password(&file.uri, &password, Path::new(&rel))?;
        password.expose_secret().clone_into(&mut file.password);
        file.uri.clone_from(&uri_with_password);
    }
    let mut report = ConnectionReport {
        file,
        revealed: opts.reveal,
        env: None,
        format: opts.format,
        uri_with_password,
    };
    if opts.format == ConnectionFormat::Env {
        report.env = Some(
            report
                .env_vars()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        );
    }
    Ok(report)
}

fn with_password(uri: &str, password: &SecretString, rel: &Path) -> Result<String> {
    let mut url =
        url::Url::parse(uri).with_context(|| format!("invalid `uri` in `{}`", rel.display()))?;
    url.set_password(Some(password.expose_secret()))
        .map_err(|()| anyhow::anyhow!("`uri` in `{}` cannot hold a password", rel.display()))?;
    Ok(url.to_string())
}
