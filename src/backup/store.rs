//! Backup stores: where backups live (`backup_stores:` in `etc/dbctl.yml`), opened as
//! opendal operators with retry and timeout layers. Three kinds:
//!
//! - `dir`: a directory on the machine running dbctl;
//! - `swift`: OpenStack Swift with tempauth (v1.0: `X-Auth-User`/`X-Auth-Key` →
//!   `X-Storage-Url`, `X-Auth-Token`), or with Keystone v3 (`openrc`: a token and the
//!   catalog's `object-store` endpoint); the container is created when missing;
//! - `s3`: any S3-compatible endpoint, path-style addressing, SigV4.
//!
//! Secrets (the Swift key, the S3 secret key) come from an environment variable
//! (`secret_env`) or a file only its owner can read (`secret_file`), never from the repo,
//! and are never printed.
//!
//! The operators are async; a [`Store`] drives them from plain threads with the run's
//! runtime handle, so its readers and writers are `std::io` streams that any transport
//! (even one inside the runtime) can pull from or push into.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};
use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Parts an object may have: Swift's default `max_manifest_segments` (S3 allows
/// 10,000).
const MAX_PARTS: u64 = 1000;
/// Bytes of one upload part (a Swift segment / S3 part) when nothing says how large
/// the object will be: objects up to 64 GB.
const PART_BYTES: usize = 64 << 20;
/// The smallest part [`part_bytes`] chooses (S3 refuses parts under 5 MiB but the last).
const MIN_PART_BYTES: u64 = 8 << 20;
/// The largest part [`part_bytes`] chooses (held in memory twice while uploading).
const MAX_PART_BYTES: u64 = 1 << 30;
/// Bytes handed from the producer to the upload thread at a time.
const HANDOFF_BYTES: usize = 4 << 20;

/// The part size for an object expected to be about `expected` bytes (the latest
/// full backup's size): room for eight times that in [`MAX_PARTS`] parts, rounded up to a
/// power of two within [`MIN_PART_BYTES`]..=[`MAX_PART_BYTES`]. The last part goes up
/// after the stream has ended, so smaller parts end a backup sooner.
fn part_bytes(expected: Option<u64>) -> usize {
    expected.map_or(PART_BYTES, |bytes| {
        let part = (bytes.saturating_mul(8) / MAX_PARTS)
            .clamp(MIN_PART_BYTES, MAX_PART_BYTES)
            .next_power_of_two();
        usize::try_from(part).unwrap_or(PART_BYTES)
    })
}

/// One entry of `backup_stores:` as written in `etc/dbctl.yml`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `dir`, `swift` or `s3`.
    pub kind: String,
    /// `dir`: absolute path of the directory (created 0700 when missing).
    #[serde(default)]
    pub path: Option<String>,
    /// `swift`: the tempauth URL (`http://swift:8080/auth/v1.0`); `s3`: the endpoint
    /// (`https://s3.example.net`).
    #[serde(default)]
    pub url: Option<String>,
    /// `swift`: the container; `s3`: the bucket (it must exist).
    #[serde(default)]
    pub container: Option<String>,
    /// Path prefix inside the container or bucket (default: none).
    #[serde(default)]
    pub prefix: Option<String>,
    /// `s3`: the region (default `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// `swift`: the user (`account:user`); `s3`: the access key id.
    #[serde(default)]
    pub user: Option<String>,
    /// `swift` with Keystone v3 instead of tempauth: the absolute path of an openrc
    /// file (`export OS_AUTH_URL=…`, read, never run; unset variables come from the
    /// environment); `url` and `user` are then not given, and `secret_env` /
    /// `secret_file`, when given, replace `OS_PASSWORD`.
    #[serde(default)]
    pub openrc: Option<String>,
    /// The environment variable holding the Swift key or the S3 secret key.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// A file holding the Swift key or the S3 secret key; readable by its owner only.
    #[serde(default)]
    pub secret_file: Option<String>,
}

/// A validated backup store entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreConfig {
    /// A directory.
    Dir {
        /// Absolute path.
        path: PathBuf,
    },
    /// Swift with tempauth.
    Swift {
        /// The auth URL.
        url: String,
        /// `account:user`.
        user: String,
        /// The container.
        container: String,
        /// Prefix inside it.
        prefix: String,
        /// Where the key comes from.
        secret: SecretSource,
    },
    /// Swift with Keystone v3: a token and the `object-store` endpoint from the
    /// catalog of the openrc file's project.
    SwiftKeystone {
        /// The openrc file (absolute).
        openrc: PathBuf,
        /// The container.
        container: String,
        /// Prefix inside it.
        prefix: String,
        /// Where the password comes from instead of `OS_PASSWORD` (`None`: the
        /// openrc file or the environment).
        secret: Option<SecretSource>,
    },
    /// S3, path style.
    S3 {
        /// The endpoint.
        url: String,
        /// The bucket.
        bucket: String,
        /// Prefix inside it.
        prefix: String,
        /// The region.
        region: String,
        /// The access key id.
        access_key_id: String,
        /// Where the secret key comes from.
        secret: SecretSource,
    },
}

/// Where a store's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// An environment variable's name.
    Env(String),
    /// A file readable by its owner only.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret.
    ///
    /// # Errors
    /// [`StoreError::Secret`] naming the variable or file (never the value).
    pub fn read(&self, store: &str) -> Result<SecretString, StoreError> {
        let fail = |message: String| StoreError::Secret {
            store: store.to_owned(),
            message,
        };
        match self {
            Self::Env(var) => std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .map(SecretString::from)
                .ok_or_else(|| fail(format!("environment variable `{var}` is not set"))),
            Self::File(path) => {
                use std::os::unix::fs::MetadataExt;
                let meta = std::fs::metadata(path)
                    .map_err(|e| fail(format!("cannot read `{}`: {e}", path.display())))?;
                if meta.mode() & 0o077 != 0 {
                    return Err(fail(format!(
                        "`{}` is readable by others (mode {:o}); make it 0600",
                        path.display(),
                        meta.mode() & 0o777
                    )));
                }
                let text = std::fs::read_to_string(path)
                    .map_err(|e| fail(format!("cannot read `{}`: {e}", path.display())))?;
                Ok(SecretString::from(text.trim().to_owned()))
            }
        }
    }
}

impl StoreConfig {
    /// The entry as `backup_stores.<name>` in `etc/dbctl.yml` reads it ([`RawStore`]'s
    /// fields), for a configuration dbctl writes elsewhere (a host's scheduled backups).
    pub fn to_raw(&self) -> serde_json::Value {
        let secret = |source: &SecretSource| match source {
            SecretSource::Env(var) => ("secret_env", var.clone()),
            SecretSource::File(path) => ("secret_file", path.to_string_lossy().into_owned()),
        };
        let prefixed = |mut entry: serde_json::Value, prefix: &str| {
            if !prefix.is_empty() {
                entry["prefix"] = prefix.into();
            }
            entry
        };
        match self {
            Self::Dir { path } => serde_json::json!({"kind": "dir", "path": path}),
            Self::Swift {
                url,
                user,
                container,
                prefix,
                secret: source,
            } => {
                let (key, value) = secret(source);
                prefixed(
                    serde_json::json!({"kind": "swift", "url": url, "user": user, "container": container, key: value}),
                    prefix,
                )
            }
            Self::SwiftKeystone {
                openrc,
                container,
                prefix,
                secret: source,
            } => {
                let mut entry =
                    serde_json::json!({"kind": "swift", "openrc": openrc, "container": container});
                if let Some(source) = source {
                    let (key, value) = secret(source);
                    entry[key] = value.into();
                }
                prefixed(entry, prefix)
            }
            Self::S3 {
                url,
                bucket,
                prefix,
                region,
                access_key_id,
                secret: source,
            } => {
                let (key, value) = secret(source);
                prefixed(
                    serde_json::json!({"kind": "s3", "url": url, "container": bucket, "region": region, "user": access_key_id, key: value}),
                    prefix,
                )
            }
        }
    }

    /// Where its secret comes from (`dir` has none).
    pub fn secret(&self) -> Option<&SecretSource> {
        match self {
            Self::Dir { .. } => None,
            Self::Swift { secret, .. } | Self::S3 { secret, .. } => Some(secret),
            Self::SwiftKeystone { secret, .. } => secret.as_ref(),
        }
    }

    /// The same store with its secret taken from `source`.
    #[must_use]
    pub fn with_secret(mut self, source: SecretSource) -> Self {
        match &mut self {
            Self::Swift { secret, .. } | Self::S3 { secret, .. } => *secret = source,
            Self::SwiftKeystone { secret, .. } => *secret = Some(source),
            Self::Dir { .. } => {}
        }
        self
    }

    /// Validates a raw entry; `key` is its place in the file (`backup_stores.NAME`).
    ///
    /// # Errors
    /// A message naming the key and what is allowed.
    pub fn from_raw(raw: &RawStore, key: &str) -> Result<Self, String> {
        let need = |value: Option<String>, field: &str| {
            value
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| format!("`{key}.{field}` is required for kind `{}`", raw.kind))
        };
        let secret = || match (&raw.secret_env, &raw.secret_file) {
            (Some(var), None) => Ok(SecretSource::Env(var.clone())),
            (None, Some(file)) if Path::new(file).is_absolute() => {
                Ok(SecretSource::File(PathBuf::from(file)))
            }
            (None, Some(file)) => Err(format!(
                "`{key}.secret_file` must be an absolute path outside the repo, not `{file}`"
            )),
            _ => Err(format!(
                "`{key}` needs exactly one of `secret_env` (a variable's name) or `secret_file` (a 0600 file): secrets never go into the repo"
            )),
        };
        let prefix = raw
            .prefix
            .clone()
            .unwrap_or_default()
            .trim_matches('/')
            .to_owned();
        match raw.kind.as_str() {
            "dir" => {
                let path = need(raw.path.clone(), "path")?;
                if !Path::new(&path).is_absolute() {
                    return Err(format!("`{key}.path` must be absolute, not `{path}`"));
                }
                Ok(Self::Dir {
                    path: PathBuf::from(path),
                })
            }
            "swift" if raw.openrc.is_some() => {
                if raw.url.is_some() || raw.user.is_some() {
                    return Err(format!(
                        "`{key}` has `openrc` (Keystone v3) and `url`/`user` (tempauth); give one"
                    ));
                }
                let openrc = raw.openrc.clone().unwrap_or_default();
                if !Path::new(&openrc).is_absolute() {
                    return Err(format!(
                        "`{key}.openrc` must be an absolute path outside the repo, not `{openrc}`"
                    ));
                }
                let secret = if raw.secret_env.is_some() || raw.secret_file.is_some() {
                    Some(secret()?)
                } else {
                    None
                };
                Ok(Self::SwiftKeystone {
                    openrc: PathBuf::from(openrc),
                    container: need(raw.container.clone(), "container")?,
                    prefix,
                    secret,
                })
            }
            "swift" => Ok(Self::Swift {
                url: need(raw.url.clone(), "url")?,
                user: need(raw.user.clone(), "user")?,
                container: need(raw.container.clone(), "container")?,
                prefix,
                secret: secret()?,
            }),
            "s3" => Ok(Self::S3 {
                url: need(raw.url.clone(), "url")?,
                bucket: need(raw.container.clone(), "container")?,
                prefix,
                region: raw.region.clone().unwrap_or_else(|| "us-east-1".into()),
                access_key_id: need(raw.user.clone(), "user")?,
                secret: secret()?,
            }),
            other => Err(format!(
                "`{key}.kind` is `{other}`; allowed: dir, swift, s3"
            )),
        }
    }
}

/// Store errors; each names the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The secret cannot be read.
    #[error("backup store `{store}`: {message}")]
    Secret {
        /// Store name.
        store: String,
        /// What is wrong (never the value).
        message: String,
    },
    /// Authentication was refused.
    #[error(
        "backup store `{store}`: the credentials were refused ({message}); check `user` and the secret"
    )]
    Auth {
        /// Store name.
        store: String,
        /// The server's answer.
        message: String,
    },
    /// The store cannot be reached.
    #[error("backup store `{store}` cannot be reached at {url}: {message}")]
    Unreachable {
        /// Store name.
        store: String,
        /// Where.
        url: String,
        /// Why.
        message: String,
    },
    /// An operation on an object failed.
    #[error("backup store `{store}`: {operation} `{path}`: {source}")]
    Object {
        /// Store name.
        store: String,
        /// `read`, `write`, `list`, `delete`.
        operation: &'static str,
        /// Object path.
        path: String,
        /// opendal's error.
        source: Box<opendal::Error>,
    },
}

/// An open backup store.
#[derive(Clone)]
pub struct Store {
    /// Its name in `etc/dbctl.yml`.
    pub name: String,
    op: Operator,
    /// Swift: the container's root and the prefix, where opendal keeps the segments of
    /// large objects (`.segments/<prefix>/<path><upload id>/…`), outside the prefix.
    segments: Option<(Operator, String)>,
    handle: tokio::runtime::Handle,
}

/// Digest and size of what went through a reader or writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Bytes.
    pub bytes: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

impl Store {
    /// Opens `config` (authenticating and, for Swift, creating the container), with
    /// up to 4 retries and a 120 s timeout per request.
    ///
    /// # Errors
    /// [`StoreError`]: a missing secret, refused credentials, an unreachable endpoint.
    pub fn open(
        name: &str,
        config: &StoreConfig,
        handle: tokio::runtime::Handle,
    ) -> Result<Self, StoreError> {
        let object_err = |operation, path: &str, source| StoreError::Object {
            store: name.to_owned(),
            operation,
            path: path.to_owned(),
            source: Box::new(source),
        };
        let mut segments = None;
        let op = match config {
            StoreConfig::Dir { path } => {
                std::fs::create_dir_all(path).map_err(|e| StoreError::Unreachable {
                    store: name.to_owned(),
                    url: path.display().to_string(),
                    message: e.to_string(),
                })?;
                let builder = opendal::services::Fs::default().root(&path.to_string_lossy());
                Operator::new(builder).map_err(|e| object_err("open", "", e))?
            }
            StoreConfig::Swift {
                url,
                user,
                container,
                prefix,
                secret,
            } => {
                let key = secret.read(name)?;
                let (storage_url, token) = tempauth(name, url, user, &key)?;
                let (op, whole) = swift(name, (&storage_url, &token), container, prefix)?;
                segments = Some(whole);
                op
            }
            StoreConfig::SwiftKeystone {
                openrc,
                container,
                prefix,
                secret,
            } => {
                let (storage_url, token) = keystone(name, openrc, secret.as_ref())?;
                let (op, whole) = swift(name, (&storage_url, &token), container, prefix)?;
                segments = Some(whole);
                op
            }
            StoreConfig::S3 {
                url,
                bucket,
                prefix,
                region,
                access_key_id,
                secret,
            } => {
                let key = secret.read(name)?;
                let builder = opendal::services::S3::default()
                    .endpoint(url)
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(region)
                    .access_key_id(access_key_id)
                    .secret_access_key(key.expose_secret())
                    .disable_config_load()
                    .disable_ec2_metadata();
                Operator::new(builder).map_err(|e| object_err("open", "", e))?
            }
        };
        Self::checked(name, op, segments, handle, &describe(config))
    }

    /// The Swift container `container` of the Keystone project `creds` name (an
    /// openstack target's own openrc: its databases' `backup-<name>` containers, which
    /// their data stacks make), opened as [`Self::open`] opens a configured store.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_keystone(
        name: &str,
        creds: &crate::platform::openstack::keystone::Credentials,
        container: &str,
        handle: tokio::runtime::Handle,
    ) -> Result<Self, StoreError> {
        let (storage_url, token) = keystone_endpoint(name, creds)?;
        let (op, whole) = swift(name, (&storage_url, &token), container, "")?;
        let described = format!(
            "Swift of the Keystone project in {} (container {container})",
            creds.source.display()
        );
        Self::checked(name, op, Some(whole), handle, &described)
    }

    /// Adds the timeout and retry layers and proves the endpoint and the credentials
    /// with one listing before any backup starts.
    fn checked(
        name: &str,
        op: Operator,
        segments: Option<(Operator, String)>,
        handle: tokio::runtime::Handle,
        described: &str,
    ) -> Result<Self, StoreError> {
        let op = op
            .layer(TimeoutLayer::new().with_timeout(Duration::from_mins(2)))
            .layer(
                RetryLayer::new()
                    .with_max_times(4)
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(200)),
            );
        let store = Self {
            name: name.to_owned(),
            op,
            segments,
            handle,
        };
        // One listing proves the endpoint and the credentials before any backup starts.
        store
            .handle
            .block_on(async { store.op.list_with("/").limit(1).await })
            .map_err(|e| {
                if e.kind() == opendal::ErrorKind::PermissionDenied {
                    StoreError::Auth {
                        store: name.to_owned(),
                        message: e.to_string(),
                    }
                } else {
                    StoreError::Unreachable {
                        store: name.to_owned(),
                        url: described.to_owned(),
                        message: e.to_string(),
                    }
                }
            })?;
        Ok(store)
    }

    fn err(&self, operation: &'static str, path: &str, source: opendal::Error) -> StoreError {
        StoreError::Object {
            store: self.name.clone(),
            operation,
            path: path.to_owned(),
            source: Box::new(source),
        }
    }

    /// Writes a small object at once (a manifest).
    ///
    /// # Errors
    /// [`StoreError::Object`].
    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.handle
            .block_on(self.op.write(path, bytes))
            .map(|_| ())
            .map_err(|e| self.err("write", path, e))
    }

    /// Whether an object exists.
    ///
    /// # Errors
    /// [`StoreError::Object`].
    pub fn exists(&self, path: &str) -> Result<bool, StoreError> {
        self.handle
            .block_on(self.op.exists(path))
            .map_err(|e| self.err("stat", path, e))
    }

    /// Reads a small object whole; `None` when it does not exist.
    ///
    /// # Errors
    /// [`StoreError::Object`].
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.handle.block_on(self.read_optional(path))
    }

    /// [`Self::get`] of each of `paths`, up to 16 requests at a time (a listing's
    /// manifests: one round trip each otherwise), in the order of `paths`.
    ///
    /// # Errors
    /// [`StoreError::Object`] of the first that failed.
    pub fn get_many(&self, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        use futures::StreamExt as _;
        let reads = futures::stream::iter(paths)
            .map(|path| self.read_optional(path))
            .buffered(16)
            .collect::<Vec<_>>();
        self.handle.block_on(reads).into_iter().collect()
    }

    /// One object's bytes, `None` when it does not exist.
    async fn read_optional(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.op.read(path).await {
            Ok(buffer) => Ok(Some(buffer.to_vec())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("read", path, e)),
        }
    }

    /// The names of the entries directly below `dir` (`db/`), without the prefix;
    /// directories end in `/`.
    ///
    /// # Errors
    /// [`StoreError::Object`].
    pub fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let entries = match self.handle.block_on(self.op.list(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", dir, e)),
        };
        Ok(entries
            .into_iter()
            .map(|e| e.name().to_owned())
            .filter(|n| !n.is_empty() && n != dir)
            .collect())
    }

    /// Removes one object (nothing when it is not there).
    ///
    /// # Errors
    /// [`StoreError::Object`].
    pub fn delete(&self, path: &str) -> Result<(), StoreError> {
        self.handle
            .block_on(self.op.delete(path))
            .map_err(|e| self.err("delete", path, e))
    }

    /// Removes everything below `dir` (`db/ID/`), segments of large objects included.
    ///
    /// # Errors
    /// [`StoreError::Object`].
    pub fn remove_all(&self, dir: &str) -> Result<(), StoreError> {
        self.handle
            .block_on(async { self.op.delete_with(dir).recursive(true).await })
            .map_err(|e| self.err("delete", dir, e))?;
        if let Some((whole, prefix)) = &self.segments {
            let segments = format!(".segments/{prefix}{dir}");
            self.handle
                .block_on(async { whole.delete_with(&segments).recursive(true).await })
                .map_err(|e| self.err("delete", &segments, e))?;
        }
        Ok(())
    }

    /// A streaming writer of the object at `path`: bytes written are uploaded in
    /// parts by a thread of its own; [`ObjectWriter::finish`] completes the object.
    /// Dropped unfinished, the upload is aborted. `expected` is about how many bytes
    /// the object will have (the previous backup's), which sizes its parts.
    pub fn writer(&self, path: &str, expected: Option<u64>) -> ObjectWriter {
        let (tx, rx) = sync_channel::<Handoff>(4);
        let store = self.clone();
        let object = path.to_owned();
        let part = part_bytes(expected);
        let worker = std::thread::spawn(move || store.upload(&object, part, &rx));
        ObjectWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(HANDOFF_BYTES),
            hasher: Sha256::new(),
            bytes: 0,
            worker: Some(worker),
            path: path.to_owned(),
            store: self.name.clone(),
        }
    }

    fn upload(&self, path: &str, part: usize, rx: &Receiver<Handoff>) -> Result<(), StoreError> {
        let mut writer = self
            .handle
            .block_on(async { self.op.writer_with(path).chunk(part).concurrent(2).await })
            .map_err(|e| self.err("write", path, e))?;
        loop {
            match rx.recv() {
                Ok(Handoff::Bytes(bytes)) => {
                    if let Err(e) = self.handle.block_on(writer.write(bytes)) {
                        let _ = self.handle.block_on(writer.abort());
                        return Err(self.err("write", path, e));
                    }
                }
                Ok(Handoff::Finish) => {
                    return self
                        .handle
                        .block_on(writer.close())
                        .map(|_| ())
                        .map_err(|e| self.err("write", path, e));
                }
                Err(_) => {
                    let _ = self.handle.block_on(writer.abort());
                    return Ok(());
                }
            }
        }
    }

    /// A streaming reader of the object at `path`, downloaded by a thread of its own;
    /// at the end it checks the object against `expected` and fails the read (an
    /// [`std::io::ErrorKind::InvalidData`] error) on a mismatch.
    pub fn reader(&self, path: &str, expected: Sealed) -> ObjectReader {
        // The HTTP body's frames (64 KiB to 400 KiB): the download runs up to a few
        // MiB of the sealed object ahead of decryption, never stalled by a slow moment
        // of the unpacker while its next range is requested.
        let (tx, rx) = sync_channel::<std::io::Result<Vec<u8>>>(64);
        let store = self.clone();
        let object = path.to_owned();
        std::thread::spawn(move || store.download(&object, &tx));
        ObjectReader {
            rx,
            current: Vec::new(),
            at: 0,
            hasher: Sha256::new(),
            bytes: 0,
            expected,
            path: path.to_owned(),
            done: false,
        }
    }

    fn download(&self, path: &str, tx: &SyncSender<std::io::Result<Vec<u8>>>) {
        use futures::StreamExt;
        let stream = self.handle.block_on(async {
            self.op
                .reader_with(path)
                .chunk(8 << 20)
                .concurrent(2)
                .await?
                .into_bytes_stream(..)
                .await
        });
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(self.err("read", path, e))));
                return;
            }
        };
        loop {
            match self.handle.block_on(stream.next()) {
                Some(Ok(bytes)) => {
                    if tx.send(Ok(bytes.to_vec())).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                None => return,
            }
        }
    }
}

/// A human description of where a store is (no secrets).
pub fn describe(config: &StoreConfig) -> String {
    match config {
        StoreConfig::Dir { path } => path.display().to_string(),
        StoreConfig::Swift { url, container, .. } => format!("{url} (container {container})"),
        StoreConfig::SwiftKeystone {
            openrc, container, ..
        } => format!(
            "Swift of the Keystone project in {} (container {container})",
            openrc.display()
        ),
        StoreConfig::S3 { url, bucket, .. } => format!("{url} (bucket {bucket})"),
    }
}

/// The Swift operator of `container` under `prefix` at `storage_url` (the container
/// created when missing), and the container's root with the prefix (where opendal
/// keeps large objects' segments).
///
/// # Errors
/// [`StoreError`]: the container cannot be created or the operator built.
fn swift(
    store: &str,
    (storage_url, token): (&str, &SecretString),
    container: &str,
    prefix: &str,
) -> Result<(Operator, (Operator, String)), StoreError> {
    let object_err = |source| StoreError::Object {
        store: store.to_owned(),
        operation: "open",
        path: String::new(),
        source: Box::new(source),
    };
    create_container(store, storage_url, container, token)?;
    let builder = |root: &str| {
        opendal::services::Swift::default()
            .endpoint(storage_url)
            .container(container)
            .root(root)
            .token(token.expose_secret())
    };
    let whole = Operator::new(builder("/")).map_err(object_err)?;
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let op = Operator::new(builder(&format!("/{prefix}"))).map_err(object_err)?;
    Ok((op, (whole, prefix)))
}

/// The Keystone v3 credentials of a Swift store: its openrc file (absolute), the
/// password from `secret` when given, else from the file or the environment.
///
/// # Errors
/// [`StoreError::Secret`] for an unreadable openrc or secret, or missing credentials,
/// naming the store.
pub fn keystone_credentials(
    store: &str,
    openrc: &Path,
    secret: Option<&SecretSource>,
) -> Result<crate::platform::openstack::keystone::Credentials, StoreError> {
    use crate::platform::openstack::keystone;
    match secret {
        Some(source) => {
            keystone::Credentials::from_openrc_with_password(openrc, source.read(store)?)
        }
        None => keystone::Credentials::from_openrc(openrc),
    }
    .map_err(|e| StoreError::Secret {
        store: store.to_owned(),
        message: e.to_string(),
    })
}

/// Keystone v3 for a Swift store: the `object-store` endpoint and a token for the
/// openrc file's project ([`keystone_credentials`]).
///
/// # Errors
/// [`StoreError::Secret`] for an unreadable openrc or secret, [`StoreError::Auth`] when
/// Keystone refuses the credentials, [`StoreError::Unreachable`] otherwise.
fn keystone(
    store: &str,
    openrc: &Path,
    secret: Option<&SecretSource>,
) -> Result<(String, SecretString), StoreError> {
    keystone_endpoint(store, &keystone_credentials(store, openrc, secret)?)
}

/// The `object-store` endpoint and a token for the project of `creds`.
///
/// # Errors
/// [`StoreError::Auth`] when Keystone refuses the credentials,
/// [`StoreError::Unreachable`] otherwise.
fn keystone_endpoint(
    store: &str,
    creds: &crate::platform::openstack::keystone::Credentials,
) -> Result<(String, SecretString), StoreError> {
    use crate::platform::openstack::{OpenstackError, keystone};
    keystone::object_store(creds).map_err(|e| match e {
        OpenstackError::Api { status: 401, .. } => StoreError::Auth {
            store: store.to_owned(),
            message: e.to_string(),
        },
        other => StoreError::Unreachable {
            store: store.to_owned(),
            url: creds.auth_url(),
            message: other.to_string(),
        },
    })
}

/// Swift tempauth (v1.0): the storage URL and a token.
fn tempauth(
    store: &str,
    url: &str,
    user: &str,
    key: &SecretString,
) -> Result<(String, SecretString), StoreError> {
    let unreachable = |message: String| StoreError::Unreachable {
        store: store.to_owned(),
        url: url.to_owned(),
        message,
    };
    let response = http()
        .get(url)
        .header("X-Auth-User", user)
        .header("X-Auth-Key", key.expose_secret())
        .send()
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(StoreError::Auth {
            store: store.to_owned(),
            message: format!("{url} answered {status}"),
        });
    }
    if !status.is_success() {
        return Err(unreachable(format!("answered {status}")));
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| unreachable(format!("the answer has no {name} header")))
    };
    Ok((
        header("X-Storage-Url")?,
        SecretString::from(header("X-Auth-Token")?),
    ))
}

/// PUT on a container is idempotent: 201 created, 202 already there.
fn create_container(
    store: &str,
    storage_url: &str,
    container: &str,
    token: &SecretString,
) -> Result<(), StoreError> {
    let url = format!("{}/{container}", storage_url.trim_end_matches('/'));
    let response = http()
        .put(&url)
        .header("X-Auth-Token", token.expose_secret())
        .send()
        .map_err(|e| StoreError::Unreachable {
            store: store.to_owned(),
            url: url.clone(),
            message: e.to_string(),
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(StoreError::Unreachable {
            store: store.to_owned(),
            url,
            message: format!("creating the container answered {}", response.status()),
        })
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|_| reqwest::blocking::Client::new())
}

enum Handoff {
    Bytes(Vec<u8>),
    Finish,
}

/// See [`Store::writer`].
pub struct ObjectWriter {
    tx: Option<SyncSender<Handoff>>,
    buf: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
    worker: Option<JoinHandle<Result<(), StoreError>>>,
    path: String,
    store: String,
}

impl ObjectWriter {
    fn hand_off(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(HANDOFF_BYTES));
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Handoff::Bytes(bytes)).is_ok());
        if sent {
            Ok(())
        } else {
            // The upload thread ended: report its error.
            Err(std::io::Error::other(self.join().err().map_or_else(
                || format!("upload of `{}` to `{}` stopped", self.path, self.store),
                |e| e.to_string(),
            )))
        }
    }

    fn join(&mut self) -> Result<(), StoreError> {
        self.tx = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) | None => Ok(()),
        }
    }

    /// Completes the object; returns what was stored.
    ///
    /// # Errors
    /// The upload failed.
    pub fn finish(mut self) -> Result<Sealed, StoreError> {
        if let Err(e) = self.hand_off() {
            return Err(StoreError::Object {
                store: self.store.clone(),
                operation: "write",
                path: self.path.clone(),
                source: Box::new(opendal::Error::new(
                    opendal::ErrorKind::Unexpected,
                    e.to_string(),
                )),
            });
        }
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Handoff::Finish);
        }
        self.join()?;
        Ok(Sealed {
            bytes: self.bytes,
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
        })
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= HANDOFF_BYTES {
            self.hand_off()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        // Unfinished: closing the channel without `Finish` aborts the upload.
        let _ = self.join();
    }
}

/// See [`Store::reader`].
pub struct ObjectReader {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    hasher: Sha256,
    bytes: u64,
    expected: Sealed,
    path: String,
    done: bool,
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.hasher.update(&chunk);
                    self.bytes += chunk.len() as u64;
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    self.done = true;
                    let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
                    if self.bytes != self.expected.bytes || sha256 != self.expected.sha256 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "object `{}` does not match its manifest ({} bytes, sha256 {}; the manifest says {} bytes, sha256 {}): the backup is corrupted",
                                self.path,
                                self.bytes,
                                sha256,
                                self.expected.bytes,
                                self.expected.sha256
                            ),
                        ));
                    }
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_leave_room_for_eight_times_the_last_backup() {
        assert_eq!(part_bytes(None), 64 << 20);
        // Small backups: the smallest part, so the last one uploads quickly.
        assert_eq!(part_bytes(Some(90 << 20)), 8 << 20);
        // 100 GB: 800 MB in 1,000 parts, rounded up to 1 GiB.
        assert_eq!(part_bytes(Some(100_000_000_000)), 1 << 30);
        assert!(part_bytes(Some(10_000_000_000)) as u64 * MAX_PARTS >= 80_000_000_000);
        assert_eq!(part_bytes(Some(u64::MAX)), 1 << 30);
    }

    fn raw(value: serde_json::Value) -> RawStore {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_kind_of_store_reads_back_as_it_is_written_for_a_host() {
        for entry in [
            serde_json::json!({"kind": "dir", "path": "/srv/backups"}),
            serde_json::json!({"kind": "swift", "url": "http://swift:8080/auth/v1.0", "user": "a:b", "container": "c", "prefix": "p/", "secret_file": "/etc/dbctl/key"}),
            serde_json::json!({"kind": "swift", "openrc": "/etc/dbctl/openrc.sh", "container": "c", "secret_env": "OS_PW"}),
            serde_json::json!({"kind": "s3", "url": "http://s3:9000", "container": "b", "region": "eu-1", "user": "AK", "secret_env": "S3_KEY"}),
        ] {
            let store = StoreConfig::from_raw(&raw(entry.clone()), "s").unwrap();
            let again = StoreConfig::from_raw(&raw(store.to_raw()), "s").unwrap();
            assert_eq!(again, store, "{entry}");
        }
    }

    #[test]
    fn a_swift_store_with_an_openrc_file_authenticates_with_keystone() {
        let store = StoreConfig::from_raw(
            &raw(serde_json::json!({
                "kind": "swift", "openrc": "/etc/dbctl/openrc.sh", "container": "backups",
                "prefix": "/prod/",
            })),
            "backup_stores.cloud",
        )
        .unwrap();
        assert_eq!(
            store,
            StoreConfig::SwiftKeystone {
                openrc: PathBuf::from("/etc/dbctl/openrc.sh"),
                container: "backups".into(),
                prefix: "prod".into(),
                secret: None,
            }
        );
        // A password file replaces OS_PASSWORD; a scheduled backup's file is swapped in.
        let with_file = StoreConfig::from_raw(
            &raw(serde_json::json!({
                "kind": "swift", "openrc": "/etc/dbctl/openrc.sh", "container": "backups",
                "secret_file": "/etc/dbctl/os.password",
            })),
            "backup_stores.cloud",
        )
        .unwrap();
        assert_eq!(
            with_file.secret(),
            Some(&SecretSource::File("/etc/dbctl/os.password".into()))
        );
        let moved = store.with_secret(SecretSource::Env("OS_PASSWORD".into()));
        assert_eq!(
            moved.secret(),
            Some(&SecretSource::Env("OS_PASSWORD".into()))
        );
    }

    #[test]
    fn keystone_and_tempauth_do_not_mix_and_the_openrc_is_outside_the_repo() {
        let mixed = StoreConfig::from_raw(
            &raw(serde_json::json!({
                "kind": "swift", "openrc": "/etc/dbctl/openrc.sh", "container": "b",
                "url": "http://swift:8080/auth/v1.0", "user": "a:b",
            })),
            "backup_stores.cloud",
        )
        .unwrap_err();
        assert!(mixed.contains("give one"), "{mixed}");
        let relative = StoreConfig::from_raw(
            &raw(serde_json::json!({
                "kind": "swift", "openrc": "files/openrc.sh", "container": "b",
            })),
            "backup_stores.cloud",
        )
        .unwrap_err();
        assert!(
            relative.contains("`backup_stores.cloud.openrc` must be an absolute path"),
            "{relative}"
        );
    }
}
