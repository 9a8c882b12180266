use clap::Args;

use crate::ops::{Session, status};
use crate::output::Report;

/// `dbctl list`.
#[derive(Debug, Args)]
pub struct ListArgs {}

impl ListArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(status::list(session)?))
    }
}
