//! `dbctl plan` and `dbctl apply`: compare every spec of the GitOps repo with what
//! runs, then converge the differences — concurrently, at most `--parallel` databases
//! at once (each its own hosts, so N hosts are worked on in parallel) — and commit the
//! connection files in one commit.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Result, bail};
use serde::Serialize;

use super::Session;
use super::create::{Converged, converge};
use crate::gitops::{Repo, git};
use crate::output::{Report, table};
use crate::platform::State;
use crate::spec::Spec;

/// What a plan would do to one database, with its symbol (`+`, `~`, ` `).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing runs yet: create it.
    Create,
    /// It exists but is down or has no connection file: converge it.
    Converge,
    /// Up with its connection file.
    None,
}

impl Action {
    /// The plan symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Create => "+",
            Self::Converge => "~",
            Self::None => " ",
        }
    }
}

/// One database in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Database name.
    pub name: String,
    /// Target name.
    pub target: String,
    /// What apply would do.
    pub action: Action,
    /// Why.
    pub reason: String,
}

/// `dbctl plan`.
#[derive(Debug, Serialize)]
pub struct PlanReport {
    /// Every database, by name.
    pub changes: Vec<Change>,
    /// How many need a change.
    pub pending: usize,
    /// With `--detailed-exitcode`: exit 2 when changes are pending.
    #[serde(skip)]
    pub detailed_exitcode: bool,
}

impl Report for PlanReport {
    fn human(&self) -> String {
        let rows = self
            .changes
            .iter()
            .map(|c| {
                vec![
                    c.action.symbol().to_owned(),
                    c.name.clone(),
                    c.target.clone(),
                    c.reason.clone(),
                ]
            })
            .collect();
        let mut text = table(&["", "NAME", "TARGET", "WHY"], rows);
        text.push_str(&format!(
            "{} to change, {} unchanged\n",
            self.pending,
            self.changes.len() - self.pending
        ));
        text
    }

    fn exit_code(&self) -> u8 {
        if self.detailed_exitcode && self.pending > 0 {
            2
        } else {
            0
        }
    }
}

/// One database's apply result.
#[derive(Debug, Serialize)]
pub struct Applied {
    /// Database name.
    pub name: String,
    /// What the plan said.
    pub action: Action,
    /// The outcome when it succeeded.
    pub result: Option<Converged>,
    /// The error when it failed.
    pub error: Option<String>,
}

/// `dbctl apply`.
#[derive(Debug, Serialize)]
pub struct ApplyReport {
    /// Every database that needed a change.
    pub applied: Vec<Applied>,
    /// The commit of the changed files, if any.
    pub commit: Option<String>,
    /// True when pushed.
    pub pushed: bool,
}

impl Report for ApplyReport {
    fn human(&self) -> String {
        if self.applied.is_empty() {
            return "nothing to do: every database is up with its connection file\n".into();
        }
        let mut text = String::new();
        for a in &self.applied {
            match (&a.result, &a.error) {
                (Some(r), _) => text.push_str(&format!(
                    "{} {}: up at {}:{}\n",
                    a.action.symbol(),
                    a.name,
                    r.host.as_deref().unwrap_or("?"),
                    r.port.unwrap_or(0)
                )),
                (None, Some(err)) => text.push_str(&format!("! {}: failed: {err}\n", a.name)),
                _ => {}
            }
        }
        if let Some(commit) = &self.commit {
            text.push_str(&format!("committed {}\n", &commit[..commit.len().min(12)]));
        }
        text
    }

    fn exit_code(&self) -> u8 {
        u8::from(self.applied.iter().any(|a| a.error.is_some()))
    }
}

fn plan_one(session: &Session, repo: &Repo, spec: &Spec) -> Change {
    let (action, reason) = match session.platform(repo, spec).and_then(|p| p.status(spec)) {
        Ok(status) => match status.state {
            State::Absent => (Action::Create, "not created yet".to_owned()),
            State::Down => (
                Action::Converge,
                format!(
                    "down{}",
                    status.detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
            ),
            State::Up if !repo.path(&Repo::connection_rel(&spec.name)).exists() => (
                Action::Converge,
                "up, but its connection file is missing".into(),
            ),
            State::Up => (Action::None, "up".into()),
        },
        Err(err) => (Action::Converge, format!("status unknown: {err:#}")),
    };
    Change {
        name: spec.name.clone(),
        target: spec.target.clone(),
        action,
        reason,
    }
}

/// Runs `f` on every item with at most `parallel` threads; results keep item order.
fn bounded<T: Sync, R: Send>(items: &[T], parallel: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let queue = Mutex::new((0..items.len()).collect::<VecDeque<_>>());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.pop_front()).ok().flatten();
                    let Some(index) = next else { break };
                    let result = f(&items[index]);
                    if let Ok(mut all) = results.lock() {
                        all[index] = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Runs `dbctl plan`: every spec's live state, `parallel` at a time.
///
/// # Errors
/// An invalid spec or configuration (nothing is queried then).
pub fn plan(session: &Session, parallel: usize, detailed_exitcode: bool) -> Result<PlanReport> {
    let repo = session.repo()?;
    let specs = repo.specs()?;
    let changes = bounded(&specs, parallel, |spec| plan_one(session, &repo, spec));
    let pending = changes.iter().filter(|c| c.action != Action::None).count();
    Ok(PlanReport {
        changes,
        pending,
        detailed_exitcode,
    })
}

/// Flags of `dbctl apply`.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Databases converged at once.
    pub parallel: usize,
    /// `--no-commit`.
    pub no_commit: bool,
    /// `--push`.
    pub push: bool,
    /// `--lock-timeout` in seconds.
    pub lock_timeout_s: u64,
}

/// Runs `dbctl apply`: plans, then converges every database that needs it, at most
/// `parallel` at once, and commits the written files in one commit.
///
/// # Errors
/// An invalid spec (nothing changed), or a failed commit. A database that fails is
/// reported in the result (exit code 1) while the others complete.
pub fn apply(session: &Session, opts: &ApplyOptions) -> Result<ApplyReport> {
    let repo = session.repo()?;
    if !opts.no_commit {
        repo.require_git()?;
    }
    let specs = repo.specs()?;
    if specs.is_empty() {
        bail!("no specs in `etc/databases/`; `dbctl create` adds one");
    }
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let changes = bounded(&specs, opts.parallel, |spec| plan_one(session, &repo, spec));
    let todo: Vec<(Spec, Action)> = specs
        .into_iter()
        .zip(changes)
        .filter(|(_, c)| c.action != Action::None)
        .map(|(s, c)| (s, c.action))
        .collect();
    let printer = &session.printer;
    let applied = bounded(&todo, opts.parallel, |(spec, action)| {
        let progress = |i: usize, n: usize, step: &str| {
            printer.status(&format!("{}: [{i}/{n}] {step}", spec.name));
        };
        let result = session.platform(&repo, spec).and_then(|p| {
            converge(
                &repo,
                spec,
                p.as_ref(),
                &session.identity,
                opts.lock_timeout_s,
                printer,
                &progress,
            )
        });
        match result {
            Ok(r) => Applied {
                name: spec.name.clone(),
                action: *action,
                result: Some(r),
                error: None,
            },
            Err(err) => Applied {
                name: spec.name.clone(),
                action: *action,
                result: None,
                error: Some(format!("{err:#}")),
            },
        }
    });
    let mut report = ApplyReport {
        applied,
        commit: None,
        pushed: false,
    };
    let done: Vec<&str> = report
        .applied
        .iter()
        .filter(|a| a.result.as_ref().is_some_and(|r| r.changed))
        .map(|a| a.name.as_str())
        .collect();
    if !opts.no_commit {
        // Every spec's files, not only those changed now: an earlier run may have
        // written some and failed to commit them. Missing files are never staged as
        // deletions.
        let paths: Vec<PathBuf> = names
            .iter()
            .flat_map(|n| [Repo::spec_rel(n), Repo::connection_rel(n)])
            .collect();
        let refs: Vec<_> = paths.iter().map(PathBuf::as_path).collect();
        let message = if done.is_empty() {
            "dbctl apply: files an earlier run wrote".to_owned()
        } else {
            format!("dbctl apply: {}", done.join(", "))
        };
        report.commit = git::commit_paths(repo.root(), &refs, &message, git::Removals::Refused)?
            .map(|o| o.to_string());
        if opts.push && report.commit.is_some() {
            git::push(repo.root())?;
            report.pushed = true;
        }
    }
    Ok(report)
}
