//! The `ssh` platform against a real sshd on 127.0.0.1: create, connect with the
//! decrypted credentials, status and delete for each engine; a changed host key is
//! refused; a dead host fails clearly after bounded retries.

use std::time::Instant;

use crate::support::sshd::{Sshd, free_port};
use crate::support::{World, client, psql};

/// A world whose `vm` target reaches `sshd` as root; instances live in the world's
/// state directory (absolute, on the "remote" host, which is this machine).
fn world_with(sshd: &Sshd, port: u16, known_hosts: &std::path::Path) -> World {
    let world = World::new();
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    let target = format!(
        "targets:\n  vm:\n    platform: ssh\n    hosts: [127.0.0.1]\n    port: {port}\n    user: root\n    identity: {}\n    known_hosts: {}\n    state_dir: {}\n    listen: 127.0.0.1\n    first_port: {}\n",
        sshd.client_key.display(),
        known_hosts.display(),
        world.state.display(),
        40_000 + (std::process::id() % 500) as u16 * 10,
    );
    std::fs::write(&config, text.replacen("targets:\n", &target, 1)).unwrap();
    world.git(&["commit", "-qam", "test: ssh target"]);
    world
}

#[test]
fn engines_over_ssh_create_answer_and_delete() {
    let world = World::bare();
    let sshd = Sshd::start(&world.dir.path().join("sshd"));
    let world = world_with(&sshd, sshd.port, &sshd.known_hosts);
    for (engine, name) in [
        ("postgresql", "remote-pg"),
        ("mariadb", "remote-my"),
        ("redis", "remote-kv"),
    ] {
        world
            .dbctl(&[
                "create", "--type", engine, "--size", "1", name, "--target", "vm",
            ])
            .ok();
        let conn = world.reveal(name);
        assert_eq!(conn["target"], "vm");
        assert_eq!(conn["host"], "127.0.0.1");
        let port = conn["port"].as_u64().unwrap().to_string();
        let password = conn["password"].as_str().unwrap().to_owned();
        let user = conn["username"].as_str().unwrap().to_owned();
        let answer = match engine {
            "postgresql" => psql(&conn, "select 40 + 2"),
            "mariadb" => client(
                "mariadb",
                &[
                    "--no-defaults",
                    "-h",
                    "127.0.0.1",
                    "-P",
                    &port,
                    "-u",
                    &user,
                    &user,
                    "-N",
                    "-e",
                    "select 40 + 2",
                ],
                &[("MYSQL_PWD", &password)],
                None,
            ),
            _ => client(
                "redis-cli",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "--user",
                    &user,
                    "--no-auth-warning",
                    "INCRBY",
                    "answer",
                    "42",
                ],
                &[("REDISCLI_AUTH", &password)],
                None,
            ),
        };
        assert_eq!(answer.trim(), "42", "{engine}");
        let status = world.dbctl(&["status", name, "-o", "json"]).ok().json();
        assert_eq!(status["platform"], "ssh");
        assert_eq!(status["status"]["state"], "up", "{status}");
        assert!(status["status"]["used_bytes"].as_u64().unwrap() > 0);
    }
    let list = world.dbctl(&["list", "-o", "json"]).ok().json();
    assert_eq!(list["databases"].as_array().unwrap().len(), 3);
    for name in ["remote-pg", "remote-my", "remote-kv"] {
        world
            .dbctl(&["delete", name, "--yes", "--skip-final-backup"])
            .ok();
        assert!(
            !world.instance_dir(name).exists(),
            "{name} left data behind"
        );
    }
    assert!(world.server_pids().is_empty(), "servers left running");
    assert_eq!(world.dirty(), "");
}

#[test]
fn a_changed_host_key_is_refused() {
    let world = World::bare();
    let sshd = Sshd::start(&world.dir.path().join("sshd"));
    // known_hosts records another key for this host:port, as after a host swap.
    let other = world.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(other.join("key"))
        .status()
        .unwrap();
    assert!(status.success());
    let other_pub = std::fs::read_to_string(other.join("key.pub")).unwrap();
    let key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let known = world.dir.path().join("known_hosts_wrong");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {}\n", sshd.port, key.join(" ")),
    )
    .unwrap();
    let world = world_with(&sshd, sshd.port, &known);
    let head = world.head();
    for extra in [&[][..], &["--accept-new-host-keys"][..]] {
        let mut args = vec![
            "create", "-t", "redis", "--size", "1", "kv", "--target", "vm",
        ];
        args.extend_from_slice(extra);
        let run = world.dbctl(&args);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stderr.contains("127.0.0.1"), "{}", run.stderr);
        assert!(
            run.stderr.contains("Host key verification failed"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(world.head(), head);
    assert!(!world.state.exists());
}

#[test]
fn an_unknown_host_key_needs_accept_new_host_keys() {
    let world = World::bare();
    let sshd = Sshd::start(&world.dir.path().join("sshd"));
    let empty = world.dir.path().join("known_hosts_empty");
    std::fs::write(&empty, "").unwrap();
    let world = world_with(&sshd, sshd.port, &empty);
    world
        .dbctl(&[
            "create", "-t", "redis", "--size", "1", "kv", "--target", "vm",
        ])
        .fails_with("--accept-new-host-keys");
    world
        .dbctl(&[
            "create",
            "-t",
            "redis",
            "--size",
            "1",
            "kv",
            "--target",
            "vm",
            "--accept-new-host-keys",
        ])
        .ok();
    // Recorded (Debian hashes known_hosts entries, so ask ssh-keygen).
    let found = std::process::Command::new("ssh-keygen")
        .args(["-F", &format!("[127.0.0.1]:{}", sshd.port), "-f"])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "host key not recorded in known_hosts"
    );
    world
        .dbctl(&["delete", "kv", "--yes", "--skip-final-backup"])
        .ok();
}

#[test]
fn a_dead_host_fails_clearly_after_bounded_retries() {
    let world = World::bare();
    let sshd = Sshd::start(&world.dir.path().join("sshd"));
    let dead_port = free_port();
    let world = world_with(&sshd, dead_port, &sshd.known_hosts);
    let started = Instant::now();
    let run = world.dbctl(&[
        "create", "-t", "redis", "--size", "1", "kv", "--target", "vm",
    ]);
    let took = started.elapsed();
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("on 127.0.0.1"), "{}", run.stderr);
    assert!(run.stderr.contains("after 3 attempts"), "{}", run.stderr);
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    // Backoff 1 s + 2 s between three attempts: bounded, not endless.
    assert!(took.as_secs() >= 3 && took.as_secs() < 30, "took {took:?}");
    assert!(!world.repo.join("etc/databases/kv.yml").exists());
}

#[test]
fn install_packages_runs_apt_get_on_the_host_and_reports_its_failure() {
    let world = World::bare();
    let sshd = Sshd::start(&world.dir.path().join("sshd"));
    let world = world_with(&sshd, sshd.port, &sshd.known_hosts);
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "    platform: ssh\n",
            "    platform: ssh\n    install_packages: true\n",
            1,
        ),
    )
    .unwrap();
    // PostgreSQL 16 is in the catalog but not installed, and Debian 12 has no package
    // for it: dbctl asks apt-get on the host and reports what apt-get said.
    let pg16 = [
        "create",
        "-t",
        "postgresql",
        "--version",
        "16",
        "--size",
        "1",
        "pg16",
        "--target",
        "vm",
    ];
    let run = world.dbctl(&pg16);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("Install postgresql-16"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("installing `postgresql-16` on 127.0.0.1 failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("postgresql-16"), "{}", run.stderr);
    // Without install_packages the same request stops in preflight, before any change.
    std::fs::write(&config, &text).unwrap();
    let _ = std::fs::remove_file(world.repo.join("etc/databases/pg16.yml"));
    world
        .dbctl(&pg16)
        .fails_with("postgresql 16 is not installed on 127.0.0.1");
}

/// Output lines reach the caller as the command prints them, locally and over SSH.
#[test]
fn command_output_streams_line_by_line() {
    use dbctl::transport::{CommandSpec, Local, Stream, Transport};

    fn check(t: &dyn Transport) {
        let cmd = CommandSpec::new("sh", ["-c", "echo one; echo warn >&2; sleep 1.5; echo two"]);
        let started = Instant::now();
        let mut seen = Vec::new();
        let out = t
            .run_streaming(&cmd, &mut |stream, line| {
                seen.push((stream, line.to_owned(), started.elapsed()));
            })
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, "one\ntwo\n");
        assert_eq!(out.stderr, "warn\n");
        let at = |text: &str| {
            seen.iter()
                .find(|(_, l, _)| l == text)
                .map(|(s, _, t)| (*s, *t))
                .unwrap()
        };
        let (stream, first) = at("one");
        assert_eq!(stream, Stream::Stdout);
        assert_eq!(at("warn").0, Stream::Stderr);
        let (_, second) = at("two");
        assert!(
            first.as_secs_f64() < 1.0,
            "{}: first line only after {first:?}",
            t.host()
        );
        assert!(
            second.as_secs_f64() >= 1.4,
            "{}: second line at {second:?}",
            t.host()
        );
    }

    check(&Local::new());
    let world = World::bare();
    let sshd = Sshd::start(&world.dir.path().join("sshd"));
    check(&sshd.transport());
}

#[test]
fn databases_spread_over_a_targets_hosts_and_stay_there() {
    use crate::support::cluster::{dbctl_in, reveal_in};
    use crate::support::hosts::NamespaceHosts;
    let world = World::new();
    let hosts = NamespaceHosts::up(&world.dir.path().join("hosts"), 's', 2);
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    let target = format!(
        "targets:\n  pool:\n    platform: ssh\n    hosts: [10.203.1.11, 10.203.1.12]\n    user: root\n    identity: {}\n    known_hosts: {}\n    state_dir: {}\n",
        hosts.dir.join("client_key").display(),
        hosts.dir.join("known_hosts").display(),
        hosts.state_dir.display(),
    );
    std::fs::write(&config, text.replacen("targets:\n", &target, 1)).unwrap();
    world.git(&["commit", "-qam", "test: a target with two hosts"]);
    let ns = hosts.bridge();
    let create = |name: &str| {
        dbctl_in(
            &world,
            &ns,
            &[
                "create", "--type", "redis", "--target", "pool", "--size", "1", name,
            ],
        )
        .ok();
        reveal_in(&world, &ns, name)
    };

    // The least-loaded host takes each new database; ties go to the first.
    let a = create("kv-a");
    let b = create("kv-b");
    let c = create("kv-c");
    assert_eq!(a["host"], "10.203.1.11");
    assert_eq!(b["host"], "10.203.1.12");
    assert_eq!(c["host"], "10.203.1.11");
    for (i, name) in [(1, "kv-a"), (2, "kv-b"), (1, "kv-c")] {
        assert!(
            hosts.state(i).join(name).join("instance.json").exists(),
            "{name} not on host{i}"
        );
        assert!(
            !hosts.state(3 - i).join(name).exists(),
            "{name} also on host{}",
            3 - i
        );
    }
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "redis-cli", "-h", "10.203.1.12", "-p"])
        .arg(b["port"].to_string())
        .args([
            "--user",
            b["username"].as_str().unwrap(),
            "--no-auth-warning",
            "PING",
        ])
        .env("REDISCLI_AUTH", b["password"].as_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
    let status = dbctl_in(&world, &ns, &["status", "kv-b", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    assert_eq!(status["status"]["endpoint"]["host"], "10.203.1.12");

    // Placement is stable: re-applying changes nothing; a deleted database's slot is
    // reused by the next one.
    let head = world.head();
    dbctl_in(&world, &ns, &["apply"]).ok();
    assert_eq!(world.head(), head);
    dbctl_in(
        &world,
        &ns,
        &["delete", "kv-a", "--yes", "--skip-final-backup"],
    )
    .ok();
    assert!(!hosts.state(1).join("kv-a").exists());
    let d = create("kv-d");
    assert_eq!(d["host"], "10.203.1.11");

    // Four new specs converged at once: hosts are chosen and ports reserved one at a
    // time, so they spread out and none collides.
    for name in ["kv-e", "kv-f", "kv-g", "kv-h"] {
        std::fs::write(
            world.repo.join(format!("etc/databases/{name}.yml")),
            format!("name: {name}\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\ntarget: pool\n"),
        )
        .unwrap();
    }
    dbctl_in(&world, &ns, &["apply", "--parallel", "4"]).ok();
    let list = dbctl_in(&world, &ns, &["list", "-o", "json"]).ok().json();
    let databases = list["databases"].as_array().unwrap();
    assert_eq!(databases.len(), 7, "{list}");
    assert!(
        databases.iter().all(|d| d["status"]["state"] == "up"),
        "{list}"
    );
    let on = |i: usize| {
        std::fs::read_dir(hosts.state(i))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().join("instance.json").exists())
            .count()
    };
    assert_eq!((on(1), on(2)), (4, 3), "seven databases over two hosts");
}

/// A restore's write-back (`Transport::sync_fs`) works locally (`syncfs(2)`) and over
/// SSH (`sync --file-system`); a directory that is not there is an error naming it.
#[test]
fn sync_fs_writes_a_directory_back_locally_and_over_ssh() {
    use std::path::Path;

    use dbctl::transport::{Local, Transport};

    fn check(t: &dyn Transport, dir: &Path) {
        std::fs::write(dir.join("restored"), vec![7u8; 1 << 20]).unwrap();
        t.sync_fs(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", t.host()));
        let missing = dir.join("not-there");
        let err = t.sync_fs(&missing).unwrap_err().to_string();
        assert!(err.contains("not-there"), "{}: {err}", t.host());
    }

    let world = World::bare();
    check(&Local::new(), world.dir.path());
    let sshd = Sshd::start(&world.dir.path().join("sshd"));
    check(&sshd.transport(), world.dir.path());
}
