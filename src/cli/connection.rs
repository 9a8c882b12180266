use clap::Args;

use crate::ops::Session;
use crate::ops::connection::{self, ConnectionFormat, ConnectionOptions};
use crate::output::Report;

/// `dbctl connection`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl connection my-db                              the committed file (password encrypted)
  psql \"$(dbctl connection my-db --reveal --format uri)\"
  eval \"$(dbctl connection my-db --reveal --format env)\"")]
pub struct ConnectionArgs {
    /// Database name.
    pub name: String,
    /// Decrypt the password with your age identity.
    #[arg(long)]
    pub reveal: bool,
    /// How to print it.
    #[arg(long, value_enum, default_value_t = ConnectionFormat::Yaml)]
    pub format: ConnectionFormat,
}

impl ConnectionArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(connection::connection(
            session,
            &ConnectionOptions {
                name: self.name,
                reveal: self.reveal,
                format: self.format,
            },
        )?))
    }
}
