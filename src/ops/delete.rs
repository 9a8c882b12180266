//! `dbctl delete`: stop the server, remove its data, the spec and the connection file,
//! and commit.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Session;
use crate::gitops::{Repo, git};
use crate::output::Report;

/// Flags of `dbctl delete`.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Database name.
    pub name: String,
    /// `--yes`: required, as this destroys data.
    pub yes: bool,
    /// `--no-commit`.
    pub no_commit: bool,
    /// `--push`.
    pub push: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--lock-timeout` in seconds.
    pub lock_timeout_s: u64,
    /// `--skip-final-backup`: delete without the final backup to the database's store.
    pub skip_final_backup: bool,
    /// `--store`: where the final backup goes (default: the database's store).
    pub store: Option<String>,
}

/// What `delete` did.
#[derive(Debug, Serialize)]
pub struct DeleteReport {
    /// Database name.
    pub name: String,
    /// Files removed (repo-relative).
    pub removed: Vec<PathBuf>,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// The final backup: taken before the server stopped (with `--dry-run`, the one that
    /// would be); `None` with `--skip-final-backup`.
    pub final_backup: Option<FinalBackup>,
    /// The commit, if any.
    pub commit: Option<String>,
    /// True when pushed.
    pub pushed: bool,
}

/// The backup `delete` takes before it stops the server.
#[derive(Debug, Serialize)]
pub struct FinalBackup {
    /// The backup store's name (etc/dbctl.yml `backup_stores`).
    pub store: String,
    /// The backup's id; `None` for `--dry-run`.
    pub id: Option<String>,
}

impl Report for DeleteReport {
    fn human(&self) -> String {
        if self.dry_run {
            let backup = match &self.final_backup {
                Some(b) => format!("back up to store `{}`, then ", b.store),
                None => String::new(),
            };
            return format!(
                "dry run: would {backup}stop `{}`, remove its data and {}\n",
                self.name,
                self.removed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
        }
        let mut text = String::new();
        if let Some(FinalBackup {
            store,
            id: Some(id),
        }) = &self.final_backup
        {
            text.push_str(&format!(
                "final backup {id} in store `{store}` (bring it back with `dbctl restore {} --store {store} --yes`)\n",
                self.name
            ));
        }
        text.push_str(&format!(
            "deleted `{}`: server stopped, data removed\n",
            self.name
        ));
        for path in &self.removed {
            text.push_str(&format!("removed {}\n", path.display()));
        }
        if let Some(commit) = &self.commit {
            text.push_str(&format!("committed {}\n", &commit[..commit.len().min(12)]));
        }
        text
    }
}

/// Runs `dbctl delete`.
///
/// # Errors
/// Without `--yes`, with `deletion_protection: true`, for an unknown database, without
/// `--skip-final-backup` when the database has no backup store or its platform cannot
/// back up yet, when the final backup fails (nothing is deleted then), or when a step
/// fails.
pub fn delete(session: &Session, opts: &DeleteOptions) -> Result<DeleteReport> {
    let repo = session.repo()?;
    if !opts.no_commit {
        repo.require_git()?;
    }
    let spec = session.existing_spec(&repo, &opts.name)?;
    if spec.deletion_protection {
        bail!(
            "`{}` has `deletion_protection: true` in `{}`; set it to false (and commit) before deleting",
            spec.name,
            Repo::spec_rel(&spec.name).display()
        );
    }
    if !opts.yes && !opts.dry_run {
        bail!(
            "deleting `{}` destroys its data; pass `--yes` to confirm",
            spec.name
        );
    }
    let platform = session.platform(&repo, &spec)?;
    let final_store = if opts.skip_final_backup {
        None
    } else {
        let hint = "(pass `--skip-final-backup` to delete without one)";
        let store = super::backup::store_name(&repo, &spec, opts.store.as_deref())
            .with_context(|| format!("`delete` takes a final backup first {hint}"))?;
        super::backup::check_platform(platform.as_ref(), &spec, "backup")
            .with_context(|| format!("`delete` takes a final backup first {hint}"))?;
        Some(store)
    };
    let paths = [Repo::spec_rel(&spec.name), Repo::connection_rel(&spec.name)];
    let mut report = DeleteReport {
        name: spec.name.clone(),
        removed: paths.to_vec(),
        dry_run: opts.dry_run,
        final_backup: final_store
            .clone()
            .map(|store| FinalBackup { store, id: None }),
        commit: None,
        pushed: false,
    };
    if opts.dry_run {
        return Ok(report);
    }
    if let Some(store) = final_store {
        // Its own lock, released before delete's: between the two only another dbctl
        // run could act, and what it changed is then deleted too.
        let taken = super::backup::backup(
            session,
            &super::backup::BackupOptions {
                name: spec.name.clone(),
                store: Some(store.clone()),
                kind: crate::backup::BackupKind::Full,
                lock_timeout_s: opts.lock_timeout_s,
            },
        )
        .with_context(|| {
            format!(
                "the final backup of `{}` failed; nothing was deleted",
                spec.name
            )
        })?;
        report.final_backup = Some(FinalBackup {
            store,
            id: Some(taken.manifest.id),
        });
    }
    let lock = super::lock(&repo, &spec.name, "delete", opts.lock_timeout_s)?;
    let lease = platform.lease(
        &spec,
        &super::create::lease_holder(&repo, "delete"),
        std::time::Duration::from_secs(opts.lock_timeout_s),
    )?;
    let printer = &session.printer;
    printer.status(&format!(
        "deleting `{}` on target `{}`",
        spec.name, spec.target
    ));
    let progress = |i: usize, n: usize, name: &str| printer.step(i, n, name);
    platform.apply(&crate::platform::Request {
        spec: &spec,
        changes: &[crate::change::Change::delete(&spec)],
        password: None,
        login: None,
        progress: &progress,
        output: None,
        restore: None,
    })?;
    for rel in &paths {
        repo.anchor()
            .remove_all(rel)
            .with_context(|| format!("cannot remove `{}`", rel.display()))?;
    }
    // The database is gone: its lease and lock file go too.
    drop(lease);
    lock.remove();
    if !opts.no_commit {
        let refs: Vec<_> = paths.iter().map(PathBuf::as_path).collect();
        report.commit = git::commit_paths(
            repo.root(),
            &refs,
            &format!("dbctl delete {}", spec.name),
            git::Removals::Allowed,
        )?
        .map(|o| o.to_string());
        if opts.push {
            git::push(repo.root())?;
            report.pushed = true;
        }
    }
    Ok(report)
}
