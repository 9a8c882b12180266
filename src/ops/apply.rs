//! `dbctl plan` and `dbctl apply`: observe every spec's database, diff it with the
//! pure [`crate::change::plan`], show a Terraform-like plan, then apply the changes —
//! concurrently, at most `--parallel` databases at once — and commit the files in one
//! commit. Disruptive changes (restart or worse) wait for the database's maintenance
//! window unless `--now`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Result, bail};
use serde::Serialize;

use super::Session;
use super::create::{Converged, Gate, converge, gate, plan_changes};
use crate::change::window::Window;
use crate::change::{Action, Change};
use crate::gitops::{Repo, git};
use crate::output::Report;
use crate::spec::Spec;

/// One database in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// Database name.
    pub name: String,
    /// Target name.
    pub target: String,
    /// The changes that run now.
    pub changes: Vec<Change>,
    /// Disruptive changes that wait for the maintenance window.
    pub deferred: Vec<Change>,
    /// When the window next opens (`2026-12-06 02:00 IST`), for deferred changes.
    pub runs_at: Option<String>,
    /// Why the database cannot be planned (a refused change, an unreachable host):
    /// `plan` and `apply` exit 1 and leave it alone.
    pub error: Option<String>,
    /// What the platform's own planner says (Nomad's job diff), when it has one and
    /// changes are planned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preview: Vec<String>,
}

impl Planned {
    fn pending(&self) -> bool {
        !self.changes.is_empty() || !self.deferred.is_empty()
    }
}

/// `dbctl plan`.
#[derive(Debug, Serialize)]
pub struct PlanReport {
    /// Every database, by name.
    pub databases: Vec<Planned>,
    /// How many databases have changes pending.
    pub pending: usize,
    /// With `--detailed-exitcode` (or `--drift`): exit 2 when changes are pending.
    #[serde(skip)]
    pub detailed_exitcode: bool,
    /// `--drift`: the changes are only what runs differently from what was applied.
    pub drift: bool,
}

/// A change's old or new value as plans print it: strings quoted, `(none)` when unset.
pub(super) fn value(v: Option<&serde_json::Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(serde_json::Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
    }
}

/// The Terraform-like lines of one database's changes.
fn describe(planned: &Planned) -> String {
    let mut text = String::new();
    let symbol = if planned
        .changes
        .iter()
        .chain(&planned.deferred)
        .any(|c| c.action == Action::Create && c.attribute == "database")
    {
        "+"
    } else {
        "~"
    };
    text.push_str(&format!(
        "{symbol} {} (target {})\n",
        planned.name, planned.target
    ));
    for (change, when) in planned.changes.iter().map(|c| (c, None)).chain(
        planned
            .deferred
            .iter()
            .map(|c| (c, planned.runs_at.as_deref())),
    ) {
        let arrow = match change.action {
            Action::Create if change.attribute == "database" => value(change.new.as_ref()),
            Action::Delete => value(change.old.as_ref()),
            _ => format!(
                "{} → {}",
                value(change.old.as_ref()),
                value(change.new.as_ref())
            ),
        };
        let when = when.map_or_else(
            || "now".to_owned(),
            |at| format!("at {at}, in the maintenance window"),
        );
        text.push_str(&format!(
            "    {:<3} {}: {arrow}  ({}; {}; {when})\n",
            change.action.symbol(),
            change.attribute,
            change.disruption,
            change.reason,
        ));
    }
    for line in &planned.preview {
        text.push_str(&format!("    | {line}\n"));
    }
    text
}

impl Report for PlanReport {
    fn human(&self) -> String {
        let mut text = String::new();
        for planned in &self.databases {
            if let Some(err) = &planned.error {
                text.push_str(&format!("! {}: {err}\n", planned.name));
            } else if planned.pending() {
                text.push_str(&describe(planned));
            }
        }
        let count = |action: Action| {
            self.databases
                .iter()
                .flat_map(|p| p.changes.iter().chain(&p.deferred))
                .filter(|c| c.action == action)
                .count()
        };
        if self.drift {
            text.push_str(&if self.pending == 0 {
                format!(
                    "No drift: {} database(s) run as applied.\n",
                    self.databases.len()
                )
            } else {
                format!(
                    "Drift: {} database(s) run differently from what was applied; `dbctl apply` puts them back.\n",
                    self.pending
                )
            });
        } else if self.pending == 0 && self.databases.iter().all(|p| p.error.is_none()) {
            text.push_str(&format!(
                "No changes: {} database(s) match their specs.\n",
                self.databases.len()
            ));
        } else {
            text.push_str(&format!(
                "Plan: {} database(s) to change: {} to create, {} to change in place, {} to replace, {} to delete.\n",
                self.pending,
                count(Action::Create),
                count(Action::Update),
                count(Action::Replace),
                count(Action::Delete)
            ));
        }
        text
    }

    /// A heading with the summary, then per database a table of its changes (what,
    /// old → new, disruption, when, why) and the databases that cannot be planned: a
    /// merge request's comment or a CI job's summary.
    fn markdown(&self) -> String {
        let errors: Vec<&Planned> = self
            .databases
            .iter()
            .filter(|p| p.error.is_some())
            .collect();
        let what = if self.drift { "drift" } else { "plan" };
        let mut text = if self.pending == 0 && errors.is_empty() {
            format!(
                "### dbctl {what}: no changes\n\n{} database(s) {}.\n",
                self.databases.len(),
                if self.drift {
                    "run as applied"
                } else {
                    "match their specs"
                }
            )
        } else {
            format!(
                "### dbctl {what}: {} database(s) to change{}\n",
                self.pending,
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(", {} cannot be planned", errors.len())
                }
            )
        };
        // Backticks inside a cell would end its code span, pipes its column.
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        for planned in self.databases.iter().filter(|p| p.pending()) {
            text.push_str(&format!(
                "\n#### `{}` (target `{}`)\n\n",
                planned.name, planned.target
            ));
            let rows = planned
                .changes
                .iter()
                .map(|c| (c, "now".to_owned()))
                .chain(planned.deferred.iter().map(|c| {
                    (
                        c,
                        planned
                            .runs_at
                            .as_deref()
                            .map_or_else(|| "in the window".to_owned(), |at| format!("at {at}")),
                    )
                }))
                .map(|(c, when)| {
                    vec![
                        c.action.symbol().to_owned(),
                        format!("`{}`", cell(&c.attribute)),
                        cell(&value(c.old.as_ref())),
                        cell(&value(c.new.as_ref())),
                        c.disruption.to_string(),
                        when,
                        cell(&c.reason),
                    ]
                })
                .collect();
            text.push_str(&crate::output::markdown_table(
                &["", "attribute", "old", "new", "disruption", "when", "why"],
                rows,
            ));
        }
        if !errors.is_empty() {
            text.push_str("\n#### Cannot be planned\n\n");
            for planned in errors {
                text.push_str(&format!(
                    "- `{}`: {}\n",
                    planned.name,
                    cell(planned.error.as_deref().unwrap_or_default())
                ));
            }
        }
        text
    }

    fn exit_code(&self) -> u8 {
        if self.databases.iter().any(|p| p.error.is_some()) {
            1
        } else if self.detailed_exitcode && self.pending > 0 {
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
    /// The outcome when it succeeded.
    pub result: Option<Converged>,
    /// The error when it failed.
    pub error: Option<String>,
}

/// `dbctl apply`.
#[derive(Debug, Serialize)]
pub struct ApplyReport {
    /// Every database that had changes pending.
    pub applied: Vec<Applied>,
    /// True for `--dry-run`: the plan, nothing applied.
    pub dry_run: bool,
    /// The plan, for `--dry-run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanReport>,
    /// The commit of the changed files, if any.
    pub commit: Option<String>,
    /// True when pushed.
    pub pushed: bool,
}

impl Report for ApplyReport {
    fn human(&self) -> String {
        if let Some(plan) = &self.plan {
            return format!("dry run: nothing applied\n{}", plan.human());
        }
        if self.applied.is_empty() {
            return "nothing to do: every database matches its spec\n".into();
        }
        let mut text = String::new();
        for a in &self.applied {
            match (&a.result, &a.error) {
                (Some(r), _) => {
                    if r.changed {
                        text.push_str(&format!(
                            "~ {}: {} change(s) applied; up at {}:{}\n",
                            a.name,
                            r.applied.len(),
                            r.host.as_deref().unwrap_or("?"),
                            r.port.unwrap_or(0)
                        ));
                    }
                    if !r.deferred.is_empty() {
                        text.push_str(&format!(
                            "  {}: {} change(s) wait for the maintenance window ({}); `dbctl apply --now` applies them now\n",
                            a.name,
                            r.deferred.len(),
                            r.deferred_until.as_deref().unwrap_or("?")
                        ));
                    }
                }
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
        let planned_errors = self
            .plan
            .as_ref()
            .is_some_and(|p| p.databases.iter().any(|d| d.error.is_some()));
        u8::from(planned_errors || self.applied.iter().any(|a| a.error.is_some()))
    }
}

/// The maintenance window of `spec`: its own, else its target's.
///
/// # Errors
/// A window that does not parse (validated earlier, so only a changed catalog).
pub fn window_of(repo: &Repo, spec: &Spec) -> Result<Option<Window>> {
    let text = spec.maintenance.clone().or_else(|| {
        repo.config
            .target(&spec.target)
            .and_then(|t| t.maintenance.clone())
    });
    text.map(|t| Window::parse(&t).map_err(anyhow::Error::msg))
        .transpose()
}

fn plan_one(
    session: &Session,
    repo: &Repo,
    spec: &Spec,
    now: jiff::Timestamp,
    force: bool,
) -> Planned {
    let mut planned = Planned {
        name: spec.name.clone(),
        target: spec.target.clone(),
        changes: Vec::new(),
        deferred: Vec::new(),
        runs_at: None,
        error: None,
        preview: Vec::new(),
    };
    let result = session.platform(repo, spec).and_then(|p| {
        let (changes, _) = plan_changes(repo, spec, p.as_ref())?;
        let preview = if changes.is_empty() {
            Vec::new()
        } else {
            // The password only when this runner's identity reads it (a CI job
            // planning a merge request may have none): planners that need it say so.
            let password = repo.connection(&spec.name).ok().flatten().and_then(|conn| {
                crate::secret::decrypt(&conn.password, &session.identity, "password").ok()
            });
            p.preview(spec, password.as_ref())?
        };
        let window = if force { None } else { window_of(repo, spec)? };
        Ok((gate(changes, window.as_ref(), now), preview))
    });
    match result {
        Ok(((changes, deferred, runs_at), preview)) => {
            planned.changes = changes;
            planned.deferred = deferred;
            planned.runs_at = runs_at;
            planned.preview = preview;
        }
        Err(err) => planned.error = Some(format!("{err:#}")),
    }
    planned
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

/// The specs named (all when `names` is empty).
///
/// # Errors
/// An invalid spec, or a name with no spec.
fn selected(session: &Session, repo: &Repo, names: &[String]) -> Result<Vec<Spec>> {
    if names.is_empty() {
        return repo.specs();
    }
    names
        .iter()
        .map(|n| session.existing_spec(repo, n))
        .collect()
}

/// Flags of `dbctl plan`.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Databases to plan (all when empty).
    pub names: Vec<String>,
    /// Databases queried at once.
    pub parallel: usize,
    /// `--detailed-exitcode`.
    pub detailed_exitcode: bool,
    /// `--now`: plan disruptive changes to run now.
    pub now: bool,
    /// `--drift`: only what runs differently from what was applied (see
    /// [`crate::change::Change::is_drift`]); exit 2 when there is any.
    pub drift: bool,
}

/// Runs `dbctl plan`: every spec against what runs, `parallel` at a time.
///
/// # Errors
/// An invalid spec or configuration (nothing is queried then).
pub fn plan(session: &Session, opts: &PlanOptions) -> Result<PlanReport> {
    let repo = session.repo()?;
    let specs = selected(session, &repo, &opts.names)?;
    let now = jiff::Timestamp::now();
    let mut databases = bounded(&specs, opts.parallel, |spec| {
        plan_one(session, &repo, spec, now, opts.now)
    });
    if opts.drift {
        for planned in &mut databases {
            planned.changes.retain(Change::is_drift);
            planned.deferred.retain(Change::is_drift);
            if planned.deferred.is_empty() {
                planned.runs_at = None;
            }
        }
    }
    let pending = databases.iter().filter(|p| p.pending()).count();
    Ok(PlanReport {
        databases,
        pending,
        detailed_exitcode: opts.detailed_exitcode || opts.drift,
        drift: opts.drift,
    })
}

/// Flags of `dbctl apply`.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Databases to apply (all when empty).
    pub names: Vec<String>,
    /// Databases converged at once.
    pub parallel: usize,
    /// `--no-commit`.
    pub no_commit: bool,
    /// `--push`.
    pub push: bool,
    /// `--lock-timeout` in seconds.
    pub lock_timeout_s: u64,
    /// `--dry-run`: show the plan, change nothing.
    pub dry_run: bool,
    /// `--now`: do not wait for maintenance windows.
    pub now: bool,
    /// `--wait`: stay until the maintenance windows of deferred changes open, and apply
    /// them then.
    pub wait: bool,
}

/// Runs `dbctl apply`: plans, then applies every database's changes, at most
/// `parallel` at once, and commits the written files in one commit. With `--wait`,
/// then sleeps until the next maintenance window of the changes left for one opens,
/// applies those databases again in it (one commit each time), and so on until none
/// is left; nothing is locked while it sleeps, so interrupting it leaves them pending.
///
/// # Errors
/// An invalid spec (nothing changed), or a failed commit. A database that fails is
/// reported in the result (exit code 1) while the others complete.
pub fn apply(session: &Session, opts: &ApplyOptions) -> Result<ApplyReport> {
    let mut report = apply_once(session, opts)?;
    if !opts.wait || opts.dry_run || opts.now {
        return Ok(report);
    }
    loop {
        let repo = session.repo()?;
        let now = jiff::Timestamp::now();
        let mut waiting = Vec::new();
        for applied in &report.applied {
            if applied
                .result
                .as_ref()
                .is_some_and(|r| !r.deferred.is_empty())
            {
                let spec = session.existing_spec(&repo, &applied.name)?;
                let opens = window_of(&repo, &spec)?.and_then(|w| w.next_start(now));
                waiting.push((applied.name.clone(), opens.map(|z| z.timestamp())));
            }
        }
        // A window already open (it opened while this run applied) runs at once.
        let Some(first) = waiting.iter().map(|(_, at)| at.unwrap_or(now)).min() else {
            return Ok(report);
        };
        let due: Vec<String> = waiting
            .into_iter()
            .filter(|(_, at)| at.unwrap_or(now) <= first)
            .map(|(name, _)| name)
            .collect();
        let pause = std::time::Duration::try_from(first.duration_since(now))
            .unwrap_or_default()
            // Past the window's first second, so the gate sees it open.
            + std::time::Duration::from_secs(1);
        session.printer.status(&format!(
            "waiting for the maintenance window of {} (opens {}, in {} s)",
            due.join(", "),
            first.strftime("%Y-%m-%d %H:%M:%S UTC"),
            pause.as_secs()
        ));
        std::thread::sleep(pause);
        let again = apply_once(
            session,
            &ApplyOptions {
                names: due,
                ..opts.clone()
            },
        )?;
        for applied in again.applied {
            match report.applied.iter_mut().find(|a| a.name == applied.name) {
                Some(slot) => merge_applied(slot, applied),
                None => report.applied.push(applied),
            }
        }
        report.commit = again.commit.or(report.commit);
        report.pushed |= again.pushed;
    }
}

/// One database's outcome of a later `--wait` round folded into its first: the changes
/// applied in both, the deferred ones as the later round left them.
fn merge_applied(slot: &mut Applied, later: Applied) {
    match (slot.result.as_mut(), later.result) {
        (Some(first), Some(mut then)) => {
            let mut applied = std::mem::take(&mut first.applied);
            applied.append(&mut then.applied);
            then.applied = applied;
            then.changed |= first.changed;
            *first = then;
        }
        (_, result) => slot.result = result,
    }
    slot.error = later.error;
}

fn apply_once(session: &Session, opts: &ApplyOptions) -> Result<ApplyReport> {
    let repo = session.repo()?;
    if !opts.no_commit && !opts.dry_run {
        repo.require_git()?;
    }
    let specs = selected(session, &repo, &opts.names)?;
    if specs.is_empty() {
        bail!("no specs in `etc/databases/`; `dbctl create` adds one");
    }
    let now = jiff::Timestamp::now();
    let planned = bounded(&specs, opts.parallel, |spec| {
        plan_one(session, &repo, spec, now, opts.now)
    });
    if opts.dry_run {
        let pending = planned.iter().filter(|p| p.pending()).count();
        return Ok(ApplyReport {
            applied: Vec::new(),
            dry_run: true,
            plan: Some(PlanReport {
                databases: planned,
                pending,
                detailed_exitcode: false,
                drift: false,
            }),
            commit: None,
            pushed: false,
        });
    }
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let todo: Vec<(Spec, Planned)> = specs
        .into_iter()
        .zip(planned)
        .filter(|(_, p)| p.pending() || p.error.is_some())
        .collect();
    let printer = &session.printer;
    let applied = bounded(&todo, opts.parallel, |(spec, planned)| {
        if let Some(err) = &planned.error {
            return Applied {
                name: spec.name.clone(),
                result: None,
                error: Some(err.clone()),
            };
        }
        let line = printer.line(&spec.name);
        let progress = |i: usize, n: usize, step: &str| line.set(&format!("[{i}/{n}] {step}"));
        let result = session.platform(&repo, spec).and_then(|p| {
            let window = if opts.now {
                None
            } else {
                window_of(&repo, spec)?
            };
            converge(
                &repo,
                spec,
                p.as_ref(),
                &Gate {
                    operation: "apply",
                    identity: &session.identity,
                    lock_timeout_s: opts.lock_timeout_s,
                    window,
                    now,
                    restore: None,
                },
                printer,
                &progress,
            )
        });
        match result {
            Ok(r) => {
                line.finish(if r.changed {
                    "applied"
                } else {
                    "nothing to do"
                });
                Applied {
                    name: spec.name.clone(),
                    result: Some(r),
                    error: None,
                }
            }
            Err(err) => {
                line.finish("failed (see below)");
                Applied {
                    name: spec.name.clone(),
                    result: None,
                    error: Some(format!("{err:#}")),
                }
            }
        }
    });
    let mut report = ApplyReport {
        applied,
        dry_run: false,
        plan: None,
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
