use std::path::PathBuf;

use clap::Args;

use crate::ops::{Session, control_plane};
use crate::output::Report;

/// `dbctl control-plane`.
#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    /// The openstack target whose control plane to render.
    #[arg(long)]
    pub target: String,
    /// Write the artifacts under this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl ControlPlaneArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(control_plane::control_plane(
            session,
            &self.target,
            self.out.as_deref(),
        )?))
    }
}
