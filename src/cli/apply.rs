use clap::Args;

use crate::ops::{Session, apply};
use crate::output::Report;

/// `dbctl plan`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl plan                          every database: what apply would change, and when
  dbctl plan my-db -o json            one database, as JSON
  dbctl plan --detailed-exitcode      CI: exit 2 when changes are pending")]
pub struct PlanArgs {
    /// Databases to plan (default: every spec of the repo).
    pub names: Vec<String>,
    /// Exit 2 when changes are pending (0: none, 1: error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Databases queried at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// Plan disruptive changes to run now instead of in the maintenance window.
    #[arg(long)]
    pub now: bool,
    /// Only what runs differently from what was applied (a stopped server, a setting
    /// changed outside dbctl, binaries upgraded under it); exit 2 when there is any.
    /// For a scheduled job.
    #[arg(long)]
    pub drift: bool,
}

impl PlanArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(apply::plan(
            session,
            &apply::PlanOptions {
                names: self.names,
                parallel: usize::from(self.parallel),
                detailed_exitcode: self.detailed_exitcode,
                now: self.now,
                drift: self.drift,
            },
        )?))
    }
}

/// `dbctl apply`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl apply                         apply every spec's changes; restarts wait for the window
  dbctl apply my-db --now             one database, restarts included, now
  dbctl apply --wait                  restarts too, each in its window (waits for it)
  dbctl apply --dry-run               the plan, nothing changed")]
pub struct ApplyArgs {
    /// Databases to apply (default: every spec of the repo).
    pub names: Vec<String>,
    /// Databases converged at once (each on its own target's hosts).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// `--no-commit`, `--push`, `--dry-run`, `--lock-timeout`.
    #[command(flatten)]
    pub change: super::ChangeArgs,
    /// Apply disruptive changes (restart or worse) now, not in the maintenance window.
    #[arg(long)]
    pub now: bool,
    /// Stay until the maintenance window of changes left for it opens, and apply them
    /// then (Ctrl-C leaves them pending; nothing is locked while waiting).
    #[arg(long, conflicts_with_all = ["now", "dry_run"])]
    pub wait: bool,
}

impl ApplyArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(apply::apply(
            session,
            &apply::ApplyOptions {
                names: self.names,
                parallel: usize::from(self.parallel),
                no_commit: self.change.no_commit,
                push: self.change.push,
                lock_timeout_s: self.change.lock.lock_timeout,
                dry_run: self.change.dry_run,
                now: self.now,
                wait: self.wait,
            },
        )?))
    }
}
