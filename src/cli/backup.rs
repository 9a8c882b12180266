use clap::{Args, Subcommand};

use crate::ops::Session;
use crate::ops::backup::{self, BackupOptions, BackupsOptions, RestoreOptions};
use crate::ops::drill::{self, VerifyOptions};
use crate::output::Report;

/// `dbctl backup`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    subcommand_negates_reqs = true,
    after_help = "\
Examples:
  dbctl backup my-db                    to the spec's, target's or default store
  dbctl backup my-db --store offsite
  dbctl backup verify my-db             a restore drill of the latest backup"
)]
pub struct BackupArgs {
    /// `verify`: a restore drill instead of a backup.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Database name.
    #[arg(required = true)]
    pub name: Option<String>,
    /// The backup store (a name under `backup_stores` in etc/dbctl.yml).
    #[arg(long, value_name = "STORE")]
    pub store: Option<String>,
    /// `full`, or `incr`: only what changed since the latest backup in the store
    /// (PostgreSQL 17 and later, MariaDB; restored with the backups it is built on).
    #[arg(long = "type", value_enum, value_name = "TYPE", default_value_t = crate::backup::BackupKind::Full)]
    pub kind: crate::backup::BackupKind,
    /// `--lock-timeout`.
    #[command(flatten)]
    pub lock: super::LockArgs,
    /// Resolve and open the store, check the platform; say what would be backed up and
    /// where; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Subcommands of `dbctl backup`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// A restore drill: restore a backup into a scratch database, check it, remove it,
    /// and record the result and the recovery time in the backup's manifest.
    Verify(VerifyArgs),
}

/// `dbctl backup verify`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl backup verify my-db
  dbctl backup verify my-db --target dr-cloud       drill the disaster recovery
  dbctl backup verify my-db --query 'select count(*) from orders' --expect 1200")]
pub struct VerifyArgs {
    /// Database name (a deleted database's backups too, with `--store`).
    pub name: String,
    /// The backup's id (default: the latest).
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// The backup store (default: the database's).
    #[arg(long, value_name = "STORE")]
    pub store: Option<String>,
    /// Run the scratch database on this target (default: the database's).
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// A batch for the engine's client (SQL, Redis commands), run as its administrator
    /// in the restored database; the drill fails unless it exits 0.
    #[arg(long, value_name = "BATCH")]
    pub query: Option<String>,
    /// The last line `--query` prints must be this.
    #[arg(long, value_name = "TEXT", requires = "query")]
    pub expect: Option<String>,
    /// `--lock-timeout`.
    #[command(flatten)]
    pub lock: super::LockArgs,
}

impl BackupArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        if let Some(BackupCommand::Verify(args)) = self.command {
            return Ok(Box::new(drill::verify(
                session,
                &VerifyOptions {
                    name: args.name,
                    backup: args.backup,
                    store: args.store,
                    target: args.target,
                    query: args.query,
                    expect: args.expect,
                    lock_timeout_s: args.lock.lock_timeout,
                },
            )?));
        }
        let opts = BackupOptions {
            name: self.name.unwrap_or_default(),
            store: self.store,
            kind: self.kind,
            lock_timeout_s: self.lock.lock_timeout,
        };
        if self.dry_run {
            return Ok(Box::new(backup::backup_dry_run(session, &opts)?));
        }
        Ok(Box::new(backup::backup(session, &opts)?))
    }
}

/// `dbctl backups`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl backups my-db
  dbctl backups my-db -o json
  dbctl backups my-db --expire          remove what `backup.retention` lets go")]
pub struct BackupsArgs {
    /// Database name.
    pub name: String,
    /// The backup store (default: the database's).
    #[arg(long, value_name = "STORE")]
    pub store: Option<String>,
    /// First remove the backups the spec's `backup.retention` lets go.
    #[arg(long)]
    pub expire: bool,
}

impl BackupsArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(backup::backups(
            session,
            &BackupsOptions {
                name: self.name,
                store: self.store,
                expire: self.expire,
            },
        )?))
    }
}

/// `dbctl restore`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dbctl restore my-db --yes                       the latest backup, in place
  dbctl restore my-db --backup 20261203T101500Z-3f9a --yes
  dbctl restore my-db --as my-db-copy --yes       into a new database
  dbctl restore my-db --to-time '2026-12-02 10:15 Europe/Paris' --yes
  dbctl restore my-db --target dr-cloud --yes     disaster recovery: the database moves
  dbctl restore old-db --store offsite --yes      a deleted database, from its backups")]
pub struct RestoreArgs {
    /// The database whose backup is restored (deleted ones too: their spec comes from
    /// the backup, found with `--store`).
    pub name: String,
    /// The backup's id (see `dbctl backups`; default: the latest).
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// The backup store (default: the database's).
    #[arg(long, value_name = "STORE")]
    pub store: Option<String>,
    /// Restore into a new database of this name (keeping the database and user names
    /// the data holds) instead of in place.
    #[arg(long = "as", value_name = "NEW-NAME")]
    pub as_name: Option<String>,
    /// Point-in-time recovery (PostgreSQL): replay archived WAL up to this time, from the
    /// latest backup before it: RFC 3339, or a time and an IANA zone
    /// (`"2026-12-02 10:15 Europe/Paris"`).
    #[arg(long, value_name = "TIME")]
    pub to_time: Option<String>,
    /// Restore into this target (disaster recovery: without `--as`, the database's
    /// spec moves there and its connection file is rewritten).
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// `--yes` (an in-place restore replaces the database's data), `--dry-run`,
    /// `--no-commit`, `--push`, `--lock-timeout`.
    #[command(flatten)]
    pub change: super::ChangeArgs,
}

impl RestoreArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        Ok(Box::new(backup::restore(
            session,
            &RestoreOptions {
                name: self.name,
                backup: self.backup,
                store: self.store,
                as_name: self.as_name,
                to_time: self.to_time,
                target: self.target,
                yes: self.change.yes,
                no_commit: self.change.no_commit,
                push: self.change.push,
                lock_timeout_s: self.change.lock.lock_timeout,
                dry_run: self.change.dry_run,
            },
        )?))
    }
}

/// `dbctl wal-push`: PostgreSQL's `archive_command` on `local` targets.
#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// The instance's `conf/wal-push.json`.
    #[arg(long, value_name = "FILE")]
    pub config: std::path::PathBuf,
    /// Only check that the store can be reached and listed with the configuration.
    #[arg(long, conflicts_with_all = ["path", "name"])]
    pub check: bool,
    /// The WAL file (`%p`).
    #[arg(required_unless_present = "check")]
    pub path: Option<std::path::PathBuf>,
    /// Its name (`%f`).
    #[arg(required_unless_present = "check")]
    pub name: Option<String>,
}

impl WalPushArgs {
    pub(super) fn run(self, session: &Session) -> anyhow::Result<Box<dyn Report>> {
        match (self.path, self.name) {
            (Some(path), Some(name)) if !self.check => Ok(Box::new(backup::wal_push(
                session,
                &self.config,
                &path,
                &name,
            )?)),
            _ => Ok(Box::new(backup::wal_push_check(session, &self.config)?)),
        }
    }
}
