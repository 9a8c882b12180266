//! Platforms: where and how a target runs databases. Operations take request structs
//! and return response structs so drivers can grow fields without breaking others
//! (the shape of Terraform's provider interface).

pub mod agent;
pub mod cloud;
mod host;
mod hosts;
pub mod kubernetes;
pub mod lease;
pub mod nomad;
pub mod nomad_api;
pub mod openstack;
pub mod pacemaker;
pub mod terraform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use secrecy::SecretString;
use serde::Serialize;

pub use self::cloud::Cloud;
pub use self::host::Host;
pub use self::hosts::HostSet;
use crate::catalog::EngineKind;
use crate::gitops::Repo;
use crate::spec::{PlatformKind, Spec, Target};
use crate::transport::SshOptions;

/// Progress callback: step number (1-based), step count, step name.
pub type Progress<'a> = &'a dyn Fn(usize, usize, &str);

/// Receives the output lines of the commands steps run (`--verbose`).
pub type OutputSink<'a> = &'a dyn Fn(&str);

pub use crate::change::{
    Action, Applied, Capabilities, Change, Disruption, Endpoint, Observed, State,
};

/// Feeds a stored backup to a consumer: it opens the backup, hands the engine's stream
/// (decrypted and decompressed: the format the backup playbook's `send` step wrote) to
/// the consumer, then checks the object against its manifest. Each call opens it anew.
pub type BackupFeed<'a> = &'a Feed<'a>;

/// What a [`BackupFeed`] refers to.
pub type Feed<'a> =
    dyn Fn(&mut dyn FnMut(&mut (dyn std::io::Read + Send)) -> Result<()>) -> Result<()> + Sync + 'a;

/// Inputs of [`Platform::preflight`] and [`Platform::apply`]: the spec and the planned
/// changes (from [`crate::change::plan`], or `+ database` / `- database`).
pub struct Request<'a> {
    /// The validated spec.
    pub spec: &'a Spec,
    /// What to change, reloads before restarts.
    pub changes: &'a [Change],
    /// The application user's password: needed to make the database and to converge
    /// it (the bootstrap sets it again); `None` for a delete.
    pub password: Option<&'a SecretString>,
    /// The login the password belongs to: the spec's `user`, or its alternate after
    /// `rotate-credentials` (`None`: the spec's `user`).
    pub login: Option<&'a str>,
    /// Step progress.
    pub progress: Progress<'a>,
    /// Output lines of the commands steps run, as they arrive (`--verbose`).
    pub output: Option<OutputSink<'a>>,
    /// The backup a `-/+ data` change restores (`dbctl restore`); `None` otherwise.
    pub restore: Option<&'a Restore<'a>>,
}

/// What `dbctl restore` puts in place: a base backup (with the incremental backups
/// built on it, when the one restored is incremental), and for a point-in-time
/// recovery (PostgreSQL) the archived WAL to replay up to a time.
pub struct Restore<'a> {
    /// The backups' streams, the full one first, then each incremental one in the
    /// order they were taken: the restore playbook's `receive` steps read each in
    /// turn (templates see `part`, from 0, and `parts`).
    pub backups: Vec<BackupFeed<'a>>,
    /// `--to-time`: replay WAL up to then, then promote.
    pub recovery: Option<Recovery<'a>>,
}

/// A point-in-time recovery's target and WAL.
pub struct Recovery<'a> {
    /// Stop replaying before the first transaction committed after this time
    /// (PostgreSQL's timestamptz input, UTC: `2026-12-03 09:15:00+00`).
    pub target_time: String,
    /// The archived WAL files needed (segments and timeline histories), by name.
    pub wal: Vec<String>,
    /// Fetches one of them, decrypted (16 MiB a segment).
    pub fetch: &'a (dyn Fn(&str) -> Result<Vec<u8>> + Sync),
}

impl Request<'_> {
    /// Whether the changes delete the database.
    pub fn deletes(&self) -> bool {
        self.changes.iter().any(|c| c.action == Action::Delete)
    }

    /// Whether the changes create it.
    pub fn creates(&self) -> bool {
        self.changes.iter().any(|c| c.action == Action::Create)
    }

    /// The change of `attribute`, if planned.
    pub fn change(&self, attribute: &str) -> Option<&Change> {
        self.changes.iter().find(|c| c.attribute == attribute)
    }

    /// The strongest disruption of the changes.
    pub fn disruption(&self) -> Disruption {
        crate::change::disruption(self.changes)
    }

    /// The password, or an error naming the database: for changes that need it.
    ///
    /// # Errors
    /// No password was given.
    pub fn password(&self) -> Result<&SecretString> {
        self.password.with_context(|| {
            format!(
                "converging `{}` needs its password; none was given",
                self.spec.name
            )
        })
    }
}

/// Result of [`Platform::apply`]: how clients reach the database now (`None` after
/// a delete).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Response {
    /// Client address and port.
    pub endpoint: Option<Endpoint>,
    /// URI without password.
    pub uri: Option<String>,
    /// The server's full version (`15.18`).
    pub server_version: Option<String>,
}

/// The admin channel of one database: batches (SQL, Redis commands) in, bytes out,
/// through the engine's own client on the database's host (never a lossy string: dumps
/// pass through it too).
pub trait Admin {
    /// Feeds `input` to the engine's client as `role` and streams its standard output to
    /// `output`; returns the client's exit code and its standard error.
    ///
    /// # Errors
    /// The client cannot be started or reached.
    fn run(
        &self,
        input: &mut (dyn std::io::Read + Send),
        output: &mut dyn std::io::Write,
        role: Role<'_>,
    ) -> Result<(i32, String)>;

    /// Streams a physical backup of the whole server (every database, roles and users
    /// included) to `output` in the engine's own format ([`BackupTaken::format`]), as
    /// the engine's backup playbook (`backup.yml`) takes it on the database's host.
    /// `incremental`: what the backup builds on ([`incremental_vars`]: the playbook
    /// sees `incremental`, a `backup_manifest`'s path on the host, or
    /// `incremental_lsn`).
    ///
    /// # Errors
    /// A backup program is missing (naming its package), an incremental backup of an
    /// engine or version that has none, or the backup fails.
    fn backup(
        &self,
        output: &mut dyn std::io::Write,
        progress: Progress<'_>,
        incremental: Option<IncrementalBase<'_>>,
    ) -> Result<BackupTaken>;
}

/// What [`Admin::backup`] streamed.
#[derive(Debug, Clone, Serialize)]
pub struct BackupTaken {
    /// The stream's format (`tar`, `xbstream`, `rdb`): what the restore playbook reads.
    pub format: String,
    /// The server's full version (`15.18`).
    pub server_version: String,
    /// Where the backup ends, when its tool logs it ([`crate::engine::Engine::
    /// backup_position`]: MariaDB's GTID).
    pub position: Option<String>,
    /// Where an incremental backup on it starts, when its tool logs it
    /// ([`crate::engine::Engine::backup_checkpoint`]: MariaDB's checkpoint LSN).
    pub checkpoint_lsn: Option<String>,
}

/// What an incremental backup builds on, as its engine's backup tool takes it.
#[derive(Debug, Clone, Copy)]
pub enum IncrementalBase<'a> {
    /// PostgreSQL 17 and later: the `backup_manifest` of the backup it builds on
    /// (`pg_basebackup --incremental`).
    Manifest(&'a [u8]),
    /// MariaDB: the InnoDB checkpoint LSN that backup ended at
    /// (`mariadb-backup --incremental-lsn`).
    Lsn(&'a str),
}

/// Whom an admin batch runs as.
#[derive(Clone, Copy)]
pub enum Role<'a> {
    /// The engine's administrator.
    Admin,
    /// The application user: the login of the connection file (the owner, or its
    /// alternate after `rotate-credentials`) and its password (MariaDB and Redis log in
    /// with them).
    Owner {
        /// The login.
        login: &'a str,
        /// Its password.
        password: &'a SecretString,
    },
}

/// Who takes a lease: written into it, so another runner's error names the holder.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LeaseHolder {
    /// Unique per acquisition (random).
    pub token: String,
    /// The verb (`apply`, `resize`, …).
    pub operation: String,
    /// User and machine of the runner.
    pub user: String,
    /// Host name of the runner.
    pub host: String,
    /// Process id of the runner.
    pub pid: u32,
    /// The GitOps clone it runs from.
    pub repo: String,
    /// When it was taken (RFC 3339).
    pub since: String,
    /// When it expires unless released (RFC 3339): a crashed holder's lease ends then.
    pub expires_at: String,
}

/// A held lease; released when dropped.
pub struct Lease<'a> {
    release: Option<Box<dyn FnOnce() + 'a>>,
}

impl<'a> Lease<'a> {
    /// A lease released by `release`.
    pub fn new(release: impl FnOnce() + 'a) -> Self {
        Self {
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// One rendered file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Artifact {
    /// Relative path (`local/postgresql/postgresql.conf`).
    pub path: String,
    /// The text.
    pub content: String,
}

/// A platform driver bound to one target: it observes what runs and applies planned
/// changes; deciding what to change is [`crate::change::plan`]'s (the shape of
/// Terraform's provider protocol). Drivers are shared by the databases of a run.
pub trait Platform: Send + Sync {
    /// Which platform.
    fn kind(&self) -> PlatformKind;

    /// The version to use when a spec gives none (`local`: the installed one).
    fn preferred_version(&self, engine: EngineKind) -> Option<String>;

    /// What this platform can change in place for `spec`.
    fn capabilities(&self, spec: &Spec) -> Capabilities;

    /// Template → sha256 of its text (built in, or the repo's override) for every
    /// template `spec` is built from here; changed digests are planned as changes.
    ///
    /// # Errors
    /// A playbook or template that cannot be read.
    fn artifact_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>>;

    /// The store the server archives `spec`'s WAL to once applied (`off`: none), where
    /// the platform configures continuous archiving (PostgreSQL on `local`); `None`
    /// elsewhere. Compared with what was applied, a difference is planned.
    fn wal_archive(&self, _spec: &Spec) -> Option<String> {
        None
    }

    /// What the platform's own planner says applying `spec` would do (Nomad's job plan
    /// diff, Terraform's plan), one line per difference, for people reading `dbctl
    /// plan`; empty where the platform has no planner of its own. Asked only when dbctl
    /// plans changes; `password` is the application's (decrypted from the connection
    /// file) when this runner's identity can read it, for planners that need every
    /// input (Terraform).
    ///
    /// # Errors
    /// The planner cannot be asked (an unreachable API, a failing plan).
    fn preview(&self, _spec: &Spec, _password: Option<&SecretString>) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// What runs: state, versions, what was applied, endpoint, sizes, details.
    ///
    /// # Errors
    /// Only when the platform itself cannot be queried (an unreachable host, an API
    /// that refuses); a server that does not answer is [`State::Down`].
    fn observe(&self, spec: &Spec) -> Result<Observed>;

    /// Checks everything `apply` needs for `req` (engine support, binaries, version,
    /// users, disk space, templates) without changing anything.
    ///
    /// # Errors
    /// What is missing and how to fix it.
    fn preflight(&self, req: &Request<'_>) -> Result<()>;

    /// Applies the planned changes; idempotent, so a re-run after a crash converges.
    ///
    /// # Errors
    /// The failing step, naming host and command.
    fn apply(&self, req: &Request<'_>) -> Result<Response>;

    /// Takes the database's lease where every runner sees it (host platforms: a file
    /// in the host's state directory), so two CI runners with separate clones never
    /// change one database at once; `None` where the platform keeps none (the repo's
    /// lock is all there is). Waits up to `wait` for another holder.
    ///
    /// # Errors
    /// Another runner holds an unexpired lease (naming it), or the host cannot be
    /// written.
    fn lease(
        &self,
        spec: &Spec,
        holder: &LeaseHolder,
        wait: std::time::Duration,
    ) -> Result<Option<Lease<'_>>> {
        // Platforms without a place every runner sees (Nomad, Kubernetes, Terraform:
        // their APIs and state backends are the shared truth): the repo's lock is
        // what serialises runs.
        let _ = (spec, holder, wait);
        Ok(None)
    }

    /// The admin channel of `spec`'s database.
    ///
    /// # Errors
    /// The database does not exist or cannot be reached.
    fn admin(&self, spec: &Spec) -> Result<Box<dyn Admin + '_>>;

    /// Renders every artifact of `spec` without touching anything; secrets appear as
    /// placeholders.
    ///
    /// # Errors
    /// A template or playbook error.
    fn render(&self, spec: &Spec) -> Result<Vec<Artifact>>;

    /// The template context of `spec` and the templates its playbook renders, as JSON
    /// (`{"name", "context", "artifacts"}`); secrets appear as placeholders. For people
    /// writing template overrides (`dbctl render --context`).
    ///
    /// # Errors
    /// A template or playbook error.
    fn describe(&self, spec: &Spec) -> Result<serde_json::Value>;
}

/// Options from the command line that platforms honour, and what a run shares.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The run's tokio runtime: SSH connections (and HTTP clients) of every driver of
    /// a run share it, instead of one runtime each.
    pub runtime: Option<tokio::runtime::Handle>,
    /// `--state-dir` / `DBCTL_STATE_DIR`: where `local` keeps instances.
    pub state_dir: Option<PathBuf>,
    /// `--accept-new-host-keys`: trust unknown SSH host keys on first use.
    pub accept_new_host_keys: bool,
    /// `--timeout`: how long each wait on the platform may take — a Heat stack
    /// operation, resource groups starting, a server accepting connections after a
    /// (re)start; `None`: each wait's own default (30 min, 180 s, the playbook's
    /// `wait_ready.timeout_s`).
    pub timeout: Option<std::time::Duration>,
}

/// How to reach `host` of `target`: the target's `user`, `port`, `identity` and
/// `known_hosts` (paths relative to the repo `root`), trusting new host keys when the
/// target or `--accept-new-host-keys` says so.
pub(crate) fn ssh_options(
    root: &Path,
    target: &Target,
    host: &str,
    options: &Options,
) -> SshOptions {
    let ssh = &target.ssh;
    let mut opts = SshOptions::new(host);
    opts.port = ssh.port;
    opts.user.clone_from(&ssh.user);
    opts.identity = ssh.identity.as_ref().map(|p| root.join(p));
    opts.known_hosts = ssh.known_hosts.as_ref().map(|p| root.join(p));
    opts.accept_new_host_keys = options.accept_new_host_keys || ssh.accept_new_host_keys;
    opts.runtime.clone_from(&options.runtime);
    opts
}

/// `f` over `items`, one thread each, results in the items' order: SSH round trips
/// to several hosts at once. A panic in `f` is re-raised.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = items.iter().map(|item| scope.spawn(|| f(item))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Redis after `rotate-credentials`: the ACL line of the login the connection file
/// will not name (`login`, default the spec's `user`, is the one getting the new
/// password), found in the database's `users.acl` bytes, so its clients keep working —
/// only if it has exactly the form `local/redis/users.acl.j2` writes (a 64-digit SHA-256
/// hash, `~* &* +@all -@admin`), so no other permissions slip in. `None`: no such line.
pub(crate) fn kept_acl(spec: &Spec, login: Option<&str>, users_acl: &[u8]) -> Option<String> {
    let login = login.unwrap_or(&spec.user);
    let other = if login == spec.user {
        format!("{}_r", spec.user)
    } else {
        spec.user.clone()
    };
    let prefix = format!("user {other} on #");
    String::from_utf8_lossy(users_acl).lines().find_map(|line| {
        let hash = line
            .strip_prefix(&prefix)?
            .strip_suffix(" ~* &* +@all -@admin")?;
        (hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit())).then(|| line.to_owned())
    })
}

/// The secret template variables of a database: `password` (the Redis ACL file hashes
/// it), and the stored forms SQL engines are given instead of it, so the plain password
/// never reaches a server or its logs: `password_scram` (PostgreSQL SCRAM-SHA-256
/// verifier) and `password_mysql` (MariaDB `mysql_native_password` hash). `None` gives
/// placeholders, for rendering.
pub(crate) fn secret_vars(
    password: Option<&SecretString>,
    login: Option<&str>,
) -> BTreeMap<&'static str, String> {
    let mut vars = match password {
        Some(p) => BTreeMap::from([
            (
                "password",
                secrecy::ExposeSecret::expose_secret(p).to_owned(),
            ),
            ("password_scram", crate::secret::scram_sha256_verifier(p)),
            ("password_mysql", crate::secret::mysql_native_hash(p)),
        ]),
        None => [
            "password",
            "password_scram",
            "password_mysql",
            "admin_password",
        ]
        .into_iter()
        .map(|k| (k, host::REDACTED.to_owned()))
        .collect(),
    };
    if let Some(login) = login {
        vars.insert("login", login.to_owned());
    }
    vars
}

/// The response of a platform whose endpoint comes from its API (Terraform outputs, a
/// Nomad allocation, a Kubernetes Service): the endpoint and the URI without password.
pub(crate) fn endpoint_response(
    spec: &Spec,
    endpoint: Endpoint,
    platform: PlatformKind,
) -> Response {
    let uri = crate::engine::for_host(spec.engine, platform.as_str())
        .ok()
        .map(|engine| {
            engine
                .uri(&spec.user, &endpoint.host, endpoint.port, &spec.database)
                .to_string()
        });
    Response {
        uri,
        endpoint: Some(endpoint),
        server_version: None,
    }
}

/// The driver for `target`.
///
/// # Errors
/// A platform this build cannot drive yet.
pub fn for_target(repo: &Repo, target: &Target, options: &Options) -> Result<Box<dyn Platform>> {
    match target.platform {
        PlatformKind::Local => Ok(Box::new(Host::local(repo, target, options)?)),
        PlatformKind::Ssh => Ok(Box::new(HostSet::connect(repo, target, options)?)),
        PlatformKind::Pacemaker => Ok(Box::new(pacemaker::Pacemaker::new(repo, target, options)?)),
        PlatformKind::Openstack => Ok(Box::new(openstack::Openstack::new(repo, target, options))),
        PlatformKind::Terraform => Ok(Box::new(terraform::Terraform::new(repo, target, options)?)),
        PlatformKind::Nomad => Ok(Box::new(nomad::Nomad::new(repo, target, options)?)),
        PlatformKind::Kubernetes => Ok(Box::new(kubernetes::Kubernetes::new(
            repo, target, options,
        )?)),
    }
}

/// Runs an admin batch through the engine's own client on `transport` (the instance's
/// host, or the cluster node running its group): as the administrator, or as the
/// owner — PostgreSQL as the administrator acting as the owner role, the others
/// logging in as the connection file's login. Shared by every admin channel.
///
/// # Errors
/// The client cannot be started or reached.
pub(crate) fn run_client(
    transport: &dyn crate::transport::Transport,
    engine: &dyn crate::engine::Engine,
    instance: &crate::engine::Instance,
    bin: &BTreeMap<String, String>,
    (input, output): (&mut (dyn std::io::Read + Send), &mut dyn std::io::Write),
    role: &Role<'_>,
) -> Result<(i32, String)> {
    let cmd = match role {
        Role::Admin => engine.admin_command(transport, instance, bin)?,
        Role::Owner { login, password } => {
            let instance = if engine.kind() == EngineKind::Postgresql {
                instance.clone()
            } else {
                crate::engine::Instance {
                    user: (*login).to_owned(),
                    ..instance.clone()
                }
            };
            engine.owner_command(transport, &instance, bin, password)?
        }
    };
    let cmd = cmd.timeout(std::time::Duration::from_hours(24));
    Ok(transport.run_piped(&cmd, input, output)?)
}

/// Checks that the backup programs `engine` needs ([`crate::engine::Engine::
/// backup_binaries`]) are among the located `bin`aries on `host`.
///
/// # Errors
/// One is missing, naming it, the host and the package to install.
/// The backup playbook's variables for an incremental backup on `base` (none for a
/// full backup, `None`): PostgreSQL 17 and later get `incremental`, the path of the `backup_manifest` it builds on,
/// written 0600 (the service user's) at `<instance>/incremental-base.manifest` on the
/// host (returned too, for removal after); MariaDB gets `incremental_lsn`.
///
/// # Errors
/// An engine or server version without incremental backups (naming what is
/// allowed), a base of the other kind, or the file cannot be written.
pub(crate) fn incremental_vars(
    t: &dyn crate::transport::Transport,
    engine: crate::catalog::EngineKind,
    server_version: &str,
    instance: &crate::engine::Instance,
    base: Option<IncrementalBase<'_>>,
) -> Result<(BTreeMap<String, String>, Option<std::path::PathBuf>)> {
    use crate::catalog::EngineKind;
    let Some(base) = base else {
        return Ok((BTreeMap::new(), None));
    };
    let major: u32 = server_version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    match (engine, base) {
        (EngineKind::Postgresql, IncrementalBase::Manifest(manifest)) if major >= 17 => {
            let path = instance.dir.join("incremental-base.manifest");
            t.write_file(&path, manifest, 0o600, instance.service_user.as_deref())?;
            Ok((
                BTreeMap::from([(
                    "incremental".to_owned(),
                    path.to_string_lossy().into_owned(),
                )]),
                Some(path),
            ))
        }
        (EngineKind::Mariadb, IncrementalBase::Lsn(lsn)) => Ok((
            BTreeMap::from([("incremental_lsn".to_owned(), lsn.to_owned())]),
            None,
        )),
        _ => anyhow::bail!(
            "incremental backups (`--type incr`) are built for PostgreSQL 17 and later (`pg_basebackup --incremental`) and MariaDB (`mariadb-backup --incremental-lsn`); this server is {engine} {server_version}: take a full backup (`--type full`)"
        ),
    }
}

pub(crate) fn check_backup_binaries(
    engine: &dyn crate::engine::Engine,
    bin: &BTreeMap<String, String>,
    host: &str,
) -> Result<()> {
    for (name, package) in engine.backup_binaries() {
        if !bin.contains_key(*name) {
            anyhow::bail!(
                "{} backups need `{name}`, which is not installed on {host}; install the package `{package}`",
                engine.kind(),
            );
        }
    }
    Ok(())
}
