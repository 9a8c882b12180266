//! Operations, one per file. Each takes an options struct and returns a report; none
//! prints results itself (progress goes through [`Printer`]).

pub mod apply;
pub mod connection;
pub mod control_plane;
pub mod create;
pub mod delete;
pub mod init;
pub mod render;
pub mod status;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::gitops::Repo;
use crate::gitops::lock::{self, Lock};
use crate::output::Printer;
use crate::platform::{self, Platform};
use crate::spec::Spec;

/// Settings shared by every operation (global flags).
#[derive(Debug, Clone)]
pub struct Session {
    /// The GitOps repo root (`--repo`, default: current directory).
    pub repo_root: PathBuf,
    /// Platform options (`--state-dir`).
    pub platform: platform::Options,
    /// The age identity file (`--identity`).
    pub identity: PathBuf,
    /// Output.
    pub printer: Printer,
}

impl Session {
    /// Opens the GitOps repo.
    ///
    /// # Errors
    /// See [`Repo::open`].
    pub fn repo(&self) -> Result<Repo> {
        Repo::open(&self.repo_root)
    }

    /// The platform driver of `spec`'s target.
    ///
    /// # Errors
    /// An unknown target or a platform this build cannot drive.
    pub fn platform(&self, repo: &Repo, spec: &Spec) -> Result<Box<dyn Platform>> {
        let target = repo.config.target(&spec.target).with_context(|| {
            format!(
                "spec `{}` names target `{}`, which is not in `etc/dbctl.yml`",
                spec.name, spec.target
            )
        })?;
        platform::for_target(repo, target, &self.platform)
    }

    /// The spec of `name`, or an error naming the file that is missing.
    ///
    /// # Errors
    /// No spec, or an invalid one.
    pub fn existing_spec(&self, repo: &Repo, name: &str) -> Result<Spec> {
        crate::spec::check_name(name).map_err(|m| anyhow::anyhow!("database name {m}"))?;
        repo.load_spec(name)?.with_context(|| {
            format!(
                "no database `{name}`: `{}` does not exist; `dbctl list` shows the databases",
                Repo::spec_rel(name).display()
            )
        })
    }
}

/// Takes the database's lock, waiting up to `wait_s` seconds.
///
/// # Errors
/// [`lock::LockError`].
pub fn lock(repo: &Repo, name: &str, operation: &str, wait_s: u64) -> Result<Lock> {
    Ok(lock::acquire(
        repo.root(),
        name,
        operation,
        Duration::from_secs(wait_s),
    )?)
}
