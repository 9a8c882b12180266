use std::path::PathBuf;

use clap::Args;

use crate::ops::{Session, render};
use crate::output::Report;

/// `dbctl render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Database name.
    pub name: String,
    /// Write the artifacts under this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl RenderArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(render::render(
            session,
            &self.name,
            self.out.as_deref(),
        )?))
    }
}
