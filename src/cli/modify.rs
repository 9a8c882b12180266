use clap::Args;

use super::ChangeArgs;
use crate::ops::Session;
use crate::ops::modify::{self, Edit, ModifyOptions};
use crate::output::Report;

/// `dbctl resize`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl resize my-db --size 20           grow the allotment to 20 GB, commit the spec
  dbctl resize my-db --size 20 --dry-run")]
pub struct ResizeArgs {
    /// Database name.
    pub name: String,
    /// The new size in GB (grow only).
    #[arg(long = "size", value_name = "GB")]
    pub size_gb: u64,
    /// Apply a disruptive change now, not in the maintenance window.
    #[arg(long)]
    pub now: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// `dbctl upgrade`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl upgrade my-db --version 15 --now   restart on the newest installed 15.x
  dbctl upgrade my-db --version 16 --dry-run")]
pub struct UpgradeArgs {
    /// Database name.
    pub name: String,
    /// The version series from the catalog (`15`, `10.11`).
    #[arg(long, value_name = "VERSION")]
    pub version: String,
    /// Apply the restart now, not in the maintenance window.
    #[arg(long)]
    pub now: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// `dbctl scale`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl scale my-db --plan medium          cpu and memory of plan `medium` (etc/plans.yml)
  dbctl scale my-db --plan large --dry-run")]
pub struct ScaleArgs {
    /// Database name.
    pub name: String,
    /// The plan from the catalog (`small`, `medium`, …): cpu and memory.
    #[arg(long, value_name = "PLAN")]
    pub plan: String,
    /// Apply a restart-class change now, not in the maintenance window.
    #[arg(long)]
    pub now: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

impl ScaleArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        let opts = options(self.name, Edit::Plan(self.plan), self.now, &self.change);
        Ok(Box::new(modify::modify(session, &opts)?))
    }
}

fn options(name: String, edit: Edit, now: bool, change: &ChangeArgs) -> ModifyOptions {
    ModifyOptions {
        name,
        edit,
        no_commit: change.no_commit,
        push: change.push,
        dry_run: change.dry_run,
        lock_timeout_s: change.lock.lock_timeout,
        now,
    }
}

impl ResizeArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        let opts = options(self.name, Edit::Size(self.size_gb), self.now, &self.change);
        Ok(Box::new(modify::modify(session, &opts)?))
    }
}

impl UpgradeArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        let opts = options(
            self.name,
            Edit::Version(self.version),
            self.now,
            &self.change,
        );
        Ok(Box::new(modify::modify(session, &opts)?))
    }
}
