use clap::Args;

use crate::ops::{Session, status};
use crate::output::Report;

/// `dbctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Database name.
    pub name: String,
}

impl StatusArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(status::status(session, &self.name)?))
    }
}
