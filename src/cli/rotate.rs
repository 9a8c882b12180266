use clap::Args;

use super::ChangeArgs;
use crate::ops::Session;
use crate::ops::rotate::{self, RotateOptions};
use crate::output::Report;

/// `dbctl rotate-credentials`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl rotate-credentials my-db --push          new login password; the old keeps working
  dbctl rotate-credentials my-db --grace 3600    …and retire the old one an hour later")]
pub struct RotateArgs {
    /// Database name.
    pub name: String,
    /// Retire the previous login this many seconds after the new connection file is
    /// committed (default: at the next rotation).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub grace: Option<u64>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

impl RotateArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(rotate::rotate(
            session,
            &RotateOptions {
                name: self.name,
                grace_s: self.grace,
                no_commit: self.change.no_commit,
                push: self.change.push,
                lock_timeout_s: self.change.lock.lock_timeout,
                dry_run: self.change.dry_run,
            },
        )?))
    }
}
