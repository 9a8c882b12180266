//! `dbctl sql`: an admin batch through the database's admin channel, as the
//! application owner (or the engine's administrator with `--admin`). The batch goes to
//! the engine's own client on stdin; its output streams to stdout as bytes; the exit
//! code is the client's.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Session;
use crate::gitops::Repo;
use crate::output::Report;
use crate::platform::Role;
use crate::secret;

/// Where the batch comes from.
#[derive(Debug, Clone)]
pub enum Batch {
    /// `-c TEXT`.
    Text(String),
    /// `-f FILE` (`-`: stdin).
    File(std::path::PathBuf),
    /// Neither: stdin.
    Stdin,
}

/// Flags of `dbctl sql`.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// Database name.
    pub name: String,
    /// The batch.
    pub batch: Batch,
    /// `--admin`: as the engine's administrator.
    pub admin: bool,
}

/// What `sql` did; the client's output went to stdout already.
#[derive(Debug, Serialize)]
pub struct SqlReport {
    /// The client's exit code.
    pub exit_code: i32,
    /// The client's standard error.
    pub stderr: String,
}

impl Report for SqlReport {
    fn human(&self) -> String {
        if !self.stderr.is_empty() {
            let _ = std::io::stderr().write_all(self.stderr.as_bytes());
        }
        String::new()
    }

    fn exit_code(&self) -> u8 {
        u8::try_from(self.exit_code.clamp(0, 255)).unwrap_or(1)
    }
}

/// Runs `dbctl sql`.
///
/// # Errors
/// An unknown database, a batch file that cannot be read, an identity that cannot
/// decrypt the password (owner mode), or an unreachable database.
pub fn sql(session: &Session, opts: &SqlOptions) -> Result<SqlReport> {
    let repo = session.repo()?;
    let spec = session.existing_spec(&repo, &opts.name)?;
    let platform = session.platform(&repo, &spec)?;
    let owner = if opts.admin {
        None
    } else {
        let rel = Repo::connection_rel(&spec.name);
        let conn = repo.require_connection(&spec.name)?;
        let password = secret::decrypt(
            &conn.password,
            &session.identity,
            &format!("{}: password", rel.display()),
        )?;
        Some((conn.username, password))
    };
    let role = owner
        .as_ref()
        .map_or(Role::Admin, |(login, password)| Role::Owner {
            login,
            password,
        });
    let admin = platform.admin(&spec)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (code, stderr) = match &opts.batch {
        Batch::Text(text) => {
            let mut text = text.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            admin.run(&mut std::io::Cursor::new(text.into_bytes()), &mut out, role)?
        }
        Batch::File(path) if path.as_os_str() == "-" => {
            admin.run(&mut std::io::stdin(), &mut out, role)?
        }
        Batch::File(path) => {
            let mut file = std::fs::File::open(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            admin.run(&mut file, &mut out, role)?
        }
        Batch::Stdin => admin.run(&mut std::io::stdin(), &mut out, role)?,
    };
    out.flush()?;
    Ok(SqlReport {
        exit_code: code,
        stderr,
    })
}
