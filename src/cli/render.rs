use std::path::PathBuf;

use clap::Args;

use crate::ops::Session;
use crate::ops::render::{self, RenderOptions};
use crate::output::Report;

/// `dbctl render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Databases to render.
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Render every database of the repo.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Render for this target of etc/dbctl.yml instead of each spec's own.
    #[arg(long, conflicts_with = "platform")]
    pub target: Option<String>,
    /// Render for a default target of this platform.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::spec::PlatformKind::ALL.map(crate::spec::PlatformKind::as_str)))]
    pub platform: Option<String>,
    /// Write the artifacts under this directory instead of printing them.
    #[arg(long, value_name = "DIR", conflicts_with = "context")]
    pub out: Option<PathBuf>,
    /// Print each database's template context (the variables templates see) and
    /// artifact steps instead of the artifacts.
    #[arg(long)]
    pub context: bool,
}

impl RenderArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(render::render(
            session,
            &RenderOptions {
                names: self.names,
                all: self.all,
                target: self.target,
                platform: self.platform,
                out: self.out,
                context: self.context,
            },
        )?))
    }
}
