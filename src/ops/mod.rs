//! Operations, one per file. Each takes an options struct and returns a report; none
//! prints results itself (progress goes through [`Printer`]).

pub mod apply;
pub mod backup;
pub mod connection;
pub mod control_plane;
pub mod create;
pub mod delete;
pub mod drill;
pub mod init;
pub mod modify;
pub mod overview;
pub mod render;
pub mod rotate;
pub mod sql;
pub mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::gitops::Repo;
use crate::gitops::lock::{self, Lock};
use crate::output::Printer;
use crate::platform::{self, Platform};
use crate::spec::Spec;

/// One run of dbctl: the global flags, one tokio runtime that every driver's SSH
/// connections share, and the platform drivers, made once per target (connections,
/// Keystone sessions) and shared by every database of the run.
pub struct Session {
    /// The GitOps repo root (`--repo`, default: current directory).
    pub repo_root: PathBuf,
    /// Platform options (`--state-dir`; the runtime's handle).
    pub platform: platform::Options,
    /// The age identity file (`--identity`).
    pub identity: PathBuf,
    /// Output.
    pub printer: Printer,
    /// Drivers by target name (dropped before the runtime their connections use).
    drivers: Mutex<BTreeMap<String, Arc<dyn Platform>>>,
    /// Keeps the runtime alive for the run; drivers hold its handle.
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("repo_root", &self.repo_root)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A run over the repo at `repo_root`, with a runtime of two worker threads.
    ///
    /// # Errors
    /// The runtime cannot start.
    pub fn new(
        repo_root: PathBuf,
        mut platform: platform::Options,
        identity: PathBuf,
        printer: Printer,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        platform.runtime = Some(runtime.handle().clone());
        Ok(Self {
            repo_root,
            platform,
            identity,
            printer,
            runtime,
            drivers: Mutex::new(BTreeMap::new()),
        })
    }

    /// The run's tokio runtime (backup stores' operators run on it).
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

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
    pub fn platform(&self, repo: &Repo, spec: &Spec) -> Result<Arc<dyn Platform>> {
        let target = repo.config.target(&spec.target).with_context(|| {
            format!(
                "spec `{}` names target `{}`, which is not in `etc/dbctl.yml`",
                spec.name, spec.target
            )
        })?;
        self.driver(repo, target)
    }

    /// The driver of `target`, made on first use and shared afterwards. Two threads
    /// asking at once for a new target may both connect; one driver is kept.
    ///
    /// # Errors
    /// A platform this build cannot drive, or a failed connection.
    pub fn driver(&self, repo: &Repo, target: &crate::spec::Target) -> Result<Arc<dyn Platform>> {
        if let Some(driver) = self
            .drivers
            .lock()
            .ok()
            .and_then(|d| d.get(&target.name).cloned())
        {
            return Ok(driver);
        }
        let driver: Arc<dyn Platform> =
            Arc::from(platform::for_target(repo, target, &self.platform)?);
        if let Ok(mut drivers) = self.drivers.lock() {
            return Ok(Arc::clone(
                drivers.entry(target.name.clone()).or_insert(driver),
            ));
        }
        Ok(driver)
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

/// Commits `name`'s spec and connection file with `message` and, with `push`, pushes;
/// returns the commit (`None`: nothing changed) and whether it was pushed.
///
/// # Errors
/// The commit or the push fails.
pub(crate) fn commit_database(
    repo: &crate::gitops::Repo,
    name: &str,
    message: &str,
    push: bool,
) -> Result<(Option<String>, bool)> {
    use crate::gitops::{Repo, git};
    let spec_rel = Repo::spec_rel(name);
    let conn_rel = Repo::connection_rel(name);
    let commit = git::commit_paths(
        repo.root(),
        &[&spec_rel, &conn_rel],
        message,
        git::Removals::Refused,
    )?
    .map(|o| o.to_string());
    let pushed = push && commit.is_some();
    if pushed {
        git::push(repo.root())?;
    }
    Ok((commit, pushed))
}

/// What a changing verb would do (`--dry-run`): checked as far as it can be without
/// changing anything (specs, stores and their credentials, the platform's support),
/// and nothing changed.
#[derive(Debug, serde::Serialize)]
pub struct DryRun {
    /// The verb (`backup`, `restore`).
    pub verb: String,
    /// The database.
    pub database: String,
    /// What it would do, step by step.
    pub would: Vec<String>,
}

impl crate::output::Report for DryRun {
    fn human(&self) -> String {
        let mut text = format!(
            "dry run: `dbctl {}` of `{}` would\n",
            self.verb, self.database
        );
        for step in &self.would {
            text.push_str(&format!("  - {step}\n"));
        }
        text.push_str("nothing changed\n");
        text
    }
}
