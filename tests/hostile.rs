//! Hostile specs and repos: what someone with write access to one spec file, or to the
//! repo, tries. Each case asserts what the operator would notice: exit 1 with a message
//! naming the file or key, no commit, no server, no setting applied, nothing outside the
//! repo and the state directory touched.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use crate::support::{Snapshot, World, processes};

#[track_caller]
fn assert_nothing_happened(world: &World, before: &Snapshot) {
    assert_eq!(world.head(), before.head, "a commit was made");
    assert_eq!(world.dirty(), before.dirty, "files changed in the repo");
    assert!(world.server_pids().is_empty(), "a server was started");
}

/// A file outside the repo and state directory that must stay as it is.
fn victim(world: &World, name: &str) -> std::path::PathBuf {
    let path = world.dir.path().join(name);
    std::fs::write(&path, "victim: secret-content-42\n").unwrap();
    path
}

#[track_caller]
fn assert_victim_intact(path: &Path) {
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        "victim: secret-content-42\n",
        "{} was changed",
        path.display()
    );
}

fn write_spec(world: &World, name: &str, body: &str) {
    std::fs::write(world.repo.join(format!("etc/databases/{name}.yml")), body).unwrap();
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", &format!("spec {name}")]);
}

/// Runs a client, returning (success, stdout + stderr) instead of panicking.
fn try_client(program: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn settings_that_run_programs_load_files_or_move_listeners_are_refused() {
    let world = World::new();
    let cases: &[(&str, &str, &str, &str)] = &[
        ("postgresql", "15", "archive_command", "touch /tmp/pwned"),
        ("postgresql", "15", "ssl_passphrase_command", "sh -c id"),
        (
            "postgresql",
            "15",
            "shared_preload_libraries",
            "/tmp/evil.so",
        ),
        ("postgresql", "15", "listen_addresses", "*"),
        ("postgresql", "15", "hba_file", "/tmp/hba"),
        ("postgresql", "15", "log_statement", "all"),
        ("mariadb", "10.11", "init_file", "/tmp/evil.sql"),
        ("mariadb", "10.11", "plugin-load-add", "auth_pam"),
        ("mariadb", "10.11", "general_log", "1"),
        ("mariadb", "10.11", "bind_address", "0.0.0.0"),
        ("redis", "7.0", "dir", "/root/.ssh"),
        ("redis", "7.0", "dbfilename", "authorized_keys"),
        ("redis", "7.0", "rename-command", "CONFIG \"\""),
        ("redis", "7.0", "loadmodule", "/tmp/evil.so"),
    ];
    for (engine, version, key, value) in cases {
        let before = world.snapshot();
        write_spec(
            &world,
            "evil",
            &format!(
                "name: evil\nengine: {engine}\nversion: \"{version}\"\nsize_gb: 1\nparameters:\n  {key}: '{}'\n",
                value.replace('\'', "''")
            ),
        );
        let before = Snapshot {
            head: world.head(),
            ..before
        };
        let run = world.dbctl(&["apply"]);
        assert_eq!(run.code, 1, "{engine} {key} accepted: {}", run.stderr);
        assert!(
            run.stderr.contains("etc/databases/evil.yml")
                && run.stderr.contains(&format!("parameters.{key}"))
                && run.stderr.contains("may not be set from a spec"),
            "{engine} {key}: {}",
            run.stderr
        );
        assert_nothing_happened(&world, &before);
        assert!(!world.state.join("evil").exists(), "an instance was made");
        // The same through a flag.
        let flag = format!("{key}={value}");
        let run = world.dbctl(&["create", "--type", engine, "--param", &flag, "flagged"]);
        assert_eq!(run.code, 1, "{engine} --param {key} accepted");
        assert!(run.stderr.contains("`--param`"), "{}", run.stderr);
        assert!(!world.repo.join("etc/databases/flagged.yml").exists());
    }
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn values_that_could_break_out_of_the_configuration_are_refused() {
    let world = World::new();
    let cases = [
        (
            "work_mem",
            "64MB'\nlisten_addresses = '*",
            "not a valid value of `work_mem`",
        ),
        ("work_mem", "64MiB", "with a unit: kB, MB, GB or TB"),
        ("work_mem", "64", "with a unit"),
        (
            "statement_timeout",
            "1\\",
            "not a valid value of `statement_timeout`",
        ),
        (
            "max_connections",
            "99999999999999999999",
            "a whole number from 10",
        ),
        ("max_conections", "100", "did you mean `max_connections`"),
    ];
    for (key, value, needle) in cases {
        let before = world.snapshot();
        let run = world.dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--param",
            &format!("{key}={value}"),
            "tricky",
        ]);
        assert_eq!(run.code, 1, "{key}={value:?} accepted");
        assert!(run.stderr.contains(needle), "{key}: {}", run.stderr);
        assert_nothing_happened(&world, &before);
    }
}

#[test]
fn allowed_cidrs_govern_who_may_connect() {
    let world = World::new();
    // Only a documentation network may connect: the right password from 127.0.0.1
    // is refused by the server itself.
    world
        .dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--size",
            "1",
            "--allow",
            "192.0.2.0/24",
            "fenced",
        ])
        .ok();
    let conn = world.reveal("fenced");
    let port = conn["port"].to_string();
    let password = conn["password"].as_str().unwrap().to_owned();
    let (ok, out) = try_client(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "fenced",
            "-d",
            "fenced",
            "-Atc",
            "select 1",
        ],
        &[("PGPASSWORD", &password)],
    );
    assert!(!ok && out.contains("no pg_hba.conf entry"), "{out}");
    // Without allowed_cidrs, this host may connect.
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "open-db"])
        .ok();
    let conn = world.reveal("open-db");
    let (ok, out) = try_client(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &conn["port"].to_string(),
            "-U",
            "open_db",
            "-d",
            "open_db",
            "-Atc",
            "select 1",
        ],
        &[("PGPASSWORD", conn["password"].as_str().unwrap())],
    );
    assert!(ok, "{out}");
    // MariaDB accounts are per network too.
    world
        .dbctl(&[
            "create",
            "--type",
            "mariadb",
            "--size",
            "1",
            "--allow",
            "192.0.2.0/24",
            "fenced-my",
        ])
        .ok();
    let conn = world.reveal("fenced-my");
    let (ok, out) = try_client(
        "mariadb",
        &[
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            &conn["port"].to_string(),
            "-u",
            "fenced_my",
            "-e",
            "select 1",
        ],
        &[("MYSQL_PWD", conn["password"].as_str().unwrap())],
    );
    assert!(
        !ok && (out.contains("Access denied") || out.contains("is not allowed to connect")),
        "{out}"
    );
    // Redis cannot filter by address: a spec may not pretend it does.
    let before = world.snapshot();
    world
        .dbctl(&[
            "create",
            "--type",
            "redis",
            "--allow",
            "10.0.0.0/8",
            "cache",
        ])
        .fails_with("Redis cannot restrict clients by address");
    assert_eq!(world.head(), before.head);
    assert!(!world.repo.join("etc/databases/cache.yml").exists());
}

#[test]
fn the_password_never_reaches_a_server_log_even_when_an_override_logs_everything() {
    let world = World::new();
    // The operator's own override turns on every statement log the engines have.
    let pg = world.repo.join("templates/local/postgresql");
    std::fs::create_dir_all(&pg).unwrap();
    let conf = include_str!("../templates/local/postgresql/postgresql.conf.j2");
    std::fs::write(
        pg.join("postgresql.conf.j2"),
        format!("{conf}\nlog_statement = 'all'\nlog_min_duration_statement = 0\nlog_min_error_statement = 'debug5'\n"),
    )
    .unwrap();
    let my = world.repo.join("templates/local/mariadb");
    std::fs::create_dir_all(&my).unwrap();
    let cnf = include_str!("../templates/local/mariadb/my.cnf.j2");
    std::fs::write(
        my.join("my.cnf.j2"),
        format!(
            "{cnf}\ngeneral_log = 1\ngeneral_log_file = {{{{ instance.log_dir }}}}/general.log\nslow_query_log = 1\nslow_query_log_file = {{{{ instance.log_dir }}}}/slow.log\nlong_query_time = 0\nlog_bin = {{{{ instance.log_dir }}}}/binlog\nserver_id = 1\n"
        ),
    )
    .unwrap();
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "log everything"]);
    for (engine, name) in [("postgresql", "logged-pg"), ("mariadb", "logged-my")] {
        world
            .dbctl(&["create", "--type", engine, "--size", "1", name])
            .ok();
        let password = world.reveal(name)["password"].as_str().unwrap().to_owned();
        let logs = world.instance_dir(name).join("log");
        let mut seen = 0;
        for entry in std::fs::read_dir(&logs).unwrap().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            seen += bytes.len();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&password),
                "{engine}: the password is in {}",
                entry.path().display()
            );
        }
        assert!(
            seen > 0,
            "{engine}: no logs were written, so nothing was proved"
        );
    }
    // The statement logs did record the bootstrap (so they were on), with the
    // verifier instead of the password.
    let general = std::fs::read_to_string(world.instance_dir("logged-my").join("log/general.log"))
        .unwrap_or_default();
    assert!(
        general.contains("Connect"),
        "general log is empty:\n{general}"
    );
}

#[test]
fn a_create_that_fails_after_the_server_started_leaves_nothing_running() {
    let world = World::new();
    // An override whose bootstrap fails once the server runs.
    let dir = world.repo.join("templates/local/postgresql");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bootstrap.sql.j2"), "SELEC broken;\n").unwrap();
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "broken bootstrap"]);
    let before = world.snapshot();
    let run = world.dbctl(&["create", "--type", "postgresql", "--size", "1", "half"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("stopped the server and removed what this run created"),
        "{}",
        run.stderr
    );
    assert_nothing_happened(&world, &before);
    assert!(!world.state.join("half").exists(), "the instance is left");
    assert!(
        processes()
            .iter()
            .all(|(_, cmd)| !cmd.contains("/half/data")),
        "a server of `half` still runs"
    );
    // A server that cannot start: the error quotes its log and names the file.
    std::fs::remove_file(dir.join("bootstrap.sql.j2")).unwrap();
    let conf = include_str!("../templates/local/postgresql/postgresql.conf.j2");
    std::fs::write(
        dir.join("postgresql.conf.j2"),
        format!("{conf}\nshared_buffers = 'banana'\n"),
    )
    .unwrap();
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "broken conf"]);
    let run = world.dbctl(&["create", "--type", "postgresql", "--size", "1", "nostart"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("shared_buffers") && run.stderr.contains("server.log"),
        "the error does not quote the server log:\n{}",
        run.stderr
    );
    assert!(world.server_pids().is_empty());
}

#[test]
fn links_planted_in_the_repo_are_never_followed() {
    let world = World::new();
    let secret = victim(&world, "shadow");
    // A spec that is a link to another file: refused, its content never echoed.
    symlink(&secret, world.repo.join("etc/databases/leak.yml")).unwrap();
    for args in [&["status", "leak"][..], &["list"][..], &["apply"][..]] {
        let run = world.dbctl(args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stdout);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(all.contains("symbolic link"), "{args:?}: {all}");
        assert!(
            !all.contains("secret-content-42"),
            "{args:?} echoed the file"
        );
    }
    std::fs::remove_file(world.repo.join("etc/databases/leak.yml")).unwrap();
    // A template override that is a link: refused before anything runs.
    let before = world.snapshot();
    let dir = world.repo.join("templates/local/redis");
    std::fs::create_dir_all(&dir).unwrap();
    symlink(&secret, dir.join("redis.conf.j2")).unwrap();
    let run = world.dbctl(&["create", "--type", "redis", "linked"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert!(!run.stderr.contains("secret-content-42"));
    assert!(world.server_pids().is_empty());
    assert_eq!(world.head(), before.head);
    std::fs::remove_dir_all(world.repo.join("templates")).unwrap();
    // A lock file and a connection file planted as links: refused, the target is
    // neither truncated nor written.
    let lock_target = victim(&world, "lock-target");
    std::fs::create_dir_all(world.repo.join(".dbctl/locks")).unwrap();
    symlink(&lock_target, world.repo.join(".dbctl/locks/locked.lock")).unwrap();
    world
        .dbctl(&["create", "--type", "redis", "locked"])
        .fails_with("symbolic link");
    assert_victim_intact(&lock_target);
    let conn_target = victim(&world, "conn-target");
    symlink(&conn_target, world.repo.join("connections/conned.yml")).unwrap();
    world
        .dbctl(&["create", "--type", "redis", "conned"])
        .fails_with("symbolic link");
    assert_victim_intact(&conn_target);
    assert_victim_intact(&secret);
    assert!(world.server_pids().is_empty());
}

#[test]
fn a_service_user_cannot_redirect_roots_writes_in_its_instance_directory() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "redis", "--size", "1", "owned"])
        .ok();
    let conf = world.instance_dir("owned").join("conf");
    // What a compromised redis user can do: its conf directory becomes a link.
    let elsewhere = world.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let pid: i32 = std::fs::read_to_string(world.instance_dir("owned").join("run/redis.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::fs::rename(&conf, world.dir.path().join("conf-moved")).unwrap();
    symlink(&elsewhere, &conf).unwrap();
    let run = world.dbctl(&["apply"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("symbolic link") || run.stderr.contains("symbolic link"));
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "dbctl wrote through the link"
    );
}

#[test]
fn a_planted_pid_file_is_never_trusted() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "pidded"])
        .ok();
    let data = world.instance_dir("pidded").join("data");
    world.stop_postgres("pidded");
    // Another live process's pid in the pid file.
    let mut bystander = Command::new("sleep").arg("300").spawn().unwrap();
    std::fs::write(
        data.join("postmaster.pid"),
        format!("{}\n{}\n", bystander.id(), data.display()),
    )
    .unwrap();
    // apply does not take the bystander for the server: the server comes back.
    world.dbctl(&["apply"]).ok();
    let status = world.dbctl(&["status", "pidded", "-o", "json"]).ok().json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    // delete stops the real server and leaves the bystander alone.
    let pid_now: u32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(pid_now, bystander.id());
    std::fs::write(
        data.join("postmaster.pid"),
        format!("{}\n{}\n", bystander.id(), data.display()),
    )
    .unwrap();
    let _ = world.dbctl(&["delete", "pidded", "--yes", "--skip-final-backup"]);
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "dbctl signalled a process that is not its server"
    );
    let _ = bystander.kill();
    let _ = Command::new("kill").arg(pid_now.to_string()).status();
}

#[test]
fn a_held_git_lock_is_reported_and_the_next_run_commits() {
    let world = World::new();
    let lock = world.repo.join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let run = world.dbctl(&["create", "--type", "redis", "--size", "1", "committed"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(".git/index.lock"), "{}", run.stderr);
    std::fs::remove_file(&lock).unwrap();
    // The files are written, the database runs; the re-run commits them.
    let head = world.head();
    world
        .dbctl(&["create", "--type", "redis", "--size", "1", "committed"])
        .ok();
    assert_ne!(world.head(), head, "the re-run did not commit");
    assert_eq!(world.dirty(), "", "the index or tree is left dirty");
    let files = world.git(&["show", "--name-only", "--format=", "HEAD"]);
    assert!(files.contains("connections/committed.yml"), "{files}");
}

#[test]
fn out_of_range_flags_are_errors_not_panics() {
    let world = World::new();
    let before = world.snapshot();
    for args in [
        &[
            "create",
            "--type",
            "redis",
            "--lock-timeout",
            "99999999999999999999",
            "x",
        ][..],
        &["create", "--type", "redis", "--lock-timeout", "100000", "x"][..],
        &[
            "create",
            "--type",
            "redis",
            "--size",
            "99999999999999999999999",
            "x",
        ][..],
        &["apply", "--parallel", "0"][..],
        &["create", "--type", "postgresql", "--user", "public", "x"][..],
        &[
            "create",
            "--type",
            "postgresql",
            "--user",
            "current_user",
            "x",
        ][..],
    ] {
        let run = world.dbctl(args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("error:"), "{args:?}: {}", run.stderr);
    }
    assert_nothing_happened(&world, &before);
}
