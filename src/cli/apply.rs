use clap::Args;

use crate::ops::{Session, apply};
use crate::output::Report;

/// `dbctl plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Exit 2 when changes are pending (0: none, 1: error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Databases queried at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
}

impl PlanArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(apply::plan(
            session,
            usize::from(self.parallel),
            self.detailed_exitcode,
        )?))
    }
}

/// `dbctl apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Databases converged at once (each on its own target's hosts).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// Do not commit the written files.
    #[arg(long)]
    pub no_commit: bool,
    /// Push the commit with the system `git push`.
    #[arg(long, conflicts_with = "no_commit")]
    pub push: bool,
    /// Wait up to this many seconds for another run on the same database.
    #[arg(long, value_name = "SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub lock_timeout: u64,
}

impl ApplyArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(apply::apply(
            session,
            &apply::ApplyOptions {
                parallel: usize::from(self.parallel),
                no_commit: self.no_commit,
                push: self.push,
                lock_timeout_s: self.lock_timeout,
            },
        )?))
    }
}
