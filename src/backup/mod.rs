//! Backups: the stores they live in ([`store`]), the streaming pipeline that seals an
//! engine's physical backup on its way out (zstd, then age to the repo's recipients,
//! then a SHA-256 of the stored bytes) and opens it on its way back, and the manifest
//! that makes a backup exist.
//!
//! Layout in a store, per database:
//!
//! ```text
//! <database>/<id>/data.zst.age   the engine's stream (tar, xbstream, RDB), sealed
//! <database>/<id>/manifest.json  written last: a backup without one never happened
//! ```
//!
//! The id is the start time (`20261203T101500Z`) and a random suffix, so ids sort by
//! time. A `kill -9` during a backup leaves an object and no manifest; `backups` does
//! not list it and the next `backup` removes it.

pub mod schedule;
pub mod store;

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub use self::store::{RawStore, Sealed, Store, StoreConfig, StoreError};
use crate::catalog::EngineKind;

/// The manifest's format version.
pub const FORMAT: u32 = 1;
/// The sealed stream's object name inside a backup's directory.
pub const DATA_OBJECT: &str = "data.zst.age";
/// The manifest's object name inside a backup's directory.
pub const MANIFEST_OBJECT: &str = "manifest.json";
/// PostgreSQL's own `backup_manifest` of a base backup (sealed), which an incremental
/// backup on top of it hands to `pg_basebackup --incremental`.
pub const BACKUP_MANIFEST_OBJECT: &str = "backup_manifest.zst.age";

/// Full or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// Everything (a base backup, a full mariadb-backup, an RDB).
    Full,
    /// What changed since the backup it is built on (`parent`): PostgreSQL 17's
    /// `pg_basebackup --incremental` from the WAL summaries, MariaDB's
    /// `mariadb-backup --incremental-lsn`; restored as the chain from its full backup
    /// (`pg_combinebackup`; `mariadb-backup --prepare --incremental-dir`).
    Incr,
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full => "full",
            Self::Incr => "incr",
        })
    }
}

/// What a backup is: written as `manifest.json` after its data object is complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The backup's id (`20261203T101500Z-3f9a`).
    pub id: String,
    /// The database's name.
    pub database: String,
    /// Its engine.
    pub engine: EngineKind,
    /// The server's full version when it was taken (`15.18`): a restore needs the same
    /// major (PostgreSQL) or series.
    pub server_version: String,
    /// The spec's version series (`15`).
    pub version: String,
    /// Full or incremental.
    pub kind: BackupKind,
    /// An incremental backup's parent: the backup (full or incremental) it holds the
    /// changes since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// PostgreSQL 17 and later: the server's `backup_manifest` of this backup, stored
    /// beside it ([`BACKUP_MANIFEST_OBJECT`]), which an incremental backup on top of
    /// this one needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_manifest: Option<ObjectEntry>,
    /// The target it was taken on.
    pub target: String,
    /// When the engine's backup started and ended.
    pub started_at: jiff::Timestamp,
    /// See `started_at`.
    pub finished_at: jiff::Timestamp,
    /// The engine's position at the end when it tells one (PostgreSQL LSN, MariaDB GTID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// MariaDB: the InnoDB checkpoint LSN the backup ends at, where an incremental
    /// backup on it starts (`mariadb-backup --incremental-lsn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_lsn: Option<String>,
    /// The engine's stream format (`tar`, `xbstream`, `rdb`).
    pub format_of_stream: String,
    /// Bytes the engine produced (before compression).
    pub raw_bytes: u64,
    /// The stored object.
    pub object: ObjectEntry,
    /// The age recipients it is encrypted to.
    pub recipients: Vec<String>,
    /// The spec as it was when the backup was taken (YAML as `Spec::to_yaml` writes it;
    /// it holds no secrets): what `restore` recreates once the database was deleted.
    /// `None` in backups taken before dbctl recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// Restore drills of this backup (`dbctl backup verify`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drills: Vec<Drill>,
}

/// One restore drill: the backup restored into a scratch database, checked, removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Drill {
    /// When it started.
    pub at: jiff::Timestamp,
    /// The target the scratch database ran on.
    pub target: String,
    /// Whether the restore and every check passed.
    pub ok: bool,
    /// Seconds from the start of the restore until the scratch database answered: the
    /// measured recovery time (RTO) of this backup on that target.
    pub restore_seconds: f64,
    /// Rows per table (`schema.table`; Redis: keys per `dbN`) in the restored data.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// `--query`, when given, and the first 1000 bytes of what it printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// See `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_output: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One stored object of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Path relative to the store (`db/ID/data.zst.age`).
    pub path: String,
    /// Stored bytes.
    pub bytes: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

impl Manifest {
    /// The backup's directory in its store (`db/ID/`).
    pub fn dir(&self) -> String {
        format!("{}/{}/", self.database, self.id)
    }
}

/// Which backups to keep (`retention:` of a spec's `backup:`); without a policy every
/// backup is kept. A backup is kept when it is one of the newest `full` full backups
/// or newer than the oldest of those, or when it is needed to restore to any time in
/// the last `days` days: every backup finished in that span and the newest one before
/// it. The newest backup is always kept, and so is every backup a kept incremental one
/// is built on (its chain down to its full backup).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep at least this many full backups (1 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub full: Option<u32>,
    /// Keep what restores to any time in this many days (1 to 3650).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub days: Option<u32>,
}

/// The backups `policy` lets go, of `manifests` sorted oldest first, at `now`.
pub fn expired<'m>(
    manifests: &'m [Manifest],
    policy: &Retention,
    now: jiff::Timestamp,
) -> Vec<&'m Manifest> {
    if policy.full.is_none() && policy.days.is_none() {
        return Vec::new();
    }
    let keep_newest = policy.full.map_or(1, |f| (f as usize).max(1));
    // Every backup from the `keep_newest`-th newest full one on (all of them when
    // there are fewer).
    let first_kept = manifests
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, m)| m.kind == BackupKind::Full)
        .nth(keep_newest - 1)
        .map_or(0, |(i, _)| i)
        .min(manifests.len().saturating_sub(1));
    let horizon = policy.days.map(|d| now.as_second() - i64::from(d) * 86_400);
    // The newest backup finished before the horizon: a restore to the horizon starts there.
    let base_for_horizon = horizon.and_then(|h| {
        manifests
            .iter()
            .rposition(|m| m.finished_at.as_second() <= h)
    });
    let mut kept: Vec<bool> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let among_newest = i >= first_kept;
            let in_span = horizon.is_some_and(|h| m.finished_at.as_second() > h);
            let base = base_for_horizon == Some(i);
            among_newest || in_span || base
        })
        .collect();
    // A kept incremental backup keeps its chain.
    for i in (0..manifests.len()).rev() {
        if !kept[i] {
            continue;
        }
        let mut parent = manifests[i].parent.as_deref();
        while let Some(id) = parent {
            let Some(j) = manifests.iter().position(|m| m.id == id) else {
                break;
            };
            kept[j] = true;
            parent = manifests[j].parent.as_deref();
        }
    }
    manifests
        .iter()
        .zip(kept)
        .filter(|(_, keep)| !keep)
        .map(|(m, _)| m)
        .collect()
}

/// The backups a restore of `manifests[last]` reads, full first: the backup itself
/// and, for an incremental one, each backup it is built on.
///
/// # Errors
/// A parent that is not among `manifests` (expired or removed by hand), or a chain
/// that does not end in a full backup.
pub fn chain<'m>(manifests: &'m [Manifest], last: &'m Manifest) -> Result<Vec<&'m Manifest>> {
    let mut chain = vec![last];
    let mut current = last;
    while current.kind == BackupKind::Incr {
        let parent = current.parent.as_deref().with_context(|| {
            format!("incremental backup `{}` names no parent backup", current.id)
        })?;
        current = manifests
            .iter()
            .find(|m| m.id == parent)
            .with_context(|| {
                format!(
                    "incremental backup `{}` of `{}` is built on backup `{parent}`, which is not in the store any more: it cannot be restored; restore a full backup or a complete chain",
                    last.id, last.database
                )
            })?;
        if chain.len() > manifests.len() {
            bail!(
                "backup `{}` of `{}`: its chain of parents loops",
                last.id,
                last.database
            );
        }
        chain.push(current);
    }
    chain.reverse();
    Ok(chain)
}

/// The store a database's backups go to when no flag names one: the spec's
/// `backup.store`, else its target's `backup_store`, else `defaults.backup_store`,
/// else — on an `openstack` target — the Swift container its data stack makes
/// ([`cloud_default`]).
pub fn store_of(config: &crate::spec::Config, spec: &crate::spec::Spec) -> Option<String> {
    spec.backup
        .as_ref()
        .and_then(|b| b.store.clone())
        .or_else(|| {
            config
                .target(&spec.target)
                .and_then(|t| t.backup_store.clone())
        })
        .or_else(|| config.default_backup_store.clone())
        .or_else(|| cloud_default(config, &spec.target, &spec.name))
}

/// The store of database `name` on `target` when that is an `openstack` target and no
/// store is configured: the `backup-<name>` Swift container its data stack makes, in
/// the target's own Keystone project (its `openrc`), named `<target>/backup-<name>`.
pub fn cloud_default(config: &crate::spec::Config, target: &str, name: &str) -> Option<String> {
    let t = config.target(target)?;
    (t.platform == crate::spec::PlatformKind::Openstack).then(|| {
        format!(
            "{target}/{}",
            crate::platform::cloud::Names::new(name).backup_container
        )
    })
}

/// The directory of a database's archived WAL in its store (`db/wal/`): one object a
/// segment (or `.history` file), sealed like a backup, named as PostgreSQL names it.
pub fn wal_dir(database: &str) -> String {
    format!("{database}/{WAL_DIR}/")
}

/// The name of [`wal_dir`] below a database's directory.
pub const WAL_DIR: &str = "wal";

/// What the server's `archive_command` (`dbctl wal-push`) needs, written 0600 for the
/// service user into the instance's configuration directory; its secret, if any, is a
/// file of its own beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalPush {
    /// The database.
    pub database: String,
    /// The store's name.
    pub store_name: String,
    /// The store.
    pub store: StoreConfig,
    /// The age recipients.
    pub recipients: Vec<String>,
}

/// Archives one WAL file (`dbctl wal-push`): seals `file` into `db/wal/<name>` unless
/// that object exists already (PostgreSQL retries a segment whose archiving it could
/// not confirm; the copy there is complete, as objects appear only when closed).
///
/// # Errors
/// The file cannot be read, or the store fails.
pub fn push_wal(store: &Store, push: &WalPush, file: &Path, name: &str) -> Result<bool> {
    if name.contains('/') || name.starts_with('.') {
        bail!("`{name}` is not a WAL file name");
    }
    let path = format!("{}{name}", wal_dir(&push.database));
    if store.exists(&path)? {
        return Ok(false);
    }
    let mut input =
        std::fs::File::open(file).with_context(|| format!("cannot read `{}`", file.display()))?;
    let mut sealer = Sealer::new(store.writer(&path, None), &push.recipients, None)?;
    std::io::copy(&mut input, &mut sealer)?;
    sealer.finish()?;
    Ok(true)
}

/// The archived WAL files of `database` a recovery from a base backup starting in
/// segment `from` needs (segments of any timeline at or after it, and every timeline
/// history file), sorted by name.
///
/// # Errors
/// The store fails.
pub fn wal_needed(store: &Store, database: &str, from: &str) -> Result<Vec<String>> {
    // A segment's name is its timeline (8 hex digits), then its position (16).
    let position = |name: &str| name.get(8..24).map(str::to_owned);
    let start = position(from).unwrap_or_default();
    let mut names: Vec<String> = store
        .list(&wal_dir(database))?
        .into_iter()
        .map(|n| n.rsplit('/').next().unwrap_or(&n).to_owned())
        .filter(|n| {
            n.ends_with(".history") || (n.len() == 24 && position(n).is_some_and(|p| p >= start))
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Opens one archived WAL file whole (decrypted and decompressed).
///
/// # Errors
/// The object is missing or damaged, or the identity cannot decrypt it.
pub fn fetch_wal(store: &Store, database: &str, name: &str, identity: &Path) -> Result<Vec<u8>> {
    let path = format!("{}{name}", wal_dir(database));
    open_small(store, &path, identity, "WAL file")
}

/// Opens a small sealed object (`what` at `path`: a WAL file, a `backup_manifest`)
/// whole, decrypted and decompressed.
///
/// # Errors
/// The object is missing or damaged, or the identity cannot decrypt it.
pub fn open_small(store: &Store, path: &str, identity: &Path, what: &str) -> Result<Vec<u8>> {
    let sealed = store
        .get(path)?
        .with_context(|| format!("{what} `{path}` is not in store `{}`", store.name))?;
    let key = crate::secret::load_identity(identity)?;
    let decryptor = age::Decryptor::new(&sealed[..])
        .with_context(|| format!("{what} `{path}` is not an age file"))?;
    let plain = decryptor
        .decrypt(std::iter::once(&key as &dyn age::Identity))
        .with_context(|| {
            format!(
                "{what} `{path}` cannot be decrypted with `{}`",
                identity.display()
            )
        })?;
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(plain)?
        .read_to_end(&mut out)
        .with_context(|| format!("{what} `{path}` is damaged or truncated"))?;
    Ok(out)
}

/// Seals `bytes` into the object at `path` for `recipients`.
///
/// # Errors
/// A bad recipient, or the store fails.
pub fn seal_small(
    store: &Store,
    path: &str,
    recipients: &[String],
    bytes: &[u8],
) -> Result<ObjectEntry> {
    let mut sealer = Sealer::new(store.writer(path, None), recipients, None)?;
    sealer.write_all(bytes)?;
    let (_, sealed) = sealer.finish()?;
    Ok(ObjectEntry {
        path: path.to_owned(),
        bytes: sealed.bytes,
        sha256: sealed.sha256,
    })
}

/// Passes an engine's stream on to `inner` while a thread reads it as a tar archive
/// (the `tar` crate) and keeps the member named `member` (PostgreSQL's
/// `backup_manifest`, which `pg_basebackup` writes last into a tar sent to standard
/// output). A stream that is not a tar, or has no such member, only yields `None`.
pub struct TarTap<'w> {
    inner: &'w mut dyn Write,
    pipe: Option<std::io::PipeWriter>,
    reader: Option<std::thread::JoinHandle<Option<Vec<u8>>>>,
}

impl<'w> TarTap<'w> {
    /// Taps `inner` for `member`.
    ///
    /// # Errors
    /// No pipe could be made.
    pub fn new(inner: &'w mut dyn Write, member: &str) -> Result<Self> {
        let (rx, tx) = std::io::pipe()?;
        let member = member.to_owned();
        let reader = std::thread::spawn(move || {
            let mut rx = rx;
            let mut found = None;
            if let Ok(entries) = tar::Archive::new(&mut rx).entries() {
                for entry in entries {
                    let Ok(mut entry) = entry else { break };
                    if entry.path().is_ok_and(|p| p.as_os_str() == member.as_str()) {
                        let mut bytes = Vec::new();
                        if entry.read_to_end(&mut bytes).is_ok() {
                            found = Some(bytes);
                        }
                    }
                }
            }
            // Whatever follows the archive's end, so the writer never blocks.
            let _ = std::io::copy(&mut rx, &mut std::io::sink());
            found
        });
        Ok(Self {
            inner,
            pipe: Some(tx),
            reader: Some(reader),
        })
    }

    /// Ends the tap: the member, if the stream had it.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        drop(self.pipe.take());
        self.reader.take().and_then(|r| r.join().ok()).flatten()
    }
}

impl Write for TarTap<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        // The reader gone (not a tar) only ends the tap, never the backup.
        if let Some(pipe) = &mut self.pipe
            && pipe.write_all(&data[..n]).is_err()
        {
            self.pipe = None;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Drop for TarTap<'_> {
    fn drop(&mut self) {
        drop(self.pipe.take());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A new backup id for a backup starting at `at`.
pub fn new_id(at: jiff::Timestamp) -> String {
    use rand::RngExt;
    let suffix: u16 = rand::rng().random();
    format!("{}-{suffix:04x}", at.strftime("%Y%m%dT%H%M%SZ"))
}

/// The manifests of `database` in `store`, oldest first; unreadable manifests are
/// errors, directories without one (an interrupted backup) are returned apart.
///
/// # Errors
/// The store fails, or a manifest is not valid JSON.
pub fn list(store: &Store, database: &str) -> Result<(Vec<Manifest>, Vec<String>)> {
    let mut manifests = Vec::new();
    let mut incomplete = Vec::new();
    let dir = format!("{database}/");
    let ids: Vec<String> = store
        .list(&dir)?
        .iter()
        .filter_map(|entry| entry.strip_suffix('/'))
        .map(|id| id.rsplit('/').next().unwrap_or(id).to_owned())
        .filter(|id| id != WAL_DIR)
        .collect();
    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("{database}/{id}/{MANIFEST_OBJECT}"))
        .collect();
    for ((id, path), object) in ids.iter().zip(&paths).zip(store.get_many(&paths)?) {
        match object {
            Some(bytes) => manifests.push(
                serde_json::from_slice::<Manifest>(&bytes)
                    .with_context(|| format!("manifest `{path}` in store `{}`", store.name))?,
            ),
            None => incomplete.push(format!("{database}/{id}/")),
        }
    }
    // By time: ids of one second differ only in their random suffix.
    manifests.sort_by(|a, b| {
        (a.started_at, a.finished_at, &a.id).cmp(&(b.started_at, b.finished_at, &b.id))
    });
    Ok((manifests, incomplete))
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
    on_bytes: Option<Box<dyn Fn(u64) + Send>>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.bytes += n as u64;
        if let Some(f) = &self.on_bytes {
            f(self.bytes);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The writing end of the pipeline: an engine's stream goes in, the sealed object
/// goes to the store. zstd level 3 on two threads, then age (X25519, STREAM chunks
/// authenticated one by one), then the object writer's SHA-256.
pub struct Sealer {
    inner: Counting<
        zstd::stream::write::Encoder<'static, age::stream::StreamWriter<store::ObjectWriter>>,
    >,
}

impl Sealer {
    /// Seals into `writer` for `recipients`; `on_bytes` sees the raw bytes so far.
    ///
    /// # Errors
    /// A bad recipient, or zstd cannot start.
    pub fn new(
        writer: store::ObjectWriter,
        recipients: &[String],
        on_bytes: Option<Box<dyn Fn(u64) + Send>>,
    ) -> Result<Self> {
        let parsed = crate::secret::parse_recipients(recipients)?;
        let encryptor =
            age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
                .context("age cannot encrypt to the repo's recipients")?;
        let sealed = encryptor.wrap_output(writer)?;
        let mut zstd = zstd::stream::write::Encoder::new(sealed, 3)?;
        zstd.multithread(2)?;
        Ok(Self {
            inner: Counting {
                inner: zstd,
                bytes: 0,
                on_bytes,
            },
        })
    }

    /// Ends the stream; returns the raw byte count and the stored object's digest.
    ///
    /// # Errors
    /// Compression, encryption or the upload failed.
    pub fn finish(self) -> Result<(u64, Sealed)> {
        let raw = self.inner.bytes;
        let sealed = self.inner.inner.finish()?;
        let writer = sealed.finish()?;
        Ok((raw, writer.finish()?))
    }
}

impl Write for Sealer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.inner.write(data)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Feeds the engine stream of `manifest`'s backup to `consume`, then reads the object
/// to its end and checks its size and SHA-256 against the manifest: a consumer that
/// succeeded on a damaged object still fails here (age already refuses a changed chunk).
///
/// `on_bytes` sees the engine stream's bytes read so far (of `manifest.raw_bytes`).
///
/// # Errors
/// The identity cannot decrypt it, the object is damaged, or `consume` fails.
pub fn open(
    store: &Store,
    manifest: &Manifest,
    identity: &Path,
    on_bytes: &(dyn Fn(u64) + Sync),
    consume: &mut dyn FnMut(&mut (dyn Read + Send)) -> Result<()>,
) -> Result<()> {
    let key = crate::secret::load_identity(identity)?;
    let mut object = store.reader(
        &manifest.object.path,
        Sealed {
            bytes: manifest.object.bytes,
            sha256: manifest.object.sha256.clone(),
        },
    );
    {
        let decryptor = age::Decryptor::new(&mut object).with_context(|| {
            format!(
                "backup `{}` of `{}`: `{}` is not an age file",
                manifest.id, manifest.database, manifest.object.path
            )
        })?;
        let plain = decryptor
            .decrypt(std::iter::once(&key as &dyn age::Identity))
            .with_context(|| {
                format!(
                    "backup `{}` of `{}` cannot be decrypted with identity `{}` (it is encrypted to {})",
                    manifest.id,
                    manifest.database,
                    identity.display(),
                    manifest.recipients.join(", ")
                )
            })?;
        let damaged = format!(
            "backup `{}` of `{}` (`{}` in store `{}`) is damaged or truncated",
            manifest.id, manifest.database, manifest.object.path, store.name
        );
        let mut stream = Labelled {
            inner: zstd::stream::read::Decoder::new(plain)?,
            label: damaged,
            bytes: 0,
            on_bytes,
        };
        // Decryption and decompression run a thread ahead of the consumer (which feeds
        // a pipe to `tar`, `mbstream` or a file), 1 MiB at a time, four pieces deep.
        // The consumer hands pieces back to be filled again: a fresh 1 MiB buffer a
        // piece would be zeroed (or page-faulted in) anew, gigabytes of it a restore.
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
        let (recycle, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::scope(|scope| -> Result<()> {
            scope.spawn(move || {
                loop {
                    let mut piece = recycled.try_recv().unwrap_or_default();
                    piece.resize(READ_AHEAD_PIECE, 0);
                    let sent = match stream.read(&mut piece) {
                        Ok(0) => break,
                        Ok(n) => {
                            piece.truncate(n);
                            tx.send(Ok(piece))
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            });
            let mut ahead = ReadAhead {
                rx,
                recycle,
                piece: Vec::new(),
                at: 0,
            };
            consume(&mut ahead)?;
            // What the consumer left unread (tar stops at its end-of-archive blocks).
            std::io::copy(&mut ahead, &mut std::io::sink())
                .with_context(|| format!("backup `{}` of `{}`", manifest.id, manifest.database))?;
            Ok(())
        })?;
    }
    std::io::copy(&mut object, &mut std::io::sink())
        .with_context(|| format!("backup `{}` of `{}`", manifest.id, manifest.database))?;
    Ok(())
}

/// Names the backup in read errors (age's `decryption error` says nothing of which).
struct Labelled<'a, R> {
    inner: R,
    label: String,
    /// Bytes read so far, and who hears of them.
    bytes: u64,
    on_bytes: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Labelled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.label)))?;
        self.bytes += n as u64;
        (self.on_bytes)(self.bytes);
        Ok(n)
    }
}

/// Bytes [`open`]'s read-ahead thread decodes at a time.
const READ_AHEAD_PIECE: usize = 1 << 20;

/// The consumer's end of [`open`]'s read-ahead thread.
struct ReadAhead {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    /// Where read pieces go back to the thread.
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
    piece: Vec<u8>,
    at: usize,
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.piece.len() {
            match self.rx.recv() {
                Ok(piece) => {
                    let done = std::mem::replace(&mut self.piece, piece?);
                    if done.capacity() > 0 {
                        // The thread gone (the stream ended) is fine.
                        let _ = self.recycle.send(done);
                    }
                    self.at = 0;
                }
                // The producer ended: the stream is complete.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Refuses a backup another engine or version series made.
///
/// # Errors
/// The engine or the version series differs.
pub fn check_compatible(manifest: &Manifest, engine: EngineKind, version: &str) -> Result<()> {
    if manifest.engine != engine {
        bail!(
            "backup `{}` is a {} backup of `{}`; it cannot be restored into a {engine} database",
            manifest.id,
            manifest.engine,
            manifest.database
        );
    }
    if manifest.version != version {
        bail!(
            "backup `{}` of `{}` was taken from {} {} (series {}); the database wants series {version}: restore into a database of version {} (`--as NEW` with that version), then upgrade",
            manifest.id,
            manifest.database,
            engine,
            manifest.server_version,
            manifest.version,
            manifest.version
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, finished: &str) -> Manifest {
        let at: jiff::Timestamp = finished.parse().unwrap();
        Manifest {
            format: FORMAT,
            id: id.into(),
            database: "db".into(),
            engine: EngineKind::Postgresql,
            server_version: "15.18".into(),
            version: "15".into(),
            kind: BackupKind::Full,
            parent: None,
            backup_manifest: None,
            target: "local".into(),
            started_at: at,
            finished_at: at,
            position: None,
            checkpoint_lsn: None,
            format_of_stream: "tar".into(),
            raw_bytes: 1,
            object: ObjectEntry {
                path: format!("db/{id}/{DATA_OBJECT}"),
                bytes: 1,
                sha256: String::new(),
            },
            recipients: Vec::new(),
            spec: None,
            drills: Vec::new(),
        }
    }

    fn ids(list: &[&Manifest]) -> Vec<String> {
        list.iter().map(|m| m.id.clone()).collect()
    }

    fn incr(id: &str, finished: &str, parent: &str) -> Manifest {
        Manifest {
            kind: BackupKind::Incr,
            parent: Some(parent.into()),
            ..manifest(id, finished)
        }
    }

    #[test]
    fn retention_counts_full_backups_and_keeps_the_chains_of_kept_incrementals() {
        // Two chains: a ← a1 ← a2, then b ← b1.
        let all = [
            manifest("a", "2026-11-20T01:00:00Z"),
            incr("a1", "2026-11-21T01:00:00Z", "a"),
            incr("a2", "2026-11-22T01:00:00Z", "a1"),
            manifest("b", "2026-11-23T01:00:00Z"),
            incr("b1", "2026-11-24T01:00:00Z", "b"),
        ];
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        // One full backup kept: b and what is built on it; a's chain goes whole.
        let one = Retention {
            full: Some(1),
            days: None,
        };
        assert_eq!(ids(&expired(&all, &one, now)), ["a", "a1", "a2"]);
        // Two: everything.
        let two = Retention {
            full: Some(2),
            days: None,
        };
        assert!(expired(&all, &two, now).is_empty());
        // Restoring to any time in the last 8 days needs a2 (the newest backup before
        // that span), so its chain down to a stays.
        let days = Retention {
            full: Some(1),
            days: Some(8),
        };
        assert!(expired(&all, &days, now).is_empty());
        let days = Retention {
            full: Some(1),
            days: Some(7),
        };
        assert_eq!(ids(&expired(&all, &days, now)), ["a", "a1", "a2"]);
        // A restore of a2 reads a, a1, a2; with a1 gone it cannot be restored.
        assert_eq!(ids(&chain(&all, &all[2]).unwrap()), ["a", "a1", "a2"]);
        assert_eq!(ids(&chain(&all, &all[3]).unwrap()), ["b"]);
        let broken = [all[0].clone(), all[2].clone()];
        let err = chain(&broken, &broken[1]).unwrap_err().to_string();
        assert!(err.contains("built on backup `a1`"), "{err}");
    }

    #[test]
    fn retention_keeps_the_newest_full_and_what_restores_within_the_days() {
        let all = [
            manifest("a", "2026-11-20T01:00:00Z"),
            manifest("b", "2026-11-25T01:00:00Z"),
            manifest("c", "2026-11-28T01:00:00Z"),
            manifest("d", "2026-12-01T01:00:00Z"),
            manifest("e", "2026-12-02T01:00:00Z"),
        ];
        let now: jiff::Timestamp = "2026-12-03T00:00:00Z".parse().unwrap();
        let policy = |full, days| Retention { full, days };
        assert!(expired(&all, &Retention::default(), now).is_empty());
        assert_eq!(
            ids(&expired(&all, &policy(Some(2), None), now)),
            ["a", "b", "c"]
        );
        // 3 days back is Nov 30: d and e are inside, c is the base a restore to Nov 30
        // starts from.
        assert_eq!(ids(&expired(&all, &policy(None, Some(3)), now)), ["a", "b"]);
        assert_eq!(ids(&expired(&all, &policy(Some(4), Some(3)), now)), ["a"]);
        // Every backup older than the span, but the newest is never let go.
        let old = [
            manifest("x", "2026-01-01T00:00:00Z"),
            manifest("y", "2026-02-01T00:00:00Z"),
        ];
        assert_eq!(ids(&expired(&old, &policy(None, Some(7)), now)), ["x"]);
    }
}
