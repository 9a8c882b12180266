//! dbctl on the database's machines, for PostgreSQL's continuous WAL archiving: the
//! server's `archive_command` runs `dbctl wal-push` with a configuration file beside
//! the data (`wal-push.json`: the store, its secret in a file of its own, the repo's
//! recipients). On `local` that is this binary; on other machines (`ssh` hosts, the
//! nodes of resource groups) a copy of it, [`install`]ed at [`path`]. A point-in-time
//! recovery puts the archived WAL it replays on the machine ([`fetch_wal`]). Shared by
//! the host platforms and the resource groups.

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

/// Puts this dbctl at `path` on the machine (0755) unless it is there, after checking
/// the machine has this binary's architecture (`uname -m`); `database` names what
/// needs it in the message.
///
/// # Errors
/// Another architecture (naming both and the way out), or the copy fails.
pub fn install(t: &dyn Transport, path: &Path, database: &str) -> Result<()> {
    if t.exists(path) {
        return Ok(());
    }
    let out = t.run(&CommandSpec::new("uname", ["-m"]))?;
    let arch = out.stdout.trim();
    if arch != std::env::consts::ARCH {
        bail!(
            "PostgreSQL's WAL archiving of `{database}` runs dbctl on {} (`dbctl wal-push`), which is {arch} while this dbctl is {}: run dbctl from a {arch} machine, or set `backup: {{ archive_wal: false }}`",
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

/// Writes what `dbctl wal-push` needs of `spec`'s store into `conf_dir` (0600,
/// `owner`'s): the store with its secret in `wal-push.secret`, the recipients. Returns
/// the configuration's path and the store's name; `None` when `spec` archives no WAL.
///
/// # Errors
/// The store's secret cannot be read, or the files cannot be written.
pub fn write_wal_push(
    t: &dyn Transport,
    config: &Config,
    spec: &Spec,
    conf_dir: &Path,
    owner: Option<&str>,
) -> Result<Option<(PathBuf, String)>> {
    if !archives(config, spec) {
        return Ok(None);
    }
    let Some(name) = crate::backup::store_of(config, spec) else {
        return Ok(None);
    };
    let Some(store) = config.backup_stores.get(&name) else {
        return Ok(None);
    };
    let secret_path = conf_dir.join("wal-push.secret");
    let store = match store.secret() {
        Some(source) => {
            let value = source.read(&name)?;
            t.write_file(&secret_path, value.expose_secret().as_bytes(), 0o600, owner)?;
            store
                .clone()
                .with_secret(crate::backup::store::SecretSource::File(secret_path))
        }
        None => store.clone(),
    };
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

/// A store PostgreSQL archives WAL into must take it from the server's user `user`:
/// a `dir` store's nearest existing directory of `<store>/<name>/wal` must be writable
/// by it (else archiving fails later, quietly, in the server log), and a Keystone
/// Swift store cannot take WAL yet.
///
/// # Errors
/// Either, naming the fixes.
pub fn check_store(
    t: &dyn Transport,
    config: &Config,
    spec: &Spec,
    user: Option<&str>,
) -> Result<()> {
    if !archives(config, spec) {
        return Ok(());
    }
    let Some(name) = crate::backup::store_of(config, spec) else {
        return Ok(());
    };
    if let Some(crate::backup::StoreConfig::SwiftKeystone { .. }) = config.backup_stores.get(&name)
    {
        // `dbctl wal-push` runs as the service user from the server's
        // archive_command, without the operator's openrc or environment.
        bail!(
            "backup store `{name}` authenticates with Keystone (`openrc`), which PostgreSQL's WAL archiving of `{}` cannot do yet: give the database a tempauth swift, s3 or dir store, or set `backup: {{ archive_wal: false }}` (base backups to `{name}` work)",
            spec.name
        );
    }
    let Some(crate::backup::StoreConfig::Dir { path }) = config.backup_stores.get(&name) else {
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
