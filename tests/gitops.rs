//! The GitOps loop as a CI pipeline and a second operator live it: two clones of one
//! repo at different paths, a bare remote, real servers.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Run, World, git_in};

/// The world's repo (clone A, pushed to a bare remote) and clone B of that remote.
struct Clones {
    world: World,
    b: PathBuf,
}

impl Clones {
    fn new() -> Self {
        let world = World::new();
        let remote = world.dir.path().join("remote.git");
        git_in(
            world.dir.path(),
            &["init", "-q", "--bare", remote.to_str().unwrap()],
        );
        world.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
        world.git(&["push", "-q", "-u", "origin", "HEAD"]);
        let branch = world.git(&["rev-parse", "--abbrev-ref", "HEAD"]);
        git_in(
            &remote,
            &[
                "symbolic-ref",
                "HEAD",
                &format!("refs/heads/{}", branch.trim()),
            ],
        );
        let b = world.dir.path().join("ci-checkout");
        git_in(
            world.dir.path(),
            &["clone", "-q", remote.to_str().unwrap(), b.to_str().unwrap()],
        );
        Self { world, b }
    }

    /// dbctl in clone B (same operator identity and state directory).
    fn in_b(&self, args: &[&str]) -> Run {
        let mut full = vec!["--repo", self.b.to_str().unwrap()];
        full.extend_from_slice(args);
        self.world.dbctl(&full)
    }

    fn git_b(&self, args: &[&str]) -> String {
        git_in(&self.b, args)
    }
}

#[test]
fn a_restart_keeps_the_credentials_and_rewrites_nothing() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "steady"])
        .ok();
    let before = std::fs::read_to_string(world.repo.join("connections/steady.yml")).unwrap();
    let password = world.reveal("steady")["password"].clone();
    let head = world.head();
    world.stop_postgres("steady");
    let down = world.dbctl(&["status", "steady", "--exit-code"]);
    assert_eq!(down.code, 3, "{}", down.stdout);
    assert!(down.stdout.contains("state:    down"), "{}", down.stdout);
    world.dbctl(&["apply"]).ok();
    let conn = world.reveal("steady");
    assert_eq!(conn["password"], password, "apply changed the password");
    assert_eq!(
        std::fs::read_to_string(world.repo.join("connections/steady.yml")).unwrap(),
        before,
        "the connection file was rewritten"
    );
    assert_eq!(world.head(), head, "apply committed after a restart");
    // The old credentials still work.
    assert_eq!(crate::support::psql(&conn, "select 42"), "42");
    world.dbctl(&["status", "steady", "--exit-code"]).ok();
}

#[test]
fn any_clone_manages_any_database_and_a_foreign_repo_cannot() {
    let clones = Clones::new();
    let world = &clones.world;
    world
        .dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--size",
            "1",
            "shared",
            "--push",
        ])
        .ok();
    clones.git_b(&["pull", "-q"]);
    // The CI checkout at another path converges the database after a reboot.
    world.stop_postgres("shared");
    let applied = clones.in_b(&["apply"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    let status = clones.in_b(&["status", "shared", "-o", "json"]).ok().json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    // A genuinely foreign repo with a database of the same name is refused.
    let foreign = world.dir.path().join("foreign");
    world
        .dbctl(&["--repo", foreign.to_str().unwrap(), "init"])
        .ok();
    let run = world.dbctl(&[
        "--repo",
        foreign.to_str().unwrap(),
        "create",
        "--type",
        "postgresql",
        "--size",
        "1",
        "shared",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("belongs to another GitOps repo"),
        "{}",
        run.stderr
    );
    // The CI checkout deletes it, and the lock file goes with it.
    clones
        .in_b(&["delete", "shared", "--yes", "--skip-final-backup", "--push"])
        .ok();
    assert!(!clones.b.join(".dbctl/locks/shared.lock").exists());
    assert!(!world.instance_dir("shared").exists());
}

#[test]
fn a_push_after_another_clone_pushed_rebases_and_lands() {
    let clones = Clones::new();
    let world = &clones.world;
    // B has not pulled A's push when it pushes its own.
    world
        .dbctl(&[
            "create", "--type", "redis", "--size", "1", "from-a", "--push",
        ])
        .ok();
    clones
        .in_b(&[
            "create", "--type", "redis", "--size", "1", "from-b", "--push",
        ])
        .ok();
    let remote_log = clones.git_b(&["log", "--format=%s", "origin/HEAD"]);
    assert!(remote_log.contains("dbctl create from-a"), "{remote_log}");
    assert!(remote_log.contains("dbctl create from-b"), "{remote_log}");
    assert_eq!(
        clones.git_b(&["status", "--porcelain", "--untracked-files=all"]),
        "",
        "the lost race left files behind"
    );
    // A pulls cleanly: nothing untracked is in the way.
    world.git(&["pull", "-q"]);
    assert!(world.repo.join("etc/databases/from-b.yml").exists());
}

#[test]
fn a_real_push_conflict_is_reported_and_the_commit_kept() {
    let clones = Clones::new();
    let world = &clones.world;
    // Both clones create `same`, each on its own state directory, with other sizes.
    world
        .dbctl(&["create", "--type", "redis", "--size", "1", "same", "--push"])
        .ok();
    let b_state = world.dir.path().join("state-b");
    let mut cmd = world.command(&[
        "--repo",
        clones.b.to_str().unwrap(),
        "--state-dir",
        b_state.to_str().unwrap(),
        "create",
        "--type",
        "redis",
        "--size",
        "2",
        "same",
        "--push",
    ]);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("conflicts"), "{stderr}");
    assert!(stderr.contains("the commit is kept locally"), "{stderr}");
    // No rebase is left half-done, and B's commit is there.
    assert!(!clones.b.join(".git/rebase-merge").exists());
    assert!(!clones.b.join(".git/rebase-apply").exists());
    let log = clones.git_b(&["log", "--format=%s", "-1"]);
    assert!(log.contains("dbctl create same"), "{log}");
    // B's server lives outside the world's state directory: stop it here, for good
    // (SIGKILL: on SIGTERM Redis saves first, and refuses to exit once its directory
    // is gone).
    let pid = std::fs::read_to_string(b_state.join("same/run/redis.pid")).unwrap_or_default();
    let pid = pid
        .trim()
        .parse::<i32>()
        .expect("B's server has no pid file");
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn nothing_starts_outside_a_git_work_tree() {
    let world = World::bare();
    world.dbctl(&["init"]).ok();
    std::fs::remove_dir_all(world.repo.join(".git")).unwrap();
    let run = world.dbctl(&["create", "--type", "redis", "--size", "1", "nogit"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("is not a git work tree"),
        "{}",
        run.stderr
    );
    assert!(!world.state.exists(), "the state directory was created");
    assert!(!world.repo.join("etc/databases/nogit.yml").exists());
    assert!(world.server_pids().is_empty());
}

#[test]
fn status_tells_the_truth() {
    let world = World::new();
    std::fs::write(
        world.repo.join("etc/databases/planned.yml"),
        "name: planned\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\n",
    )
    .unwrap();
    let run = world.dbctl(&["status", "planned", "--exit-code"]);
    assert_eq!(run.code, 3);
    assert!(
        run.stdout.contains("state:    not created"),
        "{}",
        run.stdout
    );
    // A spec asking for a version other than the one running: up, with drift.
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "drifting"])
        .ok();
    let spec = world.repo.join("etc/databases/drifting.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("version: \"15\"", "version: \"16\"")).unwrap();
    let run = world.dbctl(&["status", "drifting", "--exit-code"]).ok();
    assert!(
        run.stdout
            .contains("state:    up, version drift (15 running, 16 wanted)"),
        "{}",
        run.stdout
    );
    let list = world.dbctl(&["list"]).ok();
    assert!(list.stdout.contains("version drift"), "{}", list.stdout);
    let status = world
        .dbctl(&["status", "drifting", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["version_drift"], "15 running, 16 wanted");
    let used = status["status"]["used_bytes"].as_u64().unwrap();
    let db = status["status"]["database_bytes"].as_u64().unwrap();
    assert!(db <= used, "database {db} > used {used}");
}

#[test]
fn the_small_things_operators_trip_over() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "small"])
        .ok();
    // The revealed connection as JSON carries the password in its URI, and --format.
    let conn = world
        .dbctl(&["connection", "small", "--reveal", "-o", "json"])
        .ok()
        .json();
    let password = conn["password"].as_str().unwrap();
    assert!(conn["uri"].as_str().unwrap().contains(password), "{conn}");
    let env = world
        .dbctl(&[
            "connection",
            "small",
            "--reveal",
            "--format",
            "env",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(env["env"]["DB_PASSWORD"], password, "{env}");
    // Usage errors come out as JSON under -o json.
    let run = world.dbctl(&["-o", "json", "create", "--bogus"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["reason"], "error");
    // --help shows examples; --platform lists every platform.
    let help = world.dbctl(&["--help"]).ok().stdout;
    assert!(help.contains("Examples:"), "{help}");
    let help = world.dbctl(&["render", "--help"]).ok().stdout;
    for platform in [
        "local",
        "ssh",
        "openstack",
        "nomad",
        "kubernetes",
        "terraform",
        "pacemaker",
    ] {
        assert!(help.contains(platform), "{platform} missing:\n{help}");
    }
    // The built-in pacemaker templates render for a default pacemaker target.
    let out = world
        .dbctl(&["render", "small", "--platform", "pacemaker"])
        .ok()
        .stdout;
    assert!(out.contains("ocf:heartbeat:pgsql"), "{out}");
}

#[test]
fn a_rebase_conflict_outside_dbctls_files_falls_back_to_a_merge() {
    let clones = Clones::new();
    let world = &clones.world;
    // A changes a file of the user's; B changed it too and back again (its own two
    // commits): replaying them conflicts, their end state merges cleanly.
    std::fs::write(world.repo.join("NOTES.md"), "from a\n").unwrap();
    world.git(&["add", "NOTES.md"]);
    world.git(&["commit", "-qm", "a: notes"]);
    world.git(&["push", "-q"]);
    let notes = clones.b.join("NOTES.md");
    std::fs::write(&notes, "from b\n").unwrap();
    clones.git_b(&["add", "NOTES.md"]);
    clones.git_b(&["commit", "-qm", "b: notes"]);
    clones.git_b(&["rm", "-q", "NOTES.md"]);
    clones.git_b(&["commit", "-qm", "b: no notes after all"]);
    clones
        .in_b(&[
            "create", "--type", "redis", "--size", "1", "merged", "--push",
        ])
        .ok();
    let remote_log = clones.git_b(&["log", "--format=%s", "origin/HEAD"]);
    assert!(remote_log.contains("dbctl create merged"), "{remote_log}");
    assert!(remote_log.contains("a: notes"), "{remote_log}");
    let merges = clones.git_b(&["log", "--merges", "--format=%s", "origin/HEAD"]);
    assert!(!merges.trim().is_empty(), "no merge: {remote_log}");
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "from a\n",
        "the merge lost A's change"
    );
}

#[test]
fn two_clones_never_change_one_database_at_once() {
    let clones = Clones::new();
    let world = &clones.world;
    world
        .dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--size",
            "1",
            "leased",
            "--push",
        ])
        .ok();
    clones.git_b(&["pull", "-q"]);
    let lease = world.state.join(".leases/leased.json");
    // While clone A changes the database, its lease is on the host, naming it.
    let spec = world.repo.join("etc/databases/leased.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("parameters: {}", "parameters:\n  max_connections: \"130\""),
    )
    .unwrap();
    world.git(&["commit", "-qam", "more connections"]);
    let mut a = world.spawn_until(&["apply", "--now"], "[1/7]");
    let held: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lease).expect("no lease while A applies")).unwrap();
    assert_eq!(held["operation"], "apply");
    assert!(held["repo"].as_str().unwrap().ends_with("/repo"), "{held}");
    assert!(a.wait().unwrap().success());
    assert!(!lease.exists(), "the lease outlived its run");
    // Clone B, while another runner (on another machine) holds the lease, refuses and
    // names it. (A holder on this machine whose process is gone is stale at once: the
    // convergence test's killed create shows that.)
    let now = jiff::Timestamp::now();
    let mut planted = held.clone();
    planted["host"] = "ci-runner-2".into();
    planted["expires_at"] = now
        .checked_add(jiff::Span::new().minutes(10))
        .unwrap()
        .to_string()
        .into();
    std::fs::write(&lease, serde_json::to_vec(&planted).unwrap()).unwrap();
    let bspec = clones.b.join("etc/databases/leased.yml");
    let text = std::fs::read_to_string(&bspec).unwrap();
    std::fs::write(
        &bspec,
        text.replace("parameters: {}", "parameters:\n  work_mem: \"8MB\""),
    )
    .unwrap();
    clones.git_b(&["commit", "-qam", "work_mem"]);
    let run = clones.in_b(&["apply", "--now"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("is being changed by another runner")
            && run.stdout.contains(&format!("pid {}", held["pid"])),
        "{}",
        run.stdout
    );
    // A crashed holder's lease expires, and the next runner takes it over.
    planted["expires_at"] = now
        .checked_sub(jiff::Span::new().minutes(1))
        .unwrap()
        .to_string()
        .into();
    std::fs::write(&lease, serde_json::to_vec(&planted).unwrap()).unwrap();
    clones.in_b(&["apply", "--now"]).ok();
    assert!(!lease.exists());
    let conn = clones
        .in_b(&["connection", "leased", "--reveal", "-o", "json"])
        .ok()
        .json();
    assert_eq!(crate::support::psql(&conn, "show work_mem"), "8MB");
    // A live holder renews its lease: with a 3 s term, A's rotation holds it through
    // its 8 s grace period; past two terms B is still refused, naming A's operation,
    // and the expiry has moved on; once A is done the lease is gone.
    let mut a = world.spawn_with_until(
        &[
            "rotate-credentials",
            "leased",
            "--grace",
            "8",
            "--no-commit",
        ],
        &[("DBCTL_LEASE_TTL_S", "3")],
        "before retiring",
    );
    let read = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&lease).expect("no lease while A rotates")).unwrap()
    };
    let expiry = |v: &serde_json::Value| {
        v["expires_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    let first = read();
    std::thread::sleep(std::time::Duration::from_secs(7));
    let later = read();
    assert_eq!(later["token"], first["token"], "the lease changed hands");
    assert!(expiry(&later) > expiry(&first), "{first} → {later}");
    assert!(expiry(&later) > jiff::Timestamp::now(), "{later}");
    let run = clones.in_b(&["rotate-credentials", "leased", "--no-commit"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("dbctl rotate-credentials (pid"),
        "{}",
        run.stderr
    );
    assert!(a.wait().unwrap().success());
    assert!(!lease.exists(), "the renewed lease outlived its run");
}
