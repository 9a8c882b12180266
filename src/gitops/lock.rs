//! Per-database locks so two runs against the same database never proceed at once.
//!
//! A lock is `<repo>/.dbctl/locks/<name>.lock`, held with an exclusive `flock` for the
//! life of the process and holding its owner (pid, user, host, operation, start time) as
//! JSON. The kernel drops the lock when the owner dies, so a crashed run never leaves a
//! stale lock: its time to live is its process's life.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// User name.
    pub user: String,
    /// Host name.
    pub host: String,
    /// The dbctl verb (`create`, `delete`, …).
    pub operation: String,
    /// When it was taken (RFC 3339).
    pub since: String,
}

/// Errors taking a lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the lock.
    #[error(
        "database `{name}` is locked by another run: dbctl {} (pid {}, user {} on {}) since {}; retry when it ends, or pass `--lock-timeout SECONDS` to wait",
        owner.operation, owner.pid, owner.user, owner.host, owner.since
    )]
    Held {
        /// The database.
        name: String,
        /// The holder.
        owner: Box<Owner>,
    },
    /// The lock file could not be created.
    #[error("cannot use lock file `{path}`")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Takes the lock of database `name` under `repo_root`, waiting up to `wait` (zero: fail
/// at once) while another process holds it.
///
/// # Errors
/// [`LockError::Held`] naming the holder, or [`LockError::Io`].
pub fn acquire(
    repo_root: &Path,
    name: &str,
    operation: &str,
    wait: Duration,
) -> Result<Lock, LockError> {
    let dir = repo_root.join(super::WORK_DIR).join("locks");
    let path = dir.join(format!("{name}.lock"));
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let owner = serde_json::from_str(&text).unwrap_or_else(|_| Owner {
                        pid: 0,
                        user: "?".into(),
                        host: "?".into(),
                        operation: "?".into(),
                        since: "?".into(),
                    });
                    return Err(LockError::Held {
                        name: name.to_owned(),
                        owner: Box::new(owner),
                    });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(TryLockError::Error(err)) => return Err(io(err)),
        }
    }
    let owner = Owner {
        pid: std::process::id(),
        user: crate::transport::current_user_name(),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        operation: operation.to_owned(),
        since: jiff::Timestamp::now().to_string(),
    };
    let body = serde_json::to_vec(&owner).unwrap_or_default();
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(&body).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(Lock { file })
}
