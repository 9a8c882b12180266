//! The SSH transport: a remote host through the system `ssh` with a ControlMaster
//! (the `openssh` crate, native multiplexing), so the user's ssh config, agent and
//! `known_hosts` apply. Host keys are checked strictly unless `accept_new_host_keys`.
//!
//! Every command runs as `sh -c WRAPPER sh CWD PROGRAM ARGS…`: the wrapper (a constant
//! script, never built from input) changes directory (to `/` when it is missing), reads `KEY=VALUE` lines up to an
//! empty line from stdin and exports them, then execs the program with the rest of
//! stdin. Secrets therefore travel over the encrypted channel's stdin, never on a
//! remote command line. Arguments are shell-quoted by `openssh`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

use super::{CommandSpec, LineSink, Output, Stream, Transport, TransportError};
use crate::retry::Policy;

/// Connection attempts in flight at once to one host from this process: sshd drops
/// bursts of unauthenticated connections (`MaxStartups`, 10 by default), and `apply`
/// may connect to one host for many databases at once.
const CONNECTS_PER_HOST: usize = 4;

fn connect_permits(host: &str) -> Arc<Semaphore> {
    static PERMITS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
    > = std::sync::OnceLock::new();
    let map = PERMITS.get_or_init(Default::default);
    let mut map = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(
        map.entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(CONNECTS_PER_HOST))),
    )
}

/// Sets up the environment and working directory, then execs the program.
/// Shell prelude of the file operations on a host: `$1` is the path. It refuses a path
/// whose parent directory `$d` is reached through a symbolic link (`readlink -f`
/// differs), and defines `as_owner DIR CMD…`, which runs CMD as DIR's owner when that is
/// not root (util-linux `setpriv`): in a directory a service user controls, whatever it
/// swaps in can only lead where that user could write anyway, so root never follows a
/// planted link there. New files are made by `mktemp` (exclusive, unpredictable name).
const SAFE_PRELUDE: &str = r#"d=${1%/*}; [ -n "$d" ] || d=/; n=${1##*/}
[ "$(readlink -f -- "$d")" = "$d" ] || { echo "refusing $1: $d is reached through a symbolic link" >&2; exit 4; }
as_owner() { o=$(stat -c %u -- "$1") || return 1; g=$(stat -c %g -- "$1"); shift
  if [ "$o" = 0 ] || [ "$(id -u)" != 0 ]; then "$@"; else setpriv --reuid="$o" --regid="$g" --clear-groups -- "$@"; fi; }"#;

const WRAPPER: &str = r#"cd "$1" 2>/dev/null || cd /; shift; while IFS= read -r dbctl_env && [ -n "$dbctl_env" ]; do export "$dbctl_env"; done; exec "$@""#;

/// How to reach a host.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Host name or address (also the name in messages).
    pub host: String,
    /// SSH port (default: ssh config, else 22).
    pub port: Option<u16>,
    /// Login user (default: ssh config, else the local user).
    pub user: Option<String>,
    /// Private key file.
    pub identity: Option<PathBuf>,
    /// `known_hosts` file (default: the user's).
    pub known_hosts: Option<PathBuf>,
    /// Trust and record an unknown host key (`StrictHostKeyChecking=accept-new`);
    /// a changed key is still refused.
    pub accept_new_host_keys: bool,
    /// Connection attempts before giving up (backoff 1 s, 2 s, 4 s …).
    pub attempts: u32,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// Commands in flight at once on this host (sshd's `MaxSessions` is 10).
    pub max_sessions: usize,
    /// The run's tokio runtime; `None`: the connection makes its own.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl SshOptions {
    /// Defaults for `host`: strict host keys, 3 attempts, 10 s timeout, 8 sessions.
    pub fn new(host: &str) -> Self {
        Self {
            host: host.to_owned(),
            port: None,
            user: None,
            identity: None,
            known_hosts: None,
            accept_new_host_keys: false,
            attempts: 3,
            connect_timeout: Duration::from_secs(10),
            max_sessions: 8,
            runtime: None,
        }
    }
}

/// A connected host.
pub struct Ssh {
    host: String,
    user: String,
    root: bool,
    session: Arc<Session>,
    runtime: Runtime,
    sessions: Arc<Semaphore>,
}

/// The runtime a connection runs on: the run's (shared by every connection), or its
/// own.
enum Runtime {
    Shared(tokio::runtime::Handle),
    Owned(tokio::runtime::Runtime),
}

impl Runtime {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match self {
            Self::Shared(handle) => handle.block_on(future),
            Self::Owned(runtime) => runtime.block_on(future),
        }
    }
}

impl std::fmt::Debug for Ssh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ssh")
            .field("host", &self.host)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn io_error(err: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(err.to_string())
}

impl Ssh {
    /// Connects, retrying failures with backoff, and learns the remote user.
    ///
    /// # Errors
    /// [`TransportError::Spawn`] naming the host after the last attempt (a host key
    /// mismatch fails at once: retrying cannot fix it).
    pub fn connect(opts: &SshOptions) -> Result<Self, TransportError> {
        let runtime = match &opts.runtime {
            Some(handle) => Runtime::Shared(handle.clone()),
            None => Runtime::Owned(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|source| TransportError::Spawn {
                        host: opts.host.clone(),
                        command: "ssh".into(),
                        source,
                    })?,
            ),
        };
        let mut builder = SessionBuilder::default();
        builder
            .known_hosts_check(if opts.accept_new_host_keys {
                KnownHosts::Add
            } else {
                KnownHosts::Strict
            })
            .connect_timeout(opts.connect_timeout)
            .server_alive_interval(Duration::from_secs(15));
        if let Some(port) = opts.port {
            builder.port(port);
        }
        if let Some(user) = &opts.user {
            builder.user(user.clone());
        }
        if let Some(identity) = &opts.identity {
            builder.keyfile(identity);
        }
        if let Some(known_hosts) = &opts.known_hosts {
            builder.user_known_hosts_file(known_hosts);
        }
        let attempts = opts.attempts.max(1);
        let connect = || {
            let permits = connect_permits(&opts.host);
            runtime
                .block_on(async {
                    let _permit = permits.acquire().await;
                    builder.connect_mux(&opts.host).await
                })
                .map_err(|err| {
                    let mut text = err.to_string();
                    let mut source = std::error::Error::source(&err);
                    while let Some(cause) = source {
                        text.push_str(": ");
                        text.push_str(&cause.to_string());
                        source = cause.source();
                    }
                    text
                })
        };
        // A host key problem fails at once: retrying cannot fix it.
        let connected = Policy::attempts(attempts as usize, Duration::from_secs(1)).retry(
            &format!("ssh {}", opts.host),
            connect,
            |text: &String| {
                !text.contains("Host key verification failed")
                    && !text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            },
        );
        let session = match connected {
            Ok(session) => session,
            Err(last) => {
                let hint = if last.contains("Host key verification failed") {
                    " (the host key is unknown or changed; check it, or pass `--accept-new-host-keys` to trust a new host on first use)"
                } else {
                    ""
                };
                return Err(TransportError::Spawn {
                    host: opts.host.clone(),
                    command: format!("ssh (after {attempts} attempts)"),
                    source: io_error(format!("{}{hint}", last.trim())),
                });
            }
        };
        let mut ssh = Self {
            host: opts.host.clone(),
            user: String::new(),
            root: false,
            session: Arc::new(session),
            runtime,
            sessions: Arc::new(Semaphore::new(opts.max_sessions.max(1))),
        };
        let out = ssh.run(&CommandSpec::new("id", ["-un"]))?;
        out.stdout.trim().clone_into(&mut ssh.user);
        ssh.root = ssh.user == "root";
        Ok(ssh)
    }

    /// Runs a small POSIX sh script with arguments (the script is a constant).
    fn script(
        &self,
        script: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output, TransportError> {
        let mut cmd = CommandSpec::new("sh", ["-c", script, "sh"]);
        cmd.args.extend(args.iter().map(|a| (*a).to_owned()));
        self.exec(&cmd, stdin)
    }

    fn exec(&self, cmd: &CommandSpec, raw_stdin: Option<&[u8]>) -> Result<Output, TransportError> {
        self.exec_streaming(cmd, raw_stdin, None)
    }

    /// What the wrapper reads first on stdin: the secret environment as `KEY=value`
    /// lines, an empty line, then the command's own stdin.
    fn env_prefix(cmd: &CommandSpec) -> Vec<u8> {
        let mut input = Vec::new();
        for (key, value) in &cmd.env {
            input.extend_from_slice(format!("{key}={}\n", value.expose_secret()).as_bytes());
        }
        input.push(b'\n');
        if let Some(stdin) = &cmd.stdin {
            input.extend_from_slice(stdin.expose_secret().as_bytes());
        }
        input
    }

    /// `[runuser -u U --] sh -c WRAPPER sh CWD PROGRAM ARGS…`.
    fn remote_argv(&self, cmd: &CommandSpec) -> Vec<String> {
        let cwd = cmd
            .cwd
            .as_ref()
            .map_or_else(|| "/".to_owned(), |d| d.to_string_lossy().into_owned());
        let mut argv: Vec<String> = Vec::new();
        if let Some(user) = cmd.run_as.as_deref().filter(|u| *u != self.user) {
            if self.root {
                argv.extend(["runuser".into(), "-u".into(), user.into(), "--".into()]);
            } else {
                argv.extend([
                    "sudo".into(),
                    "-n".into(),
                    "-u".into(),
                    user.into(),
                    "--".into(),
                ]);
            }
        }
        argv.extend(["sh".into(), "-c".into(), WRAPPER.into(), "sh".into(), cwd]);
        argv.push(cmd.program.clone());
        argv.extend(cmd.args.iter().cloned());
        argv
    }

    /// Runs `cmd`; with `on_line`, output is read line by line as it arrives,
    /// otherwise captured byte for byte.
    fn exec_streaming(
        &self,
        cmd: &CommandSpec,
        raw_stdin: Option<&[u8]>,
        mut on_line: Option<LineSink<'_>>,
    ) -> Result<Output, TransportError> {
        let started = std::time::Instant::now();
        let spawn_err = |e: &dyn std::fmt::Display| TransportError::Spawn {
            host: self.host.clone(),
            command: cmd.display(),
            source: io_error(e),
        };
        let mut input = Self::env_prefix(cmd);
        if let Some(raw) = raw_stdin {
            input.extend_from_slice(raw);
        }
        let argv = self.remote_argv(cmd);
        let session = Arc::clone(&self.session);
        let sessions = Arc::clone(&self.sessions);
        let timeout = cmd.timeout;
        let result = self.runtime.block_on(async move {
            let _permit = sessions.acquire().await.map_err(io_error)?;
            let mut command = session.command(&argv[0]);
            command
                .args(&argv[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let run = async {
                let mut child = command.spawn().await.map_err(io_error)?;
                if let Some(mut pipe) = child.stdin().take() {
                    pipe.write_all(&input).await?;
                    pipe.shutdown().await?;
                    drop(pipe);
                }
                let Some(on_line) = on_line.as_mut() else {
                    let out = child.wait_with_output().await.map_err(io_error)?;
                    return Ok((
                        out.status,
                        String::from_utf8_lossy(&out.stdout).into_owned(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    ));
                };
                let mut out_lines = child.stdout().take().map(|p| BufReader::new(p).lines());
                let mut err_lines = child.stderr().take().map(|p| BufReader::new(p).lines());
                let (mut stdout, mut stderr) = (String::new(), String::new());
                while out_lines.is_some() || err_lines.is_some() {
                    tokio::select! {
                        line = async { out_lines.as_mut()?.next_line().await.transpose() }, if out_lines.is_some() => {
                            match line {
                                Some(Ok(line)) => {
                                    on_line(Stream::Stdout, &line);
                                    stdout.push_str(&line);
                                    stdout.push('\n');
                                }
                                _ => out_lines = None,
                            }
                        }
                        line = async { err_lines.as_mut()?.next_line().await.transpose() }, if err_lines.is_some() => {
                            match line {
                                Some(Ok(line)) => {
                                    on_line(Stream::Stderr, &line);
                                    stderr.push_str(&line);
                                    stderr.push('\n');
                                }
                                _ => err_lines = None,
                            }
                        }
                    }
                }
                let status = child.wait().await.map_err(io_error)?;
                Ok::<_, std::io::Error>((status, stdout, stderr))
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(out) => out.map(Some),
                Err(_) => Ok(None),
            }
        });
        let code = match &result {
            Ok(Some((status, _, _))) => status.code().unwrap_or(-1),
            _ => -1,
        };
        super::trace_run(&self.host, cmd, started, code);
        match result {
            Ok(Some((status, stdout, stderr))) => Ok(Output {
                code: status.code().unwrap_or(-1),
                stdout,
                stderr,
            }),
            Ok(None) => Err(TransportError::Timeout {
                host: self.host.clone(),
                command: cmd.display(),
                seconds: timeout.as_secs(),
            }),
            Err(err) => Err(spawn_err(&err)),
        }
    }

    fn file_err(&self, action: &'static str, path: &Path, out: &Output) -> TransportError {
        TransportError::File {
            host: self.host.clone(),
            action,
            path: path.to_path_buf(),
            source: io_error(out.stderr.trim()),
        }
    }

    fn owner_arg(owner: Option<&str>) -> String {
        owner.map(|o| format!("{o}:")).unwrap_or_default()
    }
}

impl Transport for Ssh {
    fn host(&self) -> &str {
        &self.host
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
        self.exec_streaming(cmd, None, Some(on_line))
    }

    fn run(&self, cmd: &CommandSpec) -> Result<Output, TransportError> {
        self.exec(cmd, None)
    }

    fn run_piped(
        &self,
        cmd: &CommandSpec,
        input: &mut (dyn std::io::Read + Send),
        output: &mut dyn std::io::Write,
    ) -> Result<(i32, String), TransportError> {
        use tokio::io::AsyncReadExt;
        let spawn_err = |e: std::io::Error| TransportError::Spawn {
            host: self.host.clone(),
            command: cmd.display(),
            source: e,
        };
        // The wrapper's environment lines go first on stdin, then the input, streamed:
        // a thread reads it (it may be a restore's decrypting reader) into a bounded
        // channel the remote stdin drains; stdout streams back chunk by chunk.
        let prefix = Self::env_prefix(cmd);
        let argv = self.remote_argv(cmd);
        let session = Arc::clone(&self.session);
        let sessions = Arc::clone(&self.sessions);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
        let result = std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match input.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            break;
                        }
                    }
                }
            });
            self.runtime.block_on(async move {
                let _permit = sessions.acquire().await.map_err(io_error)?;
                let mut command = session.command(&argv[0]);
                command
                    .args(&argv[1..])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = command.spawn().await.map_err(io_error)?;
                let mut pipe = child.stdin().take();
                let feed = async move {
                    if let Some(pipe) = pipe.as_mut() {
                        pipe.write_all(&prefix).await?;
                        while let Some(chunk) = rx.recv().await {
                            pipe.write_all(&chunk?).await?;
                        }
                        pipe.shutdown().await?;
                    }
                    drop(pipe);
                    Ok::<_, std::io::Error>(())
                };
                let mut out = child.stdout().take();
                let mut err = child.stderr().take();
                let drain = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    if let Some(out) = out.as_mut() {
                        loop {
                            let n = out.read(&mut buf).await?;
                            if n == 0 {
                                break;
                            }
                            output.write_all(&buf[..n])?;
                        }
                    }
                    output.flush()?;
                    Ok::<_, std::io::Error>(())
                };
                let errors = async {
                    let mut text = Vec::new();
                    if let Some(err) = err.as_mut() {
                        err.read_to_end(&mut text).await?;
                    }
                    Ok::<_, std::io::Error>(String::from_utf8_lossy(&text).into_owned())
                };
                let (fed, drained, stderr) = tokio::join!(feed, drain, errors);
                drained?;
                if let Err(e) = fed
                    && e.kind() != std::io::ErrorKind::BrokenPipe
                {
                    return Err(e);
                }
                let status = child.wait().await.map_err(io_error)?;
                Ok((status.code().unwrap_or(-1), stderr?))
            })
        });
        result.map_err(spawn_err)
    }

    fn spawn_detached(&self, cmd: &CommandSpec, log: &Path) -> Result<u32, TransportError> {
        let mut detached = CommandSpec::new(
            "setsid",
            ["-f", "sh", "-c", r#"exec "$@" >>"$0" 2>&1 </dev/null"#],
        );
        detached.args.push(log.to_string_lossy().into_owned());
        detached.args.push(cmd.program.clone());
        detached.args.extend(cmd.args.iter().cloned());
        detached.run_as.clone_from(&cmd.run_as);
        detached.cwd.clone_from(&cmd.cwd);
        detached.env.clone_from(&cmd.env);
        let out = self.exec(&detached, None)?;
        if out.success() {
            Ok(0)
        } else {
            Err(TransportError::Spawn {
                host: self.host.clone(),
                command: cmd.display(),
                source: io_error(out.stderr.trim()),
            })
        }
    }

    fn write_file(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<&str>,
    ) -> Result<(), TransportError> {
        let script = format!(
            r#"{SAFE_PRELUDE}
as_owner "$d" sh -c 'umask 077; t=$(mktemp "$1/.$2.XXXXXXXXXX") || exit 1; cat >"$t" && chmod "$3" "$t" && mv -f -T "$t" "$1/$2" || {{ rm -f "$t"; exit 1; }}' sh "$d" "$n" "$2" || exit 1
[ -z "$3" ] || [ "$(stat -c %u -- "$d")" != 0 ] || chown -h "$3" "$1""#
        );
        let owner = Self::owner_arg(owner.filter(|o| self.root && *o != self.user));
        let p = path.to_string_lossy();
        let out = self.script(&script, &[&p, &format!("{mode:o}"), &owner], Some(contents))?;
        if out.success() {
            Ok(())
        } else {
            Err(self.file_err("write", path, &out))
        }
    }

    fn create_new(&self, path: &Path, contents: &[u8]) -> Result<bool, TransportError> {
        // `set -C` (noclobber) makes the shell open the file with O_EXCL.
        let out = self.script(
            r#"umask 077; set -C; { cat >"$1"; } 2>/dev/null || exit 3"#,
            &[&path.to_string_lossy()],
            Some(contents),
        )?;
        match out.code {
            0 => Ok(true),
            3 => Ok(false),
            _ => Err(self.file_err("create", path, &out)),
        }
    }

    fn make_dir(&self, path: &Path, mode: u32, owner: Option<&str>) -> Result<(), TransportError> {
        let script = format!(
            r#"p=${{1%/*}}; [ -z "$p" ] || [ -d "$p" ] || mkdir -p -- "$p" || exit 1
{SAFE_PRELUDE}
[ -L "$1" ] && {{ echo "refusing $1: a symbolic link" >&2; exit 4; }}
[ -d "$1" ] || as_owner "$d" mkdir -- "$1" || exit 1
as_owner "$d" chmod "$2" "$1" || exit 1
[ -z "$3" ] || [ "$(stat -c %u -- "$d")" != 0 ] || chown -h "$3" "$1""#
        );
        let owner = Self::owner_arg(owner.filter(|o| self.root && *o != self.user));
        let p = path.to_string_lossy();
        let out = self.script(&script, &[&p, &format!("{mode:o}"), &owner], None)?;
        if out.success() {
            Ok(())
        } else {
            Err(self.file_err("create", path, &out))
        }
    }

    fn remove_all(&self, path: &Path) -> Result<(), TransportError> {
        let script = format!(
            r#"[ -e "$1" ] || [ -L "$1" ] || exit 0
{SAFE_PRELUDE}
rm -rf -- "$1""#
        );
        let out = self.script(&script, &[&path.to_string_lossy()], None)?;
        if out.success() {
            Ok(())
        } else {
            Err(self.file_err("remove", path, &out))
        }
    }

    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        let script = format!(
            r#"[ -e "$1" ] || [ -L "$1" ] || exit 3
{SAFE_PRELUDE}
[ -L "$1" ] && {{ echo "refusing $1: a symbolic link" >&2; exit 4; }}
exec cat -- "$1""#
        );
        let out = self.script(&script, &[&path.to_string_lossy()], None)?;
        match out.code {
            0 => Ok(Some(out.stdout.into_bytes())),
            3 => Ok(None),
            _ => Err(self.file_err("read", path, &out)),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        self.run(&CommandSpec::new("test", ["-e", &path.to_string_lossy()]))
            .is_ok_and(|o| o.success())
    }

    fn free_bytes(&self, path: &Path) -> Result<u64, TransportError> {
        let out = self.script(
            r#"p=$1; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; df -P -B1 "$p" | awk 'NR==2 {print $4}'"#,
            &[&path.to_string_lossy()],
            None,
        )?;
        out.stdout
            .trim()
            .parse()
            .map_err(|_| self.file_err("measure free space of", path, &out))
    }

    fn used_bytes(&self, path: &Path) -> u64 {
        self.script(
            r#"[ -e "$1" ] && du -s -B1 "$1" 2>/dev/null | cut -f1 || echo 0"#,
            &[&path.to_string_lossy()],
            None,
        )
        .ok()
        .and_then(|o| o.stdout.trim().parse().ok())
        .unwrap_or(0)
    }

    fn process_matches(&self, pid: u32, exe: Option<&Path>, cwd: &Path) -> bool {
        let exe = exe
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        pid > 0
            && self
                .script(
                    r#"c=$(readlink -f "$3") && [ "$(readlink "/proc/$1/cwd")" = "$c" ] || exit 1; [ -z "$2" ] && exit 0; e=$(readlink -f "$2") && r=$(readlink "/proc/$1/exe") && r=${r% (deleted)} && [ "$r" = "$e" ] || [ "${r##*/}" = "${e##*/}" ]"#,
                    &[&pid.to_string(), &exe, &cwd.to_string_lossy()],
                    None,
                )
                .is_ok_and(|o| o.success())
    }

    fn process_alive(&self, pid: u32) -> bool {
        pid > 0
            && self
                .script(
                    r#"s=$(ps -o stat= -p "$1") || exit 1; case $s in Z*) exit 1;; esac"#,
                    &[&pid.to_string()],
                    None,
                )
                .is_ok_and(|o| o.success())
    }

    fn signal(&self, pid: u32, signal: &str) -> Result<(), TransportError> {
        let name = signal.trim_start_matches("SIG");
        let out = self.script(
            r#"kill -s "$1" "$2" 2>/dev/null || ! kill -0 "$2" 2>/dev/null"#,
            &[name, &pid.to_string()],
            None,
        )?;
        if out.success() {
            Ok(())
        } else {
            Err(TransportError::Spawn {
                host: self.host.clone(),
                command: format!("kill -s {name} {pid}"),
                source: io_error(out.stderr.trim()),
            })
        }
    }

    fn find_program(&self, candidates: &[String]) -> Option<PathBuf> {
        let args: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let out = self
            .script(
                r#"for c; do case $c in /*) [ -x "$c" ] && { echo "$c"; exit 0; } ;; *) p=$(command -v "$c") && { echo "$p"; exit 0; } ;; esac; done; exit 1"#,
                &args,
                None,
            )
            .ok()?;
        out.success().then(|| PathBuf::from(out.stdout.trim()))
    }

    fn user_exists(&self, user: &str) -> bool {
        self.run(&CommandSpec::new("id", ["-u", user]))
            .is_ok_and(|o| o.success())
    }

    fn path_traversable_by(&self, path: &Path, user: &str) -> bool {
        if user == self.user {
            return true;
        }
        self.script(
            r#"p=$1; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; runuser -u "$2" -- test -x "$p""#,
            &[&path.to_string_lossy(), user],
            None,
        )
        .is_ok_and(|o| o.success())
    }

    fn list_dir(&self, path: &Path) -> Vec<String> {
        self.script(
            r#"[ -d "$1" ] && ls -1A -- "$1""#,
            &[&path.to_string_lossy()],
            None,
        )
        .map(|o| o.stdout.lines().map(str::to_owned).collect())
        .unwrap_or_default()
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.script(
            r#"ss -Htln "sport = :$1" | grep -q ."#,
            &[&port.to_string()],
            None,
        )
        .is_ok_and(|o| o.success())
    }
}
