//! The host platforms: `local` (this machine) and `ssh` (plain VMs). Engines run from
//! the distro's binaries, one instance directory per database under the state
//! directory, each server on its own port, started as the engine's service user when
//! dbctl (or the SSH login) is root. The same playbooks run on both; the transport is
//! the difference.
//!
//! State layout: `<state_dir>/<name>/{instance.json, data/, conf/, run/, log/}`.
//! `instance.json` pins the port and records the GitOps repo that owns the instance.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use minijinja::Value;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    Admin, Applied, Artifact, Capabilities, Disruption, Endpoint, Observed, Options, Progress,
    Request, Response, Role, State,
};
use super::{Lease, LeaseHolder};

use crate::assets::Assets;
use crate::catalog::{Catalog, EngineKind};
use crate::engine::{self, Engine, Instance, Located};
use crate::gitops::Repo;
use crate::playbook::Playbook;
use crate::playbook::runner::{Runner, display_chain};
use crate::render::Renderer;
use crate::spec::{PlatformKind, Spec, Target};
use crate::transport::{self, CommandSpec, Transport};

/// Bytes in one GB as dbctl counts sizes (GiB, as OpenStack and most clouds do).
pub const GB: u64 = 1 << 30;

/// Placeholder for secrets in rendered artifacts.
pub const REDACTED: &str = "<secret: set at create>";

/// What `instance.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstanceRecord {
    name: String,
    engine: EngineKind,
    version: String,
    port: u16,
    /// The owning GitOps repo's id ([`Repo::id`]), the same in every clone. Records
    /// written before it existed have none and are matched by `repo`.
    #[serde(default)]
    repo_id: Option<String>,
    /// The clone that created the instance (for people; ownership is `repo_id`).
    repo: PathBuf,
    created_at: String,
    /// What was applied last (spec values and template digests); `None` for an
    /// instance from before dbctl recorded it.
    #[serde(default)]
    applied: Option<Applied>,
}

/// A host platform (`local` or `ssh`) bound to one target.
pub struct Host {
    kind: PlatformKind,
    target: Target,
    state_dir: PathBuf,
    repo_root: PathBuf,
    /// [`Repo::id`], or why there is none.
    repo_id: std::result::Result<String, String>,
    catalog: Catalog,
    /// The repo's configuration: backup stores, recipients (WAL archiving).
    config: crate::spec::Config,
    assets: Assets,
    renderer: Renderer,
    transport: std::sync::Arc<dyn Transport>,
    located: std::sync::Mutex<BTreeMap<(EngineKind, String), Located>>,
    /// `--timeout`: how long playbooks wait for a server to accept connections
    /// (`None`: the playbook's own `timeout_s`).
    wait_timeout: Option<std::time::Duration>,
}

/// Where this machine keeps what dbctl makes for `target` (`local` instances, Terraform
/// working directories): `--state-dir` (or `$DBCTL_STATE_DIR`), else the target's
/// `state_dir` (relative to the repo), else `/var/lib/dbctl` for root and `<data
/// dir>/dbctl` (`~/.local/share/dbctl`) for other users; always absolute.
///
/// # Errors
/// No usable home directory for the default.
pub fn local_state_dir(repo: &Repo, target: &Target, options: &Options) -> Result<PathBuf> {
    let state_dir = if let Some(dir) = &options.state_dir {
        dir.clone()
    } else if let Some(dir) = &target.state_dir {
        repo.root().join(dir)
    } else if transport::Local::new().is_root() {
        PathBuf::from("/var/lib/dbctl")
    } else {
        directories::ProjectDirs::from("", "", "dbctl")
            .map(|d| d.data_dir().to_path_buf())
            .context("no home directory for the default state directory; pass `--state-dir`")?
    };
    Ok(if state_dir.is_absolute() {
        state_dir
    } else {
        std::env::current_dir()?.join(state_dir)
    })
}

impl Host {
    /// The `local` platform for `target` of `repo`. The state directory is
    /// `--state-dir` (or `$DBCTL_STATE_DIR`), else the target's `state_dir` (relative to
    /// the repo), else `/var/lib/dbctl` for root and `<data dir>/dbctl`
    /// (`~/.local/share/dbctl`) for other users.
    ///
    /// # Errors
    /// No usable home directory for the default state directory.
    pub fn local(repo: &Repo, target: &Target, options: &Options) -> Result<Self> {
        let transport = transport::Local::new();
        let state_dir = local_state_dir(repo, target, options)?;
        // Instance directories belong to service users: nothing below the state
        // directory is reached through a link (see `safefs`).
        let transport = transport.anchored(&state_dir);
        Ok(Self::with_transport(
            PlatformKind::Local,
            repo,
            target,
            state_dir,
            std::sync::Arc::new(transport),
        )
        .waiting(options))
    }

    /// The `ssh` platform for `target` of `repo` on one of its hosts (`user`, `port`,
    /// `identity`, `known_hosts` from the target). The state directory is the target's
    /// `state_dir` (absolute, on the host), else `/var/lib/dbctl`.
    ///
    /// # Errors
    /// A relative `state_dir`, or a failed connection (after retries).
    pub fn ssh(repo: &Repo, target: &Target, host: &str, options: &Options) -> Result<Self> {
        let state_dir = target
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/dbctl"));
        if !state_dir.is_absolute() {
            bail!(
                "target `{}`: `state_dir` `{}` must be an absolute path on the host",
                target.name,
                state_dir.display()
            );
        }
        let opts = super::ssh_options(repo.root(), target, host, options);
        let transport = transport::Ssh::connect(&opts)?;
        Ok(Self::with_transport(
            PlatformKind::Ssh,
            repo,
            target,
            state_dir,
            std::sync::Arc::new(transport),
        )
        .waiting(options))
    }

    /// Whether this host has an instance directory for `name`.
    ///
    /// # Errors
    /// The host cannot be read.
    pub fn has_instance(&self, name: &str) -> Result<bool> {
        Ok(self
            .transport
            .read_file(&self.instance_dir(name).join("instance.json"))?
            .is_some())
    }

    /// How many instances the state directory holds.
    pub fn instance_count(&self) -> usize {
        self.transport
            .list_dir(&self.state_dir)
            .iter()
            .filter(|name| {
                self.transport
                    .read_file(&self.state_dir.join(name).join("instance.json"))
                    .ok()
                    .flatten()
                    .is_some()
            })
            .count()
    }

    /// The host's address, as the transport knows it.
    pub fn address(&self) -> &str {
        self.transport.host()
    }

    /// Serialises reservations (port allocation and `instance.json`) across concurrent
    /// runs: `local` locks `<state_dir>/.ports.lock`; `ssh` locks
    /// `<repo>/.dbctl/locks/target.<target>.lock`, which also covers choosing a host
    /// for a target with several (`HostSet`).
    ///
    /// # Errors
    /// The lock file cannot be created or locked.
    pub fn reservation_lock(&self) -> Result<File> {
        let (anchor, rel) = if self.kind == PlatformKind::Local {
            (
                crate::safefs::Anchor::new(&self.state_dir),
                PathBuf::from(".ports.lock"),
            )
        } else {
            (
                crate::safefs::Anchor::new(&self.repo_root),
                Path::new(".dbctl/locks").join(format!("target.{}.lock", self.target.name)),
            )
        };
        let path = anchor.root().join(&rel);
        let lock = anchor
            .open_lock(&rel)
            .with_context(|| format!("cannot create `{}`", path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock `{}`", path.display()))?;
        Ok(lock)
    }

    /// The port of `spec`'s instance: the one `instance.json` records, else a newly
    /// allocated one, recorded in a new `instance.json`. Call it holding
    /// [`Self::reservation_lock`].
    ///
    /// # Errors
    /// The instance belongs to another repo or engine, no free port, or I/O on the host.
    pub fn reserve(&self, spec: &Spec) -> Result<u16> {
        if let Some(record) = self.read_record(&spec.name)? {
            self.check_record(spec, &record)?;
            return Ok(record.port);
        }
        self.transport.make_dir(&self.state_dir, 0o755, None)?;
        let port = self.allocate_port(spec.engine)?;
        let dir = self.instance_dir(&spec.name);
        let owner = self.service_user(spec.engine);
        self.transport.make_dir(&dir, 0o755, owner.as_deref())?;
        let record = InstanceRecord {
            name: spec.name.clone(),
            engine: spec.engine,
            version: spec.version.clone(),
            port,
            repo_id: Some(self.repo_id.clone().map_err(anyhow::Error::msg)?),
            repo: self.repo_root.clone(),
            created_at: jiff::Timestamp::now().to_string(),
            applied: None,
        };
        self.transport.write_file(
            &dir.join("instance.json"),
            &serde_json::to_vec_pretty(&record)?,
            0o644,
            None,
        )?;
        Ok(port)
    }

    fn with_transport(
        kind: PlatformKind,
        repo: &Repo,
        target: &Target,
        state_dir: PathBuf,
        transport: std::sync::Arc<dyn Transport>,
    ) -> Self {
        Self {
            kind,
            target: target.clone(),
            state_dir,
            repo_root: repo.root().to_path_buf(),
            repo_id: repo.id().map_err(|e| format!("{e:#}")),
            catalog: repo.catalog.clone(),
            config: repo.config.clone(),
            assets: repo.assets.clone(),
            renderer: Renderer::new(&repo.assets),
            transport,
            located: std::sync::Mutex::new(BTreeMap::new()),
            wait_timeout: None,
        }
    }

    /// The same host with `--timeout` for its readiness waits.
    #[must_use]
    fn waiting(mut self, options: &Options) -> Self {
        self.wait_timeout = options.timeout;
        self
    }

    fn engine(&self, kind: EngineKind) -> Result<Box<dyn Engine>> {
        Ok(engine::for_host(kind, self.kind.as_str())?)
    }

    fn known_versions(&self, kind: EngineKind) -> Vec<String> {
        self.catalog
            .engine(kind)
            .map(|e| e.versions.clone())
            .unwrap_or_default()
    }

    fn instance_dir(&self, name: &str) -> PathBuf {
        self.state_dir.join(name)
    }

    fn read_record(&self, name: &str) -> Result<Option<InstanceRecord>> {
        let path = self.instance_dir(name).join("instance.json");
        match self.transport.read_file(&path)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "`{}` on {} is damaged; remove the instance directory by hand",
                    path.display(),
                    self.transport.host()
                )
            })?)),
            None => Ok(None),
        }
    }

    /// Checks that an existing instance belongs to this repo and engine.
    fn check_record(&self, spec: &Spec, record: &InstanceRecord) -> Result<()> {
        let ours = match (&record.repo_id, &self.repo_id) {
            (Some(theirs), Ok(ours)) => theirs == ours,
            // A record from before repo ids: the clone that made it.
            (None, _) => record.repo == self.repo_root,
            (Some(_), Err(why)) => bail!("{why}"),
        };
        if !ours {
            bail!(
                "instance directory `{}` belongs to another GitOps repo (id `{}`, created from `{}`), not this one (id `{}`); use another name or `--state-dir`",
                self.instance_dir(&spec.name).display(),
                record.repo_id.as_deref().unwrap_or("none"),
                record.repo.display(),
                self.repo_id.as_deref().unwrap_or("none"),
            );
        }
        if record.engine != spec.engine {
            bail!(
                "instance `{}` runs {}, but the spec says {}; delete it first",
                spec.name,
                record.engine,
                spec.engine
            );
        }
        Ok(())
    }

    fn service_user(&self, kind: EngineKind) -> Option<String> {
        if self.transport.is_root() {
            self.catalog.engine(kind).map(|e| e.service_user.clone())
        } else {
            None
        }
    }

    fn make_instance(&self, spec: &Spec, engine: &dyn Engine, port: u16) -> Instance {
        let dir = self.instance_dir(&spec.name);
        Instance {
            name: spec.name.clone(),
            engine: spec.engine,
            version: spec.version.clone(),
            host: self.target.address.clone().unwrap_or_else(|| {
                if self.kind == PlatformKind::Ssh {
                    self.transport.host().to_owned()
                } else {
                    "127.0.0.1".into()
                }
            }),
            listen: self.target.ssh.listen.clone().unwrap_or_else(|| {
                if self.kind == PlatformKind::Ssh {
                    "0.0.0.0".into()
                } else {
                    "127.0.0.1".into()
                }
            }),
            port,
            data_dir: dir.join("data"),
            conf_dir: dir.join("conf"),
            run_dir: dir.join("run"),
            log_dir: dir.join("log"),
            dir,
            service_user: self.service_user(spec.engine),
            admin_user: engine.admin_user(self.transport.as_ref()),
            size_gb: spec.size_gb,
            database: spec.database.clone(),
            user: spec.user.clone(),
        }
    }

    /// Picks a free port: above the engine's standard port + 10000, not recorded by
    /// another instance in the state directory, and bindable on 127.0.0.1.
    fn allocate_port(&self, kind: EngineKind) -> Result<u16> {
        let base = self.target.first_port.unwrap_or_else(|| {
            self.catalog
                .engine(kind)
                .map_or(20_000, |e| e.port.saturating_add(10_000))
        });
        let taken: Vec<u16> = self
            .transport
            .list_dir(&self.state_dir)
            .iter()
            .filter_map(|name| {
                let record = self.state_dir.join(name).join("instance.json");
                let bytes = self.transport.read_file(&record).ok()??;
                serde_json::from_slice::<InstanceRecord>(&bytes).ok()
            })
            .map(|r| r.port)
            .collect();
        (base..base.saturating_add(2000))
            .find(|p| !taken.contains(p) && !self.transport.port_in_use(*p))
            .with_context(|| format!("no free TCP port on 127.0.0.1 from {base}"))
    }

    fn playbook(&self, kind: EngineKind, operation: &str) -> Result<Playbook> {
        Ok(Playbook::load(
            &self.assets,
            &format!("local/{kind}/{operation}.yml"),
        )?)
    }

    fn context(
        &self,
        spec: &Spec,
        instance: &Instance,
        bin: &BTreeMap<String, String>,
        secrets: &BTreeMap<&str, String>,
    ) -> Result<Value> {
        let plan = self
            .catalog
            .plan(&spec.plan)
            .with_context(|| format!("plan `{}` is not in the catalog", spec.plan))?;
        let engine = self.catalog.engine(spec.engine);
        let wal_archive = self.wal_archive_context(spec, instance);
        Ok(minijinja::context! {
            wal_archive => wal_archive,
            spec => Value::from(minijinja::value::Serde(spec)),
            plan => Value::from(minijinja::value::Serde(plan)),
            engine => Value::from(minijinja::value::Serde(engine)),
            instance => Value::from(minijinja::value::Serde(instance)),
            target => Value::from(minijinja::value::Serde(&self.target)),
            bin => Value::from(minijinja::value::Serde(bin)),
            secrets => Value::from(minijinja::value::Serde(secrets)),
        })
    }

    /// Whether `spec`'s server archives WAL ([`super::agent::archives`]).
    fn archives(&self, spec: &Spec) -> bool {
        super::agent::archives(&self.config, spec)
    }

    /// Where the host runs dbctl itself ([`super::agent::path`]): this binary on
    /// `local`, a copy of it in the state directory elsewhere.
    ///
    /// # Errors
    /// This binary cannot be found or read.
    fn agent_path(&self) -> Result<PathBuf> {
        super::agent::path(&self.state_dir, self.kind == PlatformKind::Local)
    }

    /// Puts this dbctl on the host at [`Host::agent_path`] ([`super::agent::install`];
    /// nothing to do on `local`).
    ///
    /// # Errors
    /// Another architecture, or the copy fails.
    fn install_agent(&self, purpose: super::agent::Purpose<'_>) -> Result<PathBuf> {
        let path = self.agent_path()?;
        if self.kind != PlatformKind::Local {
            super::agent::install(self.transport.as_ref(), &path, purpose)?;
        }
        Ok(path)
    }

    /// PostgreSQL with a backup store archives its WAL continuously: the server's
    /// `archive_command` runs dbctl on the host ([`Host::agent_path`]) as `dbctl
    /// wal-push` with the instance's `conf/wal-push.json`.
    fn wal_archive_context(&self, spec: &Spec, instance: &Instance) -> Option<minijinja::Value> {
        if !self.archives(spec) {
            return None;
        }
        let exe = self.agent_path().ok()?;
        Some(super::agent::archive_context(&exe, &instance.conf_dir))
    }

    /// Writes what `dbctl wal-push` needs into the instance's configuration directory
    /// ([`super::agent::write_wal_push`]); on a host, installs dbctl's copy there and
    /// checks it reaches the store.
    fn write_wal_push(&self, spec: &Spec, instance: &Instance) -> Result<()> {
        let owner = instance.service_user.as_deref();
        let Some((config_path, store)) = super::agent::write_wal_push(
            self.transport.as_ref(),
            (&self.config, &self.repo_root),
            spec,
            &instance.conf_dir,
            owner,
        )?
        else {
            return Ok(());
        };
        if self.kind != PlatformKind::Local {
            // The host must reach the store itself: found out now, not from failures
            // in the server's log once it archives.
            let agent = self.install_agent(super::agent::Purpose::WalArchiving(&spec.name))?;
            super::agent::check_wal_push(
                self.transport.as_ref(),
                &agent,
                &config_path,
                owner,
                &spec.name,
                &store,
            )?;
        }
        Ok(())
    }

    /// The engine's binaries for the spec's version, found once per run (each lookup
    /// costs a few commands on the host, and preflight, create and the final probe all
    /// need them). A failed lookup is not remembered: `install_packages` may fix it.
    fn locate(&self, spec: &Spec, engine: &dyn Engine) -> Result<Located> {
        let key = (spec.engine, spec.version.clone());
        if let Some(found) = self.located.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(found);
        }
        let dir = self
            .catalog
            .engine(spec.engine)
            .and_then(|e| e.bin_dirs.get(&spec.version).cloned());
        let found = match dir {
            Some(dir) => engine.locate_in(self.transport.as_ref(), &spec.version, &dir)?,
            None => engine.locate(
                self.transport.as_ref(),
                Some(&spec.version),
                &self.known_versions(spec.engine),
            )?,
        };
        if let Ok(mut cache) = self.located.lock() {
            cache.insert(key, found.clone());
        }
        Ok(found)
    }

    /// The distro package providing a missing binary of `spec`'s engine, when the target
    /// has `install_packages: true` and the engine is not installed.
    fn package_to_install(&self, spec: &Spec, engine: &dyn Engine) -> Option<String> {
        if !self.target.ssh.install_packages {
            return None;
        }
        match engine.locate(
            self.transport.as_ref(),
            Some(&spec.version),
            &self.known_versions(spec.engine),
        ) {
            Err(engine::EngineError::NotInstalled { package, .. }) => Some(package),
            // Debian installs PostgreSQL majors side by side (`postgresql-16` beside 15).
            Err(engine::EngineError::VersionMismatch { wanted, .. })
                if spec.engine == EngineKind::Postgresql =>
            {
                Some(format!("postgresql-{wanted}"))
            }
            _ => None,
        }
    }

    /// Installs `package` with `apt-get` (as the login, which must be root).
    fn install(&self, package: &str) -> Result<()> {
        let cmd = CommandSpec::new(
            "apt-get",
            ["install", "-y", "-q", "--no-install-recommends", package],
        )
        .secret_env("DEBIAN_FRONTEND", SecretString::from("noninteractive"))
        .timeout(std::time::Duration::from_mins(15));
        let out = self.transport.run(&cmd)?;
        if !out.success() {
            bail!(
                "installing `{package}` on {} failed: {}",
                self.transport.host(),
                out.stderr.trim()
            );
        }
        Ok(())
    }

    /// Reads the admin secret of an engine that needs one, generating it on first use.
    fn admin_secret(&self, instance: &Instance, create: bool) -> Result<Option<SecretString>> {
        let path = instance.conf_dir.join("admin.secret");
        if let Some(bytes) = self.transport.read_file(&path)? {
            return Ok(Some(SecretString::from(
                String::from_utf8_lossy(&bytes).trim().to_owned(),
            )));
        }
        if !create {
            return Ok(None);
        }
        let secret = crate::secret::generate_password();
        self.transport
            .make_dir(&instance.conf_dir, 0o700, instance.service_user.as_deref())?;
        self.transport
            .write_file(&path, secret.expose_secret().as_bytes(), 0o600, None)?;
        Ok(Some(secret))
    }

    /// Redis after `rotate-credentials`: the other login's ACL line, kept from the
    /// instance's `users.acl` ([`super::kept_acl`]).
    fn kept_acl(
        &self,
        spec: &Spec,
        instance: &Instance,
        login: Option<&str>,
    ) -> Result<Option<String>> {
        if spec.engine != EngineKind::Redis {
            return Ok(None);
        }
        let acl = self
            .transport
            .read_file(&instance.conf_dir.join("users.acl"))?;
        Ok(acl.and_then(|bytes| super::kept_acl(spec, login, &bytes)))
    }

    /// The last error lines of the instance's server logs (`log/server.log`,
    /// `log/console.log`), with their path, for a failed create: what an operator reads
    /// first. Secrets are redacted; at most five lines.
    fn log_errors(&self, instance: &Instance, secrets: &[SecretString]) -> String {
        const MARKS: [&str; 8] = [
            "FATAL",
            "ERROR",
            "PANIC",
            "[ERROR]",
            "# ",
            "error",
            "invalid",
            "could not",
        ];
        let mut parts = Vec::new();
        for file in ["server.log", "console.log"] {
            let path = instance.log_dir.join(file);
            let Ok(Some(bytes)) = self.transport.read_file(&path) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| MARKS.iter().any(|m| l.contains(m)))
                .map(|l| {
                    let mut l = l.chars().take(300).collect::<String>();
                    for s in secrets {
                        let v = s.expose_secret();
                        if !v.is_empty() {
                            l = l.replace(v, "********");
                        }
                    }
                    l
                })
                .collect();
            let keep = lines.len().saturating_sub(5);
            lines.drain(..keep);
            if !lines.is_empty() {
                parts.push(format!(
                    "`{}` says:\n  {}",
                    path.display(),
                    lines.join("\n  ")
                ));
            }
        }
        if parts.is_empty() {
            format!(
                "no errors in the server logs under `{}`",
                instance.log_dir.display()
            )
        } else {
            parts.join("\n")
        }
    }

    /// The context `render` uses: the instance's pinned port (or the engine's standard
    /// port + 10000), located binaries (or bare names), secrets as placeholders.
    fn render_context(&self, spec: &Spec) -> Result<(Value, Instance)> {
        let engine = self.engine(spec.engine)?;
        let port = self.read_record(&spec.name).ok().flatten().map_or_else(
            || {
                self.catalog
                    .engine(spec.engine)
                    .map_or(0, |e| e.port.saturating_add(10_000))
            },
            |r| r.port,
        );
        let instance = self.make_instance(spec, engine.as_ref(), port);
        let bin = self.locate(spec, engine.as_ref()).map_or_else(
            |_| {
                [
                    "initdb",
                    "pg_ctl",
                    "postgres",
                    "psql",
                    "mariadbd",
                    "mariadb-install-db",
                    "mariadb",
                    "redis-server",
                    "redis-cli",
                ]
                .into_iter()
                .map(|b| (b.to_owned(), b.to_owned()))
                .collect()
            },
            |l| l.bin,
        );
        let secrets = super::secret_vars(None, None);
        let ctx = self.context(spec, &instance, &bin, &secrets)?;
        Ok((ctx, instance))
    }
}

impl Host {
    /// The store PostgreSQL archives WAL into takes it from the server's user
    /// ([`super::agent::check_store`]).
    ///
    /// # Errors
    /// The store cannot take it; naming the fixes.
    fn check_wal_store(&self, spec: &Spec) -> Result<()> {
        super::agent::check_store(
            self.transport.as_ref(),
            (&self.config, &self.repo_root),
            spec,
            self.service_user(spec.engine).as_deref(),
        )
    }

    /// Checks `create` needs (binaries, version, users, disk space for `size_gb`,
    /// templates) without changing anything.
    fn check(&self, spec: &Spec) -> Result<()> {
        self.check_wal_store(spec)?;
        // A host's scheduled backups need the repo's id and the store's secret: found
        // missing now, not after the database was made.
        if self.kind != PlatformKind::Local {
            super::agent::check_schedule(
                &self.config,
                &self.repo_root,
                spec,
                self.transport.host(),
            )?;
        }
        let engine = self.engine(spec.engine)?;
        let installing = self.package_to_install(spec, engine.as_ref());
        let located = match &installing {
            // `create` installs it first; until then templates see bare program names.
            Some(_) => Located {
                version: spec.version.clone(),
                full_version: String::new(),
                bin: BTreeMap::new(),
            },
            None => self.locate(spec, engine.as_ref())?,
        };
        let record = self.read_record(&spec.name)?;
        if let Some(record) = &record {
            self.check_record(spec, record)?;
        }
        if let Some(user) = self
            .service_user(spec.engine)
            .filter(|_| installing.is_none())
        {
            if !self.transport.user_exists(&user) {
                bail!(
                    "user `{user}`, which runs {} servers when dbctl runs as root, does not exist on this machine; install the {} server package",
                    spec.engine,
                    spec.engine
                );
            }
            if !self.transport.path_traversable_by(&self.state_dir, &user) {
                bail!(
                    "state directory `{}` is not reachable by user `{user}` (a parent directory is not searchable by it); pass `--state-dir` with a directory such as /var/lib/dbctl",
                    self.state_dir.display()
                );
            }
        }
        let free = self.transport.free_bytes(&self.state_dir)?;
        let used = self.transport.used_bytes(&self.instance_dir(&spec.name));
        let needed = u64::from(spec.size_gb)
            .saturating_mul(GB)
            .saturating_sub(used);
        if needed > free {
            bail!(
                "not enough disk space for `{}`: size_gb is {} GB but `{}` has {:.1} GB free; choose a smaller `--size` or another `--state-dir`",
                spec.name,
                spec.size_gb,
                self.state_dir.display(),
                free as f64 / GB as f64
            );
        }
        // Render every template now, so a template error stops us before any change.
        let port = record.map_or(0, |r| r.port);
        let instance = self.make_instance(spec, engine.as_ref(), port);
        let secrets = super::secret_vars(None, None);
        if installing.is_none() {
            let ctx = self.context(spec, &instance, &located.bin, &secrets)?;
            for operation in ["create", "delete"] {
                let playbook = self.playbook(spec.engine, operation)?;
                for (template, _) in playbook.templates() {
                    let name = self.renderer.render_str(template, &ctx, "template name")?;
                    self.renderer.render(&name, &ctx)?;
                }
            }
        }
        Ok(())
    }

    /// Runs the create playbook (idempotent: creates, or converges what exists) and
    /// probes the server.
    fn converge(&self, req: &Request<'_>) -> Result<Response> {
        let spec = req.spec;
        let password = req.password()?;
        let engine = self.engine(spec.engine)?;
        if let Some(package) = self.package_to_install(spec, engine.as_ref()) {
            (req.progress)(1, 1, &format!("Install {package}"));
            self.install(&package)?;
        }
        let located = self.locate(spec, engine.as_ref())?;
        self.transport.make_dir(&self.state_dir, 0o755, None)?;
        let port = {
            let _lock = self.reservation_lock()?;
            self.reserve(spec)?
        };
        let instance = self.make_instance(spec, engine.as_ref(), port);
        let mut secrets = super::secret_vars(Some(password), req.login);
        if let Some(line) = self.kept_acl(spec, &instance, req.login)? {
            secrets.insert("kept_acl", line);
        }
        if engine.needs_admin_secret()
            && let Some(admin) = self.admin_secret(&instance, true)?
        {
            secrets.insert("admin_password", admin.expose_secret().to_owned());
        }
        let secret_values: Vec<SecretString> = secrets
            .values()
            .map(|v| SecretString::from(v.clone()))
            .collect();
        let ctx = self.context(spec, &instance, &located.bin, &secrets)?;
        let playbook = self.playbook(spec.engine, "create")?;
        self.transport
            .make_dir(&instance.conf_dir, 0o700, instance.service_user.as_deref())?;
        self.write_wal_push(spec, &instance)?;
        let runner = Runner {
            transport: self.transport.as_ref(),
            renderer: &self.renderer,
            engine: engine.as_ref(),
            instance: &instance,
            bin: &located.bin,
            ctx,
            secrets: secret_values.clone(),
            progress: req.progress,
            output: req.output,
            wait_timeout: self.wait_timeout,
            send: None,
            receive: Vec::new(),
        };
        if let Err(err) = runner.run(&playbook) {
            let quoted = self.log_errors(&instance, &secret_values);
            bail!("on {}: {err}\n{quoted}", self.transport.host());
        }
        self.sync_schedule(spec)?;
        let probe = engine.probe(self.transport.as_ref(), &instance, &located.bin)?;
        Ok(Response {
            endpoint: Some(Endpoint {
                host: instance.host.clone(),
                port,
            }),
            uri: Some(
                engine
                    .uri(
                        req.login.unwrap_or(&spec.user),
                        &instance.host,
                        port,
                        &spec.database,
                    )
                    .to_string(),
            ),
            server_version: Some(probe.version),
        })
    }

    /// The systemd units of `name`'s scheduled backups ([`super::agent::unit_stem`]),
    /// kept in the instance's `systemd/` directory.
    fn schedule_units(&self, name: &str) -> super::agent::Units {
        let dir = self.instance_dir(name).join("systemd");
        let stem = super::agent::unit_stem(&self.config, name);
        super::agent::Units {
            service: dir.join(format!("{stem}.service")),
            timer: dir.join(format!("{stem}.timer")),
        }
    }

    /// The repo a host's scheduled backups of `spec` run `dbctl backup` in
    /// ([`super::agent::write_schedule_repo`]): `<instance>/agent`, the store's secret
    /// in `<instance>/agent.secret`, the target as a `local` one on the host's state
    /// directory.
    fn schedule_repo(&self, spec: &Spec) -> super::agent::ScheduleRepo {
        let dir = self.instance_dir(&spec.name);
        super::agent::ScheduleRepo {
            root: dir.join("agent"),
            secret: dir.join("agent.secret"),
            target: serde_json::json!({
                "platform": "local",
                "state_dir": self.state_dir,
                "description": format!("{} as its scheduled backups see it", self.transport.host()),
            }),
            files: Vec::new(),
        }
    }

    /// Makes the scheduled backups what `backup.schedule` says (see
    /// [`crate::backup::schedule`] and [`super::agent::render_units`]): on `local` this
    /// dbctl in this repo, as the user who applied; on `ssh` dbctl's copy on the host
    /// in the repo [`Host::schedule_repo`] writes there, as the SSH user. Without a
    /// schedule, the units and that repo go.
    ///
    /// # Errors
    /// The units or the repo cannot be written, or `systemctl` fails.
    fn sync_schedule(&self, spec: &Spec) -> Result<()> {
        let units = self.schedule_units(&spec.name);
        let t = self.transport.as_ref();
        let Some(text) = spec.backup.as_ref().and_then(|b| b.schedule.as_deref()) else {
            super::agent::sync_units(t, &units, None)?;
            let repo = self.schedule_repo(spec);
            t.remove_all(&repo.root)?;
            t.remove_all(&repo.secret)?;
            return Ok(());
        };
        // On `local` the timer runs this dbctl in this repo; on a host, dbctl's copy
        // there in a repo of the one database.
        let (exe, repo) = if self.kind == PlatformKind::Local {
            (
                std::env::current_exe().context("cannot find the dbctl binary")?,
                self.repo_root.clone(),
            )
        } else {
            let repo = self.schedule_repo(spec);
            super::agent::write_schedule_repo(
                t,
                &self.assets,
                (&self.config, &self.repo_root),
                spec,
                &repo,
            )?;
            (
                self.install_agent(super::agent::Purpose::ScheduledBackups(&spec.name))?,
                repo.root,
            )
        };
        let (service, timer) = super::agent::render_units(
            &self.renderer,
            spec,
            &super::agent::UnitsContext {
                schedule: text,
                dbctl: &exe,
                repo: &repo,
                state_dir: &self.state_dir,
                condition: None,
            },
        )?;
        super::agent::sync_units(t, &units, Some((&service, &timer)))
    }

    /// What runs: the record, then a probe of the server.
    fn look(&self, spec: &Spec) -> Result<Observed> {
        let mut status = Observed::absent();
        let Some(record) = self.read_record(&spec.name)? else {
            return Ok(status);
        };
        let engine = self.engine(spec.engine)?;
        let instance = self.make_instance(spec, engine.as_ref(), record.port);
        status.endpoint = Some(Endpoint {
            host: instance.host.clone(),
            port: record.port,
        });
        status.applied.clone_from(&record.applied);
        status
            .details
            .insert("host".into(), self.transport.host().into());
        status.used_bytes = self.transport.used_bytes(&instance.dir);
        status.state = State::Down;
        // The spec may ask for a version that is not installed (an upgrade not yet
        // applied): the server still runs the recorded one, so probe with its binaries.
        let located = self.locate(spec, engine.as_ref()).or_else(|err| {
            if record.version == spec.version {
                return Err(err);
            }
            let recorded = Spec {
                version: record.version.clone(),
                ..spec.clone()
            };
            self.locate(&recorded, engine.as_ref())
        });
        if let Ok(l) = self.locate(spec, engine.as_ref()) {
            status.installed_version = Some(l.full_version);
        }
        // No live server process of this instance: down, without a client's timeout.
        let pid =
            crate::playbook::runner::read_pid(self.transport.as_ref(), &engine.pid_file(&instance));
        if !pid.is_some_and(|p| self.transport.process_matches(p, None, &instance.data_dir)) {
            status.detail = Some(format!(
                "no server process of this instance runs (pid file `{}`)",
                engine.pid_file(&instance).display()
            ));
            return Ok(status);
        }
        let probe = located.and_then(|l| {
            let probe = engine.probe(self.transport.as_ref(), &instance, &l.bin)?;
            Ok((probe, l))
        });
        match probe {
            Ok((probe, located)) => {
                status.state = State::Up;
                status.server_version = Some(probe.version);
                status.database_bytes = probe.data_bytes;
                status.pending_restart = engine
                    .pending_restart(self.transport.as_ref(), &instance, &located.bin)
                    .unwrap_or_default();
                // What the server runs for the spec's settings: drift is planned.
                let keys: Vec<&str> = spec.parameters.keys().map(String::as_str).collect();
                status.running_parameters = engine
                    .running_settings(self.transport.as_ref(), &instance, &located.bin, &keys)
                    .unwrap_or_default();
            }
            Err(err) => {
                let message = err
                    .chain()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": ");
                status.detail = Some(message);
            }
        }
        Ok(status)
    }

    /// Stops the server and removes the instance directory; idempotent.
    fn remove(&self, spec: &Spec, progress: Progress<'_>) -> Result<()> {
        let Some(record) = self.read_record(&spec.name)? else {
            return Ok(());
        };
        self.check_record(spec, &record)?;
        // Its scheduled backups stop first.
        self.sync_schedule(&Spec {
            backup: None,
            ..spec.clone()
        })?;
        let engine = self.engine(spec.engine)?;
        let instance = self.make_instance(spec, engine.as_ref(), record.port);
        let bin = self
            .locate(spec, engine.as_ref())
            .map(|l| l.bin)
            .unwrap_or_default();
        let secrets = BTreeMap::new();
        let ctx = self.context(spec, &instance, &bin, &secrets)?;
        let playbook = self.playbook(spec.engine, "delete")?;
        let runner = Runner {
            transport: self.transport.as_ref(),
            renderer: &self.renderer,
            engine: engine.as_ref(),
            instance: &instance,
            bin: &bin,
            ctx,
            secrets: Vec::new(),
            progress,
            output: None,
            wait_timeout: self.wait_timeout,
            send: None,
            receive: Vec::new(),
        };
        runner
            .run(&playbook)
            .map_err(|e| anyhow::anyhow!(display_chain(&e)))?;
        self.transport.remove_all(&instance.dir)?;
        Ok(())
    }

    /// Runs `local/<engine>/<operation>.yml` (`reload`, `restart`) on a running
    /// instance, with the located binaries and no secrets.
    fn run_operation(&self, req: &Request<'_>, operation: &str) -> Result<()> {
        self.run_operation_with(req, operation, None)
    }

    fn run_operation_with(
        &self,
        req: &Request<'_>,
        operation: &str,
        bin_version: Option<&str>,
    ) -> Result<()> {
        self.run_operation_with_streams(req, operation, bin_version, Vec::new(), None)
    }

    /// [`Self::run_operation`] with the binaries of `bin_version` (the running old
    /// version, for the first half of a major upgrade); templates see the recorded
    /// version as `old_version`.
    fn run_operation_with_streams(
        &self,
        req: &Request<'_>,
        operation: &str,
        bin_version: Option<&str>,
        receive: Vec<super::BackupFeed<'_>>,
        extra: Option<Value>,
    ) -> Result<()> {
        let spec = req.spec;
        let record = self
            .read_record(&spec.name)?
            .with_context(|| format!("`{}` has no instance to {operation}", spec.name))?;
        let engine = self.engine(spec.engine)?;
        let instance = self.make_instance(spec, engine.as_ref(), record.port);
        let located = match bin_version {
            Some(version) => self.locate(
                &Spec {
                    version: version.to_owned(),
                    ..spec.clone()
                },
                engine.as_ref(),
            )?,
            None => self.locate(spec, engine.as_ref())?,
        };
        let removed: Vec<String> = req
            .changes
            .iter()
            .filter(|c| c.new.is_none())
            .filter_map(|c| c.attribute.strip_prefix("parameters.").map(str::to_owned))
            .collect();
        // Only settings the engine changes at run time are set on a reload.
        let dynamic = crate::engine::parameter::reloadable(spec.engine, &spec.parameters);
        let ctx = minijinja::context! {
            ..self.context(spec, &instance, &located.bin, &BTreeMap::new())?,
            ..minijinja::context! { removed => removed, dynamic => dynamic, old_version => record.version.clone(), parts => receive.len() },
            ..extra.unwrap_or_default()
        };
        let playbook = self.playbook(spec.engine, operation)?;
        let runner = Runner {
            transport: self.transport.as_ref(),
            renderer: &self.renderer,
            engine: engine.as_ref(),
            instance: &instance,
            bin: &located.bin,
            ctx,
            secrets: Vec::new(),
            progress: req.progress,
            output: req.output,
            wait_timeout: self.wait_timeout,
            send: None,
            receive,
        };
        runner
            .run(&playbook)
            .map_err(|e| anyhow::anyhow!("on {}: {e}", self.transport.host()))?;
        Ok(())
    }

    /// Restores a backup in place (a new database is created first): `restore.yml`
    /// unpacks it next to the running server and swaps the data directories once it
    /// is all there and checked; the create playbook starts the server on it and sets
    /// the application password; `restore-finish.yml` removes the replaced data. When
    /// the restored data does not start, the replaced data is put back and started,
    /// and the restored data is kept as `data-restore-failed`.
    fn restore(&self, req: &Request<'_>, source: &super::Restore<'_>) -> Result<Response> {
        let spec = req.spec;
        let engine = self.engine(spec.engine)?;
        let located = self.locate(spec, engine.as_ref())?;
        super::check_backup_binaries(engine.as_ref(), &located.bin, self.transport.host())?;
        if source.recovery.is_some() && spec.engine != EngineKind::Postgresql {
            bail!(
                "`--to-time` (point-in-time recovery) is for postgresql; `{}` is {}",
                spec.name,
                spec.engine
            );
        }
        if req.creates() {
            self.converge(req)?;
        }
        let dir = self.instance_dir(&spec.name);
        let data = dir.join("data");
        let replaced = dir.join("data-replaced");
        let extra = match &source.recovery {
            Some(recovery) => Some(self.fetch_wal(spec, recovery, req.progress)?),
            None => None,
        };
        if let Err(err) = self.run_operation_with_streams(
            req,
            "restore",
            None,
            source.backups.clone(),
            extra.clone(),
        ) {
            // Stopped before the swap (or between its two moves): put the data back and
            // start the server again.
            if !self.transport.exists(&data) && self.transport.exists(&replaced) {
                self.move_path(spec, &replaced, &data)?;
            }
            let _ = self.converge(req);
            return Err(err.context(format!(
                "restoring `{}` failed; the database runs on its data as before",
                spec.name
            )));
        }
        match self.converge(req) {
            Ok(response) => {
                self.run_operation(req, "restore-finish")?;
                self.record_applied(req, true)?;
                Ok(response)
            }
            Err(err) => {
                let failed = dir.join("data-restore-failed");
                let _ = self.run_operation(req, "restart");
                let _ = self.transport.remove_all(&failed);
                self.move_path(spec, &data, &failed)?;
                self.move_path(spec, &replaced, &data)?;
                self.converge(req)?;
                Err(err.context(format!(
                    "the restored data of `{}` did not start; the data it replaced runs again and the restored data is kept in `{}`",
                    spec.name,
                    failed.display()
                )))
            }
        }
    }

    /// Puts the WAL a point-in-time recovery replays into the instance's `restore-wal`
    /// directory (the server's `restore_command` copies from there: no dbctl and no
    /// identity on the host); returns the restore playbook's `recovery` variables.
    fn fetch_wal(
        &self,
        spec: &Spec,
        recovery: &super::Recovery<'_>,
        progress: Progress<'_>,
    ) -> Result<Value> {
        super::agent::fetch_wal(
            self.transport.as_ref(),
            &self.instance_dir(&spec.name).join("restore-wal"),
            self.service_user(spec.engine).as_deref(),
            recovery,
            progress,
        )
    }

    /// `mv from to` on the host as the engine's service user.
    fn move_path(&self, spec: &Spec, from: &Path, to: &Path) -> Result<()> {
        let cmd = crate::transport::CommandSpec::new(
            "mv",
            [
                from.to_string_lossy().into_owned(),
                to.to_string_lossy().into_owned(),
            ],
        )
        .run_as(self.service_user(spec.engine).as_deref());
        let out = self.transport.run(&cmd)?;
        if !out.success() {
            bail!(
                "on {}: cannot move `{}` to `{}`: {}",
                self.transport.host(),
                from.display(),
                to.display(),
                out.stderr.trim()
            );
        }
        Ok(())
    }

    /// A major upgrade (PostgreSQL): with the old version's binaries, dump everything,
    /// stop and set the data directory aside (`upgrade-dump.yml`); with the new
    /// version's, initialise and start through the create playbook (users, the kept
    /// password), restore the dump (`upgrade-restore.yml`), and check the server runs
    /// the new version. Every step runs once, so a re-run after a crash goes on.
    fn major_upgrade(&self, req: &Request<'_>) -> Result<Response> {
        let spec = req.spec;
        let record = self
            .read_record(&spec.name)?
            .with_context(|| format!("`{}` has no instance to upgrade", spec.name))?;
        let old = record.version.clone();
        if old != spec.version {
            self.run_operation_with(req, "upgrade-dump", Some(&old))?;
        }
        let response = self.converge(req)?;
        self.run_operation(req, "upgrade-restore")?;
        let running = response.server_version.clone().unwrap_or_default();
        if crate::change::series_of(&running, &spec.version) != spec.version {
            bail!(
                "`{}` runs {running} after the upgrade, not {}; the old data directory is kept as `data-{old}`",
                spec.name,
                spec.version
            );
        }
        self.record_applied(req, true)?;
        Ok(response)
    }

    /// Records what was applied in `instance.json`: everything for a (re)start from
    /// the spec, else the previous record with the applied changes — a deferred change
    /// stays pending.
    fn record_applied(&self, req: &Request<'_>, whole: bool) -> Result<()> {
        let spec = req.spec;
        let mut record = self
            .read_record(&spec.name)?
            .with_context(|| format!("`{}` has no instance record", spec.name))?;
        let digests = self.template_digests(spec)?;
        let full = Applied {
            wal_archive: super::Platform::wal_archive(self, spec),
            ..Applied::of(spec, digests)
        };
        record.applied = Some(Applied::after(
            record.applied.take(),
            full,
            req.changes,
            whole,
        ));
        record.version.clone_from(&spec.version);
        self.transport.write_file(
            &self.instance_dir(&spec.name).join("instance.json"),
            &serde_json::to_vec_pretty(&record)?,
            0o644,
            None,
        )?;
        Ok(())
    }

    /// Template → sha256 of its text, for every template the create playbook renders.
    fn template_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>> {
        let (ctx, _) = self.render_context(spec)?;
        let playbook = self.playbook(spec.engine, "create")?;
        let mut texts = Vec::new();
        for (template, _) in playbook.templates() {
            let name = self.renderer.render_str(template, &ctx, "template name")?;
            let text = self.renderer.source(&name)?;
            texts.push((name, text));
        }
        Ok(crate::change::digests(
            texts.iter().map(|(n, t)| (n.as_str(), t.as_str())),
        ))
    }
}

impl super::Platform for Host {
    fn kind(&self) -> PlatformKind {
        self.kind
    }

    fn preferred_version(&self, kind: EngineKind) -> Option<String> {
        let engine = self.engine(kind).ok()?;
        engine
            .locate(self.transport.as_ref(), None, &self.known_versions(kind))
            .ok()
            .map(|l| l.version)
    }

    fn capabilities(&self, spec: &Spec) -> Capabilities {
        Capabilities {
            grow: Some(Disruption::None),
            minor_upgrade: true,
            // PostgreSQL: dump, a new data directory of the new major, restore
            // (`upgrade-dump.yml`, `upgrade-restore.yml`).
            major_upgrade: spec.engine == EngineKind::Postgresql,
            configure: true,
            schedule_backups: true,
            backup: true,
        }
    }

    fn artifact_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>> {
        self.template_digests(spec)
    }

    fn wal_archive(&self, spec: &Spec) -> Option<String> {
        super::agent::wal_archive(&self.config, spec)
    }

    fn observe(&self, spec: &Spec) -> Result<Observed> {
        self.look(spec)
    }

    fn preflight(&self, req: &Request<'_>) -> Result<()> {
        if req.deletes() {
            return Ok(());
        }
        self.check(req.spec)
    }

    fn apply(&self, req: &Request<'_>) -> Result<Response> {
        if req.deletes() {
            self.remove(req.spec, req.progress)?;
            return Ok(Response::default());
        }
        // Create, or converge: the playbook writes configuration and (re)starts a
        // server that is down; a running one is left running.
        if let Some(change) = req.change("version")
            && change.action == crate::change::Action::Replace
        {
            return self.major_upgrade(req);
        }
        if let Some(source) = req.restore {
            return self.restore(req, source);
        }
        let was_running = !req.creates() && req.change("state").is_none();
        let mut response = self.converge(req)?;
        let mut whole = !was_running;
        if was_running {
            match req.disruption() {
                Disruption::None => {}
                Disruption::Reload => self.run_operation(req, "reload")?,
                Disruption::Restart | Disruption::DataMovement => {
                    self.run_operation(req, "restart")?;
                    response = self.converge(req)?;
                    whole = true;
                }
            }
        }
        self.record_applied(req, whole)?;
        Ok(response)
    }

    fn lease(
        &self,
        spec: &Spec,
        holder: &LeaseHolder,
        wait: std::time::Duration,
    ) -> Result<Option<Lease<'_>>> {
        self.transport.make_dir(&self.state_dir, 0o755, None)?;
        super::lease::take(
            std::sync::Arc::clone(&self.transport),
            &self.state_dir.join(".leases"),
            &spec.name,
            holder,
            wait,
        )
        .map(Some)
    }

    fn admin(&self, spec: &Spec) -> Result<Box<dyn Admin + '_>> {
        let record = self.read_record(&spec.name)?.with_context(|| {
            format!(
                "`{}` is not created on {}",
                spec.name,
                self.transport.host()
            )
        })?;
        let engine = self.engine(spec.engine)?;
        let instance = self.make_instance(spec, engine.as_ref(), record.port);
        let located = self.locate(spec, engine.as_ref())?;
        Ok(Box::new(HostAdmin {
            host: self,
            spec: spec.clone(),
            transport: self.transport.as_ref(),
            engine,
            instance,
            bin: located.bin,
            full_version: located.full_version,
        }))
    }

    fn describe(&self, spec: &Spec) -> Result<serde_json::Value> {
        let (ctx, _) = self.render_context(spec)?;
        let mut artifacts = Vec::new();
        for operation in ["create", "delete"] {
            let playbook = self.playbook(spec.engine, operation)?;
            for (template, dest) in playbook.templates() {
                artifacts.push(serde_json::json!({
                    "operation": operation,
                    "template": self.renderer.render_str(template, &ctx, "template name")?,
                    "dest": dest.map(|d| self.renderer.render_str(d, &ctx, "template dest")).transpose()?,
                }));
            }
        }
        Ok(serde_json::json!({
            "name": spec.name,
            "context": serde_json::to_value(&ctx)?,
            "artifacts": artifacts,
        }))
    }

    fn render(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        let (ctx, instance) = self.render_context(spec)?;
        let mut artifacts = Vec::new();
        for operation in ["create", "delete"] {
            let playbook = self.playbook(spec.engine, operation)?;
            for (template, dest) in playbook.templates() {
                let name = self.renderer.render_str(template, &ctx, "template name")?;
                let content = self.renderer.render(&name, &ctx)?;
                let path = match dest {
                    Some(dest) => {
                        let dest = self.renderer.render_str(dest, &ctx, "template dest")?;
                        let rel = Path::new(&dest)
                            .strip_prefix(&instance.dir)
                            .map_or_else(|_| dest.clone(), |p| p.to_string_lossy().into_owned());
                        format!("local/{}/{rel}", spec.name)
                    }
                    None => format!(
                        "local/{}/{operation}/{}",
                        spec.name,
                        name.rsplit('/')
                            .next()
                            .unwrap_or(&name)
                            .trim_end_matches(".j2")
                    ),
                };
                if !artifacts.iter().any(|a: &Artifact| a.path == path) {
                    artifacts.push(Artifact { path, content });
                }
            }
        }
        Ok(artifacts)
    }
}

/// The admin channel of a host instance: the engine's client through the transport.
struct HostAdmin<'a> {
    host: &'a Host,
    spec: Spec,
    transport: &'a dyn Transport,
    engine: Box<dyn Engine>,
    instance: Instance,
    bin: BTreeMap<String, String>,
    full_version: String,
}

impl Admin for HostAdmin<'_> {
    fn run(
        &self,
        input: &mut (dyn std::io::Read + Send),
        output: &mut dyn std::io::Write,
        role: Role<'_>,
    ) -> Result<(i32, String)> {
        super::run_client(
            self.transport,
            self.engine.as_ref(),
            &self.instance,
            &self.bin,
            (input, output),
            &role,
        )
    }

    fn backup(
        &self,
        output: &mut dyn std::io::Write,
        progress: Progress<'_>,
        incremental: Option<super::IncrementalBase<'_>>,
    ) -> Result<super::BackupTaken> {
        super::check_backup_binaries(self.engine.as_ref(), &self.bin, self.transport.host())?;
        let (vars, scratch) = super::incremental_vars(
            self.transport,
            self.spec.engine,
            &self.full_version,
            &self.instance,
            incremental,
        )?;
        let ctx = self
            .host
            .context(&self.spec, &self.instance, &self.bin, &BTreeMap::new())?;
        let ctx = minijinja::context! { ..Value::from(minijinja::value::Serde(&vars)), ..ctx };
        let playbook = self.host.playbook(self.spec.engine, "backup")?;
        let log = std::sync::Mutex::new(String::new());
        let keep = |line: &str| {
            if let Ok(mut log) = log.lock() {
                log.push_str(line);
                log.push('\n');
            }
        };
        let runner = Runner {
            transport: self.transport,
            renderer: &self.host.renderer,
            engine: self.engine.as_ref(),
            instance: &self.instance,
            bin: &self.bin,
            ctx,
            secrets: Vec::new(),
            progress,
            output: Some(&keep),
            wait_timeout: self.host.wait_timeout,
            send: Some(std::cell::RefCell::new(output)),
            receive: Vec::new(),
        };
        let ran = runner.run(&playbook);
        if let Some(path) = &scratch {
            let _ = self.transport.remove_all(path);
        }
        ran.map_err(|e| anyhow::anyhow!("on {}: {e}", self.transport.host()))?;
        let log = log.into_inner().unwrap_or_default();
        Ok(super::BackupTaken {
            format: self.engine.backup_format().to_owned(),
            server_version: self.full_version.clone(),
            position: self.engine.backup_position(&log),
            checkpoint_lsn: self.engine.backup_checkpoint(&log),
        })
    }
}

/// Host logic against the recording transport double: no server, no root.
#[cfg(test)]
mod double_tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::change::{Change, State};
    use crate::platform::Platform;
    use crate::transport::recording::Recording;

    const CONFIG: &str = "repo_id: 0123456789abcdef\ndefault_target: local\ntargets:\n  local:\n    platform: local\n";

    /// A repo with one `local` target, a Redis spec `kv`, and a host on the double
    /// keeping instances under `/state`.
    fn host() -> (tempfile::TempDir, Host, Spec, Arc<Recording>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/dbctl.yml"), CONFIG).unwrap();
        std::fs::create_dir_all(dir.path().join("etc/databases")).unwrap();
        std::fs::write(
            dir.path().join("etc/databases/kv.yml"),
            "name: kv\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\n",
        )
        .unwrap();
        let repo = Repo::open(dir.path()).unwrap();
        let spec = repo.load_spec("kv").unwrap().unwrap();
        let target = repo.config.target("local").unwrap().clone();
        let double = Arc::new(Recording::new());
        let host = Host::with_transport(
            PlatformKind::Local,
            &repo,
            &target,
            PathBuf::from("/state"),
            double.clone(),
        );
        (dir, host, spec, double)
    }

    fn record(repo_id: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "name": "kv", "engine": "redis", "version": "7.0", "port": 16379,
            "repo_id": repo_id, "repo": "/elsewhere", "created_at": "2026-12-01T00:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn an_instance_is_absent_without_its_record_and_down_without_its_server() {
        let (_dir, host, spec, double) = host();
        assert_eq!(host.observe(&spec).unwrap().state, State::Absent);

        double.put(
            Path::new("/state/kv/instance.json"),
            &record("0123456789abcdef"),
        );
        // A pid file, but no live server process of this instance behind it.
        double.put(Path::new("/state/kv/run/redis.pid"), b"4242\n");
        let observed = host.observe(&spec).unwrap();
        assert_eq!(observed.state, State::Down);
        assert_eq!(observed.endpoint.map(|e| e.port), Some(16379));
        let detail = observed.detail.unwrap_or_default();
        assert!(detail.contains("/state/kv/run/redis.pid"), "{detail}");
        assert!(
            !double.commands().iter().any(|c| c.contains("INFO")),
            "a server that is not running was probed (a client timeout per status): {:?}",
            double.commands()
        );
    }

    #[test]
    fn another_repos_instance_is_neither_converged_nor_deleted() {
        let (_dir, host, spec, double) = host();
        double.put(
            Path::new("/state/kv/instance.json"),
            &record("another-repo-id"),
        );
        let changes = [Change::delete(&spec)];
        let request = Request {
            spec: &spec,
            changes: &changes,
            password: None,
            login: None,
            progress: &|_, _, _| {},
            output: None,
            restore: None,
        };
        let err = host.apply(&request).unwrap_err().to_string();
        assert!(
            err.contains("belongs to another GitOps repo") && err.contains("/state/kv"),
            "{err}"
        );
        assert!(
            double.file(Path::new("/state/kv/instance.json")).is_some(),
            "the other repo's instance was removed"
        );
        assert!(double.commands().is_empty(), "{:?}", double.commands());
    }
}
