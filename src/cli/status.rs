use std::path::PathBuf;

use clap::Args;

use crate::ops::{Session, overview, status};
use crate::output::Report;

/// `dbctl status`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl status my-db --exit-code        exit 3 unless it is up
  dbctl status --all                    every database: state, size, last backup and drill
  dbctl status --all --html public/     the same as a static page (public/index.html)")]
pub struct StatusArgs {
    /// Database name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Every database of the repo: state, size used of the allotment, last backup and
    /// its age, last restore drill and its RTO, maintenance waiting for its window.
    #[arg(long)]
    pub all: bool,
    /// With `--all`: also write the page `DIR/index.html` (static: a sortable table
    /// and a chart of size and backup age).
    #[arg(long, value_name = "DIR", requires = "all")]
    pub html: Option<PathBuf>,
    /// Exit with 3 unless the database is up (down, or not created): for scripts and
    /// health checks.
    #[arg(long, conflicts_with = "all")]
    pub exit_code: bool,
}

impl StatusArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        match self.name {
            Some(name) => Ok(Box::new(status::status(session, &name, self.exit_code)?)),
            None => Ok(Box::new(overview::overview_all(
                session,
                self.html.as_deref(),
            )?)),
        }
    }
}
