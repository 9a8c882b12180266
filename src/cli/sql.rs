use std::path::PathBuf;

use clap::Args;

use crate::ops::Session;
use crate::ops::sql::{self, Batch, SqlOptions};
use crate::output::Report;

/// `dbctl sql`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl sql my-db -c 'select count(*) from orders'
  dbctl sql my-db -f migrations/0003.sql
  echo 'INFO keyspace' | dbctl sql cache
  dbctl sql my-db --admin -c 'select * from pg_stat_activity'")]
pub struct SqlArgs {
    /// Database name.
    pub name: String,
    /// The batch to run (SQL; Redis commands, one a line).
    #[arg(long, short = 'c', value_name = "BATCH", conflicts_with = "file")]
    pub command: Option<String>,
    /// Read the batch from FILE (`-`: stdin). Without `-c` or `-f`, stdin.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// As the engine's administrator instead of the application owner.
    #[arg(long)]
    pub admin: bool,
}

impl SqlArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        let batch = match (self.command, self.file) {
            (Some(text), _) => Batch::Text(text),
            (None, Some(file)) => Batch::File(file),
            (None, None) => Batch::Stdin,
        };
        Ok(Box::new(sql::sql(
            session,
            &SqlOptions {
                name: self.name,
                batch,
                admin: self.admin,
            },
        )?))
    }
}
