//! `dbctl backup`, `dbctl backups` and `dbctl restore`: physical backups through the
//! admin channel ([`crate::platform::Admin::backup`]) into a backup store, sealed on
//! the way ([`crate::backup::Sealer`]), and restores through the change path
//! ([`super::create::converge`] with a `-/+ data` change), in place, into a new
//! database (`--as`) or into another target (the disaster-recovery case).

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Session;
use super::create::{Converged, Gate, Restoring, converge};
use crate::backup::{self, BackupKind, Manifest, ObjectEntry, Store};
use crate::change::{Action, Change, Disruption};
use crate::gitops::Repo;
use crate::output::Report;
use crate::spec::{Draft, PlatformKind, Spec};

/// The store a database's backups go to: `--store`, else the spec's `backup.store`,
/// else its target's `backup_store`, else `defaults.backup_store`, else — on an
/// `openstack` target — the Swift container its data stack makes
/// (`<target>/backup-<name>`, [`backup::cloud_default`]).
///
/// # Errors
/// None is configured, or `--store` names an unknown one.
pub fn store_name(repo: &Repo, spec: &Spec, flag: Option<&str>) -> Result<String> {
    let config = &repo.config;
    let name = flag
        .map(str::to_owned)
        .or_else(|| backup::store_of(config, spec));
    let Some(name) = name else {
        bail!(
            "`{}` has no backup store: pass `--store`, or set `backup: {{ store: … }}` in its spec, `backup_store` on target `{}` or `defaults.backup_store`; stores: {}",
            spec.name,
            spec.target,
            stores(config)
        );
    };
    known_store(config, name)
}

/// `TARGET/CONTAINER` naming an openstack target's own backup container
/// (`backup-<name>`), as [`backup::cloud_default`] makes them: the target and the container.
fn cloud_container<'n>(
    config: &'n crate::spec::Config,
    name: &'n str,
) -> Option<(&'n crate::spec::Target, &'n str)> {
    let (target, container) = name.split_once('/')?;
    let t = config.target(target)?;
    (t.platform == PlatformKind::Openstack
        && container
            .strip_prefix("backup-")
            .is_some_and(|db| crate::spec::check_name(db).is_ok()))
    .then_some((t, container))
}

/// The configured stores, for messages.
fn stores(config: &crate::spec::Config) -> String {
    let mut names: Vec<_> = config.backup_stores.keys().cloned().collect();
    names.extend(
        config
            .targets
            .values()
            .filter(|t| t.platform == PlatformKind::Openstack)
            .map(|t| format!("{}/backup-<database>", t.name)),
    );
    if names.is_empty() {
        "none: add one under `backup_stores` in etc/dbctl.yml".to_owned()
    } else {
        names.join(", ")
    }
}

/// `name` when `backup_stores` has it, or it names an openstack target's container.
///
/// # Errors
/// An unknown store, listing the allowed ones.
fn known_store(config: &crate::spec::Config, name: String) -> Result<String> {
    if !config.backup_stores.contains_key(&name) && cloud_container(config, &name).is_none() {
        bail!("unknown backup store `{name}`; allowed: {}", stores(config));
    }
    Ok(name)
}

/// A database's spec (`None`: it was deleted) and the store its backups are in. A
/// deleted database's backups are found by `--store`, else `--target`'s
/// `backup_store`, else `defaults.backup_store`.
///
/// # Errors
/// A bad name, no store to look in, or an unknown one.
fn spec_and_store(
    repo: &Repo,
    name: &str,
    store: Option<&str>,
    target: Option<&str>,
) -> Result<(Option<Spec>, String)> {
    crate::spec::check_name(name).map_err(|m| anyhow::anyhow!("database name {m}"))?;
    if let Some(spec) = repo.load_spec(name)? {
        let store = store_name(repo, &spec, store)?;
        return Ok((Some(spec), store));
    }
    let config = &repo.config;
    let chosen = store
        .map(str::to_owned)
        .or_else(|| {
            target
                .and_then(|t| config.target(t))
                .and_then(|t| t.backup_store.clone())
        })
        .or_else(|| config.default_backup_store.clone())
        .or_else(|| target.and_then(|t| backup::cloud_default(config, t, name)));
    let Some(chosen) = chosen else {
        bail!(
            "no database `{name}`: `{}` does not exist; to find the backups of a deleted database pass `--store` (stores: {})",
            Repo::spec_rel(name).display(),
            stores(config)
        );
    };
    Ok((None, known_store(config, chosen)?))
}

/// Which backup a restore or a drill takes.
pub(super) struct Lookup<'a> {
    /// The database (deleted ones too).
    pub name: &'a str,
    /// `--store`.
    pub store: Option<&'a str>,
    /// `--target`.
    pub target: Option<&'a str>,
    /// `--backup ID`.
    pub backup: Option<&'a str>,
    /// `--to-time`, as given and as parsed.
    pub to_time: Option<(&'a str, jiff::Timestamp)>,
}

/// A backup found by [`find_backup`].
pub(super) struct Found {
    /// The database's spec: its file's, or (deleted) the one the backup recorded,
    /// moved to `--target`.
    pub source: Spec,
    /// The store's name.
    pub store_name: String,
    /// The store.
    pub store: Store,
    /// The backup.
    pub manifest: Manifest,
}

/// Resolves the store, lists the database's backups, picks one ([`choose`]) and the
/// spec to restore it as ([`recorded_spec`] once the database was deleted).
///
/// # Errors
/// As [`spec_and_store`], [`open_store`], [`choose`] and [`recorded_spec`].
pub(super) fn find_backup(session: &Session, repo: &Repo, lookup: &Lookup<'_>) -> Result<Found> {
    let (existing, store_name) = spec_and_store(repo, lookup.name, lookup.store, lookup.target)?;
    let store = open_store(session, repo, &store_name)?;
    let (manifests, _) = backup::list(&store, lookup.name)?;
    let manifest = choose(
        &manifests,
        lookup.name,
        &store_name,
        lookup.backup,
        lookup.to_time,
    )?
    .clone();
    let source = match existing {
        Some(spec) => spec,
        None => recorded_spec(repo, &manifest, lookup.target)?,
    };
    Ok(Found {
        source,
        store_name,
        store,
        manifest,
    })
}

/// The spec a deleted database's backup recorded, moved to `--target` if given,
/// validated against this repo's catalog and targets.
///
/// # Errors
/// The backup records no spec, or it is not valid here (a target gone: name one with
/// `--target`).
fn recorded_spec(repo: &Repo, manifest: &Manifest, target: Option<&str>) -> Result<Spec> {
    let text = manifest.spec.as_deref().with_context(|| {
        format!(
            "backup `{}` records no spec, and `{}` does not exist: create `{}` with `dbctl create`, then restore in place",
            manifest.id,
            Repo::spec_rel(&manifest.database).display(),
            manifest.database
        )
    })?;
    let rel = Repo::spec_rel(&manifest.database);
    let mut draft = Draft::parse(text, &rel)
        .with_context(|| format!("the spec recorded in backup `{}`", manifest.id))?;
    if let Some(target) = target {
        draft.target = Some(crate::spec::Given {
            value: target.to_owned(),
            source: crate::spec::Source::Flag("--target"),
        });
    }
    draft
        .validate(&repo.catalog, &repo.config, &|_, _| None)
        .with_context(|| {
            format!(
                "the spec recorded in backup `{}` does not fit this repo (`--target` names where to restore)",
                manifest.id
            )
        })
}

/// Backups, restores and drills run where the platform says it can
/// ([`crate::change::Capabilities::backup`]): nothing may claim otherwise.
///
/// # Errors
/// Another platform, naming the target.
pub(super) fn check_platform(
    platform: &dyn crate::platform::Platform,
    spec: &Spec,
    verb: &str,
) -> Result<()> {
    if !platform.capabilities(spec).backup {
        bail!(
            "`dbctl {verb}` of `{}` on target `{}` (platform `{}`) is not built yet; it runs on `local`, `ssh`, `pacemaker` and `openstack` (`runtime: pacemaker`) targets",
            spec.name,
            spec.target,
            platform.kind()
        );
    }
    Ok(())
}

/// Opens a configured store with the run's runtime.
///
/// # Errors
/// As [`Store::open`].
pub fn open_store(session: &Session, repo: &Repo, name: &str) -> Result<Store> {
    if let Some(config) = repo.config.backup_stores.get(name) {
        return Ok(Store::open(name, config, session.runtime())?);
    }
    let (target, container) = cloud_container(&repo.config, name)
        .with_context(|| format!("unknown backup store `{name}`"))?;
    let creds = crate::platform::openstack::credentials(repo.root(), target)?;
    Ok(Store::open_keystone(
        name,
        &creds,
        container,
        session.runtime(),
    )?)
}

/// Flags of `dbctl backup`.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Database name.
    pub name: String,
    /// `--store`.
    pub store: Option<String>,
    /// `--type`: full, or incremental on the latest backup in the store.
    pub kind: BackupKind,
    /// Seconds to wait for another run's lock.
    pub lock_timeout_s: u64,
}

/// What `backup` did.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    /// The store.
    pub store: String,
    /// The new backup's manifest.
    pub manifest: Manifest,
    /// Seconds the backup took.
    pub seconds: f64,
    /// Interrupted earlier backups (no manifest) that were removed.
    pub removed_incomplete: Vec<String>,
    /// Backups the retention let go, removed.
    pub expired: Vec<String>,
}

impl Report for BackupReport {
    fn human(&self) -> String {
        let m = &self.manifest;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a rate of bytes, positive and far below 2^64"
        )]
        let rate = (m.raw_bytes as f64 / self.seconds.max(0.001)) as u64;
        let mut text = format!(
            "backed up `{}` as {} to store `{}`: {} read, {} stored, {:.1} s ({}/s)\n",
            m.database,
            m.id,
            self.store,
            crate::output::bytes(m.raw_bytes),
            crate::output::bytes(m.object.bytes),
            self.seconds,
            crate::output::bytes(rate)
        );
        for dir in &self.removed_incomplete {
            text.push_str(&format!("removed interrupted backup `{dir}`\n"));
        }
        for id in &self.expired {
            text.push_str(&format!("expired backup {id} (retention)\n"));
        }
        text
    }
}

/// Removes the backups of `spec` its retention lets go; returns their ids.
///
/// # Errors
/// The store fails.
fn expire(store: &Store, spec: &Spec) -> Result<Vec<String>> {
    let Some(policy) = spec.backup.as_ref().and_then(|b| b.retention.clone()) else {
        return Ok(Vec::new());
    };
    let (manifests, _) = backup::list(store, &spec.name)?;
    let mut removed = Vec::new();
    for manifest in backup::expired(&manifests, &policy, jiff::Timestamp::now()) {
        // The manifest first: a backup half-removed is an interrupted one, never listed.
        store.delete(&format!("{}{}", manifest.dir(), backup::MANIFEST_OBJECT))?;
        store.remove_all(&manifest.dir())?;
        removed.push(manifest.id.clone());
    }
    // WAL older than what the oldest kept backup replays from goes too; the kept
    // backups' WAL (and every timeline history) stays.
    let (kept, _) = backup::list(store, &spec.name)?;
    if !removed.is_empty()
        && let Some(from) = kept.first().and_then(|m| m.position.clone())
    {
        let needed = backup::wal_needed(store, &spec.name, &from)?;
        for name in store.list(&backup::wal_dir(&spec.name))? {
            let name = name.rsplit('/').next().unwrap_or(&name).to_owned();
            if !name.is_empty() && !needed.contains(&name) {
                store.delete(&format!("{}{name}", backup::wal_dir(&spec.name)))?;
            }
        }
    }
    Ok(removed)
}

/// `dbctl backup --dry-run`: the store is resolved and opened (its endpoint and
/// credentials proven by one listing), the platform's support checked and, for
/// `--type incr`, the backup it would build on found; nothing is backed up.
///
/// # Errors
/// As [`backup`] before it streams anything.
pub fn backup_dry_run(session: &Session, opts: &BackupOptions) -> Result<super::DryRun> {
    let repo = session.repo()?;
    let spec = session.existing_spec(&repo, &opts.name)?;
    let store_name = store_name(&repo, &spec, opts.store.as_deref())?;
    let recipients = crate::secret::parse_recipients(&repo.config.recipients)?;
    let store = open_store(session, &repo, &store_name)?;
    let platform = session.platform(&repo, &spec)?;
    check_platform(platform.as_ref(), &spec, "backup")?;
    let (kept, _) = backup::list(&store, &spec.name)?;
    let kind = match opts.kind {
        BackupKind::Full => "a full physical backup".to_owned(),
        BackupKind::Incr => {
            let (parent, _) = incremental_parent(session, &store, &store_name, &spec, &kept)?;
            format!("an incremental backup (on top of backup `{parent}`)")
        }
    };
    let mut would = vec![
        format!(
            "stream {kind} of `{}` ({} {}) from target `{}`",
            spec.name, spec.engine, spec.version, spec.target
        ),
        format!(
            "seal it (zstd, age to {} recipient(s), SHA-256) into store `{store_name}` ({}), next to its {} backup(s)",
            recipients.len(),
            repo.config.backup_stores.get(&store_name).map_or_else(
                || "the database's own container in its openstack target's project".to_owned(),
                crate::backup::store::describe
            ),
            kept.len()
        ),
    ];
    if let Some(retention) = spec.backup.as_ref().and_then(|b| b.retention.as_ref()) {
        would.push(format!(
            "then remove what `backup.retention` ({}) lets go",
            serde_json::to_string(retention)?
        ));
    }
    Ok(super::DryRun {
        verb: "backup".into(),
        database: spec.name,
        would,
    })
}

/// Runs `dbctl backup`: streams the engine's physical backup through zstd and age into
/// `<name>/<id>/data.zst.age`, then writes the manifest; removes interrupted backups.
///
/// # Errors
/// An unknown database or store, an unreachable store, or a failed backup (the store
/// is left without a manifest for it, so no backup claims success).
pub fn backup(session: &Session, opts: &BackupOptions) -> Result<BackupReport> {
    let repo = session.repo()?;
    let spec = session.existing_spec(&repo, &opts.name)?;
    let store_name = store_name(&repo, &spec, opts.store.as_deref())?;
    crate::secret::parse_recipients(&repo.config.recipients)?;
    let store = open_store(session, &repo, &store_name)?;
    let platform = session.platform(&repo, &spec)?;
    check_platform(platform.as_ref(), &spec, "backup")?;
    let _lock = super::lock(&repo, &spec.name, "backup", opts.lock_timeout_s)?;
    let admin = platform.admin(&spec)?;
    let (manifests, incomplete) = backup::list(&store, &spec.name)?;
    // An incremental backup builds on the latest backup in the store, with the
    // server's manifest of it (PostgreSQL 17 and later keep one beside each backup).
    let parent = match opts.kind {
        BackupKind::Full => None,
        BackupKind::Incr => Some(incremental_parent(
            session,
            &store,
            &store_name,
            &spec,
            &manifests,
        )?),
    };
    let started = jiff::Timestamp::now();
    let clock = std::time::Instant::now();
    let id = backup::new_id(started);
    let path = format!("{}/{id}/{}", spec.name, backup::DATA_OBJECT);
    let printer = &session.printer;
    printer.status(&format!(
        "backing up `{}` to store `{store_name}` as {id}",
        spec.name
    ));
    let wal = wal_position(admin.as_ref(), &spec);
    let transfer = printer.transfer(&format!("backing up `{}`", spec.name), None);
    // The latest full backup's size sizes the upload's parts.
    let expected = manifests
        .iter()
        .rev()
        .find(|m| m.kind == BackupKind::Full)
        .map(|m| m.object.bytes);
    let mut sealer = backup::Sealer::new(
        store.writer(&path, expected),
        &repo.config.recipients,
        Some(transfer.counter()),
    )?;
    let progress = |i: usize, n: usize, name: &str| printer.step(i, n, name);
    // PostgreSQL 17 and later: the server's `backup_manifest` (the tar's last member)
    // is kept beside the backup, for incremental backups on top of it.
    let tap_manifest = spec.engine == crate::catalog::EngineKind::Postgresql
        && spec
            .version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m >= 17);
    let base = parent.as_ref().map(|(_, base)| match base {
        ParentBase::Manifest(bytes) => crate::platform::IncrementalBase::Manifest(bytes),
        ParentBase::Lsn(lsn) => crate::platform::IncrementalBase::Lsn(lsn),
    });
    let taken = if tap_manifest {
        let mut tap = backup::TarTap::new(&mut sealer, "backup_manifest")?;
        let taken = admin.backup(&mut tap, &progress, base);
        let captured = tap.finish();
        taken.map(|t| (t, captured))
    } else {
        admin
            .backup(&mut sealer, &progress, base)
            .map(|t| (t, None))
    };
    let (taken, server_manifest) = match taken {
        Ok(taken) => taken,
        Err(err) => {
            drop(sealer);
            drop(transfer);
            let _ = store.remove_all(&format!("{}/{id}/", spec.name));
            return Err(err.context(format!(
                "backing up `{}` failed; no backup was recorded",
                spec.name
            )));
        }
    };
    let (raw_bytes, sealed) = sealer.finish().with_context(|| {
        format!(
            "backing up `{}`: storing it in `{store_name}` failed; no backup was recorded",
            spec.name
        )
    })?;
    drop(transfer);
    let backup_manifest = match server_manifest {
        Some(bytes) => Some(backup::seal_small(
            &store,
            &format!("{}/{id}/{}", spec.name, backup::BACKUP_MANIFEST_OBJECT),
            &repo.config.recipients,
            &bytes,
        )?),
        None => None,
    };
    let manifest = Manifest {
        format: backup::FORMAT,
        id: id.clone(),
        database: spec.name.clone(),
        engine: spec.engine,
        server_version: taken.server_version,
        version: spec.version.clone(),
        kind: opts.kind,
        parent: parent.map(|(id, _)| id),
        backup_manifest,
        target: spec.target.clone(),
        started_at: started,
        finished_at: jiff::Timestamp::now(),
        position: wal.or(taken.position),
        checkpoint_lsn: taken.checkpoint_lsn,
        format_of_stream: taken.format,
        raw_bytes,
        object: ObjectEntry {
            path,
            bytes: sealed.bytes,
            sha256: sealed.sha256,
        },
        recipients: repo.config.recipients.clone(),
        spec: Some(spec.to_yaml()),
        drills: Vec::new(),
    };
    store.put(
        &format!("{}{}", manifest.dir(), backup::MANIFEST_OBJECT),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    let mut removed = Vec::new();
    for dir in incomplete {
        if store.remove_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    let seconds = clock.elapsed().as_secs_f64();
    let expired = expire(&store, &spec)?;
    Ok(BackupReport {
        store: store_name,
        manifest,
        seconds,
        removed_incomplete: removed,
        expired,
    })
}

/// What an incremental backup's parent gives it (owned): see
/// [`crate::platform::IncrementalBase`].
enum ParentBase {
    Manifest(Vec<u8>),
    Lsn(String),
}

/// The backup an incremental one builds on — the latest of `spec`'s backups in the
/// store — and what the engine's tool needs of it: PostgreSQL's `backup_manifest`
/// (decrypted), MariaDB's checkpoint LSN.
///
/// # Errors
/// An engine without incremental backups (Redis); no backup yet, or one that kept
/// no `backup_manifest` (taken before PostgreSQL 17 or before dbctl kept it) or no
/// checkpoint LSN; the store or the identity failing.
fn incremental_parent(
    session: &Session,
    store: &Store,
    store_name: &str,
    spec: &Spec,
    manifests: &[Manifest],
) -> Result<(String, ParentBase)> {
    use crate::catalog::EngineKind;
    if !matches!(spec.engine, EngineKind::Postgresql | EngineKind::Mariadb) {
        bail!(
            "incremental backups (`--type incr`) are built for PostgreSQL 17 and later and MariaDB; `{}` is {}: take a full backup (`--type full`)",
            spec.name,
            spec.engine
        );
    }
    let latest = manifests.last().with_context(|| {
        format!(
            "`{}` has no backup in store `{store_name}` for an incremental backup to build on: take a full one first (`dbctl backup {}`)",
            spec.name, spec.name
        )
    })?;
    if spec.engine == EngineKind::Mariadb {
        let lsn = latest.checkpoint_lsn.clone().with_context(|| {
            format!(
                "the latest backup of `{}` in store `{store_name}` ({}) records no checkpoint LSN to build an incremental backup on: take a full backup (`--type full`)",
                spec.name, latest.id
            )
        })?;
        return Ok((latest.id.clone(), ParentBase::Lsn(lsn)));
    }
    let entry = latest.backup_manifest.as_ref().with_context(|| {
        format!(
            "the latest backup of `{}` in store `{store_name}` ({}, PostgreSQL {}) kept no `backup_manifest` to build an incremental backup on (PostgreSQL 17 and later keep one): take a full backup (`--type full`)",
            spec.name, latest.id, latest.server_version
        )
    })?;
    let bytes = backup::open_small(store, &entry.path, &session.identity, "backup_manifest")?;
    Ok((latest.id.clone(), ParentBase::Manifest(bytes)))
}

/// PostgreSQL: the WAL segment being written as the backup starts — the oldest a
/// point-in-time recovery from it replays (the backup starts in it or later).
fn wal_position(admin: &dyn crate::platform::Admin, spec: &Spec) -> Option<String> {
    if spec.engine != crate::catalog::EngineKind::Postgresql {
        return None;
    }
    let batch = "\\pset tuples_only on\n\\pset format unaligned\nselect pg_walfile_name(pg_current_wal_lsn());\n";
    let mut out = Vec::new();
    let (code, _) = admin
        .run(
            &mut std::io::Cursor::new(batch.as_bytes().to_vec()),
            &mut out,
            crate::platform::Role::Admin,
        )
        .ok()?;
    let name = String::from_utf8_lossy(&out).trim().to_owned();
    (code == 0 && name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit())).then_some(name)
}

/// Flags of `dbctl backups`.
#[derive(Debug, Clone)]
pub struct BackupsOptions {
    /// Database name.
    pub name: String,
    /// `--store`.
    pub store: Option<String>,
    /// `--expire`: remove what the retention lets go first.
    pub expire: bool,
}

/// One row of `backups`.
#[derive(Debug, Serialize)]
pub struct BackupRow {
    /// Id.
    pub id: String,
    /// Full or incremental.
    pub kind: BackupKind,
    /// An incremental backup's parent (the backup it is built on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// Seconds since then.
    pub age_s: i64,
    /// Bytes the engine produced.
    pub raw_bytes: u64,
    /// Bytes stored.
    pub stored_bytes: u64,
    /// Server version.
    pub server_version: String,
    /// Target it was taken on.
    pub target: String,
    /// The last restore drill (`dbctl backup verify`), if any.
    pub last_drill: Option<backup::Drill>,
}

/// What `backups` lists.
#[derive(Debug, Serialize)]
pub struct BackupsReport {
    /// Database.
    pub database: String,
    /// Store.
    pub store: String,
    /// Complete backups, oldest first.
    pub backups: Vec<BackupRow>,
    /// Interrupted backups (no manifest): removed by the next `backup`.
    pub incomplete: Vec<String>,
    /// Backups `--expire` removed.
    pub expired: Vec<String>,
}

impl Report for BackupsReport {
    fn human(&self) -> String {
        let mut expired = String::new();
        for id in &self.expired {
            expired.push_str(&format!("expired backup {id} (retention)\n"));
        }
        if self.backups.is_empty() {
            return format!(
                "{expired}`{}` has no backups in store `{}`\n",
                self.database, self.store
            );
        }
        let now = jiff::Timestamp::now().as_second();
        let rows = self
            .backups
            .iter()
            .map(|b| {
                vec![
                    b.id.clone(),
                    b.kind.to_string(),
                    age(b.age_s),
                    crate::output::bytes(b.raw_bytes),
                    crate::output::bytes(b.stored_bytes),
                    b.server_version.clone(),
                    b.target.clone(),
                    b.last_drill.as_ref().map_or_else(
                        || "never".to_owned(),
                        |d| {
                            format!(
                                "{} {} ago ({:.1} s)",
                                if d.ok { "ok" } else { "FAILED" },
                                age((now - d.at.as_second()).max(0)),
                                d.restore_seconds
                            )
                        },
                    ),
                ]
            })
            .collect();
        let mut text = expired;
        text.push_str(&crate::output::table(
            &[
                "ID", "TYPE", "AGE", "SIZE", "STORED", "VERSION", "TARGET", "DRILLED",
            ],
            rows,
        ));
        text.push('\n');
        for dir in &self.incomplete {
            text.push_str(&format!("interrupted (no manifest): {dir}\n"));
        }
        text
    }
}

fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Runs `dbctl backups`.
///
/// # Errors
/// An unknown database or store, or an unreachable store.
pub fn backups(session: &Session, opts: &BackupsOptions) -> Result<BackupsReport> {
    let repo = session.repo()?;
    let (spec, store_name) = spec_and_store(&repo, &opts.name, opts.store.as_deref(), None)?;
    let store = open_store(session, &repo, &store_name)?;
    let expired = match (&spec, opts.expire) {
        (Some(spec), true) => {
            let _lock = super::lock(&repo, &spec.name, "backups --expire", 0)?;
            expire(&store, spec)?
        }
        (None, true) => bail!(
            "`--expire` applies the `backup.retention` of `{}`, and `{}` does not exist (the database was deleted); its backups stay until removed from store `{store_name}`",
            opts.name,
            Repo::spec_rel(&opts.name).display()
        ),
        (_, false) => Vec::new(),
    };
    let (manifests, incomplete) = backup::list(&store, &opts.name)?;
    let now = jiff::Timestamp::now();
    Ok(BackupsReport {
        database: opts.name.clone(),
        store: store_name,
        backups: manifests
            .into_iter()
            .map(|m| BackupRow {
                age_s: (now.as_second() - m.finished_at.as_second()).max(0),
                finished_at: m.finished_at.to_string(),
                id: m.id,
                kind: m.kind,
                parent: m.parent.clone(),
                raw_bytes: m.raw_bytes,
                stored_bytes: m.object.bytes,
                server_version: m.server_version,
                target: m.target,
                last_drill: m.drills.last().cloned(),
            })
            .collect(),
        incomplete,
        expired,
    })
}

/// Flags of `dbctl restore`.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The database whose backup is restored.
    pub name: String,
    /// `--backup ID` (default: the latest).
    pub backup: Option<String>,
    /// `--store`.
    pub store: Option<String>,
    /// `--as NEW`: into a new database.
    pub as_name: Option<String>,
    /// `--to-time`: point-in-time recovery (PostgreSQL).
    pub to_time: Option<String>,
    /// `--target T`: into another target.
    pub target: Option<String>,
    /// `--yes`: replacing data needs it.
    pub yes: bool,
    /// `--no-commit`.
    pub no_commit: bool,
    /// `--push`.
    pub push: bool,
    /// Seconds to wait for another run's lock.
    pub lock_timeout_s: u64,
    /// `--dry-run`: find and check the backup, say what would happen; change nothing.
    pub dry_run: bool,
}

/// What `restore` did.
#[derive(Debug, Serialize)]
pub struct RestoreReport {
    /// The database restored into.
    pub database: String,
    /// Its target.
    pub target: String,
    /// The backup.
    pub backup: String,
    /// Where it came from.
    pub store: String,
    /// Seconds the restore took (the measured recovery time).
    pub seconds: f64,
    /// The change path's result.
    pub result: Converged,
    /// The commit of the spec and connection file.
    pub commit: Option<String>,
    /// Whether it was pushed.
    pub pushed: bool,
}

impl Report for RestoreReport {
    fn human(&self) -> String {
        let mut text = format!(
            "restored backup {} (store `{}`) into `{}` on target `{}` in {:.1} s\n",
            self.backup, self.store, self.database, self.target, self.seconds
        );
        if let Some(uri) = &self.result.uri {
            text.push_str(&format!("uri: {uri}\n"));
        }
        if let Some(commit) = &self.commit {
            text.push_str(&format!("committed {}\n", &commit[..commit.len().min(12)]));
        }
        text
    }
}

/// Runs `dbctl restore`.
///
/// # Errors
/// An unknown database, store or backup; a backup of another engine or version
/// series; `--as` naming a database that exists; no `--yes` where data is replaced; a
/// damaged backup (the running database is left as it was); a failed step.
pub fn restore(session: &Session, opts: &RestoreOptions) -> Result<Restored> {
    let repo = session.repo()?;
    if !opts.no_commit && !opts.dry_run {
        repo.require_git()?;
    }
    let target_time = opts.to_time.as_deref().map(parse_time).transpose()?;
    let Found {
        source,
        store_name,
        store,
        manifest,
    } = find_backup(
        session,
        &repo,
        &Lookup {
            name: &opts.name,
            store: opts.store.as_deref(),
            target: opts.target.as_deref(),
            backup: opts.backup.as_deref(),
            to_time: opts.to_time.as_deref().zip(target_time),
        },
    )?;
    let manifest = &manifest;
    let spec = destination(&repo, &source, opts)?;
    backup::check_compatible(manifest, spec.engine, &spec.version)?;
    let spec_rel = Repo::spec_rel(&spec.name);
    let previous = repo.read_text(&spec_rel)?;
    let in_place = previous.is_some() && spec.target == source.target;
    if opts.dry_run {
        let platform = session.platform(&repo, &spec)?;
        check_platform(platform.as_ref(), &spec, "restore")?;
        let mut would = vec![format!(
            "restore backup {} of `{}` (finished {}, {} of data, from store `{store_name}`){}",
            manifest.id,
            manifest.database,
            manifest.finished_at,
            crate::output::bytes(manifest.raw_bytes),
            opts.to_time
                .as_deref()
                .map(|t| format!(", replaying WAL up to {t}"))
                .unwrap_or_default()
        )];
        would.push(if in_place {
            format!(
                "replace the data of `{}` on target `{}`: unpack next to the running server, stop it, swap, start, check",
                spec.name, spec.target
            )
        } else if previous.is_some() {
            format!("move `{}` to target `{}` with the same credentials", spec.name, spec.target)
        } else {
            format!(
                "make `{}` on target `{}` with new credentials",
                spec.name, spec.target
            )
        });
        if !opts.no_commit {
            would.push(format!(
                "commit `{}` and its connection file",
                spec_rel.display()
            ));
        }
        return Ok(Restored::DryRun(super::DryRun {
            verb: "restore".into(),
            database: spec.name,
            would,
        }));
    }
    if !opts.yes {
        bail!(
            "{}; pass `--yes` to confirm",
            if in_place {
                format!(
                    "restoring backup {} replaces the data of `{}`",
                    manifest.id, spec.name
                )
            } else {
                format!(
                    "restoring backup {} makes `{}` on target `{}`",
                    manifest.id, spec.name, spec.target
                )
            }
        );
    }
    let (converged, seconds) = restore_into(
        session,
        &repo,
        &store,
        manifest,
        &spec,
        target_time,
        opts.lock_timeout_s,
    )?;
    let mut report = RestoreReport {
        database: spec.name.clone(),
        target: spec.target.clone(),
        backup: manifest.id.clone(),
        store: store_name,
        seconds,
        result: converged,
        commit: None,
        pushed: false,
    };
    if !opts.no_commit {
        (report.commit, report.pushed) = super::commit_database(
            &repo,
            &spec.name,
            &format!(
                "dbctl restore {} from backup {} of {}",
                spec.name, manifest.id, manifest.database
            ),
            opts.push,
        )?;
    }
    Ok(Restored::Done(Box::new(report)))
}

/// What `dbctl restore` did, or would do (`--dry-run`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Restored {
    /// The restore ran.
    Done(Box<RestoreReport>),
    /// `--dry-run`: what it would do.
    DryRun(super::DryRun),
}

impl Report for Restored {
    fn human(&self) -> String {
        match self {
            Self::Done(r) => r.human(),
            Self::DryRun(r) => r.human(),
        }
    }
}

/// Restores `manifest` into `spec` through [`converge`] (a `-/+ data` change; the
/// database is created first when new): writes the spec file, and puts it back as it
/// was when the restore fails. Returns the result and the seconds it took.
///
/// # Errors
/// The platform cannot restore, `to_time` on another engine or a backup without a WAL
/// position, or a failed step (the running database keeps its data).
pub(super) fn restore_into(
    session: &Session,
    repo: &Repo,
    store: &Store,
    manifest: &Manifest,
    spec: &Spec,
    to_time: Option<jiff::Timestamp>,
    lock_timeout_s: u64,
) -> Result<(Converged, f64)> {
    let platform = session.platform(repo, spec)?;
    check_platform(platform.as_ref(), spec, "restore")?;
    let identity = session.identity.clone();
    // An incremental backup restores with the backups it is built on, full first.
    let chain: Vec<Manifest> = if manifest.kind == BackupKind::Incr {
        let (all, _) = backup::list(store, &manifest.database)?;
        backup::chain(&all, manifest)?
            .into_iter()
            .cloned()
            .collect()
    } else {
        vec![manifest.clone()]
    };
    let transfer = session.printer.transfer(
        &format!("restoring backup {}", manifest.id),
        Some(chain.iter().map(|m| m.raw_bytes).sum()),
    );
    let count = transfer.counter();
    let mut offset = 0;
    let feeds: Vec<Box<crate::platform::Feed<'_>>> = chain
        .iter()
        .map(|m| {
            let (count, identity, start) = (&count, &identity, offset);
            offset += m.raw_bytes;
            Box::new(
                move |consume: &mut dyn FnMut(&mut (dyn std::io::Read + Send)) -> Result<()>| {
                    backup::open(store, m, identity, &|b| count(start + b), consume)
                },
            ) as Box<crate::platform::Feed<'_>>
        })
        .collect();
    let fetch = |name: &str| backup::fetch_wal(store, &manifest.database, name, &identity);
    let recovery = match to_time {
        Some(at) => {
            if spec.engine != crate::catalog::EngineKind::Postgresql {
                bail!(
                    "`--to-time` (point-in-time recovery) is for postgresql; `{}` is {}",
                    manifest.database,
                    manifest.engine
                );
            }
            let from = manifest.position.as_deref().with_context(|| {
                format!(
                    "backup `{}` records no WAL position: it was taken without WAL archiving, so it restores only as a whole (leave out `--to-time`)",
                    manifest.id
                )
            })?;
            Some(crate::platform::Recovery {
                // PostgreSQL's timestamptz input (`2026-12-03 09:15:00.123+00`).
                target_time: at.strftime("%Y-%m-%d %H:%M:%S%.f+00").to_string(),
                wal: backup::wal_needed(store, &manifest.database, from)?,
                fetch: &fetch,
            })
        }
        None => None,
    };
    let change = Change {
        action: Action::Replace,
        attribute: "data".into(),
        old: None,
        new: Some(manifest.id.clone().into()),
        disruption: Disruption::DataMovement,
        reason: format!("restore backup {} of `{}`", manifest.id, manifest.database),
    };
    let spec_rel = Repo::spec_rel(&spec.name);
    let previous = repo.read_text(&spec_rel)?;
    if previous.as_deref() != Some(spec.to_yaml().as_str()) {
        repo.write(&spec_rel, spec.to_yaml().as_bytes(), 0o644)?;
    }
    let printer = &session.printer;
    printer.status(&format!(
        "restoring backup {} of `{}` into `{}` on target `{}`",
        manifest.id, manifest.database, spec.name, spec.target
    ));
    let progress = |i: usize, n: usize, name: &str| printer.step(i, n, name);
    let clock = std::time::Instant::now();
    let converged = converge(
        repo,
        spec,
        platform.as_ref(),
        &Gate {
            operation: "restore",
            identity: &session.identity,
            lock_timeout_s,
            window: None,
            now: jiff::Timestamp::now(),
            restore: Some(Restoring {
                change,
                source: crate::platform::Restore {
                    backups: feeds
                        .iter()
                        .map(|f| &**f as crate::platform::BackupFeed<'_>)
                        .collect(),
                    recovery,
                },
            }),
        },
        printer,
        &progress,
    );
    drop(transfer);
    match converged {
        Ok(converged) => Ok((converged, clock.elapsed().as_secs_f64())),
        Err(err) => {
            match previous {
                Some(text) => repo.write(&spec_rel, text.as_bytes(), 0o644)?,
                None => {
                    let _ = repo.anchor().remove_all(&spec_rel);
                }
            }
            Err(err)
        }
    }
}

/// The backup a restore takes: `--backup ID`, else the latest finished before
/// `--to-time` (given as text and as parsed), else the latest.
///
/// # Errors
/// No such backup, none before the time, or none at all, each naming what there is.
fn choose<'m>(
    manifests: &'m [Manifest],
    name: &str,
    store_name: &str,
    backup: Option<&str>,
    to_time: Option<(&str, jiff::Timestamp)>,
) -> Result<&'m Manifest> {
    let manifest = match (backup, to_time) {
        (Some(id), _) => manifests.iter().find(|m| m.id == id).with_context(|| {
            format!(
                "`{}` has no backup `{id}` in store `{store_name}`; it has: {}",
                name,
                if manifests.is_empty() {
                    "none".to_owned()
                } else {
                    manifests
                        .iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        })?,
        (None, Some((text, at))) => manifests
            .iter()
            .rev()
            .find(|m| m.finished_at < at)
            .with_context(|| {
                format!(
                    "`--to-time {}` is before the first backup of `{}` in store `{store_name}` ({}); choose a later time",
                    text,
                    name,
                    manifests
                        .first()
                        .map_or("there is none".to_owned(), |m| format!("it finished at {}", m.finished_at))
                )
            })?,
        (None, None) => manifests.last().with_context(|| {
            format!(
                "`{name}` has no backups in store `{store_name}`; take one with `dbctl backup {name}`"
            )
        })?,
    };
    if let Some((_, at)) = to_time
        && manifest.finished_at >= at
    {
        bail!(
            "backup `{}` finished at {}, after `--to-time` {at}; leave out `--backup` or name an earlier one",
            manifest.id,
            manifest.finished_at
        );
    }
    Ok(manifest)
}

/// Parses `--to-time`: RFC 3339 (`2026-12-03T10:15:00Z`) or a civil time and an IANA
/// zone (`2026-12-02 10:15 Europe/Paris`, DST-correct by jiff).
///
/// # Errors
/// Neither form, or an unknown zone.
pub fn parse_time(text: &str) -> Result<jiff::Timestamp> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at);
    }
    let (civil, zone) = text.trim().rsplit_once(' ').with_context(|| {
        format!(
            "`--to-time {text}`: give RFC 3339 (`2026-12-03T10:15:00Z`) or a time and a zone (`2026-12-02 10:15 Europe/Paris`)"
        )
    })?;
    let tz = jiff::tz::TimeZone::get(zone)
        .with_context(|| format!("`--to-time {text}`: `{zone}` is not an IANA time zone"))?;
    let civil: jiff::civil::DateTime = civil.trim().parse().with_context(|| {
        format!("`--to-time {text}`: `{civil}` is not a date and time (`2026-12-02 10:15`)")
    })?;
    Ok(civil
        .to_zoned(tz)
        .with_context(|| format!("`--to-time {text}`"))?
        .timestamp())
}

/// The spec restored into: the source itself (in place), the source moved to
/// `--target` (disaster recovery: same name, credentials and data on a new target),
/// or a new database `--as NEW` keeping the source's database and user names (the data
/// holds them).
fn destination(repo: &Repo, source: &Spec, opts: &RestoreOptions) -> Result<Spec> {
    let mut spec = source.clone();
    if let Some(target) = &opts.target {
        spec.target.clone_from(target);
    }
    if let Some(new) = &opts.as_name {
        if repo.read_text(&Repo::spec_rel(new))?.is_some() {
            bail!(
                "`--as {new}`: `{}` exists; restore into a new name, or in place with `dbctl restore {new}`",
                Repo::spec_rel(new).display()
            );
        }
        spec.name.clone_from(new);
        spec.deletion_protection = false;
    }
    revalidate(repo, &spec)
}

/// `spec`, changed by a verb, through the spec file's own validation (target names,
/// the name's pattern, stores).
///
/// # Errors
/// [`crate::spec::SpecError`] naming the key.
pub(super) fn revalidate(repo: &Repo, spec: &Spec) -> Result<Spec> {
    let rel = Repo::spec_rel(&spec.name);
    let draft = Draft::parse(&spec.to_yaml(), &rel)?;
    Ok(draft.validate(&repo.catalog, &repo.config, &|_, _| None)?)
}

/// What `wal-push` did.
#[derive(Debug, Serialize)]
pub struct WalPushReport {
    /// The WAL file's name.
    pub name: String,
    /// False when the store had it already.
    pub stored: bool,
}

impl Report for WalPushReport {
    fn human(&self) -> String {
        String::new()
    }
}

/// Runs `dbctl wal-push --check`: opens the store of the instance's `wal-push.json` and
/// lists the database's archived WAL, as the server's `archive_command` will (run by
/// dbctl on a host before it starts archiving there).
///
/// # Errors
/// The configuration cannot be read, or the store cannot be reached or listed.
pub fn wal_push_check(session: &Session, config: &std::path::Path) -> Result<WalPushReport> {
    let push = read_wal_push(config)?;
    let store = Store::open(&push.store_name, &push.store, session.runtime())?;
    store
        .list(&backup::wal_dir(&push.database))
        .with_context(|| format!("cannot list backup store `{}`", push.store_name))?;
    Ok(WalPushReport {
        name: String::new(),
        stored: false,
    })
}

fn read_wal_push(config: &std::path::Path) -> Result<backup::WalPush> {
    let text =
        std::fs::read(config).with_context(|| format!("cannot read `{}`", config.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("`{}` is not a wal-push configuration", config.display()))
}

/// Runs `dbctl wal-push` (the server's `archive_command`): archives one WAL file with
/// the instance's `wal-push.json`. Exit 0 only once the object is complete.
///
/// # Errors
/// The configuration or the file cannot be read, or the store fails.
pub fn wal_push(
    session: &Session,
    config: &std::path::Path,
    file: &std::path::Path,
    name: &str,
) -> Result<WalPushReport> {
    let push = read_wal_push(config)?;
    let store = Store::open(&push.store_name, &push.store, session.runtime())?;
    let stored = backup::push_wal(&store, &push, file, name)?;
    Ok(WalPushReport {
        name: name.to_owned(),
        stored,
    })
}
