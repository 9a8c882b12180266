//! dbctl on the database's machines. For PostgreSQL's continuous WAL archiving the
//! server's `archive_command` runs `dbctl wal-push` with a configuration file beside
//! the data (`wal-push.json`: the store, its secret in a file of its own, the repo's
//! recipients); for scheduled backups a systemd timer runs `dbctl backup` in a repo of
//! the one database written on the machine ([`write_schedule_repo`], [`sync_units`]).
//! On `local` that is this binary; on other machines (`ssh` hosts, the nodes of
//! resource groups) a copy of it, [`install`]ed at [`path`]. A point-in-time recovery
//! puts the archived WAL it replays on the machine ([`fetch_wal`]). Shared by the host
//! platforms and the resource groups.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use minijinja::Value;
use secrecy::ExposeSecret;

use super::Progress;
use crate::catalog::EngineKind;
use crate::spec::{Config, Spec};
use crate::transport::{CommandSpec, Transport};

/// The configuration file of `dbctl wal-push`, in the instance's configuration
/// directory.
pub const WAL_PUSH_CONFIG: &str = "wal-push.json";

/// Whether `spec`'s server archives WAL: PostgreSQL with a backup store, unless
/// `backup.archive_wal: false`.
pub fn archives(config: &Config, spec: &Spec) -> bool {
    spec.engine == EngineKind::Postgresql
        && spec.backup.as_ref().and_then(|b| b.archive_wal) != Some(false)
        && crate::backup::store_of(config, spec).is_some()
}

/// What [`crate::platform::Platform::wal_archive`] reports: the store PostgreSQL
/// archives to, `off`, or `None` for other engines.
pub fn wal_archive(config: &Config, spec: &Spec) -> Option<String> {
    (spec.engine == EngineKind::Postgresql).then(|| {
        if archives(config, spec) {
            crate::backup::store_of(config, spec).unwrap_or_default()
        } else {
            "off".to_owned()
        }
    })
}

/// Where a machine runs dbctl: this binary when `local`; else a copy of it in
/// `<state_dir>/.dbctl/bin/dbctl-<first 16 hex digits of its SHA-256>`, so a newer
/// dbctl installs beside the old one.
///
/// # Errors
/// This binary cannot be found or read.
pub fn path(state_dir: &Path, local: bool) -> Result<PathBuf> {
    static DIGEST: std::sync::OnceLock<std::result::Result<String, String>> =
        std::sync::OnceLock::new();
    let exe = std::env::current_exe().context("cannot find the dbctl binary")?;
    if local {
        return Ok(exe);
    }
    let digest = DIGEST
        .get_or_init(|| {
            use sha2::Digest as _;
            use std::io::Read as _;
            let mut file = std::fs::File::open(&exe).map_err(|e| e.to_string())?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match file.read(&mut buf).map_err(|e| e.to_string())? {
                    0 => break,
                    n => hasher.update(&buf[..n]),
                }
            }
            Ok(hex::encode(hasher.finalize()))
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("cannot read the dbctl binary `{}`: {e}", exe.display()))?;
    Ok(state_dir
        .join(".dbctl/bin")
        .join(format!("dbctl-{}", &digest[..16])))
}

/// What needs dbctl on a machine, named in [`install`]'s messages.
#[derive(Debug, Clone, Copy)]
pub enum Purpose<'a> {
    /// PostgreSQL's WAL archiving of the named database (`dbctl wal-push`).
    WalArchiving(&'a str),
    /// The scheduled backups of the named database (`dbctl backup`).
    ScheduledBackups(&'a str),
}

/// Puts this dbctl at `path` on the machine (0755) unless it is there, after checking
/// the machine has this binary's architecture (`uname -m`); `purpose` names what
/// needs it in the message.
///
/// # Errors
/// Another architecture (naming both and the way out), or the copy fails.
pub fn install(t: &dyn Transport, path: &Path, purpose: Purpose<'_>) -> Result<()> {
    if t.exists(path) {
        return Ok(());
    }
    let out = t.run(&CommandSpec::new("uname", ["-m"]))?;
    let arch = out.stdout.trim();
    if arch != std::env::consts::ARCH {
        let (what, verb, way_out) = match purpose {
            Purpose::WalArchiving(name) => (
                format!("PostgreSQL's WAL archiving of `{name}`"),
                "wal-push",
                "set `backup: { archive_wal: false }`",
            ),
            Purpose::ScheduledBackups(name) => (
                format!("the scheduled backups of `{name}`"),
                "backup",
                "remove `backup.schedule` and run `dbctl backup` from cron or CI",
            ),
        };
        bail!(
            "{what} runs dbctl on {} (`dbctl {verb}`), which is {arch} while this dbctl is {}: run dbctl from a {arch} machine, or {way_out}",
            t.host(),
            std::env::consts::ARCH
        );
    }
    let exe = std::env::current_exe().context("cannot find the dbctl binary")?;
    let bytes = std::fs::read(&exe)
        .with_context(|| format!("cannot read the dbctl binary `{}`", exe.display()))?;
    if let Some(dir) = path.parent() {
        t.make_dir(dir, 0o755, None)?;
    }
    t.write_file(path, &bytes, 0o755, None)?;
    Ok(())
}

/// The store `spec`'s backups go to when no flag names one ([`crate::backup::store_of`])
/// with its entry as this repo (at `root`) configures it: the `backup_stores` entry, or
/// on an `openstack` target its own `backup-<name>` container through the target's
/// openrc. `None` when the database has no store.
///
/// # Errors
/// A store that is not in etc/dbctl.yml, or an openstack target without `openrc` or
/// whose openrc cannot be read (a link included) or lacks credentials.
pub fn default_store(
    config: &Config,
    root: &Path,
    spec: &Spec,
) -> Result<Option<(String, crate::backup::StoreConfig)>> {
    let Some(name) = crate::backup::store_of(config, spec) else {
        return Ok(None);
    };
    if let Some(store) = config.backup_stores.get(&name) {
        return Ok(Some((name, store.clone())));
    }
    let target = config
        .target(&spec.target)
        .filter(|_| {
            crate::backup::cloud_default(config, &spec.target, &spec.name).as_ref() == Some(&name)
        })
        .with_context(|| format!("backup store `{name}` is not in etc/dbctl.yml"))?;
    let openrc = target.cloud.openrc.as_deref().with_context(|| {
        format!(
            "`targets.{}.openrc` in etc/dbctl.yml is missing: the backups of `{}` go to its Swift container (`{name}`) through it",
            target.name, spec.name
        )
    })?;
    // Read as every repo file is, without following links: a link is refused here
    // rather than followed when the machine's credentials are made from it.
    super::openstack::credentials(root, target)?;
    let store = crate::backup::StoreConfig::SwiftKeystone {
        openrc: root.join(openrc),
        container: super::cloud::Names::new(&spec.name).backup_container,
        prefix: String::new(),
        secret: None,
    };
    Ok(Some((name, store)))
}

/// Reads the secret of `store` (named `name`) as [`store_for_machine`] will: a Keystone
/// store's credentials (its openrc and password), another store's secret.
///
/// # Errors
/// What is missing or unreadable, naming the store.
fn check_secret(name: &str, store: &crate::backup::StoreConfig) -> Result<()> {
    if let crate::backup::StoreConfig::SwiftKeystone { openrc, secret, .. } = store {
        crate::backup::store::keystone_credentials(name, openrc, secret.as_ref())?;
    } else if let Some(source) = store.secret() {
        source.read(name)?;
    }
    Ok(())
}

/// Where a machine running dbctl on its own (the server's `archive_command`, a
/// scheduled backup) reads a store's credentials from: files only `owner` reads.
pub struct MachineSecret<'p> {
    /// The store's secret (a Keystone store's password), 0600.
    pub secret: &'p Path,
    /// A Keystone store's openrc, without the password, 0600.
    pub openrc: &'p Path,
    /// Who owns both (`None`: the transport's user).
    pub owner: Option<&'p str>,
}

/// `store` (named `name`) as a machine gets it, its credentials written to `files`:
/// the secret as a file of its own; a Keystone store's credentials as an openrc without
/// the password, with the password as the secret (the openrc and the environment here
/// give them). Returns the machine's entry for the store.
///
/// # Errors
/// The secret or the credentials cannot be read, or the files cannot be written.
pub fn store_for_machine(
    t: &dyn Transport,
    name: &str,
    store: crate::backup::StoreConfig,
    files: &MachineSecret<'_>,
) -> Result<crate::backup::StoreConfig> {
    let secret_file = crate::backup::store::SecretSource::File(files.secret.to_owned());
    Ok(match store {
        crate::backup::StoreConfig::SwiftKeystone {
            openrc,
            container,
            prefix,
            secret,
        } => {
            let (text, password) =
                crate::backup::store::keystone_credentials(name, &openrc, secret.as_ref())?
                    .split_for_machine();
            t.write_file(
                files.secret,
                password.expose_secret().as_bytes(),
                0o600,
                files.owner,
            )?;
            t.write_file(files.openrc, text.as_bytes(), 0o600, files.owner)?;
            crate::backup::StoreConfig::SwiftKeystone {
                openrc: files.openrc.to_owned(),
                container,
                prefix,
                secret: Some(secret_file),
            }
        }
        store => match store.secret() {
            Some(source) => {
                let value = source.read(name)?;
                t.write_file(
                    files.secret,
                    value.expose_secret().as_bytes(),
                    0o600,
                    files.owner,
                )?;
                store.with_secret(secret_file)
            }
            None => store,
        },
    })
}

/// What the scheduled backups of `spec` on `machine` (named in messages) need from
/// this repo (at `root`): its `repo_id`, and the database's store ([`default_store`]),
/// named in the machine's repo as here (an openstack target's own container by the
/// container's name).
///
/// # Errors
/// No `repo_id` in etc/dbctl.yml, or what [`default_store`] finds missing or unknown.
pub fn schedule_store(
    config: &Config,
    root: &Path,
    spec: &Spec,
    machine: &str,
) -> Result<(String, String, crate::backup::StoreConfig)> {
    let repo_id = config.repo_id.clone().with_context(|| {
        format!(
            "scheduled backups of `{}` run on {machine} in a repo of their own, which needs `repo_id` in etc/dbctl.yml (`dbctl init` writes one): add `repo_id: <8 to 64 of a-z, 0-9, ->`",
            spec.name
        )
    })?;
    let Some((name, store)) = default_store(config, root, spec)? else {
        bail!(
            "`{}` has a backup schedule but no backup store: name one in `backup.store`, the target's `backup_store` or `defaults.backup_store`",
            spec.name
        );
    };
    // `<target>/backup-<name>`: the machine's repo knows the one store by its container.
    let name = name.rsplit('/').next().unwrap_or_default().to_owned();
    Ok((repo_id, name, store))
}

/// Checks before anything changes what [`write_schedule_repo`] will need when `spec`
/// has a backup schedule: [`schedule_store`] and the store's secret (a Keystone
/// store's credentials).
///
/// # Errors
/// What is missing, naming it.
pub fn check_schedule(config: &Config, root: &Path, spec: &Spec, machine: &str) -> Result<()> {
    if spec
        .backup
        .as_ref()
        .and_then(|b| b.schedule.as_ref())
        .is_none()
    {
        return Ok(());
    }
    let (_, name, store) = schedule_store(config, root, spec, machine)?;
    check_secret(&name, &store)
}

/// The repo of one database that its scheduled backups run `dbctl backup` in, on the
/// machine that runs them.
pub struct ScheduleRepo {
    /// Its root (root's, 0700).
    pub root: PathBuf,
    /// Where the store's secret goes (0600), when the store has one.
    pub secret: PathBuf,
    /// The database's target as the machine sees it (its `etc/dbctl.yml` entry, under
    /// the same name so manifests name it).
    pub target: serde_json::Value,
    /// Further files: path in the repo → text.
    pub files: Vec<(String, String)>,
}

/// Writes `repo` on the machine: `etc/dbctl.yml` with this repo's (at `root`)
/// `repo_id` and recipients, the target, the database's store (its secret in
/// `repo.secret`; a Keystone store's openrc, without the password, in `files/`);
/// `etc/engines.yml` and `etc/plans.yml` as this repo resolves them, the engine's
/// `local/<engine>/backup.yml` playbook, the spec with its store named, and
/// `repo.files`.
///
/// # Errors
/// What [`schedule_store`] finds missing, an unreadable secret, or the files cannot
/// be written.
pub fn write_schedule_repo(
    t: &dyn Transport,
    assets: &crate::assets::Assets,
    (config, root): (&Config, &Path),
    spec: &Spec,
    repo: &ScheduleRepo,
) -> Result<()> {
    let (repo_id, store_name, store) = schedule_store(config, root, spec, t.host())?;
    t.make_dir(&repo.root, 0o700, None)?;
    t.make_dir(&repo.root.join("files"), 0o700, None)?;
    let store = store_for_machine(
        t,
        &store_name,
        store,
        &MachineSecret {
            secret: &repo.secret,
            openrc: &repo.root.join("files/openrc.sh"),
            owner: None,
        },
    )?;
    let mut files = Vec::new();
    let dbctl_yml = serde_json::json!({
        "repo_id": repo_id,
        "default_target": spec.target,
        "targets": { &spec.target: repo.target },
        "backup_stores": { &store_name: store.to_raw() },
        "secrets": { "recipients": config.recipients },
    });
    let mut local = spec.clone();
    let mut policy = local.backup.clone().unwrap_or_default();
    policy.store = Some(store_name);
    local.backup = Some(policy);
    let header = "# Written by dbctl: the repo this machine's scheduled backups run in.\n";
    files.extend([
        (
            "etc/dbctl.yml".to_owned(),
            format!("{header}{}", serde_saphyr::to_string(&dbctl_yml)?),
        ),
        (format!("etc/databases/{}.yml", spec.name), local.to_yaml()),
    ]);
    for name in ["engines.yml", "plans.yml"] {
        if let Some(asset) = assets.get(crate::assets::Tree::Etc, name)? {
            files.push((format!("etc/{name}"), asset.text));
        }
    }
    let playbook = format!("local/{}/backup.yml", spec.engine.as_str());
    if let Some(asset) = assets.get(crate::assets::Tree::Playbooks, &playbook)? {
        files.push((format!("playbooks/{playbook}"), asset.text));
    }
    files.extend(repo.files.iter().cloned());
    for (rel, text) in files {
        let path = repo.root.join(rel);
        if let Some(dir) = path.parent() {
            t.make_dir(dir, 0o700, None)?;
        }
        t.write_file(&path, text.as_bytes(), 0o600, None)?;
    }
    Ok(())
}

/// The name of the systemd units of `name`'s scheduled backups:
/// `dbctl-backup-<repo_id>-<name>`, so databases of two repos on one machine differ.
pub fn unit_stem(config: &Config, name: &str) -> String {
    format!(
        "dbctl-backup-{}-{name}",
        config.repo_id.as_deref().unwrap_or("repo")
    )
}

/// The systemd units of a database's scheduled backups on a machine.
pub struct Units {
    /// The oneshot service running `dbctl backup`.
    pub service: PathBuf,
    /// The timer starting it.
    pub timer: PathBuf,
}

/// What the scheduled backups' units run.
pub struct UnitsContext<'a> {
    /// The `backup.schedule` text.
    pub schedule: &'a str,
    /// The dbctl binary on the machine.
    pub dbctl: &'a Path,
    /// The repo it runs in.
    pub repo: &'a Path,
    /// `DBCTL_STATE_DIR` of the run.
    pub state_dir: &'a Path,
    /// A file the service needs to run (`ConditionPathExists=`): where a resource
    /// group's filesystem is mounted, so only the node running it backs up.
    pub condition: Option<&'a Path>,
}

/// Renders the units of `spec`'s scheduled backups from `local/backup.service.j2` and
/// `local/backup.timer.j2`: a oneshot service running `dbctl --repo R backup NAME`
/// and a timer with the schedule's `OnCalendar=` and `Persistent=true` (a missed run
/// runs at boot). Returns `(service, timer)`.
///
/// # Errors
/// An invalid schedule (naming `backup.schedule`), a template that fails.
pub fn render_units(
    renderer: &crate::render::Renderer,
    spec: &Spec,
    ctx: &UnitsContext<'_>,
) -> Result<(String, String)> {
    let schedule = crate::backup::schedule::Schedule::parse(ctx.schedule)
        .map_err(|m| anyhow::anyhow!("`{}`: backup.schedule {m}", spec.name))?;
    let ctx = minijinja::context! {
        spec => Value::from(minijinja::value::Serde(spec)),
        schedule => minijinja::context! {
            text => ctx.schedule,
            on_calendar => schedule.on_calendar(),
        },
        dbctl => ctx.dbctl.to_string_lossy(),
        repo => ctx.repo.to_string_lossy(),
        state_dir => ctx.state_dir.to_string_lossy(),
        condition => ctx.condition.map(|p| p.to_string_lossy().into_owned()),
    };
    Ok((
        renderer.render("local/backup.service.j2", &ctx)?,
        renderer.render("local/backup.timer.j2", &ctx)?,
    ))
}

/// Makes `units` on the machine what `texts` (`(service, timer)`) say: written
/// (0644), and where systemd runs (`/run/systemd/system`) linked and the timer enabled
/// with `systemctl` (`--user` unless root); `None` disables the timer and removes both.
///
/// # Errors
/// The units cannot be written or removed, or `systemctl` fails.
pub fn sync_units(t: &dyn Transport, units: &Units, texts: Option<(&str, &str)>) -> Result<()> {
    let systemd = t.exists(Path::new("/run/systemd/system"));
    let user = !t.is_root();
    let systemctl = |args: &[&str]| -> Result<()> {
        let mut all: Vec<String> = Vec::new();
        if user {
            all.push("--user".into());
        }
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let out = t.run(&CommandSpec::new("systemctl", all))?;
        if !out.success() {
            bail!(
                "`systemctl {}` failed on {}: {}",
                args.join(" "),
                t.host(),
                out.stderr.trim()
            );
        }
        Ok(())
    };
    let timer_name = units
        .timer
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((service_text, timer_text)) = texts else {
        if t.exists(&units.timer) {
            if systemd {
                // Gone already is fine: the files go either way.
                let _ = systemctl(&["disable", "--now", &timer_name]);
            }
            t.remove_all(&units.service)?;
            t.remove_all(&units.timer)?;
        }
        return Ok(());
    };
    if let Some(dir) = units.timer.parent() {
        t.make_dir(dir, 0o755, None)?;
    }
    t.write_file(&units.service, service_text.as_bytes(), 0o644, None)?;
    t.write_file(&units.timer, timer_text.as_bytes(), 0o644, None)?;
    if systemd {
        systemctl(&[
            "link",
            &units.service.to_string_lossy(),
            &units.timer.to_string_lossy(),
        ])?;
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", &timer_name])?;
    }
    Ok(())
}

/// The templates' `wal_archive`: `command`, the server's `archive_command` running
/// `agent` as `dbctl wal-push` with `conf_dir`'s [`WAL_PUSH_CONFIG`].
pub fn archive_context(agent: &Path, conf_dir: &Path) -> Value {
    let command = format!(
        "{} wal-push --config {} %p %f",
        crate::render::sh_quote(&agent.to_string_lossy()),
        crate::render::sh_quote(&conf_dir.join(WAL_PUSH_CONFIG).to_string_lossy())
    );
    minijinja::context! { command => command }
}

/// Writes what `dbctl wal-push` needs of `spec`'s store ([`default_store`], this repo at
/// `root`) into `conf_dir` (0600, `owner`'s): the store with its secret in
/// `wal-push.secret` (a Keystone store's openrc, without the password, in
/// `wal-push.openrc`), the recipients. Returns the configuration's path and the
/// store's name; `None` when `spec` archives no WAL.
///
/// # Errors
/// The store is unknown, its secret or credentials cannot be read, or the files
/// cannot be written.
pub fn write_wal_push(
    t: &dyn Transport,
    (config, root): (&Config, &Path),
    spec: &Spec,
    conf_dir: &Path,
    owner: Option<&str>,
) -> Result<Option<(PathBuf, String)>> {
    if !archives(config, spec) {
        return Ok(None);
    }
    let Some((name, store)) = default_store(config, root, spec)? else {
        return Ok(None);
    };
    let store = store_for_machine(
        t,
        &name,
        store,
        &MachineSecret {
            secret: &conf_dir.join("wal-push.secret"),
            openrc: &conf_dir.join("wal-push.openrc"),
            owner,
        },
    )?;
    let push = crate::backup::WalPush {
        database: spec.name.clone(),
        store_name: name.clone(),
        store,
        recipients: config.recipients.clone(),
    };
    let path = conf_dir.join(WAL_PUSH_CONFIG);
    t.write_file(&path, &serde_json::to_vec_pretty(&push)?, 0o600, owner)?;
    Ok(Some((path, name)))
}

/// Runs `agent wal-push --check` with `config_path` as `owner` on the machine: a store
/// the machine cannot reach fails the change now, not the server's archiving later.
///
/// # Errors
/// The check fails (its message names the store and the machine).
pub fn check_wal_push(
    t: &dyn Transport,
    agent: &Path,
    config_path: &Path,
    owner: Option<&str>,
    database: &str,
    store: &str,
) -> Result<()> {
    let cwd = config_path.parent().unwrap_or(Path::new("/"));
    let check = CommandSpec::new(
        agent.to_string_lossy().into_owned(),
        [
            "--quiet".to_owned(),
            "wal-push".to_owned(),
            "--check".to_owned(),
            "--config".to_owned(),
            config_path.to_string_lossy().into_owned(),
        ],
    )
    .cwd(cwd)
    .run_as(owner)
    .timeout(std::time::Duration::from_mins(2));
    let out = t.run(&check)?;
    if !out.success() {
        bail!(
            "PostgreSQL's WAL archiving of `{database}` cannot reach backup store `{store}` from {}: {}; make the store reachable from there, or set `backup: {{ archive_wal: false }}`",
            t.host(),
            out.stderr.trim()
        );
    }
    Ok(())
}

/// A store PostgreSQL archives WAL into ([`default_store`], this repo at `root`) must
/// give its credentials to the machine ([`store_for_machine`] reads them) and take WAL
/// from the server's user `user`: a `dir` store's nearest existing directory of
/// `<store>/<name>/wal` must be writable by it (else archiving fails later, quietly, in
/// the server log).
///
/// # Errors
/// Either, naming the fixes.
pub fn check_store(
    t: &dyn Transport,
    (config, root): (&Config, &Path),
    spec: &Spec,
    user: Option<&str>,
) -> Result<()> {
    if !archives(config, spec) {
        return Ok(());
    }
    let Some((name, store)) = default_store(config, root, spec)? else {
        return Ok(());
    };
    check_secret(&name, &store).with_context(|| {
        format!(
            "PostgreSQL's WAL archiving of `{}` needs the credentials of backup store `{name}`, or set `backup: {{ archive_wal: false }}`",
            spec.name
        )
    })?;
    let crate::backup::StoreConfig::Dir { path } = store else {
        return Ok(());
    };
    let Some(user) = user else {
        return Ok(());
    };
    let wal = path.join(&spec.name).join(crate::backup::WAL_DIR);
    let probe = CommandSpec::new(
        "sh",
        [
            "-c".to_owned(),
            r#"d=$1; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; [ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ]"#.to_owned(),
            "sh".to_owned(),
            wal.to_string_lossy().into_owned(),
        ],
    )
    .run_as(Some(user));
    if !t.run(&probe)?.success() {
        bail!(
            "backup store `{name}` (`{}`) is not writable by `{user}` on {}, which runs PostgreSQL's WAL archiving for `{}`: make `{}` writable by `{user}`, use a swift or s3 store, or set `backup: {{ archive_wal: false }}`",
            path.display(),
            t.host(),
            spec.name,
            wal.display()
        );
    }
    Ok(())
}

/// Puts the archived WAL a point-in-time recovery replays into `dir` on the machine
/// (emptied first; 0700/0600, `owner`'s), one file a step of `progress`; returns the
/// restore playbook's `recovery` (`target_time`, `restore_command`, `wal_dir`).
///
/// # Errors
/// A WAL file cannot be fetched from the store or written.
pub fn fetch_wal(
    t: &dyn Transport,
    dir: &Path,
    owner: Option<&str>,
    recovery: &super::Recovery<'_>,
    progress: Progress<'_>,
) -> Result<Value> {
    t.remove_all(dir)?;
    t.make_dir(dir, 0o700, owner)?;
    let total = recovery.wal.len();
    for (i, name) in recovery.wal.iter().enumerate() {
        progress(i + 1, total, &format!("Fetch WAL {name}"));
        let bytes = (recovery.fetch)(name)?;
        t.write_file(&dir.join(name), &bytes, 0o600, owner)?;
    }
    let restore_command = format!(
        "cp {}/%f %p",
        crate::render::sh_quote(&dir.to_string_lossy())
    );
    Ok(minijinja::context! {
        recovery => minijinja::context! {
            target_time => recovery.target_time.clone(),
            restore_command => restore_command,
            wal_dir => dir.to_string_lossy().into_owned(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENRC: &str = "export OS_AUTH_URL=http://127.0.0.1:5000/v3\nexport OS_USERNAME=db\nexport OS_PASSWORD=secret\nexport OS_PROJECT_NAME=db\n";

    /// A repo at a temporary root with an openstack target `cloud` whose openrc is
    /// `files/openrc.sh`, and a PostgreSQL spec `ledger` on it naming no store.
    fn repo() -> (tempfile::TempDir, Config, Spec) {
        let root = tempfile::tempdir().unwrap();
        let catalog = crate::catalog::Catalog::load(&crate::assets::Assets::new(None)).unwrap();
        let config = Config::parse(
            "default_target: cloud\ntargets:\n  cloud:\n    platform: openstack\n    openrc: files/openrc.sh\n",
            Path::new("etc/dbctl.yml"),
            &catalog,
        )
        .unwrap();
        let spec = crate::spec::Draft::parse(
            "name: ledger\nengine: postgresql\nversion: \"15\"\nsize_gb: 1\ntarget: cloud\n",
            Path::new("etc/databases/ledger.yml"),
        )
        .unwrap()
        .validate(&catalog, &config, &|_, _| None)
        .unwrap();
        std::fs::create_dir(root.path().join("files")).unwrap();
        (root, config, spec)
    }

    #[test]
    fn an_openstack_database_archives_into_its_own_container_through_the_target_openrc() {
        let (root, config, spec) = repo();
        std::fs::write(root.path().join("files/openrc.sh"), OPENRC).unwrap();
        assert!(archives(&config, &spec));
        let (name, store) = default_store(&config, root.path(), &spec).unwrap().unwrap();
        assert_eq!(name, "cloud/backup-ledger");
        let crate::backup::StoreConfig::SwiftKeystone {
            openrc, container, ..
        } = store
        else {
            panic!("not a Keystone store: {store:?}");
        };
        assert_eq!(openrc, root.path().join("files/openrc.sh"));
        assert_eq!(container, "backup-ledger");
    }

    #[test]
    fn an_openrc_that_is_a_link_is_refused_not_followed() {
        let (root, config, spec) = repo();
        let elsewhere = root.path().join("elsewhere.sh");
        std::fs::write(&elsewhere, OPENRC).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.path().join("files/openrc.sh")).unwrap();
        let err = default_store(&config, root.path(), &spec).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("targets.cloud.openrc") && message.contains("link"),
            "{message}"
        );
    }
}
