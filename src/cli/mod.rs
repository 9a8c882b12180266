//! Command-line definitions (clap). Each subcommand's file only turns flags into an
//! options struct and calls its operation in [`crate::ops`].

mod apply;
mod backup;
mod connection;
mod control_plane;
mod create;
mod delete;
mod init;
mod list;
mod modify;
mod render;
mod rotate;
mod shell;
mod sql;
mod status;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::ops::Session;
use crate::output::{Format, Printer, Report};

const EXAMPLES: &str = "\
Examples:
  dbctl init                                        scaffold a GitOps repo here
  dbctl create --type postgresql --size 10 my-db    run a database, commit its connection file
  dbctl connection my-db --reveal --format uri      the URI with the password decrypted
  dbctl status my-db --exit-code                    exit 3 unless it is up
  dbctl plan --detailed-exitcode                    CI: exit 2 when apply would change something
  dbctl apply --push                                CI on main: converge every spec, commit, push
  dbctl delete my-db --yes                          stop it and remove its data";

/// Turns a GitOps repository into running, backed-up databases.
#[derive(Debug, Parser)]
#[command(name = "dbctl", version, about, max_term_width = 100, after_help = EXAMPLES)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The GitOps repo (default: the current directory).
    #[arg(long, global = true, env = "DBCTL_REPO", value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Human)]
    pub output: Format,
    /// Where the `local` platform keeps database instances
    /// (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise).
    #[arg(long, global = true, env = "DBCTL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The age identity file that decrypts connection files
    /// (default: ~/.config/dbctl/identity.txt).
    #[arg(long, global = true, env = "DBCTL_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Trust SSH host keys not yet in `known_hosts` (a changed key is still refused).
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,
    /// No progress lines on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Show the output of the commands each step runs, as it arrives.
    #[arg(long, short, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`,
    /// `progress`, `done`, `output` events, then the report as a `result` event, or an
    /// `error` event), for a CI system to follow.
    #[arg(long, global = true)]
    pub events: bool,
    /// Give up waiting on the platform after this many seconds: a Heat stack operation,
    /// resource groups starting, a server accepting connections after a (re)start
    /// (default: each wait's own; Heat 1800 s, groups 180 s, servers 30–120 s).
    #[arg(long, global = true, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,
}

/// Flags shared by commands that change something.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Do not commit the changed files.
    #[arg(long)]
    pub no_commit: bool,
    /// Push the commit with the system `git push`.
    #[arg(long, conflicts_with = "no_commit")]
    pub push: bool,
    /// Validate and show what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `--lock-timeout`.
    #[command(flatten)]
    pub lock: LockArgs,
    /// Confirm without asking. `delete` and an in-place `restore` need it (they
    /// destroy data); every other changing verb accepts it, for scripts.
    #[arg(long, short)]
    pub yes: bool,
}

/// `--lock-timeout`, on every verb that changes a database (those that commit take it
/// through [`ChangeArgs`]).
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Wait up to this many seconds for another run on the same database to finish
    /// (default: fail at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub lock_timeout: u64,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a GitOps repo (git, etc/dbctl.yml, an age identity).
    Init(init::InitArgs),
    /// Create a database: write its spec, run it, commit its connection file.
    Create(create::CreateArgs),
    /// Show what `apply` would change: every spec against what runs.
    Plan(apply::PlanArgs),
    /// Converge every spec of the repo, several databases at once, and commit.
    Apply(apply::ApplyArgs),
    /// List every database of the repo with its live state.
    List(list::ListArgs),
    /// Show whether a database is up, its version, port and size.
    Status(status::StatusArgs),
    /// Print a database's connection file or URI.
    Connection(connection::ConnectionArgs),
    /// Delete a database: stop it, remove its data, spec and connection file.
    Delete(delete::DeleteArgs),
    /// Grow a database's allotment: write the spec, apply that change, commit.
    Resize(modify::ResizeArgs),
    /// Move a database to another version: write the spec, apply that change, commit.
    Upgrade(modify::UpgradeArgs),
    /// Give a database another plan (cpu and memory): write the spec, apply, commit.
    Scale(modify::ScaleArgs),
    /// Run an admin batch (SQL, Redis commands) as the application owner or `--admin`.
    Sql(sql::SqlArgs),
    /// New credentials without downtime: the other login gets a new password and the
    /// connection file; the previous login works until `--grace` ends or the next
    /// rotation.
    RotateCredentials(rotate::RotateArgs),
    /// Back up a database (a physical backup, compressed and encrypted) to its store.
    Backup(backup::BackupArgs),
    /// List a database's backups with age, size and type.
    Backups(backup::BackupsArgs),
    /// Restore a backup: in place, into a new database (`--as`) or another target.
    Restore(backup::RestoreArgs),
    /// Archive one WAL file (PostgreSQL's `archive_command`; not for people).
    #[command(hide = true)]
    WalPush(backup::WalPushArgs),
    /// Render an openstack target's control plane: network and Consul + Nomad masters
    /// as Heat stacks, and the inventory (hosts.ini).
    ControlPlane(control_plane::ControlPlaneArgs),
    /// Print (or write) the artifacts dbctl renders for a database.
    Render(render::RenderArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions(shell::CompletionsArgs),
    /// Print dbctl's man page, or write one per command with `--out DIR`.
    Man(shell::ManArgs),
}

impl Cli {
    /// Runs the parsed command; returns the exit code.
    pub fn run(self) -> u8 {
        // `--verbose`: what dbctl runs (host, command, exit code, time) as `tracing`
        // events on stderr; otherwise only warnings.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(if self.global.verbose {
                tracing::Level::DEBUG
            } else {
                tracing::Level::WARN
            })
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
        let mut printer = Printer::new(self.global.output, self.global.quiet, self.global.verbose);
        if self.global.events {
            if self.global.output != Format::Json {
                printer.error(&anyhow::anyhow!(
                    "`--events` streams JSON Lines: use it with `-o json`"
                ));
                return 1;
            }
            printer = printer.with_events();
        }
        // Generated from the CLI itself: no repo, no session, text on stdout.
        let generated = match &self.command {
            Command::Completions(args) => Some(args.run()),
            Command::Man(args) => Some(args.run()),
            _ => None,
        };
        match generated {
            Some(Ok(())) => 0,
            Some(Err(err)) => {
                printer.error(&err);
                1
            }
            None => self.run_in_session(&printer),
        }
    }

    /// Runs a command that works on the GitOps repo, in one [`Session`].
    fn run_in_session(self, printer: &Printer) -> u8 {
        let session = match Session::new(
            self.global
                .repo
                .clone()
                .unwrap_or_else(|| PathBuf::from(".")),
            crate::platform::Options {
                runtime: None,
                state_dir: self.global.state_dir.clone(),
                accept_new_host_keys: self.global.accept_new_host_keys,
                timeout: self.global.timeout.map(std::time::Duration::from_secs),
            },
            crate::secret::identity_path(self.global.identity.as_deref()),
            printer.clone(),
        ) {
            Ok(session) => session,
            Err(err) => {
                printer.error(&err);
                return 1;
            }
        };
        let result: anyhow::Result<Box<dyn Report>> = match self.command {
            Command::Init(args) => args.run(&session),
            Command::Create(args) => args.run(&session),
            Command::Plan(args) => args.run(&session),
            Command::Apply(args) => args.run(&session),
            Command::List(args) => args.run(&session),
            Command::Status(args) => args.run(&session),
            Command::Connection(args) => args.run(&session),
            Command::Delete(args) => args.run(&session),
            Command::Resize(args) => args.run(&session),
            Command::Upgrade(args) => args.run(&session),
            Command::Scale(args) => args.run(&session),
            Command::Sql(args) => args.run(&session),
            Command::RotateCredentials(args) => args.run(&session),
            Command::Render(args) => args.run(&session),
            Command::Backup(args) => args.run(&session),
            Command::Backups(args) => args.run(&session),
            Command::Restore(args) => args.run(&session),
            Command::WalPush(args) => args.run(&session),
            Command::ControlPlane(args) => args.run(&session),
            Command::Completions(_) | Command::Man(_) => Err(anyhow::anyhow!(
                "`completions` and `man` need no repo: they run before a session"
            )),
        };
        match result {
            Ok(report) => {
                printer.report(report.as_ref());
                report.exit_code()
            }
            Err(err) => {
                printer.error(&err);
                1
            }
        }
    }
}
