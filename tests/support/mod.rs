//! Test harness: a temporary GitOps repo, HOME, identity and state directory per test,
//! driving the real `dbctl` binary against real database servers. Servers a test
//! leaves behind are stopped by PID (from their pid files) when the test ends.

#![allow(dead_code)]

pub mod cluster;
pub mod hosts;
pub mod kubernetes;
pub mod nomad;

/// Serves `app` (an API double) on a free port of 127.0.0.1 from a runtime of its own;
/// the runtime (dropping it stops the server) and the address.
pub fn serve_double(app: axum::Router) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    serve_double_at(app, std::net::TcpListener::bind("127.0.0.1:0").unwrap())
}

/// [`serve_double`] on `address` inside network namespace `namespace` (`ip netns`'s
/// name): the socket is made by a thread that joined the namespace, and stays there
/// while the double serves it from this one.
pub fn serve_double_in(
    app: axum::Router,
    namespace: &str,
    address: &str,
) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let path = format!("/var/run/netns/{namespace}");
    let address = address.to_owned();
    let listener = std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        std::net::TcpListener::bind(address).unwrap()
    })
    .join()
    .unwrap();
    serve_double_at(app, listener)
}

fn serve_double_at(
    app: axum::Router,
    listener: std::net::TcpListener,
) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).unwrap()
    };
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (runtime, addr)
}
pub mod sshd;
pub mod swift;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

static NEXT_PORT_BLOCK: AtomicU16 = AtomicU16::new(0);

/// One test's world.
pub struct World {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub state: PathBuf,
    pub home: PathBuf,
}

/// HEAD and `git status` of a world's repo at one moment ([`World::snapshot`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub head: String,
    pub dirty: String,
}

/// `git ARGS` in `dir` with a fixed author; panics when git fails.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a dbctl run returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "dbctl failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Self {
        assert_eq!(
            self.code, 1,
            "expected exit 1:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

impl World {
    /// A world with `dbctl init` already run; ports start at a block of 40 per test.
    pub fn new() -> Self {
        let world = Self::bare();
        world.dbctl(&["init"]).ok();
        let block = NEXT_PORT_BLOCK.fetch_add(1, Ordering::SeqCst);
        let first_port = 30_000 + (std::process::id() % 200) as u16 * 100 + block * 10;
        let config = world.repo.join("etc/dbctl.yml");
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text.replace(
            "    platform: local\n",
            &format!("    platform: local\n    first_port: {first_port}\n"),
        );
        std::fs::write(&config, text).unwrap();
        world.git(&["commit", "-qam", "test: port range"]);
        world
    }

    /// A world with `dbctl init` run and `targets` (YAML entries under `targets:`)
    /// added to etc/dbctl.yml, committed.
    pub fn with_targets(targets: &str) -> Self {
        let world = Self::new();
        let config = world.repo.join("etc/dbctl.yml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replacen("targets:\n", &format!("targets:\n{targets}"), 1),
        )
        .unwrap();
        world.git(&["commit", "-qam", "test: targets"]);
        world
    }

    /// A world without `dbctl init`.
    pub fn bare() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dbctl-test")
            .tempdir()
            .unwrap();
        // Engine service users (postgres, mysql, redis) must traverse to the state dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let repo = dir.path().join("repo");
        let state = dir.path().join("state");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        Self {
            dir,
            repo,
            state,
            home,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("dbctl").unwrap();
        cmd.args(args)
            .env_remove("DBCTL_IDENTITY")
            .env_remove("DBCTL_REPO")
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("DBCTL_STATE_DIR", &self.state)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .current_dir(&self.repo);
        cmd
    }

    pub fn dbctl(&self, args: &[&str]) -> Run {
        self.dbctl_with(args, &[])
    }

    /// [`Self::dbctl`] with extra environment variables.
    pub fn dbctl_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let out = self
            .command(args)
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts dbctl and returns once a stderr line contains `marker` (the child keeps
    /// running); panics if it exits first.
    pub fn spawn_until(&self, args: &[&str], marker: &str) -> Child {
        self.spawn_with_until(args, &[], marker)
    }

    /// [`Self::spawn_until`] with extra environment variables.
    pub fn spawn_with_until(&self, args: &[&str], envs: &[(&str, &str)], marker: &str) -> Child {
        let mut child = self
            .command(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let hit = line.contains(marker);
                    seen.push(line);
                    if hit {
                        break;
                    }
                }
                _ => panic!("dbctl ended before {marker:?}: {seen:#?}"),
            }
        }
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        child
    }

    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.repo, args)
    }

    /// Writes `etc/databases/<name>.yml` with `yaml` and commits it as `message`.
    pub fn commit_spec(&self, name: &str, yaml: &str, message: &str) {
        std::fs::write(self.repo.join(format!("etc/databases/{name}.yml")), yaml).unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-qm", message]);
    }

    /// The attributes of the changes in the JSON report of a `resize`, `upgrade` or
    /// `scale` `--dry-run`, in order.
    pub fn dry_run_attributes(run: &Value) -> Vec<String> {
        run["changes"]
            .as_array()
            .unwrap_or_else(|| panic!("no changes: {run}"))
            .iter()
            .map(|c| c["attribute"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Points the repo's catalog at PostgreSQL 17's binaries in `bin` (`bin_dirs`) and
    /// commits it — a second major, or (another `bin` later) a package upgrade to a
    /// newer build. `scripts/install-test-postgresql` installs the builds under /opt.
    pub fn postgresql_17_in(&self, bin: &str) {
        assert!(
            Path::new(bin).join("postgres").exists(),
            "{bin} is missing: run scripts/install-test-postgresql (see scripts/test)"
        );
        let engines = include_str!("../../etc/engines.yml").replacen(
            "  service_user: postgres\n",
            &format!("  service_user: postgres\n  bin_dirs: {{\"17\": \"{bin}\"}}\n"),
            1,
        );
        std::fs::write(self.repo.join("etc/engines.yml"), engines).unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-qm", &format!("catalog: PostgreSQL 17 in {bin}")]);
    }

    /// HEAD and the uncommitted files, to compare after a run that must change nothing.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            head: self.head(),
            dirty: self.dirty(),
        }
    }

    /// Stops `name`'s PostgreSQL server behind dbctl's back (as a reboot would).
    pub fn stop_postgres(&self, name: &str) {
        let data = self.instance_dir(name).join("data");
        let out = Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c"])
            .arg(format!(
                "/usr/lib/postgresql/15/bin/pg_ctl -D {} stop -m fast",
                data.display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// `git status --porcelain --ignored` of the repo: every file not committed.
    pub fn dirty(&self) -> String {
        self.git(&["status", "--porcelain", "--untracked-files=all"])
    }

    /// The connection as JSON with the password decrypted.
    pub fn reveal(&self, name: &str) -> Value {
        self.dbctl(&["connection", name, "--reveal", "-o", "json"])
            .ok()
            .json()
    }

    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    /// Pids of live server processes: those named by pid files under the state
    /// directory and those whose command line mentions it.
    pub fn server_pids(&self) -> Vec<i32> {
        let needle = self.state.to_string_lossy().into_owned();
        let mut pids: Vec<i32> = processes()
            .into_iter()
            .filter(|(_, cmdline)| cmdline.contains(&needle))
            .map(|(pid, _)| pid)
            .collect();
        let mut files = Vec::new();
        pid_files(&self.state, &mut files);
        for file in files {
            if let Some(pid) = read_pid(&file)
                && Path::new(&format!("/proc/{pid}")).exists()
                && !pids.contains(&pid)
            {
                pids.push(pid);
            }
        }
        pids
    }
}

/// Every process's pid and command line (arguments joined by spaces).
pub fn processes() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = raw
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            out.push((pid, cmdline));
        }
    }
    out
}

fn read_pid(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
}

fn pid_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            pid_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "pid") {
            out.push(path);
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for pid in self.server_pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Runs a client command, returning stdout; panics with stderr on failure.
#[track_caller]
pub fn client(program: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Switches PostgreSQL to a new WAL segment through `admin` (runs a batch as the
/// administrator, `dbctl sql --admin -c`, and returns its output) and waits until the
/// server has archived the segment before it: what a point-in-time recovery to now
/// replays. A failed `archive_command` is retried by the server's archiver, after up to
/// a minute's pause once three attempts failed, so this waits 90 s; on a timeout it
/// panics with `pg_stat_archiver` (failures, the last failed segment and when).
pub fn switch_wal_and_wait_archived(admin: &dyn Fn(&str) -> String) {
    const STATE: &str = "select failed_count, coalesce(last_failed_wal, '-'), coalesce(last_failed_time::text, '-'), coalesce(last_archived_wal, '-'), last_archived_wal >= pg_walfile_name(pg_current_wal_lsn() - 1) as done from pg_stat_archiver";
    // The row's fields, from psql's table (its last line with a `|`).
    let state = || -> Vec<String> {
        let out = admin(STATE);
        let row = out
            .lines()
            .rfind(|l| l.contains('|'))
            .unwrap_or_else(|| panic!("no pg_stat_archiver row in {out:?}"));
        row.split('|').map(|f| f.trim().to_owned()).collect()
    };
    let before = state();
    admin("select pg_switch_wal()");
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(90) {
        let now = state();
        if now.last().is_some_and(|done| done == "t") {
            if now[0] != before[0] {
                eprintln!(
                    "archiving failed meanwhile, then caught up: pg_stat_archiver before the switch {before:?}, now {now:?}"
                );
            }
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!(
        "the WAL segment before the switch was not archived within 90 s; pg_stat_archiver (failed_count, last_failed_wal, last_failed_time, last_archived_wal, done) before the switch: {before:?}, now: {:?}",
        state()
    );
}

/// Runs `sql` with psql as the application user of a revealed connection (JSON of
/// `dbctl connection NAME --reveal -o json`), password through `PGPASSWORD`; returns
/// the unaligned, tuples-only output, trimmed.
#[track_caller]
pub fn psql(conn: &Value, sql: &str) -> String {
    let field = |key: &str| match &conn[key] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (host, port, user, db) = (
        field("host"),
        field("port"),
        field("username"),
        field("database"),
    );
    client(
        "psql",
        &[
            "-h", &host, "-p", &port, "-U", &user, "-d", &db, "-Atc", sql,
        ],
        &[("PGPASSWORD", &field("password"))],
        None,
    )
    .trim()
    .to_owned()
}

/// The systemd units of a database's scheduled backups that dbctl wrote (into `dir`:
/// an instance's `systemd/`, or a cluster target's `<state_dir>/.dbctl/systemd`).
pub struct ScheduleUnits {
    /// The oneshot service's text.
    pub service: String,
    /// The timer's text.
    pub timer: String,
}

impl ScheduleUnits {
    /// Reads the one service and timer of database `name` in `dir`.
    pub fn read(dir: &Path, name: &str) -> Self {
        let unit = |suffix: &str| {
            let found: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(&format!("-{name}{suffix}")))
                .collect();
            assert_eq!(found.len(), 1, "{found:?}");
            std::fs::read_to_string(&found[0]).unwrap()
        };
        Self {
            service: unit(".service"),
            timer: unit(".timer"),
        }
    }

    /// `key=` of `unit`'s text, as written (quoted where dbctl quoted it).
    pub fn value(unit: &str, key: &str) -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {unit}"))
            .to_owned()
    }

    /// What the timer starts, as a shell command for another machine: the service's
    /// `ExecStart` with only its `Environment` and a plain `PATH`, from `/`.
    pub fn timer_command(&self) -> String {
        format!(
            "cd / && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin {} sh -c '{}'",
            Self::value(&self.service, "Environment").trim_matches('"'),
            Self::value(&self.service, "ExecStart")
        )
    }
}
