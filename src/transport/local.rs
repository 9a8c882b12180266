//! The local transport: this machine, through `std::process` and the filesystem.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User, chown};
use secrecy::ExposeSecret;

use super::{CommandSpec, Output, Stream, Transport, TransportError};
use crate::safefs::{Anchor, SafeFsError};

/// This machine.
///
/// Paths below an anchor (the state directory, see [`Local::anchored`]) are reached
/// through [`crate::safefs::Anchor`], so no file operation there follows a link a
/// service user planted; other paths use the standard library.
#[derive(Debug, Clone)]
pub struct Local {
    user: String,
    root: bool,
    anchors: Vec<Anchor>,
}

impl Default for Local {
    fn default() -> Self {
        Self::new()
    }
}

impl Local {
    /// The local machine as the current user.
    pub fn new() -> Self {
        Self {
            user: super::current_user_name(),
            root: nix::unistd::geteuid().is_root(),
            anchors: Vec::new(),
        }
    }

    /// The same machine with `dir` (absolute) as an anchor: file operations below it
    /// never follow links.
    #[must_use]
    pub fn anchored(mut self, dir: &Path) -> Self {
        self.anchors.push(Anchor::new(dir));
        self
    }

    /// The anchor `path` lies below and the part of `path` below it.
    fn anchor_of<'p>(&self, path: &'p Path) -> Option<(&Anchor, &'p Path)> {
        self.anchors.iter().find_map(|a| {
            a.relative(path)
                .filter(|rel| !rel.as_os_str().is_empty())
                .map(|rel| (a, rel))
        })
    }

    fn owner_ids(&self, owner: Option<&str>) -> Result<Option<(Uid, Gid)>, TransportError> {
        match owner.filter(|o| self.root && *o != self.user) {
            None => Ok(None),
            Some(name) => {
                let user = self.lookup(name)?;
                Ok(Some((user.uid, user.gid)))
            }
        }
    }

    fn safe_err(&self, err: &SafeFsError) -> TransportError {
        let path = match err {
            SafeFsError::Symlink { path }
            | SafeFsError::Kind { path, .. }
            | SafeFsError::TooLarge { path, .. }
            | SafeFsError::Escapes { path, .. }
            | SafeFsError::Io { path, .. } => path.clone(),
        };
        TransportError::File {
            host: self.host().to_owned(),
            action: "use",
            path,
            source: std::io::Error::other(err.to_string()),
        }
    }

    fn lookup(&self, user: &str) -> Result<User, TransportError> {
        User::from_name(user)
            .ok()
            .flatten()
            .ok_or_else(|| TransportError::NoSuchUser {
                host: self.host().to_owned(),
                user: user.to_owned(),
            })
    }

    fn file_err(
        &self,
        action: &'static str,
        path: &Path,
        source: std::io::Error,
    ) -> TransportError {
        TransportError::File {
            host: self.host().to_owned(),
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    fn set_owner(&self, path: &Path, owner: Option<&str>) -> Result<(), TransportError> {
        let Some(owner) = owner.filter(|o| self.root && *o != self.user) else {
            return Ok(());
        };
        let user = self.lookup(owner)?;
        chown(path, Some(user.uid), Some(user.gid))
            .map_err(|e| self.file_err("change the owner of", path, e.into()))
    }

    /// Builds a `std` command: clean environment (PATH, HOME, USER, LANG), the spec's
    /// env, and the target user's uid/gid when running as root. With
    /// `die_with_dbctl`, the command runs under util-linux `setpriv --pdeathsig KILL`
    /// (`PR_SET_PDEATHSIG`, prctl(2)), so a child such as `initdb` dies when dbctl
    /// does, and a re-run never races an orphan (no `unsafe` `pre_exec` needed). The
    /// thread that spawns it waits for it, so the signal only fires when dbctl dies.
    fn command(&self, cmd: &CommandSpec, die_with_dbctl: bool) -> Result<Command, TransportError> {
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut command = if die_with_dbctl
            && setpriv.exists()
            && self
                .find_program(std::slice::from_ref(&cmd.program))
                .is_some()
        {
            let mut command = Command::new(setpriv);
            command
                .args(["--pdeathsig", "KILL", "--"])
                .arg(&cmd.program);
            command
        } else {
            Command::new(&cmd.program)
        };
        command.args(&cmd.args).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command.env("LANG", "C.UTF-8");
        let mut home = std::env::var_os("HOME").map(PathBuf::from);
        if let Some(name) = cmd
            .run_as
            .as_deref()
            .filter(|u| self.root && *u != self.user)
        {
            let user = self.lookup(name)?;
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
            command.env("USER", &user.name).env("LOGNAME", &user.name);
            home = Some(user.dir);
        } else {
            command.env("USER", &self.user).env("LOGNAME", &self.user);
        }
        if let Some(home) = home {
            command.env("HOME", home);
        }
        for (key, value) in &cmd.env {
            command.env(key, value.expose_secret());
        }
        match cmd.cwd.as_ref().filter(|d| d.is_dir()) {
            Some(dir) => {
                command.current_dir(dir);
            }
            None => {
                command.current_dir("/");
            }
        }
        Ok(command)
    }
}

impl Transport for Local {
    fn host(&self) -> &'static str {
        "localhost"
    }

    fn is_root(&self) -> bool {
        self.root
    }

    fn user(&self) -> &str {
        &self.user
    }

    fn run_streaming(
        &self,
        cmd: &CommandSpec,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<Output, TransportError> {
        enum Msg {
            Line(Stream, String),
            Exit(std::io::Result<std::process::ExitStatus>),
        }
        let started = std::time::Instant::now();
        let spawn_err = |source| TransportError::Spawn {
            host: self.host().to_owned(),
            command: cmd.display(),
            source,
        };
        let mut command = self.command(cmd, true)?;
        command
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(spawn_err)?;
        let pid = child.id();
        if let (Some(input), Some(mut pipe)) = (&cmd.stdin, child.stdin.take()) {
            let bytes = input.expose_secret().as_bytes().to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let (tx, rx) = mpsc::channel();
        let mut readers = Vec::new();
        let pipes: [(Stream, Option<Box<dyn Read + Send>>); 2] = [
            (
                Stream::Stdout,
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ),
            (
                Stream::Stderr,
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ),
        ];
        for (stream, pipe) in pipes {
            let Some(pipe) = pipe else { continue };
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n') {
                    let Ok(line) = line else { break };
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if tx.send(Msg::Line(stream, text)).is_err() {
                        break;
                    }
                }
            }));
        }
        std::thread::spawn(move || {
            for reader in readers {
                let _ = reader.join();
            }
            let _ = tx.send(Msg::Exit(child.wait()));
        });
        let deadline = std::time::Instant::now() + cmd.timeout;
        let (mut stdout, mut stderr) = (String::new(), String::new());
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Line(stream, line)) => {
                    on_line(stream, &line);
                    let buffer = if stream == Stream::Stdout {
                        &mut stdout
                    } else {
                        &mut stderr
                    };
                    buffer.push_str(&line);
                    buffer.push('\n');
                }
                Ok(Msg::Exit(status)) => {
                    let status = status.map_err(spawn_err)?;
                    let code = status.code().unwrap_or(-1);
                    super::trace_run(self.host(), cmd, started, code);
                    return Ok(Output {
                        code,
                        stdout,
                        stderr,
                    });
                }
                Err(_) => {
                    super::trace_run(self.host(), cmd, started, -1);
                    let _ = kill(Pid::from_raw(pid.cast_signed()), Signal::SIGKILL);
                    return Err(TransportError::Timeout {
                        host: self.host().to_owned(),
                        command: cmd.display(),
                        seconds: cmd.timeout.as_secs(),
                    });
                }
            }
        }
    }

    fn run_piped(
        &self,
        cmd: &CommandSpec,
        input: &mut (dyn std::io::Read + Send),
        output: &mut dyn std::io::Write,
    ) -> Result<(i32, String), TransportError> {
        let err = |source| TransportError::Spawn {
            host: self.host().to_owned(),
            command: cmd.display(),
            source,
        };
        let mut command = self.command(cmd, true)?;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(err)?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let errors = std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = stderr {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        });
        // Input and output move at once (a client may answer before it has read all).
        let copied = std::thread::scope(|scope| {
            // The writer owns stdin and closes it when the input ends.
            let writer = scope.spawn(move || match stdin {
                Some(mut pipe) => {
                    widen(&pipe);
                    copy_large(input, &mut pipe).map(|_| ())
                }
                None => Ok(()),
            });
            let read = stdout.as_mut().map_or(Ok(0), |pipe| {
                widen(&*pipe);
                copy_large(pipe, output)
            });
            let wrote = writer.join().unwrap_or(Ok(()));
            read.map(|_| ()).and(wrote.or_else(|e| {
                // The client closing its stdin early is not our error.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    Ok(())
                } else {
                    Err(e)
                }
            }))
        });
        let status = child.wait().map_err(err)?;
        let stderr = errors.join().unwrap_or_default();
        copied.map_err(err)?;
        Ok((status.code().unwrap_or(-1), stderr))
    }

    fn spawn_detached(&self, cmd: &CommandSpec, log: &Path) -> Result<u32, TransportError> {
        let log_file = match self.anchor_of(log) {
            Some((anchor, rel)) => anchor
                .open_append(rel, 0o640)
                .map_err(|e| self.safe_err(&e))?,
            None => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(log)
                .map_err(|e| self.file_err("open log", log, e))?,
        };
        let log_err = log_file
            .try_clone()
            .map_err(|e| self.file_err("open log", log, e))?;
        let mut command = self.command(cmd, false)?;
        command
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .process_group(0);
        let mut child = command.spawn().map_err(|source| TransportError::Spawn {
            host: self.host().to_owned(),
            command: cmd.display(),
            source,
        })?;
        let pid = child.id();
        // Reap it if it exits while dbctl still runs, so liveness checks see it gone.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(pid)
    }

    fn write_file(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<&str>,
    ) -> Result<(), TransportError> {
        if let Some((anchor, rel)) = self.anchor_of(path) {
            let owner = self.owner_ids(owner)?;
            return anchor
                .write_atomic(rel, contents, mode, owner)
                .map_err(|e| self.safe_err(&e));
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.dbctl-{}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.write_all(contents)?;
            file.sync_all()
        })();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.file_err("write", path, err));
        }
        self.set_owner(&tmp, owner)?;
        std::fs::rename(&tmp, path).map_err(|e| self.file_err("write", path, e))
    }

    fn create_new(&self, path: &Path, contents: &[u8]) -> Result<bool, TransportError> {
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(err) => return Err(self.file_err("create", path, err)),
        };
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| self.file_err("write", path, e))?;
        Ok(true)
    }

    fn make_dir(&self, path: &Path, mode: u32, owner: Option<&str>) -> Result<(), TransportError> {
        if let Some((anchor, rel)) = self.anchor_of(path) {
            let owner = self.owner_ids(owner)?;
            return anchor
                .create_dir_all(rel, mode, owner)
                .map_err(|e| self.safe_err(&e));
        }
        std::fs::create_dir_all(path).map_err(|e| self.file_err("create", path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| self.file_err("set the mode of", path, e))?;
        self.set_owner(path, owner)
    }

    fn remove_all(&self, path: &Path) -> Result<(), TransportError> {
        if let Some((anchor, rel)) = self.anchor_of(path) {
            return anchor.remove_all(rel).map_err(|e| self.safe_err(&e));
        }
        let result = match std::fs::symlink_metadata(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => Err(err),
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
            Ok(_) => std::fs::remove_file(path),
        };
        match result {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(self.file_err("remove", path, err))
            }
            _ => Ok(()),
        }
    }

    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        if let Some((anchor, rel)) = self.anchor_of(path) {
            return anchor.read(rel).map_err(|e| self.safe_err(&e));
        }
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.file_err("read", path, err)),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        if let Some((anchor, rel)) = self.anchor_of(path) {
            return anchor.kind(rel).is_ok_and(|k| k.is_some());
        }
        path.exists()
    }

    fn free_bytes(&self, path: &Path) -> Result<u64, TransportError> {
        let existing = path
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        let stat = nix::sys::statvfs::statvfs(existing)
            .map_err(|e| self.file_err("measure free space of", existing, e.into()))?;
        Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
    }

    fn sync_fs(&self, path: &Path) -> Result<(), TransportError> {
        let dir = std::fs::File::open(path).map_err(|e| self.file_err("open", path, e))?;
        nix::unistd::syncfs(&dir).map_err(|e| self.file_err("write back", path, e.into()))
    }

    fn used_bytes(&self, path: &Path) -> u64 {
        fn walk(path: &Path) -> u64 {
            let Ok(meta) = std::fs::symlink_metadata(path) else {
                return 0;
            };
            let own = meta.blocks().saturating_mul(512);
            if !meta.is_dir() {
                return own;
            }
            let Ok(entries) = std::fs::read_dir(path) else {
                return own;
            };
            own + entries
                .filter_map(Result::ok)
                .map(|e| walk(&e.path()))
                .sum::<u64>()
        }
        walk(path)
    }

    fn process_alive(&self, pid: u32) -> bool {
        let Ok(raw) = i32::try_from(pid) else {
            return false;
        };
        // A zombie (exited, not yet reaped: some container inits never reap) is dead.
        let zombie = std::fs::read_to_string(format!("/proc/{raw}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        });
        raw > 0
            && !zombie
            && !matches!(
                kill(Pid::from_raw(raw), None),
                Err(nix::errno::Errno::ESRCH)
            )
    }

    fn process_matches(&self, pid: u32, exe: Option<&Path>, cwd: &Path) -> bool {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let resolved = |p: &Path| std::fs::canonicalize(p).ok();
        // The same program: the same file, or one of the same name (a minor upgrade
        // replaces the binary under a running server, whose exe then reads
        // `… (deleted)`, or installs the new build elsewhere).
        let exe_ok = exe.is_none_or(|exe| {
            let Some(wanted) = resolved(exe) else {
                return false;
            };
            let Ok(running) = std::fs::read_link(proc.join("exe")) else {
                return false;
            };
            let running = running.to_string_lossy();
            let running = Path::new(running.trim_end_matches(" (deleted)"));
            running == wanted || running.file_name() == wanted.file_name()
        });
        pid > 0
            && exe_ok
            && resolved(cwd).is_some_and(|c| std::fs::read_link(proc.join("cwd")).ok() == Some(c))
    }

    fn signal(&self, pid: u32, signal: &str) -> Result<(), TransportError> {
        let sig: Signal = signal.parse().map_err(|_| TransportError::Spawn {
            host: self.host().to_owned(),
            command: format!("kill -{signal} {pid}"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "unknown signal"),
        })?;
        let raw = i32::try_from(pid).unwrap_or(0);
        match kill(Pid::from_raw(raw), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(err) => Err(TransportError::Spawn {
                host: self.host().to_owned(),
                command: format!("kill -{signal} {pid}"),
                source: err.into(),
            }),
        }
    }

    fn find_program(&self, candidates: &[String]) -> Option<PathBuf> {
        let executable = |p: &Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        for candidate in candidates {
            let path = Path::new(candidate);
            if path.is_absolute() {
                if executable(path) {
                    return Some(path.to_path_buf());
                }
            } else if let Some(paths) = std::env::var_os("PATH")
                && let Some(found) = std::env::split_paths(&paths)
                    .map(|dir| dir.join(candidate))
                    .find(|p| executable(p))
            {
                return Some(found);
            }
        }
        None
    }

    fn user_exists(&self, user: &str) -> bool {
        self.lookup(user).is_ok()
    }

    fn path_traversable_by(&self, path: &Path, user: &str) -> bool {
        let Ok(user) = self.lookup(user) else {
            return false;
        };
        if user.uid.is_root() {
            return true;
        }
        path.ancestors()
            .filter_map(|dir| std::fs::metadata(dir).ok())
            .filter(std::fs::Metadata::is_dir)
            .all(|meta| {
                let mode = meta.mode();
                if meta.uid() == user.uid.as_raw() {
                    mode & 0o100 != 0
                } else if meta.gid() == user.gid.as_raw() {
                    mode & 0o010 != 0
                } else {
                    mode & 0o001 != 0
                }
            })
    }

    fn list_dir(&self, path: &Path) -> Vec<String> {
        if let Some((anchor, rel)) = self.anchor_of(path) {
            return anchor.list_dir(rel).unwrap_or_default();
        }
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn port_in_use(&self, port: u16) -> bool {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
    }
}

/// The pipe size asked for streamed commands (Linux allows up to
/// `/proc/sys/fs/pipe-max-size`, 1 MiB by default).
const PIPE_BYTES: i32 = 1 << 20;

/// Makes a pipe hold 1 MiB rather than Linux's 64 KiB (fcntl `F_SETPIPE_SZ`, pipe(7)), so
/// a backup's or a restore's stream moves with fewer wake-ups of either side: a restore
/// of 2 GB fed `tar` ~1 s faster. Best effort: a pipe left at its size still works.
fn widen(pipe: &impl std::os::fd::AsFd) {
    let _ = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
}

/// `std::io::copy` with a 1 MiB buffer (std's is 8 KiB): one read per pipe-full.
fn copy_large(
    reader: &mut (impl std::io::Read + ?Sized),
    writer: &mut (impl std::io::Write + ?Sized),
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; PIPE_BYTES as usize];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
}
