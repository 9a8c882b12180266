//! Engines on a host (the `local` and `ssh` platforms): where their binaries are, how
//! to probe a running server, how to run an admin script, and the URI clients use.
//! Server lifecycle itself (init, configure, start, stop) is in the playbooks.

mod mariadb;
pub mod parameter;
mod postgresql;
mod redis;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

pub use self::mariadb::Mariadb;
pub use self::postgresql::Postgresql;
pub use self::redis::Redis;
use crate::catalog::EngineKind;
use crate::transport::{CommandSpec, Transport, TransportError};

/// One engine server on a host: its identity, address and directories.
/// Serialised into template and playbook contexts as `instance`.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    /// Database name.
    pub name: String,
    /// Engine.
    pub engine: EngineKind,
    /// Engine version series (`"15"`, `"10.11"`, `"7.0"`).
    pub version: String,
    /// Address clients connect to.
    pub host: String,
    /// Address the server listens on.
    pub listen: String,
    /// TCP port.
    pub port: u16,
    /// Instance directory (everything below belongs to this database).
    pub dir: PathBuf,
    /// Server data directory.
    pub data_dir: PathBuf,
    /// Configuration directory.
    pub conf_dir: PathBuf,
    /// Sockets and pid files.
    pub run_dir: PathBuf,
    /// Server logs.
    pub log_dir: PathBuf,
    /// User owning the server processes and files (`None`: the invoking user).
    pub service_user: Option<String>,
    /// The engine's administrator login used over the local socket.
    pub admin_user: String,
    /// Allotted size in GB.
    pub size_gb: u32,
    /// Application database (SQL) or database index (redis).
    pub database: String,
    /// Application user.
    pub user: String,
}

/// What a probe of a running server found.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Full server version (`15.18`).
    pub version: String,
    /// Bytes the engine reports for the application database, when it can tell.
    pub data_bytes: Option<u64>,
}

/// Binaries found on a host for one engine version.
#[derive(Debug, Clone, Serialize)]
pub struct Located {
    /// Version series found (`"15"`).
    pub version: String,
    /// The binaries' full version (`"15.18"`), as `--version` reports it.
    pub full_version: String,
    /// Binary name → absolute path; templates see it as `bin`.
    pub bin: BTreeMap<String, String>,
}

/// Engine errors; each names the engine and host.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A binary is missing.
    #[error(
        "{engine} {version} is not installed on {host}: `{missing}` not found (looked in {looked}); install the package `{package}`"
    )]
    NotInstalled {
        /// Engine.
        engine: EngineKind,
        /// Wanted version (or `any`).
        version: String,
        /// Host.
        host: String,
        /// Binary not found.
        missing: String,
        /// Where it looked.
        looked: String,
        /// The distro package that provides it.
        package: String,
    },
    /// The installed version differs from the spec's.
    #[error(
        "{engine} {wanted} is not installed on {host} (it has {installed}); set `version: \"{installed}\"` or install {engine} {wanted}"
    )]
    VersionMismatch {
        /// Engine.
        engine: EngineKind,
        /// Version of the spec.
        wanted: String,
        /// Version found.
        installed: String,
        /// Host.
        host: String,
    },
    /// The engine cannot run on this platform.
    #[error("engine `{engine}` cannot run on platform `{platform}`: {reason}")]
    Unsupported {
        /// Engine.
        engine: EngineKind,
        /// Platform.
        platform: String,
        /// Why, and what to use instead.
        reason: String,
    },
    /// A probe or admin command failed.
    #[error("{engine} on {host}: {message}")]
    Command {
        /// Engine.
        engine: EngineKind,
        /// Host.
        host: String,
        /// What failed, with the client's stderr (secrets redacted).
        message: String,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// An engine's host-level operations.
pub trait Engine: Send + Sync {
    /// Which engine.
    fn kind(&self) -> EngineKind;

    /// Finds the binaries for `version` (or the newest of `known` installed when `None`).
    ///
    /// # Errors
    /// [`EngineError::NotInstalled`], [`EngineError::VersionMismatch`].
    fn locate(
        &self,
        t: &dyn Transport,
        version: Option<&str>,
        known: &[String],
    ) -> Result<Located, EngineError>;

    /// Finds the binaries of `version` in `dir` only (a catalog's `bin_dirs`, which
    /// the catalog allows for PostgreSQL only).
    ///
    /// # Errors
    /// [`EngineError::NotInstalled`] naming what is missing there;
    /// [`EngineError::Unsupported`] for an engine without it.
    fn locate_in(
        &self,
        _t: &dyn Transport,
        _version: &str,
        _dir: &str,
    ) -> Result<Located, EngineError> {
        Err(EngineError::Unsupported {
            engine: self.kind(),
            platform: "any".into(),
            reason: "binaries are found by directory (`bin_dirs`) for postgresql only".into(),
        })
    }

    /// The administrator login over the local socket when commands run as `t.user()`.
    fn admin_user(&self, t: &dyn Transport) -> String;

    /// True when the engine needs a generated admin password (kept 0600 in the
    /// instance's `conf_dir/admin.secret`).
    fn needs_admin_secret(&self) -> bool {
        false
    }

    /// The admin client reading a script on stdin, as the admin user over the socket.
    ///
    /// # Errors
    /// Reading the admin secret failed.
    fn admin_command(
        &self,
        t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
    ) -> Result<CommandSpec, EngineError>;

    /// The admin credential for programs other than the admin client (`redis-cli
    /// --rdb`), as an environment variable and its value; `None` when the admin logs in
    /// over the socket without one.
    ///
    /// # Errors
    /// The instance's admin secret cannot be read.
    fn admin_env(
        &self,
        _t: &dyn Transport,
        _inst: &Instance,
    ) -> Result<Option<(String, secrecy::SecretString)>, EngineError> {
        Ok(None)
    }

    /// Binaries (keys of `bin`) that backups and restores need, with the package that
    /// provides them.
    fn backup_binaries(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The format of the stream the backup playbook sends (`tar`, `xbstream`, `rdb`).
    fn backup_format(&self) -> &'static str;

    /// The position a backup ends at, from what its backup tool logged (stderr of the
    /// playbook's `send` step): MariaDB's GTID of the last change in it. `None` when the
    /// log tells none (PostgreSQL's comes from the server, Redis has none).
    fn backup_position(&self, _log: &str) -> Option<String> {
        None
    }

    /// Where an incremental backup on this one starts, from what the backup tool
    /// logged: MariaDB's InnoDB checkpoint LSN (`The latest check point (for
    /// incremental): '…'`). `None` for engines whose incremental backups start
    /// elsewhere (PostgreSQL: the `backup_manifest`) or that have none.
    fn backup_checkpoint(&self, _log: &str) -> Option<String> {
        None
    }

    /// Connects to the running server and reads its version and data size.
    ///
    /// # Errors
    /// [`EngineError::Command`] when the server does not answer.
    fn probe(
        &self,
        t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
    ) -> Result<Probe, EngineError>;

    /// The client URI without password (`postgresql://app@127.0.0.1:15432/app`).
    fn uri(&self, user: &str, host: &str, port: u16, database: &str) -> url::Url;

    /// The client reading a batch on stdin as the application owner, in the
    /// application database: PostgreSQL as the administrator over the socket with
    /// `role` set to the owner (`PGOPTIONS`); MariaDB and Redis log in as the
    /// application user with `password` (stdin and environment only).
    ///
    /// # Errors
    /// As [`Self::admin_command`].
    fn owner_command(
        &self,
        t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
        password: &secrecy::SecretString,
    ) -> Result<CommandSpec, EngineError>;

    /// Settings the running server holds back until a restart (PostgreSQL
    /// `pg_settings.pending_restart`); none for engines that apply them at once.
    ///
    /// # Errors
    /// The server does not answer.
    fn pending_restart(
        &self,
        _t: &dyn Transport,
        _inst: &Instance,
        _bin: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, EngineError> {
        Ok(Vec::new())
    }

    /// The values the running server has for `keys` (allowlisted setting names, see
    /// [`parameter`]), as the server reports them: name → value. Compared with the spec
    /// (after [`parameter::validate`]), a difference is drift — a setting changed
    /// outside dbctl (`SET GLOBAL`, `CONFIG SET`, `ALTER SYSTEM`).
    ///
    /// # Errors
    /// The server does not answer.
    fn running_settings(
        &self,
        _t: &dyn Transport,
        _inst: &Instance,
        _bin: &BTreeMap<String, String>,
        _keys: &[&str],
    ) -> Result<BTreeMap<String, String>, EngineError> {
        Ok(BTreeMap::new())
    }

    /// The server's pid file in an instance (as its playbooks write it).
    fn pid_file(&self, inst: &Instance) -> PathBuf;

    /// The key in `bin` of the server program whose processes serve an instance
    /// (`postgres`, `mariadbd`, `redis-server`): a pid file is trusted only when its
    /// process runs that binary with the instance's data directory as its working
    /// directory (every engine here changes into its data directory at start).
    fn server_program(&self) -> &'static str;
}

/// The host-level engine for `kind`.
///
/// # Errors
/// [`EngineError::Unsupported`] for engines with no server binary in the distro
/// (mongodb), naming `platform`.
pub fn for_host(kind: EngineKind, platform: &str) -> Result<Box<dyn Engine>, EngineError> {
    match kind {
        EngineKind::Postgresql => Ok(Box::new(Postgresql)),
        EngineKind::Mariadb => Ok(Box::new(Mariadb)),
        EngineKind::Redis => Ok(Box::new(Redis)),
        EngineKind::Mongodb => Err(EngineError::Unsupported {
            engine: kind,
            platform: platform.to_owned(),
            reason: "no MongoDB server (`mongod`) is packaged for this distribution; use a `kubernetes` or `nomad` target".into(),
        }),
    }
}

/// Runs `cmd`, returning stdout, or [`EngineError::Command`] with `what` and stderr.
pub(crate) fn run_checked(
    t: &dyn Transport,
    kind: EngineKind,
    cmd: &CommandSpec,
    what: &str,
) -> Result<String, EngineError> {
    let out = t.run(cmd)?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(EngineError::Command {
            engine: kind,
            host: t.host().to_owned(),
            message: format!("{what} failed (exit {}): {}", out.code, out.stderr.trim()),
        })
    }
}

/// Finds the first of `candidates` for each `(name, candidates)` binary.
pub(crate) fn find_all(
    t: &dyn Transport,
    kind: EngineKind,
    version: &str,
    wanted: &[(&str, Vec<String>)],
    package: &str,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut bin = BTreeMap::new();
    for (name, candidates) in wanted {
        let found = t
            .find_program(candidates)
            .ok_or_else(|| EngineError::NotInstalled {
                engine: kind,
                version: version.to_owned(),
                host: t.host().to_owned(),
                missing: (*name).to_owned(),
                looked: candidates.join(", "),
                package: package.to_owned(),
            })?;
        bin.insert((*name).to_owned(), found.to_string_lossy().into_owned());
    }
    Ok(bin)
}

/// Runs `binary --version`, takes the word `pick` finds, and checks its series against
/// `wanted`; returns the series found.
pub(crate) fn version_series(
    t: &dyn Transport,
    kind: EngineKind,
    binary: &str,
    wanted: Option<&str>,
    pick: impl Fn(&str) -> Option<String>,
) -> Result<(String, String), EngineError> {
    let out = run_checked(
        t,
        kind,
        &CommandSpec::new(binary, ["--version"]),
        &format!("`{binary} --version`"),
    )?;
    let picked = pick(&out).unwrap_or_default();
    let found = series(&picked);
    match wanted {
        Some(wanted) if wanted != found => Err(EngineError::VersionMismatch {
            engine: kind,
            wanted: wanted.to_owned(),
            installed: found,
            host: t.host().to_owned(),
        }),
        _ => Ok((found, full_version(&picked))),
    }
}

/// The leading `digits.digits…` of a version word (`10.11.19-MariaDB-0` → `10.11.19`).
pub(crate) fn full_version(word: &str) -> String {
    word.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_owned()
}

/// The `major.minor` series of a version string (`10.11.14-MariaDB` → `10.11`).
pub(crate) fn series(version: &str) -> String {
    version
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or_default()
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// Builds `scheme://user@host:port/path`.
pub(crate) fn make_uri(scheme: &str, user: &str, host: &str, port: u16, path: &str) -> url::Url {
    let mut url = url::Url::parse(&format!("{scheme}://placeholder/"))
        .unwrap_or_else(|_| url::Url::parse("x://placeholder/").expect("static URL"));
    let _ = url.set_host(Some(host));
    let _ = url.set_port(Some(port));
    let _ = url.set_username(user);
    url.set_path(path);
    url
}

/// The engines' queries against a recording transport double: no server, no root.
#[cfg(test)]
pub(crate) mod double_tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::transport::recording::Recording;

    /// An instance of `engine` called `db` under `/state/db`, for tests on a double.
    pub(crate) fn instance(engine: EngineKind) -> Instance {
        let dir = PathBuf::from("/state/db");
        Instance {
            name: "db".into(),
            engine,
            version: "15".into(),
            host: "127.0.0.1".into(),
            listen: "127.0.0.1".into(),
            port: 5432,
            data_dir: dir.join("data"),
            conf_dir: dir.join("conf"),
            run_dir: dir.join("run"),
            log_dir: dir.join("log"),
            dir,
            service_user: None,
            admin_user: "admin".into(),
            size_gb: 1,
            database: "db".into(),
            user: "db".into(),
        }
    }

    /// `/usr/bin/<name>` for each of `names`.
    pub(crate) fn bin(names: &[&str]) -> BTreeMap<String, String> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), format!("/usr/bin/{n}")))
            .collect()
    }

    #[test]
    fn running_settings_ask_each_engine_its_own_way_and_parse_the_answer() {
        let t = Recording::new();
        t.answer("current_setting", 0, "work_mem=64MB\nmax_connections=150\n");
        let pg = Postgresql
            .running_settings(
                &t,
                &instance(EngineKind::Postgresql),
                &bin(&["psql"]),
                &["work_mem", "max_connections"],
            )
            .unwrap();
        assert_eq!(pg["work_mem"], "64MB");
        assert_eq!(pg["max_connections"], "150");
        assert!(
            t.commands()[0].contains("'work_mem', 'max_connections'"),
            "{:?}",
            t.commands()
        );

        t.answer("@@GLOBAL", 0, "max_connections\t222\nwait_timeout\t600\n");
        let maria = Mariadb
            .running_settings(
                &t,
                &instance(EngineKind::Mariadb),
                &bin(&["mariadb"]),
                &["max_connections", "wait_timeout"],
            )
            .unwrap();
        assert_eq!(maria["wait_timeout"], "600");
        assert!(
            t.commands()[1].contains("@@GLOBAL.max_connections"),
            "{:?}",
            t.commands()
        );

        // Redis logs in with the admin secret from the instance's conf directory.
        let redis = instance(EngineKind::Redis);
        let err = Redis
            .running_settings(&t, &redis, &bin(&["redis-cli"]), &["maxclients"])
            .unwrap_err();
        assert!(err.to_string().contains("admin.secret"), "{err}");
        t.put(&redis.conf_dir.join("admin.secret"), b"s3cret\n");
        t.answer(
            "CONFIG GET",
            0,
            "maxmemory-policy\nallkeys-lru\nmaxclients\n500\n",
        );
        let got = Redis
            .running_settings(
                &t,
                &redis,
                &bin(&["redis-cli"]),
                &["maxmemory-policy", "maxclients"],
            )
            .unwrap();
        assert_eq!(got["maxmemory-policy"], "allkeys-lru");
        assert_eq!(got["maxclients"], "500");
        let line = t.commands().last().cloned().unwrap_or_default();
        assert!(
            !line.contains("s3cret"),
            "the secret reached a command line: {line}"
        );
        // Nothing asked, nothing run.
        let before = t.commands().len();
        assert!(
            Postgresql
                .running_settings(&t, &instance(EngineKind::Postgresql), &bin(&["psql"]), &[])
                .unwrap()
                .is_empty()
        );
        assert_eq!(t.commands().len(), before);
    }

    #[test]
    fn a_server_that_does_not_answer_is_an_error_naming_the_client() {
        let t = Recording::new();
        t.answer("current_setting", 2, "");
        let err = Postgresql
            .running_settings(
                &t,
                &instance(EngineKind::Postgresql),
                &bin(&["psql"]),
                &["work_mem"],
            )
            .unwrap_err();
        assert!(err.to_string().contains("psql"), "{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_takes_major_and_minor() {
        assert_eq!(series("10.11.14-MariaDB-0+deb12u2"), "10.11");
        assert_eq!(series("7.0.15"), "7.0");
        assert_eq!(series("15"), "15");
    }

    #[test]
    fn uris_carry_no_password() {
        let uri = make_uri("postgresql", "app", "127.0.0.1", 15432, "/app");
        assert_eq!(uri.as_str(), "postgresql://app@127.0.0.1:15432/app");
    }
}
