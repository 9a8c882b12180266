//! `dbctl resize`, `dbctl upgrade` and `dbctl scale`: change one field of a spec, plan that change,
//! and apply it through the same path as `apply` — so there is one way a database
//! changes. A change the platform cannot make (a shrink, a major upgrade it cannot do)
//! is refused before the spec is written.

use anyhow::{Result, bail};
use serde::Serialize;

use super::Session;
use super::apply::window_of;
use super::create::{Converged, Gate, converge, gate, plan_changes};
use crate::change::Change;
use crate::gitops::Repo;
use crate::output::Report;
use crate::spec::{Draft, Spec};

/// What to change.
#[derive(Debug, Clone)]
pub enum Edit {
    /// `resize --size N` (GB).
    Size(u64),
    /// `upgrade --version V`.
    Version(String),
    /// `scale --plan P`: cpu and memory from the catalog's plan `P`.
    Plan(String),
}

/// Flags of `resize`, `upgrade` and `scale`.
#[derive(Debug, Clone)]
pub struct ModifyOptions {
    /// Database name.
    pub name: String,
    /// The edit.
    pub edit: Edit,
    /// `--no-commit`.
    pub no_commit: bool,
    /// `--push`.
    pub push: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--lock-timeout` in seconds.
    pub lock_timeout_s: u64,
    /// `--now`: do not wait for the maintenance window.
    pub now: bool,
}

/// What `resize`/`upgrade`/`scale` did.
#[derive(Debug, Serialize)]
pub struct ModifyReport {
    /// Database name.
    pub name: String,
    /// The planned changes.
    pub changes: Vec<Change>,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// The outcome.
    pub result: Option<Converged>,
    /// The commit, if any.
    pub commit: Option<String>,
    /// True when pushed.
    pub pushed: bool,
}

impl Report for ModifyReport {
    fn human(&self) -> String {
        let mut text = String::new();
        for c in &self.changes {
            text.push_str(&format!(
                "{} {}: {} → {} ({})\n",
                c.action.symbol(),
                c.attribute,
                c.old.as_ref().map_or("(none)".into(), ToString::to_string),
                c.new.as_ref().map_or("(none)".into(), ToString::to_string),
                c.disruption
            ));
        }
        if self.dry_run {
            text.push_str("dry run: nothing changed\n");
        } else if let Some(r) = &self.result {
            if !r.deferred.is_empty() {
                text.push_str(&format!(
                    "{} change(s) wait for the maintenance window ({}); `--now` applies them now\n",
                    r.deferred.len(),
                    r.deferred_until.as_deref().unwrap_or("?")
                ));
            }
            if r.changed {
                text.push_str(&format!("`{}` changed\n", self.name));
            }
        }
        if self.changes.is_empty() {
            text.push_str(&format!("`{}` already matches; nothing to do\n", self.name));
        }
        if let Some(commit) = &self.commit {
            text.push_str(&format!("committed {}\n", &commit[..commit.len().min(12)]));
        }
        text
    }
}

/// Runs `resize`, `upgrade` or `scale`.
///
/// # Errors
/// An unknown database, an invalid value (naming the flag), a refused change (the spec
/// is left as it was), or a failed step.
pub fn modify(session: &Session, opts: &ModifyOptions) -> Result<ModifyReport> {
    let repo = session.repo()?;
    if !opts.no_commit && !opts.dry_run {
        repo.require_git()?;
    }
    let current = session.existing_spec(&repo, &opts.name)?;
    let spec = edited(&repo, &current, &opts.edit)?;
    let platform = session.platform(&repo, &spec)?;
    let (changes, _) = plan_changes(&repo, &spec, platform.as_ref())?;
    let mut report = ModifyReport {
        name: spec.name.clone(),
        changes: changes.clone(),
        dry_run: opts.dry_run,
        result: None,
        commit: None,
        pushed: false,
    };
    if opts.dry_run {
        let window = if opts.now {
            None
        } else {
            window_of(&repo, &spec)?
        };
        let (now, later, _) = gate(changes, window.as_ref(), jiff::Timestamp::now());
        report.changes = now.into_iter().chain(later).collect();
        return Ok(report);
    }
    let spec_rel = Repo::spec_rel(&spec.name);
    let previous = repo.read_text(&spec_rel)?;
    repo.write(&spec_rel, spec.to_yaml().as_bytes(), 0o644)?;
    let printer = &session.printer;
    let progress = |i: usize, n: usize, name: &str| printer.step(i, n, name);
    let window = if opts.now {
        None
    } else {
        window_of(&repo, &spec)?
    };
    let operation = match opts.edit {
        Edit::Size(_) => "resize",
        Edit::Version(_) => "upgrade",
        Edit::Plan(_) => "scale",
    };
    let converged = converge(
        &repo,
        &spec,
        platform.as_ref(),
        &Gate {
            operation,
            identity: &session.identity,
            lock_timeout_s: opts.lock_timeout_s,
            window,
            now: jiff::Timestamp::now(),
            restore: None,
        },
        printer,
        &progress,
    );
    let converged = match converged {
        Ok(converged) => converged,
        Err(err) => {
            // The change did not go through: the spec goes back to what it said, so
            // the repo does not claim a state nothing applied (a re-run tries again).
            if let Some(text) = previous {
                repo.write(&spec_rel, text.as_bytes(), 0o644)?;
            }
            return Err(err.context(format!(
                "`{}` is left as it was; nothing was committed",
                spec_rel.display()
            )));
        }
    };
    report.result = Some(converged);
    if !opts.no_commit {
        (report.commit, report.pushed) = super::commit_database(
            &repo,
            &spec.name,
            &format!("dbctl {operation} {}", spec.name),
            opts.push,
        )?;
    }
    Ok(report)
}

/// `current` with the edit, validated as a spec file would be.
fn edited(repo: &Repo, current: &Spec, edit: &Edit) -> Result<Spec> {
    let mut spec = current.clone();
    match edit {
        Edit::Size(size) => {
            let size =
                crate::spec::check_size(*size).map_err(|m| anyhow::anyhow!("`--size`: {m}"))?;
            spec.size_gb = size;
        }
        Edit::Version(version) => {
            let entry = repo.catalog.engine(spec.engine);
            if !entry.is_some_and(|e| e.versions.contains(version)) {
                bail!(
                    "`--version`: {} version `{version}` is not in the catalog; allowed: {}",
                    spec.engine,
                    entry.map(|e| e.versions.join(", ")).unwrap_or_default()
                );
            }
            spec.version.clone_from(version);
        }
        Edit::Plan(plan) => {
            if repo.catalog.plan(plan).is_none() {
                bail!(
                    "`--plan`: `{plan}` is not a plan of the catalog (etc/plans.yml); allowed: {}",
                    repo.catalog.plan_names().join(", ")
                );
            }
            spec.plan.clone_from(plan);
        }
    }
    // Through the file's own validation, so the written spec is one `apply` accepts.
    let rel = Repo::spec_rel(&spec.name);
    let draft = Draft::parse(&spec.to_yaml(), &rel)?;
    Ok(draft.validate(&repo.catalog, &repo.config, &|_, _| None)?)
}
