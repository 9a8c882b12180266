//! How dbctl reaches a machine: run commands (argv, never a shell string built from
//! input), feed stdin, manage files and processes. [`Local`] works on this machine; the
//! `ssh` transport implements the same trait for remote hosts.

mod local;
#[cfg(test)]
pub mod recording;
mod ssh;

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

pub use self::local::Local;
pub use self::ssh::{Ssh, SshOptions};

/// One command to run.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Program path or name looked up in `PATH`.
    pub program: String,
    /// Arguments, passed as they are (no shell).
    pub args: Vec<String>,
    /// Run as this user (requires root; ignored when it is the current user).
    pub run_as: Option<String>,
    /// Extra environment; values are secret-safe (never logged).
    pub env: Vec<(String, SecretString)>,
    /// Bytes fed to stdin (then closed); secret-safe.
    pub stdin: Option<SecretString>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Kill the command after this long.
    pub timeout: Duration,
}

impl CommandSpec {
    /// A command with a 60-second timeout and nothing else set.
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            run_as: None,
            env: Vec::new(),
            stdin: None,
            cwd: None,
            timeout: Duration::from_mins(1),
        }
    }

    /// The same command run as `user` (when `Some`).
    #[must_use]
    pub fn run_as(mut self, user: Option<&str>) -> Self {
        self.run_as = user.map(str::to_owned);
        self
    }

    /// Adds a secret environment variable.
    #[must_use]
    pub fn secret_env(mut self, key: &str, value: SecretString) -> Self {
        self.env.push((key.to_owned(), value));
        self
    }

    /// Sets stdin.
    #[must_use]
    pub fn stdin(mut self, input: SecretString) -> Self {
        self.stdin = Some(input);
        self
    }

    /// Sets the timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the working directory.
    #[must_use]
    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// `program arg…` for messages (arguments are never secret; secrets travel in
    /// stdin and env only).
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives output lines as they arrive: which stream, and the line without newline.
pub type LineSink<'a> = &'a mut dyn FnMut(Stream, &str);

/// What a finished command returned.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Transport failures; each names the machine and the command or path.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The command could not be started.
    #[error("on {host}: cannot run `{command}`")]
    Spawn {
        /// The machine.
        host: String,
        /// The command line (no secrets).
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command ran longer than its timeout and was killed.
    #[error("on {host}: `{command}` did not finish within {seconds} s and was killed")]
    Timeout {
        /// The machine.
        host: String,
        /// The command line.
        command: String,
        /// The timeout in seconds.
        seconds: u64,
    },
    /// A file operation failed.
    #[error("on {host}: cannot {action} `{path}`")]
    File {
        /// The machine.
        host: String,
        /// What was attempted (`write`, `remove`, …).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A user named for `run_as` or `owner` does not exist.
    #[error("on {host}: user `{user}` does not exist")]
    NoSuchUser {
        /// The machine.
        host: String,
        /// The user.
        user: String,
    },
}

/// A machine dbctl acts on.
pub trait Transport: Send + Sync {
    /// The machine's name for messages (`localhost`, a host name).
    fn host(&self) -> &str;

    /// True when commands run as root (so `run_as` and `owner` are honoured).
    fn is_root(&self) -> bool;

    /// The user commands run as.
    fn user(&self) -> &str;

    /// Runs a command to completion, calling `on_line` with each line of its stdout and
    /// stderr as it arrives (without the newline), and returns all of it too.
    ///
    /// # Errors
    /// [`TransportError::Spawn`], [`TransportError::Timeout`].
    fn run_streaming(
        &self,
        cmd: &CommandSpec,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<Output, TransportError>;

    /// Runs a command to completion, capturing its output.
    ///
    /// # Errors
    /// [`TransportError::Spawn`], [`TransportError::Timeout`].
    fn run(&self, cmd: &CommandSpec) -> Result<Output, TransportError> {
        self.run_streaming(cmd, &mut |_, _| {})
    }

    /// Runs a command feeding `input` to its stdin and streaming its stdout, as bytes,
    /// to `output` as it arrives (SQL batches, dumps); returns the exit code and stderr.
    /// No timeout applies: dumps take as long as they take.
    ///
    /// # Errors
    /// [`TransportError::Spawn`] when it cannot be started or its pipes fail.
    fn run_piped(
        &self,
        cmd: &CommandSpec,
        input: &mut (dyn std::io::Read + Send),
        output: &mut dyn std::io::Write,
    ) -> Result<(i32, String), TransportError>;

    /// Starts a long-running server process in its own session, detached from dbctl
    /// (it survives dbctl exiting), with stdout and stderr appended to `log`. Returns its pid.
    ///
    /// # Errors
    /// [`TransportError::Spawn`], or [`TransportError::File`] for the log.
    fn spawn_detached(&self, cmd: &CommandSpec, log: &Path) -> Result<u32, TransportError>;

    /// Writes a file atomically with `mode`, owned by `owner` when given.
    ///
    /// # Errors
    /// [`TransportError::File`], [`TransportError::NoSuchUser`].
    fn write_file(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<&str>,
    ) -> Result<(), TransportError>;

    /// Creates `path` with `contents` (mode 0600) only if nothing exists there
    /// (`O_EXCL`); `Ok(false)` when something does. The primitive of host leases.
    ///
    /// # Errors
    /// [`TransportError::File`].
    fn create_new(&self, path: &Path, contents: &[u8]) -> Result<bool, TransportError>;

    /// Creates a directory and its parents; sets `mode` and `owner` on the last one.
    ///
    /// # Errors
    /// [`TransportError::File`], [`TransportError::NoSuchUser`].
    fn make_dir(&self, path: &Path, mode: u32, owner: Option<&str>) -> Result<(), TransportError>;

    /// Removes a file or directory tree; absent is fine.
    ///
    /// # Errors
    /// [`TransportError::File`].
    fn remove_all(&self, path: &Path) -> Result<(), TransportError>;

    /// Reads a file; `None` when absent.
    ///
    /// # Errors
    /// [`TransportError::File`].
    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError>;

    /// True when the path exists.
    fn exists(&self, path: &Path) -> bool;

    /// Bytes free for unprivileged users on the filesystem holding `path` (or its
    /// nearest existing ancestor).
    ///
    /// # Errors
    /// [`TransportError::File`].
    fn free_bytes(&self, path: &Path) -> Result<u64, TransportError>;

    /// Writes the filesystem holding `path` back to its disk and waits for that
    /// (`syncfs(2)`; `sync --file-system PATH` on a remote host). A restore calls it
    /// while its data arrives, so the server's start finds the data already on disk.
    ///
    /// # Errors
    /// [`TransportError::File`] when `path` cannot be opened or written back (with
    /// `sync`'s message), [`TransportError::Spawn`] when `sync` cannot be run.
    fn sync_fs(&self, path: &Path) -> Result<(), TransportError> {
        let cmd = CommandSpec::new(
            "sync",
            ["--file-system".to_owned(), path.display().to_string()],
        );
        let out = self.run(&cmd)?;
        if out.code == 0 {
            Ok(())
        } else {
            Err(TransportError::File {
                host: self.host().to_owned(),
                action: "write back",
                path: path.to_path_buf(),
                source: std::io::Error::other(out.stderr.trim().to_owned()),
            })
        }
    }

    /// Disk space used by the tree at `path` in bytes (allocated blocks); 0 when absent.
    fn used_bytes(&self, path: &Path) -> u64;

    /// True when process `pid` exists.
    fn process_alive(&self, pid: u32) -> bool;

    /// True when process `pid` runs the program `exe` (links resolved; the same file or
    /// one of the same name, as after a minor upgrade; `None`: any program) with
    /// working directory `cwd` (links resolved), from `/proc/<pid>/exe` and `/proc/<pid>/cwd`
    /// (Linux `proc(5)`): whether a pid file names the server it should, before dbctl
    /// signals that process or skips a start because of it.
    fn process_matches(&self, pid: u32, exe: Option<&Path>, cwd: &Path) -> bool;

    /// Sends signal `signal` (e.g. `SIGINT`) to `pid`; a vanished process is fine.
    ///
    /// # Errors
    /// [`TransportError::Spawn`] when the signal cannot be sent.
    fn signal(&self, pid: u32, signal: &str) -> Result<(), TransportError>;

    /// The first of `candidates` (absolute paths or names in `PATH`) that is executable.
    fn find_program(&self, candidates: &[String]) -> Option<PathBuf>;

    /// True when the user exists.
    fn user_exists(&self, user: &str) -> bool;

    /// True when `user` can reach `path` (every ancestor directory searchable by it).
    fn path_traversable_by(&self, path: &Path, user: &str) -> bool;

    /// Names of the entries of directory `path` (empty when absent).
    fn list_dir(&self, path: &Path) -> Vec<String>;

    /// True when something listens on TCP `port`.
    fn port_in_use(&self, port: u16) -> bool;
}

/// Records a finished command for `--verbose` (a `tracing` event at debug level): the
/// host, the command line as displayed (secrets go by stdin and environment, never
/// there), the exit code (`-1`: killed or timed out) and the milliseconds it took.
pub(crate) fn trace_run(host: &str, cmd: &CommandSpec, started: std::time::Instant, code: i32) {
    tracing::debug!(
        host,
        command = %cmd.display(),
        code,
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "ran"
    );
}

/// The name of the user running dbctl.
pub fn current_user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| nix::unistd::getuid().to_string(), |u| u.name)
}
