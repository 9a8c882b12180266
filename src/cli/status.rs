use clap::Args;

use crate::ops::{Session, status};
use crate::output::Report;

/// `dbctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Database name.
    pub name: String,
    /// Exit with 3 unless the database is up (down, or not created): for scripts and
    /// health checks.
    #[arg(long)]
    pub exit_code: bool,
}

impl StatusArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(status::status(
            session,
            &self.name,
            self.exit_code,
        )?))
    }
}
