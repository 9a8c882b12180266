//! Per-database locks so two runs against the same database never proceed at once.
//!
//! A lock is `<repo>/.dbctl/locks/<name>.lock`, held with an exclusive `flock` for the
//! life of the process; its owner (pid, user, host, operation, start time) is written as
//! JSON to `<name>.lock.owner` once it is held. The kernel drops the lock when the owner dies, so a crashed run never leaves a
//! stale lock: its time to live is its process's life.

use std::fs::{File, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::retry::{Check, Policy, Polled};
use crate::safefs::Anchor;

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

impl Owner {
    /// `dbctl create (pid 12, user ops on ci-3) since …`, or that the holder has not
    /// recorded itself yet.
    pub fn describe(&self) -> String {
        if self.pid == 0 {
            "its holder has not recorded itself yet".to_owned()
        } else {
            format!(
                "dbctl {} (pid {}, user {} on {}) since {}",
                self.operation, self.pid, self.user, self.host, self.since
            )
        }
    }
}

/// Errors taking a lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the lock.
    #[error(
        "database `{name}` is locked by another run: {}; retry when it ends, or pass `--lock-timeout SECONDS` to wait",
        owner.describe()
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
    anchor: Anchor,
    rel: PathBuf,
}

impl Lock {
    /// Releases the lock and removes its files: for a database that no longer exists.
    /// Safe against waiters: each checks, once it holds the lock, that the file it
    /// locked is still the one at the path, and starts over when it is not.
    pub fn remove(self) {
        let _ = self.anchor.remove_all(&owner_rel(&self.rel));
        let _ = self.anchor.remove_all(&self.rel);
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.anchor.remove_all(&owner_rel(&self.rel));
        let _ = self.file.unlock();
    }
}

/// `<name>.lock.owner`: the holder, written atomically once the lock is held, so a
/// reader never sees it half-written.
fn owner_rel(lock: &Path) -> PathBuf {
    let mut name = lock.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

/// Takes the lock of database `name` under `repo_root`, waiting up to `wait` (zero: fail
/// at once) while another process holds it. The lock file is opened without following
/// links (see [`crate::safefs`]).
///
/// # Errors
/// [`LockError::Held`] naming the holder, or [`LockError::Io`].
pub fn acquire(
    repo_root: &Path,
    name: &str,
    operation: &str,
    wait: Duration,
) -> Result<Lock, LockError> {
    let anchor = Anchor::new(repo_root);
    let rel = Path::new(super::WORK_DIR)
        .join("locks")
        .join(format!("{name}.lock"));
    let path = repo_root.join(&rel);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let safe = |e: crate::safefs::SafeFsError| LockError::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    let polled = Policy::until(Some(wait), Duration::from_millis(200)).poll(
        &format!("the lock of `{name}`"),
        || {
            let file = anchor.open_lock(&rel).map_err(safe)?;
            match file.try_lock() {
                Ok(()) => {
                    // `remove` may have unlinked the file we locked: lock the current one.
                    let same = std::fs::symlink_metadata(&path)
                        .ok()
                        .zip(file.metadata().ok())
                        .is_some_and(|(at_path, locked)| at_path.ino() == locked.ino());
                    Ok(if same {
                        Check::Ready(file)
                    } else {
                        Check::Pending(())
                    })
                }
                Err(TryLockError::WouldBlock) => Ok(Check::Pending(())),
                Err(TryLockError::Error(err)) => Err(io(err)),
            }
        },
    )?;
    let Polled::Ready(file) = polled else {
        return Err(LockError::Held {
            name: name.to_owned(),
            owner: Box::new(read_owner(&anchor, &rel)),
        });
    };
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
    anchor
        .write_atomic(&owner_rel(&rel), &body, 0o644, None)
        .map_err(safe)?;
    Ok(Lock { file, anchor, rel })
}

/// The holder of a lock, from its owner file; the holder may have just taken it and not
/// yet written the file, so this waits up to a second for it.
fn read_owner(anchor: &Anchor, rel: &Path) -> Owner {
    let read = || match anchor.read(&owner_rel(rel)) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        Ok(None) => Err("no owner file yet".to_owned()),
        Err(err) => Err(err.to_string()),
    };
    if let Ok(owner) = Policy::steady(10, Duration::from_millis(100)).retry(
        "reading the lock's owner",
        read,
        |_| true,
    ) {
        return owner;
    }
    Owner {
        pid: 0,
        user: "unknown".into(),
        host: "unknown".into(),
        operation: "unknown".into(),
        since: "unknown".into(),
    }
}
