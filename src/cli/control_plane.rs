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
    #[arg(long, value_name = "DIR", conflicts_with = "apply")]
    pub out: Option<PathBuf>,
    /// Create or update the stacks through Heat, wait for them, and write and commit
    /// `inventory/<target>/hosts.ini` with their addresses.
    #[arg(long)]
    pub apply: bool,
    /// `--no-commit`, `--push`, `--dry-run` (the rendering, as without `--apply`),
    /// `--lock-timeout`.
    #[command(flatten)]
    pub change: super::ChangeArgs,
}

impl ControlPlaneArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        if self.apply && !self.change.dry_run {
            return Ok(Box::new(control_plane::apply(
                session,
                &self.target,
                &control_plane::ApplyOptions {
                    no_commit: self.change.no_commit,
                    push: self.change.push,
                    lock_timeout_s: self.change.lock.lock_timeout,
                },
            )?));
        }
        Ok(Box::new(control_plane::control_plane(
            session,
            &self.target,
            self.out.as_deref(),
        )?))
    }
}
