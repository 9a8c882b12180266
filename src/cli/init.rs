use clap::Args;

use crate::ops::{Session, init};
use crate::output::Report;

/// `dbctl init`.
#[derive(Debug, Args)]
pub struct InitArgs {}

impl InitArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(init::init(&session.repo_root, &session.identity)?))
    }
}
