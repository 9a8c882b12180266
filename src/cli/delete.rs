use clap::Args;

use super::ChangeArgs;
use crate::ops::{Session, delete};
use crate::output::Report;

/// `dbctl delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Database name.
    pub name: String,
    /// Delete without first backing up to the database's backup store.
    #[arg(long)]
    pub skip_final_backup: bool,
    /// The store the final backup goes to (default: the database's; see `dbctl backup`).
    #[arg(long, value_name = "STORE", conflicts_with = "skip_final_backup")]
    pub store: Option<String>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

impl DeleteArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(delete::delete(
            session,
            &delete::DeleteOptions {
                name: self.name,
                yes: self.change.yes,
                no_commit: self.change.no_commit,
                push: self.change.push,
                dry_run: self.change.dry_run,
                lock_timeout_s: self.change.lock.lock_timeout,
                skip_final_backup: self.skip_final_backup,
                store: self.store,
            },
        )?))
    }
}
