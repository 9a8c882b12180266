//! Day 2 on running databases: a changed spec is planned as typed changes and applied
//! in place (reload or restart), resize grows, disruptive changes wait for the
//! maintenance window, and `dbctl sql` runs batches through the admin channel.

use crate::support::{World, client, psql};

/// Rewrites `parameters:` of `name`'s spec to `params` (and optionally appends
/// `extra` YAML), then commits it, as a merge request would.
fn set_spec(world: &World, name: &str, params: &[(&str, &str)], extra: &str) {
    let path = world.repo.join(format!("etc/databases/{name}.yml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut kept: Vec<&str> = Vec::new();
    let mut in_params = false;
    for line in text.lines() {
        if line.starts_with("parameters:") {
            in_params = true;
            continue;
        }
        if in_params && line.starts_with("  ") {
            continue;
        }
        in_params = false;
        if !line.starts_with("maintenance:") {
            kept.push(line);
        }
    }
    let mut text = kept.join("\n");
    text.push_str("\nparameters:\n");
    for (k, v) in params {
        text.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    world.git(&["commit", "-qam", &format!("change {name}")]);
}

/// The planned changes of `name`: (attribute, disruption) pairs.
fn planned(world: &World, name: &str) -> Vec<(String, String, Option<String>)> {
    let plan = world.dbctl(&["plan", name, "-o", "json"]).ok().json();
    let db = &plan["databases"][0];
    let mut out = Vec::new();
    for key in ["changes", "deferred"] {
        for c in db[key].as_array().unwrap() {
            out.push((
                c["attribute"].as_str().unwrap().to_owned(),
                c["disruption"].as_str().unwrap().to_owned(),
                (key == "deferred").then(|| db["runs_at"].as_str().unwrap_or_default().to_owned()),
            ));
        }
    }
    out
}

fn sql(world: &World, name: &str, batch: &str, admin: bool) -> String {
    let mut args = vec!["sql", name, "-c", batch];
    if admin {
        args.push("--admin");
    }
    world.dbctl(&args).ok().stdout
}

#[test]
fn postgresql_parameters_reload_or_restart_and_the_plan_empties() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "pg2"])
        .ok();
    let conn = world.reveal("pg2");
    let pid_before =
        std::fs::read_to_string(world.instance_dir("pg2").join("data/postmaster.pid")).unwrap();
    // A reload-class change: the same server process, the new value.
    set_spec(&world, "pg2", &[("work_mem", "64MB")], "");
    assert_eq!(
        planned(&world, "pg2"),
        vec![("parameters.work_mem".into(), "reload".into(), None)]
    );
    let plan = world.dbctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2);
    assert!(
        plan.stdout
            .contains("~   parameters.work_mem: (none) → \"64MB\"  (reload"),
        "{}",
        plan.stdout
    );
    world.dbctl(&["apply"]).ok();
    assert_eq!(psql(&conn, "show work_mem"), "64MB");
    let pid_after =
        std::fs::read_to_string(world.instance_dir("pg2").join("data/postmaster.pid")).unwrap();
    assert_eq!(
        pid_before.lines().next(),
        pid_after.lines().next(),
        "a reload restarted the server"
    );
    // A restart-class change: the server restarts and reports it.
    set_spec(
        &world,
        "pg2",
        &[("work_mem", "64MB"), ("max_connections", "150")],
        "",
    );
    assert_eq!(
        planned(&world, "pg2"),
        vec![("parameters.max_connections".into(), "restart".into(), None)]
    );
    world.dbctl(&["apply"]).ok();
    assert_eq!(psql(&conn, "show max_connections"), "150");
    assert_eq!(world.dbctl(&["plan", "--detailed-exitcode"]).code, 0);
    // The credentials did not change on the way.
    assert_eq!(world.reveal("pg2")["password"], conn["password"]);
    // Removing a parameter returns it to the engine's default.
    set_spec(&world, "pg2", &[("max_connections", "150")], "");
    world.dbctl(&["apply"]).ok();
    assert_eq!(psql(&conn, "show work_mem"), "4MB");
    // scale: another plan of the catalog; shared_buffers follows its memory (restart).
    let before = world.snapshot();
    world
        .dbctl(&["scale", "pg2", "--plan", "huge"])
        .fails_with("allowed: large, medium, small, xsmall");
    assert_eq!(world.snapshot(), before);
    let dry = world
        .dbctl(&["scale", "pg2", "--plan", "xsmall", "--dry-run"])
        .ok()
        .stdout;
    assert!(
        dry.contains("~ plan: \"small\" → \"xsmall\" (restart)"),
        "{dry}"
    );
    assert_eq!(world.snapshot(), before);
    world
        .dbctl(&["scale", "pg2", "--plan", "xsmall", "--now"])
        .ok();
    assert_eq!(psql(&conn, "show shared_buffers"), "128MB");
    assert!(
        world
            .git(&["log", "-1", "--format=%s"])
            .contains("dbctl scale pg2")
    );
    assert_eq!(world.dbctl(&["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn mariadb_and_redis_settings_change_at_run_time() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "mariadb", "--size", "1", "my2"])
        .ok();
    world
        .dbctl(&["create", "--type", "redis", "--size", "1", "rd2"])
        .ok();
    let my_pid =
        std::fs::read_to_string(world.instance_dir("my2").join("run/mariadbd.pid")).unwrap();
    set_spec(
        &world,
        "my2",
        &[("max_connections", "222"), ("wait_timeout", "600")],
        "",
    );
    set_spec(
        &world,
        "rd2",
        &[("maxclients", "500"), ("maxmemory-policy", "allkeys-lru")],
        "",
    );
    for (name, n) in [("my2", 2), ("rd2", 2)] {
        let changes = planned(&world, name);
        assert_eq!(changes.len(), n, "{changes:?}");
        assert!(changes.iter().all(|(_, d, _)| d == "reload"), "{changes:?}");
    }
    world.dbctl(&["apply"]).ok();
    let out = sql(
        &world,
        "my2",
        "select @@global.max_connections, @@global.wait_timeout;",
        true,
    );
    assert!(out.contains("222") && out.contains("600"), "{out}");
    assert_eq!(
        std::fs::read_to_string(world.instance_dir("my2").join("run/mariadbd.pid")).unwrap(),
        my_pid,
        "MariaDB restarted for dynamic settings"
    );
    let out = sql(
        &world,
        "rd2",
        "CONFIG GET maxclients\nCONFIG GET maxmemory-policy",
        true,
    );
    assert!(out.contains("500") && out.contains("allkeys-lru"), "{out}");
    assert_eq!(world.dbctl(&["plan", "--detailed-exitcode"]).code, 0);

    // Drift: settings changed behind dbctl's back are planned back with their own
    // disruption; a spec that moved on is a change, not drift.
    let none = world.dbctl(&["plan", "--drift"]);
    assert_eq!(none.code, 0, "{}", none.stdout);
    assert!(none.stdout.contains("No drift"), "{}", none.stdout);
    sql(&world, "my2", "SET GLOBAL max_connections = 99;", true);
    sql(
        &world,
        "rd2",
        "CONFIG SET maxmemory-policy noeviction",
        true,
    );
    set_spec(
        &world,
        "rd2",
        &[("maxclients", "600"), ("maxmemory-policy", "allkeys-lru")],
        "",
    );
    let drift = world.dbctl(&["plan", "--drift", "-o", "json"]);
    assert_eq!(drift.code, 2, "{}", drift.stdout);
    let drift = drift.json();
    let changes = |name: &str| -> Vec<(String, String, String, String)> {
        drift["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["attribute"].as_str().unwrap().to_owned(),
                    c["old"].as_str().unwrap_or_default().to_owned(),
                    c["new"].as_str().unwrap_or_default().to_owned(),
                    c["disruption"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let entry = |a: &str, o: &str, n: &str| (a.into(), o.into(), n.into(), "reload".into());
    assert_eq!(
        changes("my2"),
        [entry("parameters.max_connections", "99", "222")],
        "{drift}"
    );
    assert_eq!(
        changes("rd2"),
        [entry(
            "parameters.maxmemory-policy",
            "noeviction",
            "allkeys-lru"
        )],
        "{drift}"
    );
    // Plain plan has the spec's change as well.
    let all = planned(&world, "rd2");
    assert_eq!(all.len(), 2, "{all:?}");
    world.dbctl(&["apply"]).ok();
    let out = sql(&world, "my2", "select @@global.max_connections;", true);
    assert!(out.contains("222"), "{out}");
    let out = sql(
        &world,
        "rd2",
        "CONFIG GET maxclients\nCONFIG GET maxmemory-policy",
        true,
    );
    assert!(out.contains("600") && out.contains("allkeys-lru"), "{out}");
    assert_eq!(world.dbctl(&["plan", "--drift"]).code, 0);
    assert_eq!(world.dbctl(&["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn resize_grows_and_a_shrink_is_refused_leaving_the_spec_alone() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "redis", "--size", "1", "grow"])
        .ok();
    let run = world
        .dbctl(&["resize", "grow", "--size", "2", "--dry-run"])
        .ok();
    assert!(run.stdout.contains("~ size_gb: 1 → 2"), "{}", run.stdout);
    world.dbctl(&["resize", "grow", "--size", "2"]).ok();
    let status = world.dbctl(&["status", "grow"]).ok().stdout;
    assert!(status.contains("of 2 GB allotted"), "{status}");
    assert!(
        world
            .git(&["log", "-1", "--format=%s"])
            .contains("dbctl resize grow")
    );
    assert_eq!(world.dirty(), "");
    let head = world.head();
    let run = world.dbctl(&["resize", "grow", "--size", "1"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("does not shrink in place"),
        "{}",
        run.stderr
    );
    assert_eq!(world.head(), head);
    assert_eq!(world.dirty(), "", "a refused shrink wrote the spec");
    // A growth the disk cannot hold fails in preflight: the spec is put back.
    let run = world.dbctl(&["resize", "grow", "--size", "60000"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("not enough disk space"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("is left as it was"), "{}", run.stderr);
    assert_eq!(world.dirty(), "", "a failed resize left the spec changed");
    assert_eq!(world.head(), head);
    // A major upgrade the platform cannot do is refused the same way.
    let run = world.dbctl(&["upgrade", "grow", "--version", "6.2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("`--version`") || run.stderr.contains("cannot upgrade"),
        "{}",
        run.stderr
    );
    assert_eq!(world.dirty(), "");
}

#[test]
fn a_restart_waits_for_the_maintenance_window_unless_now() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "windowed"])
        .ok();
    let conn = world.reveal("windowed");
    // A one-minute window twelve hours from now in Kolkata: certainly closed.
    let later = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap())
        .checked_add(jiff::Span::new().hours(12))
        .unwrap();
    let start = later.strftime("%H:%M").to_string();
    let end = later
        .checked_add(jiff::Span::new().minutes(1))
        .unwrap()
        .strftime("%H:%M")
        .to_string();
    let window = format!("daily {start}-{end} Asia/Kolkata");
    set_spec(
        &world,
        "windowed",
        &[("max_connections", "120"), ("work_mem", "32MB")],
        &format!("maintenance:\n  window: \"{window}\"\n"),
    );
    let changes = planned(&world, "windowed");
    let restart = changes
        .iter()
        .find(|(a, _, _)| a == "parameters.max_connections")
        .unwrap();
    assert_eq!(restart.1, "restart");
    let at = restart.2.clone().expect("the restart is not deferred");
    assert!(at.contains(&start) && at.contains("IST"), "{at}");
    let human = world.dbctl(&["plan"]).ok().stdout;
    assert!(
        human.contains(&format!("at {at}, in the maintenance window")),
        "{human}"
    );
    // apply does the reload now and leaves the restart for the window.
    let run = world.dbctl(&["apply"]).ok();
    assert!(
        run.stdout.contains("wait for the maintenance window"),
        "{}",
        run.stdout
    );
    assert_eq!(psql(&conn, "show work_mem"), "32MB");
    assert_eq!(psql(&conn, "show max_connections"), "100");
    assert_eq!(planned(&world, "windowed").len(), 1);
    // --now applies it.
    world.dbctl(&["apply", "windowed", "--now"]).ok();
    assert_eq!(psql(&conn, "show max_connections"), "120");
    assert_eq!(
        world
            .dbctl(&["plan", "--detailed-exitcode", "windowed"])
            .code,
        0
    );
}

#[test]
fn apply_wait_applies_a_restart_when_its_window_opens() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "waiting"])
        .ok();
    let conn = world.reveal("waiting");
    // A one-minute window that opens at the next full minute.
    let next = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .checked_add(jiff::Span::new().minutes(1))
        .unwrap();
    let start = next.strftime("%H:%M").to_string();
    let end = next
        .checked_add(jiff::Span::new().minutes(1))
        .unwrap()
        .strftime("%H:%M")
        .to_string();
    set_spec(
        &world,
        "waiting",
        &[("max_connections", "130")],
        &format!("maintenance:\n  window: \"daily {start}-{end} UTC\"\n"),
    );
    let run = world.dbctl(&["apply", "--wait"]).ok();
    assert!(
        run.stderr
            .contains("waiting for the maintenance window of waiting"),
        "{}",
        run.stderr
    );
    assert_eq!(psql(&conn, "show max_connections"), "130");
    let restarted_at = psql(
        &conn,
        "select to_char(pg_postmaster_start_time() at time zone 'UTC', 'HH24:MI')",
    );
    assert_eq!(restarted_at, start, "the restart ran in the window");
    assert_eq!(
        world
            .dbctl(&["plan", "--detailed-exitcode", "waiting"])
            .code,
        0
    );
    // `--wait` with nothing left for a window returns at once.
    let again = world.dbctl(&["apply", "--wait"]).ok();
    assert!(!again.stderr.contains("waiting for"), "{}", again.stderr);
}

#[test]
fn sql_runs_batches_as_the_owner_with_the_clients_exit_code() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "sqldb"])
        .ok();
    world
        .dbctl(&["create", "--type", "redis", "--size", "1", "sqlkv"])
        .ok();
    let out = sql(
        &world,
        "sqldb",
        "create table t (n int); insert into t values (41), (1); select sum(n) from t;",
        false,
    );
    assert!(out.contains("42"), "{out}");
    // The owner made the table: the application's own login sees it as its own.
    let conn = world.reveal("sqldb");
    assert_eq!(
        psql(
            &conn,
            "select tableowner from pg_tables where tablename = 't'"
        ),
        "sqldb"
    );
    let failed = world.dbctl(&["sql", "sqldb", "-c", "select nope;"]);
    assert_eq!(failed.code, 3, "psql's exit code for a failed batch");
    assert!(
        failed.stderr.contains("column \"nope\" does not exist"),
        "{}",
        failed.stderr
    );
    let file = world.dir.path().join("batch.txt");
    std::fs::write(&file, "SET greeting hello\nGET greeting\n").unwrap();
    let out = world
        .dbctl(&["sql", "sqlkv", "-f", file.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(out.contains("hello"), "{out}");
    // The application user cannot run admin commands; --admin can.
    let denied = world.dbctl(&["sql", "sqlkv", "-c", "CONFIG GET maxmemory"]);
    assert!(denied.stdout.contains("NOPERM"), "{}", denied.stdout);
    let conn = world.reveal("sqlkv");
    let pong = client(
        "redis-cli",
        &[
            "-p",
            &conn["port"].to_string(),
            "--user",
            "sqlkv",
            "--no-auth-warning",
            "GET",
            "greeting",
        ],
        &[("REDISCLI_AUTH", conn["password"].as_str().unwrap())],
        None,
    );
    assert_eq!(pong.trim(), "hello");
}

#[test]
fn rotate_credentials_keeps_old_clients_working_until_retired() {
    let world = World::new();
    for (engine, name) in [("postgresql", "rot-pg"), ("mariadb", "rot-my")] {
        world
            .dbctl(&["create", "--type", engine, "--size", "1", name])
            .ok();
    }
    let old = world.reveal("rot-pg");
    world.dbctl(&["rotate-credentials", "rot-pg"]).ok();
    let new = world.reveal("rot-pg");
    assert_ne!(new["password"], old["password"]);
    assert_eq!(new["username"], "rot_pg_r");
    // A client still holding the old file keeps working; the new login acts as the
    // owner (what it creates, the owner owns).
    assert_eq!(psql(&old, "select current_user"), "rot_pg");
    psql(&new, "create table kept (n int)");
    assert_eq!(
        psql(
            &old,
            "select tableowner from pg_tables where tablename = 'kept'"
        ),
        "rot_pg"
    );
    // The next rotation, with a grace period, retires the login it replaces.
    world
        .dbctl(&["rotate-credentials", "rot-pg", "--grace", "1"])
        .ok();
    let newest = world.reveal("rot-pg");
    assert_eq!(newest["username"], "rot_pg");
    assert_eq!(psql(&newest, "select count(*) from kept"), "0");
    let (ok, out) = try_psql(&new);
    assert!(
        !ok && out.contains("password authentication failed"),
        "{out}"
    );
    let (ok, _) = try_psql(&old);
    assert!(!ok, "the first password still works after two rotations");
    // MariaDB: the same two-login scheme.
    let old = world.reveal("rot-my");
    world
        .dbctl(&["rotate-credentials", "rot-my", "--grace", "0"])
        .ok();
    let new = world.reveal("rot-my");
    let who = client(
        "mariadb",
        &[
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            &new["port"].to_string(),
            "-u",
            "rot_my_r",
            "-N",
            "-e",
            "select current_user()",
        ],
        &[("MYSQL_PWD", new["password"].as_str().unwrap())],
        None,
    );
    assert!(who.contains("rot_my_r"), "{who}");
    let locked = std::process::Command::new("mariadb")
        .args([
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            &old["port"].to_string(),
            "-u",
            "rot_my",
            "-e",
            "select 1",
        ])
        .env("MYSQL_PWD", old["password"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        !locked.status.success(),
        "the retired MariaDB login still works"
    );
    // Neither password ever reached git.
    let log = world.git(&["log", "-p", "--all"]);
    for conn in [&old, &new, &newest] {
        assert!(!log.contains(conn["password"].as_str().unwrap()));
    }
    // Redis: two ACL users; the other one is kept as it was through the rotation.
    world
        .dbctl(&["create", "--type", "redis", "--size", "1", "rot-kv"])
        .ok();
    let old = world.reveal("rot-kv");
    world.dbctl(&["sql", "rot-kv", "-c", "SET k v"]).ok();
    world.dbctl(&["rotate-credentials", "rot-kv"]).ok();
    let new = world.reveal("rot-kv");
    let get = |conn: &serde_json::Value| {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &conn["port"].to_string(),
                "--user",
                conn["username"].as_str().unwrap(),
                "--no-auth-warning",
                "GET",
                "k",
            ])
            .env("REDISCLI_AUTH", conn["password"].as_str().unwrap())
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_owned()
    };
    assert_eq!(get(&old), "v");
    assert_eq!(get(&new), "v");
    assert_eq!(new["username"], "rot_kv_r");
    // `dbctl sql` logs in as the connection file's login.
    let out = world
        .dbctl(&["sql", "rot-kv", "-c", "ACL WHOAMI"])
        .ok()
        .stdout;
    assert!(out.contains("rot_kv_r"), "{out}");
    // A converge (after a crash) writes the ACL file again and keeps both; the next
    // rotation with a grace period retires the old.
    let pid = std::fs::read_to_string(world.instance_dir("rot-kv").join("run/redis.pid")).unwrap();
    std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let run = world.dbctl(&["apply"]).ok();
    assert!(run.stdout.contains("rot-kv"), "{}", run.stdout);
    assert_eq!(get(&old), "v");
    assert_eq!(get(&new), "v");
    world
        .dbctl(&["rotate-credentials", "rot-kv", "--grace", "0"])
        .ok();
    let newest = world.reveal("rot-kv");
    assert_eq!(get(&newest), "v");
    let gone = get(&new);
    assert!(
        gone.contains("WRONGPASS") || gone.contains("NOAUTH"),
        "{gone}"
    );
}

fn try_psql(conn: &serde_json::Value) -> (bool, String) {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            conn["host"].as_str().unwrap(),
            "-p",
            &conn["port"].to_string(),
            "-U",
            conn["username"].as_str().unwrap(),
            "-d",
            conn["database"].as_str().unwrap(),
            "-Atc",
            "select 1",
        ])
        .env("PGPASSWORD", conn["password"].as_str().unwrap())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_major_upgrade_of_postgresql_keeps_the_data() {
    // scripts/test installs PostgreSQL 17's server under /opt (scripts/install-test-postgresql);
    // this repo's catalog points version 17 at it.
    let world = World::new();
    world.postgresql_17_in("/opt/dbctl-test/postgresql/17/bin");
    world
        .dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--version",
            "15",
            "--size",
            "1",
            "major",
        ])
        .ok();
    let conn = world.reveal("major");
    psql(&conn, "create table orders (id int primary key, note text)");
    psql(
        &conn,
        "insert into orders select g, 'row ' || g from generate_series(1, 500) g",
    );
    let plan = world
        .dbctl(&["upgrade", "major", "--version", "17", "--dry-run"])
        .ok();
    assert!(
        plan.stdout
            .contains("-/+ version: \"15\" → \"17\" (data movement)"),
        "{}",
        plan.stdout
    );
    world
        .dbctl(&["upgrade", "major", "--version", "17", "--now"])
        .ok();
    let after = world.reveal("major");
    assert_eq!(
        after["password"], conn["password"],
        "the upgrade changed the password"
    );
    assert!(psql(&after, "show server_version").starts_with("17."));
    assert_eq!(
        psql(&after, "select count(*), max(note) from orders"),
        "500|row 99"
    );
    assert_eq!(
        psql(
            &after,
            "select tableowner from pg_tables where tablename = 'orders'"
        ),
        "major"
    );
    let status = world.dbctl(&["status", "major"]).ok().stdout;
    assert!(status.contains("state:    up\n"), "{status}");
    assert!(
        world.instance_dir("major").join("data-15").is_dir(),
        "no rollback copy"
    );
    assert_eq!(
        world.dbctl(&["plan", "--detailed-exitcode", "major"]).code,
        0
    );
    assert!(
        world
            .git(&["log", "-1", "--format=%s"])
            .contains("dbctl upgrade major")
    );
}

#[test]
fn a_minor_upgrade_restarts_on_the_newer_build_of_the_same_major() {
    // Two builds of PostgreSQL 17 (scripts/install-test-postgresql): the catalog points
    // 17 at 17.6, then — as a package upgrade would — at 17.7.
    let (old, new) = (
        "/opt/dbctl-test/postgresql/17.6/bin",
        "/opt/dbctl-test/postgresql/17/bin",
    );
    let world = World::new();
    world.postgresql_17_in(old);
    world
        .dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--version",
            "17",
            "--size",
            "1",
            "minor",
        ])
        .ok();
    let conn = world.reveal("minor");
    assert_eq!(psql(&conn, "show server_version"), "17.6");
    psql(&conn, "create table kept as select 7 as n");
    world.postgresql_17_in(new);
    assert_eq!(
        planned(&world, "minor"),
        vec![("version".into(), "restart".into(), None)]
    );
    let plan = world.dbctl(&["plan", "minor"]).ok().stdout;
    assert!(plan.contains("~   version: \"17.6\" → \"17.7\""), "{plan}");
    world.dbctl(&["apply", "minor", "--now"]).ok();
    assert_eq!(psql(&conn, "show server_version"), "17.7");
    assert_eq!(psql(&conn, "select n from kept"), "7");
    assert_eq!(
        world.dbctl(&["plan", "--detailed-exitcode", "minor"]).code,
        0
    );
}
