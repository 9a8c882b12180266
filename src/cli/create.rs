use std::collections::BTreeMap;

use clap::Args;

use super::ChangeArgs;
use crate::ops::{Session, create};
use crate::output::Report;

/// `dbctl create`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl create --type postgresql --size 10 my-db
  dbctl create -t mariadb --size 20 --allow 10.0.0.0/8 --param max_connections=300 shop
  dbctl create -t redis --size 1 --target vms --push cache")]
pub struct CreateArgs {
    /// Database name: lowercase letters, digits and `-`, starting with a letter.
    pub name: String,
    /// Engine: postgresql, mariadb (alias mysql), redis, mongodb.
    #[arg(long = "type", short = 't', value_name = "ENGINE")]
    pub engine: String,
    /// Allotted data size in GB (1 to 65536; default: the plan's).
    #[arg(long = "size", value_name = "GB")]
    pub size_gb: Option<u64>,
    /// Engine version from the catalog (default: the platform's, e.g. the installed one).
    #[arg(long)]
    pub version: Option<String>,
    /// Target from etc/dbctl.yml (default: `default_target`).
    #[arg(long)]
    pub target: Option<String>,
    /// Sizing plan from the catalog (default: etc/dbctl.yml `defaults.plan`).
    #[arg(long)]
    pub plan: Option<String>,
    /// Application database (default: the name with `-` as `_`; redis: 0).
    #[arg(long)]
    pub database: Option<String>,
    /// Application user (default: the name with `-` as `_`).
    #[arg(long)]
    pub user: Option<String>,
    /// Refuse `dbctl delete` for this database.
    #[arg(long)]
    pub deletion_protection: bool,
    /// Network allowed to reach the database, as CIDR (repeatable).
    #[arg(long = "allow", value_name = "CIDR")]
    pub allowed_cidrs: Vec<String>,
    /// Engine parameter for the server configuration (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

impl CreateArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        let opts = create::CreateOptions {
            name: self.name,
            engine: self.engine,
            size_gb: self.size_gb,
            version: self.version,
            target: self.target,
            plan: self.plan,
            database: self.database,
            user: self.user,
            deletion_protection: self.deletion_protection,
            allowed_cidrs: self.allowed_cidrs,
            parameters: self.params.into_iter().collect::<BTreeMap<_, _>>(),
            no_commit: self.change.no_commit,
            push: self.change.push,
            dry_run: self.change.dry_run,
            lock_timeout_s: self.change.lock.lock_timeout,
        };
        Ok(Box::new(create::create(session, &opts)?))
    }
}
