//! Filesystem access beneath a trusted directory that never follows a symbolic link.
//!
//! dbctl often runs as root and writes into directories other users control: a GitOps
//! repo anybody with push access shaped, instance directories owned by `postgres` or
//! `redis`. A path such as `<state>/<name>/conf/redis.conf` whose `conf` a compromised
//! service user replaced with a link to `/etc` must not make root write `/etc/redis.conf`.
//!
//! An [`Anchor`] is a directory the operator chose (the repo root, the state directory);
//! it is opened as given. Every path below it is walked one component at a time with
//! `openat(…, O_NOFOLLOW)`, and the final operation works on the file descriptor
//! (`fchown`, `fchmod`) or on a name relative to the parent's descriptor (`renameat`,
//! `unlinkat`), so a link swapped in at any point is refused (`ELOOP`/`ENOTDIR`), never
//! followed. New files are created exclusively (`O_EXCL`) under unpredictable names, then
//! renamed into place. Linux `openat(2)`, `renameat(2)` and `unlinkat(2)` are the source.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

/// Largest file [`Anchor::read`] returns (16 MiB): specs, configuration, pid files and
/// templates are far smaller, and a huge file must not exhaust memory.
pub const READ_LIMIT: u64 = 16 << 20;

/// Errors of [`Anchor`] operations; each names the full path.
#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    /// A component of the path, or the file itself, is a symbolic link.
    #[error(
        "`{path}` is a symbolic link or lies under one; dbctl does not follow links it did not create (replace it with a regular file or directory)"
    )]
    Symlink {
        /// The path as asked for.
        path: PathBuf,
    },
    /// The path is not of the kind needed (a directory where a file is wanted, a FIFO…).
    #[error("`{path}` is not a {wanted}")]
    Kind {
        /// The path.
        path: PathBuf,
        /// What was wanted: `regular file`, `directory`.
        wanted: &'static str,
    },
    /// The file is larger than [`READ_LIMIT`].
    #[error("`{path}` is larger than {limit} bytes")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The relative path leaves the anchor (`..`, an absolute path).
    #[error("`{path}` leaves `{anchor}`")]
    Escapes {
        /// The path.
        path: PathBuf,
        /// The anchor directory.
        anchor: PathBuf,
    },
    /// A system call failed.
    #[error("cannot {action} `{path}`")]
    Io {
        /// What was attempted (`write`, `read`, `create`, …).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A trusted directory; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    root: PathBuf,
}

/// The owner to give a file or directory: user and group ids.
pub type Owner = (Uid, Gid);

impl Anchor {
    /// An anchor at `root` (absolute; followed as given, since the operator chose it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The anchor's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The part of absolute `path` below this anchor, if it lies below it.
    pub fn relative<'p>(&self, path: &'p Path) -> Option<&'p Path> {
        path.strip_prefix(&self.root).ok()
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// The normal components of `rel`, refusing `..` and absolute paths.
    fn components<'r>(&self, rel: &'r Path) -> Result<Vec<&'r OsStr>, SafeFsError> {
        rel.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| match c {
                Component::Normal(name) => Ok(name),
                _ => Err(SafeFsError::Escapes {
                    path: rel.to_path_buf(),
                    anchor: self.root.clone(),
                }),
            })
            .collect()
    }

    fn io(&self, action: &'static str, rel: &Path, errno: Errno) -> SafeFsError {
        let path = self.full(rel);
        match errno {
            Errno::ELOOP | Errno::ENOTDIR => SafeFsError::Symlink { path },
            _ => SafeFsError::Io {
                action,
                path,
                source: errno.into(),
            },
        }
    }

    fn open_root(&self, create: bool) -> Result<OwnedFd, SafeFsError> {
        if create {
            std::fs::create_dir_all(&self.root).map_err(|source| SafeFsError::Io {
                action: "create",
                path: self.root.clone(),
                source,
            })?;
        }
        openat(
            nix::fcntl::AT_FDCWD,
            &self.root,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SafeFsError::Io {
            action: "open",
            path: self.root.clone(),
            source: e.into(),
        })
    }

    /// Opens the directory `rel` without following links; with `create`, missing
    /// components are made with mode 0755 (0700 when the last one gets `create.0`).
    fn open_dir(
        &self,
        rel: &Path,
        create: Option<(u32, Option<Owner>)>,
    ) -> Result<Option<OwnedFd>, SafeFsError> {
        let parts = self.components(rel)?;
        let mut fd = match self.open_root(create.is_some()) {
            Ok(fd) => fd,
            Err(SafeFsError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && create.is_none() =>
            {
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let mut done = PathBuf::new();
        for (i, part) in parts.iter().enumerate() {
            done.push(part);
            let last = i + 1 == parts.len();
            let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
            let next = match openat(&fd, *part, flags, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::ENOENT) => match create {
                    None => return Ok(None),
                    Some((mode, _)) => {
                        let m = if last { mode } else { 0o755 };
                        match mkdirat(&fd, *part, Mode::from_bits_truncate(m)) {
                            Ok(()) | Err(Errno::EEXIST) => {}
                            Err(e) => return Err(self.io("create", &done, e)),
                        }
                        openat(&fd, *part, flags, Mode::empty())
                            .map_err(|e| self.io("open", &done, e))?
                    }
                },
                Err(e) => return Err(self.io("open", &done, e)),
            };
            fd = next;
        }
        Ok(Some(fd))
    }

    fn split<'r>(&self, rel: &'r Path) -> Result<(&'r Path, &'r OsStr), SafeFsError> {
        match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) => Ok((parent, name)),
            _ => Err(SafeFsError::Escapes {
                path: rel.to_path_buf(),
                anchor: self.root.clone(),
            }),
        }
    }

    /// Creates directory `rel` and its parents (0755) without following links, then sets
    /// `mode` and `owner` on the last one through its descriptor.
    ///
    /// # Errors
    /// [`SafeFsError::Symlink`] when a component is a link, or the failing call.
    pub fn create_dir_all(
        &self,
        rel: &Path,
        mode: u32,
        owner: Option<Owner>,
    ) -> Result<(), SafeFsError> {
        let fd = self
            .open_dir(rel, Some((mode, owner)))?
            .ok_or_else(|| self.io("create", rel, Errno::ENOENT))?;
        fchmod(&fd, Mode::from_bits_truncate(mode))
            .map_err(|e| self.io("set the mode of", rel, e))?;
        if let Some((uid, gid)) = owner {
            fchown(&fd, Some(uid), Some(gid))
                .map_err(|e| self.io("change the owner of", rel, e))?;
        }
        Ok(())
    }

    /// Writes `contents` to `rel` atomically: a new file with an unpredictable name,
    /// created exclusively in the same directory (parents made as needed), given `mode`
    /// and `owner` through its descriptor, synced, then renamed over `rel` (a link at
    /// `rel` is replaced, not followed).
    ///
    /// # Errors
    /// [`SafeFsError::Symlink`] when a parent is a link, or the failing call.
    pub fn write_atomic(
        &self,
        rel: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<Owner>,
    ) -> Result<(), SafeFsError> {
        self.write_new(rel, contents, mode, owner, true)
    }

    /// [`Self::write_atomic`] without the fsync: for files that can be made again from
    /// the repo (rendered artifacts), where thousands of fsyncs would cost seconds.
    ///
    /// # Errors
    /// As [`Self::write_atomic`].
    pub fn write_reproducible(&self, rel: &Path, contents: &[u8]) -> Result<(), SafeFsError> {
        self.write_new(rel, contents, 0o644, None, false)
    }

    fn write_new(
        &self,
        rel: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<Owner>,
        durable: bool,
    ) -> Result<(), SafeFsError> {
        let (parent, name) = self.split(rel)?;
        let dir = self
            .open_dir(parent, Some((0o755, None)))?
            .ok_or_else(|| self.io("create", parent, Errno::ENOENT))?;
        let tmp = format!(
            ".{}.{:016x}.dbctl-tmp",
            name.to_string_lossy(),
            rand::random::<u64>()
        );
        let fd = openat(
            &dir,
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.io("write", rel, e))?;
        let result = (|| {
            if let Some((uid, gid)) = owner {
                fchown(&fd, Some(uid), Some(gid)).map_err(std::io::Error::from)?;
            }
            fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(std::io::Error::from)?;
            let mut file = File::from(fd);
            file.write_all(contents)?;
            if durable {
                file.sync_all()?;
            }
            renameat(&dir, tmp.as_str(), &dir, name).map_err(std::io::Error::from)
        })();
        if let Err(source) = result {
            let _ = unlinkat(&dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(SafeFsError::Io {
                action: "write",
                path: self.full(rel),
                source,
            });
        }
        Ok(())
    }

    /// Opens regular file `rel` without following links, with `flags` added to
    /// `O_NOFOLLOW | O_CLOEXEC` (`O_NONBLOCK` too, so a FIFO cannot hang dbctl).
    /// `Ok(None)` when it (or a parent) does not exist.
    fn open_file(
        &self,
        rel: &Path,
        flags: OFlag,
        mode: u32,
        create_parents: bool,
    ) -> Result<Option<(File, FileStat)>, SafeFsError> {
        let (parent, name) = self.split(rel)?;
        let Some(dir) = self.open_dir(parent, create_parents.then_some((0o755, None)))? else {
            return Ok(None);
        };
        let fd = match openat(
            &dir,
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.io("open", rel, e)),
        };
        let stat = fstat(&fd).map_err(|e| self.io("open", rel, e))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(SafeFsError::Kind {
                path: self.full(rel),
                wanted: "regular file",
            });
        }
        // Back to blocking mode for the reads and writes that follow.
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags & !OFlag::O_CREAT))
            .map_err(|e| self.io("open", rel, e))?;
        Ok(Some((File::from(fd), stat)))
    }

    /// Reads regular file `rel` (at most [`READ_LIMIT`] bytes) without following links;
    /// `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// [`SafeFsError::Symlink`], [`SafeFsError::Kind`] for a non-regular file,
    /// [`SafeFsError::TooLarge`], or the failing call.
    pub fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>, SafeFsError> {
        let Some((file, stat)) = self.open_file(rel, OFlag::O_RDONLY, 0, false)? else {
            return Ok(None);
        };
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > READ_LIMIT {
            return Err(SafeFsError::TooLarge {
                path: self.full(rel),
                limit: READ_LIMIT,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(READ_LIMIT)
            .read_to_end(&mut bytes)
            .map_err(|source| SafeFsError::Io {
                action: "read",
                path: self.full(rel),
                source,
            })?;
        Ok(Some(bytes))
    }

    /// Opens `rel` for appending (a log), creating it with `mode` and parents as needed,
    /// without following links.
    ///
    /// # Errors
    /// As [`Self::read`].
    pub fn open_append(&self, rel: &Path, mode: u32) -> Result<File, SafeFsError> {
        self.open_file(
            rel,
            OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
            mode,
            true,
        )?
        .map(|(file, _)| file)
        .ok_or_else(|| self.io("open", rel, Errno::ENOENT))
    }

    /// Opens (creating with 0644) a lock file `rel` for reading and writing, without
    /// following links, refusing a file with other hard links (truncating it would
    /// truncate them).
    ///
    /// # Errors
    /// As [`Self::read`], or [`SafeFsError::Kind`] for a hard-linked file.
    pub fn open_lock(&self, rel: &Path) -> Result<File, SafeFsError> {
        let (file, stat) = self
            .open_file(rel, OFlag::O_RDWR | OFlag::O_CREAT, 0o644, true)?
            .ok_or_else(|| self.io("open", rel, Errno::ENOENT))?;
        if stat.st_nlink > 1 {
            return Err(SafeFsError::Kind {
                path: self.full(rel),
                wanted: "regular file with one link",
            });
        }
        Ok(file)
    }

    /// Names in directory `rel`, without following links (to it or along the way);
    /// empty when it does not exist.
    ///
    /// # Errors
    /// [`SafeFsError::Symlink`] or the failing call.
    pub fn list_dir(&self, rel: &Path) -> Result<Vec<String>, SafeFsError> {
        let Some(fd) = self.open_dir(rel, None)? else {
            return Ok(Vec::new());
        };
        let dir = nix::dir::Dir::from_fd(fd).map_err(|e| self.io("list", rel, e))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| self.io("list", rel, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// What `rel` is, without following links: `None` when absent.
    ///
    /// # Errors
    /// [`SafeFsError::Symlink`] when a parent is a link, or the failing call.
    pub fn kind(&self, rel: &Path) -> Result<Option<SFlag>, SafeFsError> {
        let (parent, name) = self.split(rel)?;
        let Some(dir) = self.open_dir(parent, None)? else {
            return Ok(None);
        };
        match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(
                SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT,
            )),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.io("inspect", rel, e)),
        }
    }

    /// Removes `rel` and, for a directory, everything in it, without following links
    /// (a link is removed, never what it points to). Absent is fine.
    ///
    /// # Errors
    /// [`SafeFsError::Symlink`] when a parent is a link, or the failing call.
    pub fn remove_all(&self, rel: &Path) -> Result<(), SafeFsError> {
        let (parent, name) = self.split(rel)?;
        let Some(dir) = self.open_dir(parent, None)? else {
            return Ok(());
        };
        remove_at(&dir, name).map_err(|e| self.io("remove", rel, e))
    }
}

/// Removes `name` in `dir` recursively through descriptors only.
fn remove_at(dir: &impl AsFd, name: &OsStr) -> Result<(), Errno> {
    let stat = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        let fd = openat(
            dir,
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let entries: Vec<std::ffi::OsString> = {
            let listing = nix::dir::Dir::from_fd(fd.try_clone().map_err(|_| Errno::EMFILE)?)?;
            listing
                .into_iter()
                .filter_map(Result::ok)
                .map(|e| {
                    use std::os::unix::ffi::OsStrExt;
                    OsStr::from_bytes(e.file_name().to_bytes()).to_os_string()
                })
                .filter(|n| n != "." && n != "..")
                .collect()
        };
        for entry in entries {
            remove_at(&fd, &entry)?;
        }
        match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    } else {
        match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn writes_and_reads_below_the_anchor() {
        let tmp = tempfile::tempdir().unwrap();
        let anchor = Anchor::new(tmp.path());
        anchor
            .write_atomic(Path::new("a/b/c.txt"), b"hello", 0o640, None)
            .unwrap();
        assert_eq!(
            anchor.read(Path::new("a/b/c.txt")).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(anchor.read(Path::new("a/none")).unwrap(), None);
        assert_eq!(anchor.list_dir(Path::new("a/b")).unwrap(), vec!["c.txt"]);
        anchor.remove_all(Path::new("a")).unwrap();
        assert!(!tmp.path().join("a").exists());
    }

    #[test]
    fn never_follows_a_link_along_the_way_or_at_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), b"keep").unwrap();
        let anchor = Anchor::new(tmp.path());
        symlink(outside.path(), tmp.path().join("conf")).unwrap();
        symlink(outside.path().join("victim"), tmp.path().join("file")).unwrap();
        let err = anchor
            .write_atomic(Path::new("conf/victim"), b"owned", 0o600, None)
            .unwrap_err();
        assert!(matches!(err, SafeFsError::Symlink { .. }), "{err}");
        assert!(matches!(
            anchor.read(Path::new("file")).unwrap_err(),
            SafeFsError::Symlink { .. }
        ));
        assert!(matches!(
            anchor.open_lock(Path::new("file")).unwrap_err(),
            SafeFsError::Symlink { .. }
        ));
        assert!(matches!(
            anchor
                .create_dir_all(Path::new("conf/x"), 0o700, None)
                .unwrap_err(),
            SafeFsError::Symlink { .. }
        ));
        // Writing over the link replaces the link; removing removes the link.
        anchor
            .write_atomic(Path::new("file"), b"new", 0o600, None)
            .unwrap();
        anchor.remove_all(Path::new("conf")).unwrap();
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
        assert!(
            anchor
                .write_atomic(Path::new("../escape"), b"x", 0o600, None)
                .is_err()
        );
    }

    #[test]
    fn refuses_fifos_and_hard_linked_locks() {
        let tmp = tempfile::tempdir().unwrap();
        let anchor = Anchor::new(tmp.path());
        nix::unistd::mkfifo(&tmp.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            anchor.read(Path::new("fifo")).unwrap_err(),
            SafeFsError::Kind { .. }
        ));
        std::fs::write(tmp.path().join("target"), b"x").unwrap();
        std::fs::hard_link(tmp.path().join("target"), tmp.path().join("x.lock")).unwrap();
        assert!(matches!(
            anchor.open_lock(Path::new("x.lock")).unwrap_err(),
            SafeFsError::Kind { .. }
        ));
    }
}
