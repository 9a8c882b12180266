//! Backups and restores against real stores: one OpenStack Swift per test binary
//! serving both the Swift and the S3 API, and a `dir` store. Every test writes data,
//! backs it up, destroys or changes it, restores, and reads the data back.

use std::path::Path;

use crate::support::{ScheduleUnits, World, client, psql, swift};

/// The world's own Swift container (an S3 bucket too).
fn container_of(world: &World) -> String {
    world
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase()
        .replace(['.', '_'], "-")
}

/// A world whose `etc/dbctl.yml` has the `swift`, `s3` and `here` stores, each on a
/// container (or directory) of its own.
fn world_with_stores() -> World {
    let world = World::new();
    let swift = swift::shared();
    let container = container_of(&world);
    swift.container(&container);
    edit_config(&world, |text| {
        text + &swift.stores_yaml(&container, &world.dir.path().join("backups"))
    });
    world.git(&["commit", "-qam", "test: backup stores"]);
    world
}

/// Rewrites the world's `etc/dbctl.yml` with `edit` (uncommitted).
fn edit_config(world: &World, edit: impl FnOnce(String) -> String) {
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, edit(text)).unwrap();
}

/// A PostgreSQL database `name` of size 1 on the world's `local` target; its
/// connection (revealed).
fn postgresql(world: &World, name: &str) -> serde_json::Value {
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", name])
        .ok();
    world.reveal(name)
}

/// The server's pid file of `name`'s instance.
fn pid_file(world: &World, name: &str, engine: &str) -> std::path::PathBuf {
    let dir = world.instance_dir(name);
    match engine {
        "postgresql" => dir.join("data/postmaster.pid"),
        "mariadb" => dir.join("run/mariadbd.pid"),
        _ => dir.join("run/redis.pid"),
    }
}

/// Loses `name`'s data as a failed disk would: the server is stopped (SIGTERM, then
/// waited for) and its data directory removed.
fn destroy_data(world: &World, name: &str, engine: &str) {
    let text = std::fs::read_to_string(pid_file(world, name, engine)).unwrap();
    let pid = text.lines().next().unwrap().trim().to_owned();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    for _ in 0..300 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "server {pid} still runs"
    );
    std::fs::remove_dir_all(world.instance_dir(name).join("data")).unwrap();
}

fn backup(world: &World, name: &str, store: &str) -> String {
    let report = world
        .dbctl(&["backup", name, "--store", store, "-o", "json"])
        .ok()
        .json();
    report["manifest"]["id"].as_str().unwrap().to_owned()
}

fn backup_ids(world: &World, name: &str, store: &str) -> Vec<String> {
    let list = world
        .dbctl(&["backups", name, "--store", store, "-o", "json"])
        .ok()
        .json();
    list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

fn mariadb(conn: &serde_json::Value, sql: &str) -> String {
    client(
        "mariadb",
        &[
            "--protocol=tcp",
            "-h",
            conn["host"].as_str().unwrap(),
            "-P",
            &conn["port"].to_string(),
            "-u",
            conn["username"].as_str().unwrap(),
            "-N",
            "-B",
            "-D",
            conn["database"].as_str().unwrap(),
            "-e",
            sql,
        ],
        &[("MYSQL_PWD", conn["password"].as_str().unwrap())],
        None,
    )
    .trim()
    .to_owned()
}

fn redis(conn: &serde_json::Value, commands: &str) -> String {
    client(
        "redis-cli",
        &[
            "-h",
            conn["host"].as_str().unwrap(),
            "-p",
            &conn["port"].to_string(),
            "--user",
            conn["username"].as_str().unwrap(),
            "--no-auth-warning",
            "-n",
            conn["database"].as_str().unwrap(),
        ],
        &[("REDISCLI_AUTH", conn["password"].as_str().unwrap())],
        Some(commands),
    )
    .trim()
    .to_owned()
}

#[test]
fn postgresql_backups_to_swift_and_s3_restore_after_the_data_is_lost_and_as_a_copy() {
    let world = world_with_stores();
    let conn = postgresql(&world, "orders");
    psql(
        &conn,
        "create table orders(id int primary key, item text); insert into orders select g, 'item ' || g from generate_series(1, 5000) g",
    );
    let before = psql(
        &conn,
        "select count(*), sum(id), md5(string_agg(item, ',' order by id)) from orders",
    );
    let to_swift = backup(&world, "orders", "swift");
    let to_s3 = backup(&world, "orders", "s3");
    // One server, two APIs: each store lists both backups.
    assert_eq!(
        backup_ids(&world, "orders", "swift"),
        vec![to_swift.clone(), to_s3.clone()]
    );
    assert_eq!(
        backup_ids(&world, "orders", "s3"),
        vec![to_swift.clone(), to_s3.clone()]
    );

    destroy_data(&world, "orders", "postgresql");
    let head = world.head();
    world
        .dbctl(&["restore", "orders", "--store", "s3", "--yes"])
        .ok();
    assert_eq!(
        psql(
            &conn,
            "select count(*), sum(id), md5(string_agg(item, ',' order by id)) from orders"
        ),
        before,
        "the restored data differs"
    );
    assert_eq!(
        world.head(),
        head,
        "an in-place restore changes nothing in the repo"
    );

    // From the Swift backup into a second database, with its own committed
    // connection file; the original keeps running.
    world
        .dbctl(&[
            "restore",
            "orders",
            "--store",
            "swift",
            "--backup",
            &to_swift,
            "--as",
            "orders-copy",
            "--yes",
        ])
        .ok();
    let copy = world.reveal("orders-copy");
    assert_ne!(copy["port"], conn["port"]);
    assert_eq!(copy["database"], conn["database"]);
    assert_ne!(
        copy["password"], conn["password"],
        "the copy has credentials of its own"
    );
    assert_eq!(
        psql(
            &copy,
            "select count(*), sum(id), md5(string_agg(item, ',' order by id)) from orders"
        ),
        before
    );
    let log = world.git(&["log", "--name-only", "-1", "--format=%s"]);
    assert!(log.contains("dbctl restore orders-copy"), "{log}");
    assert!(log.contains("etc/databases/orders-copy.yml"), "{log}");
    assert!(
        log.contains("connections/orders-copy.yml") || log.contains("orders-copy"),
        "{log}"
    );
    psql(&conn, "insert into orders values (5001, 'after')");
    assert_eq!(psql(&copy, "select count(*) from orders"), "5000");
}

#[test]
fn mariadb_and_redis_restore_in_place_from_s3_and_swift() {
    let world = world_with_stores();
    world
        .dbctl(&[
            "create",
            "--type",
            "mariadb",
            "--version",
            "10.11",
            "--size",
            "1",
            "shop",
        ])
        .ok();
    world
        .dbctl(&[
            "create",
            "--type",
            "redis",
            "--version",
            "7.0",
            "--size",
            "1",
            "cache",
        ])
        .ok();
    let shop = world.reveal("shop");
    let cache = world.reveal("cache");
    mariadb(
        &shop,
        "create table carts(id int primary key, total decimal(10,2)); insert into carts values (1, 9.99), (2, 20.50), (3, 0.01)",
    );
    redis(
        &cache,
        "SET session:1 alice\nHSET user:1 name alice plan gold\nRPUSH queue a b c\n",
    );
    let shop_backup = world
        .dbctl(&["backup", "shop", "--store", "s3", "-o", "json"])
        .ok()
        .json();
    // The manifest records the GTID the backup ends at: the server's own position.
    let gtid = mariadb(&shop, "select @@gtid_binlog_pos");
    assert_eq!(
        shop_backup["manifest"]["position"],
        gtid.as_str(),
        "{shop_backup}"
    );
    assert!(gtid.starts_with("0-1-"), "{gtid}");
    backup(&world, "cache", "swift");
    // Restore drills of both: exact row counts (MariaDB) and keys (Redis) of the data.
    let drill = world
        .dbctl(&[
            "backup",
            "verify",
            "shop",
            "--store",
            "s3",
            "--query",
            "select count(*) from carts",
            "--expect",
            "3",
            "-o",
            "json",
        ])
        .ok()
        .json();
    let table = format!("{}.carts", shop["database"].as_str().unwrap());
    assert_eq!(drill["drill"]["counts"][table.as_str()], 3, "{drill}");
    let drill = world
        .dbctl(&[
            "backup", "verify", "cache", "--store", "swift", "-o", "json",
        ])
        .ok()
        .json();
    let db = format!("db{}", cache["database"].as_str().unwrap());
    assert_eq!(drill["drill"]["counts"][db.as_str()], 3, "{drill}");

    destroy_data(&world, "shop", "mariadb");
    world
        .dbctl(&["restore", "shop", "--store", "s3", "--yes"])
        .ok();
    assert_eq!(
        mariadb(&shop, "select count(*), sum(total) from carts"),
        "3\t30.50"
    );

    // Redis: the data changes after the backup, and the restore brings the backup's back.
    redis(&cache, "FLUSHDB\nSET later 1\n");
    world
        .dbctl(&["restore", "cache", "--store", "swift", "--yes"])
        .ok();
    assert_eq!(redis(&cache, "GET session:1"), "alice");
    assert_eq!(redis(&cache, "HGET user:1 plan"), "gold");
    assert_eq!(redis(&cache, "LRANGE queue 0 -1"), "a\nb\nc");
    assert_eq!(redis(&cache, "EXISTS later"), "0");
}

#[test]
fn a_damaged_or_foreign_backup_is_refused_and_the_database_keeps_its_data() {
    let world = world_with_stores();
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "ledger"])
        .ok();
    world
        .dbctl(&[
            "create",
            "--type",
            "redis",
            "--version",
            "7.0",
            "--size",
            "1",
            "kv",
        ])
        .ok();
    let conn = world.reveal("ledger");
    psql(
        &conn,
        "create table entries(id int); insert into entries select generate_series(1, 100)",
    );
    let id = backup(&world, "ledger", "here");
    psql(&conn, "insert into entries values (101)");

    // One byte of the stored object flipped.
    let object = world
        .dir
        .path()
        .join(format!("backups/ledger/{id}/data.zst.age"));
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&object, &bytes).unwrap();
    let before = world.snapshot();
    let failed = world.dbctl(&["restore", "ledger", "--store", "here", "--yes"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    eprintln!("damaged: {}", failed.stderr);
    assert!(
        failed
            .stderr
            .contains("restoring `ledger` failed; the database runs on its data as before"),
        "{}",
        failed.stderr
    );
    assert_eq!(psql(&conn, "select count(*) from entries"), "101");
    assert_eq!(world.snapshot().head, before.head);

    world
        .dbctl(&["restore", "ledger", "--store", "here"])
        .fails_with("pass `--yes` to confirm");

    // A PostgreSQL backup put where the Redis database's backups are.
    let foreign = world.dir.path().join(format!("backups/kv/{id}"));
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    std::fs::rename(object.parent().unwrap(), &foreign).unwrap();
    world
        .dbctl(&["restore", "kv", "--store", "here", "--yes"])
        .fails_with(
            "is a postgresql backup of `ledger`; it cannot be restored into a redis database",
        );

    // Stores that are not there or refuse the credentials, and names that are not.
    world
        .dbctl(&["backup", "ledger", "--store", "nowhere"])
        .fails_with("unknown backup store `nowhere`; allowed: here, s3, swift");
    world
        .dbctl(&[
            "restore",
            "ledger",
            "--store",
            "here",
            "--backup",
            "20990101T000000Z-0000",
            "--yes",
        ])
        .fails_with("has no backup `20990101T000000Z-0000`");
    edit_config(&world, |text| {
        text.replace(
            "user: test:tester\n    secret_file",
            "user: test:intruder\n    secret_file",
        )
        .replacen(
            &format!("127.0.0.1:{}/auth", swift::shared().port),
            "127.0.0.1:9/auth",
            1,
        )
    });
    world
        .dbctl(&["backup", "ledger", "--store", "swift"])
        .fails_with("backup store `swift` cannot be reached at http://127.0.0.1:9/auth/v1.0");
    world
        .dbctl(&["backup", "ledger", "--store", "s3"])
        .fails_with("backup store `s3`: the credentials were refused");
    assert_eq!(psql(&conn, "select count(*) from entries"), "101");
}

#[test]
fn a_backup_killed_midway_claims_nothing_and_the_next_one_works() {
    let world = world_with_stores();
    let conn = postgresql(&world, "events");
    psql(
        &conn,
        "create table events(id int, body text); insert into events select g, repeat(md5(g::text), 40) from generate_series(1, 60000) g",
    );
    let mut child = world.spawn_until(
        &["backup", "events", "--store", "swift"],
        "Stream a base backup",
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        backup_ids(&world, "events", "swift").is_empty(),
        "a killed backup is listed"
    );
    let id = backup(&world, "events", "swift");
    assert_eq!(backup_ids(&world, "events", "swift"), vec![id]);
}

#[test]
fn disaster_recovery_restores_the_latest_backup_onto_another_target_over_ssh() {
    use crate::support::hosts::NamespaceHosts;
    let world = world_with_stores();
    // The DR site: a host of its own (network namespace, sshd, private state
    // directory); dbctl here reaches it and the stores on 127.0.0.1.
    let site = NamespaceHosts::up(&world.dir.path().join("dr-site"), 'd', 1);
    site.uplink("10.203.1.254/24");
    let dr_state = site.state(1);
    let target = format!(
        "targets:\n  dr:\n    platform: ssh\n    hosts: [10.203.1.11]\n    user: root\n    identity: {}\n    known_hosts: {}\n    state_dir: {}\n    listen: 10.203.1.11\n",
        site.client_key().display(),
        site.known_hosts().display(),
        site.state_dir.display(),
    );
    edit_config(&world, |text| text.replacen("targets:\n", &target, 1));
    world.git(&["commit", "-qam", "test: a DR target"]);

    let primary = postgresql(&world, "billing");
    psql(
        &primary,
        "create table invoices(id int, total numeric); insert into invoices select g, g * 1.5 from generate_series(1, 2000) g",
    );
    backup(&world, "billing", "s3");
    psql(&primary, "insert into invoices values (2001, 0)");
    let newer = backup(&world, "billing", "s3");
    // Rehearsed first: a drill restores the latest backup on the DR host, counts it and
    // removes it again.
    let drill = world
        .dbctl(&[
            "backup", "verify", "billing", "--store", "s3", "--target", "dr", "-o", "json",
        ])
        .ok()
        .json();
    assert_eq!(drill["drill"]["ok"], true, "{drill}");
    assert_eq!(drill["drill"]["target"], "dr", "{drill}");
    assert_eq!(drill["drill"]["counts"]["public.invoices"], 2001, "{drill}");
    assert!(
        !dr_state.join("billing-drill").exists(),
        "the drill left its scratch database on the DR host"
    );
    // The primary's site is lost.
    destroy_data(&world, "billing", "postgresql");

    let report = world
        .dbctl(&[
            "restore", "billing", "--store", "s3", "--target", "dr", "--yes", "-o", "json",
        ])
        .ok()
        .json();
    assert_eq!(
        report["backup"],
        newer.as_str(),
        "the latest backup is the one restored"
    );
    let recovered = world.reveal("billing");
    assert_eq!(recovered["target"], "dr");
    assert_ne!(recovered["port"], primary["port"]);
    assert_eq!(
        recovered["password"], primary["password"],
        "clients keep their credentials"
    );
    assert_eq!(
        psql(&recovered, "select count(*), sum(total) from invoices"),
        "2001|3001500.0"
    );
    assert!(
        dr_state.join("billing/data/PG_VERSION").exists(),
        "the data lives on the DR host"
    );
    let spec = std::fs::read_to_string(world.repo.join("etc/databases/billing.yml")).unwrap();
    assert!(spec.contains("target: dr"), "{spec}");
    assert_eq!(
        world.dirty(),
        "",
        "the spec and connection file are committed"
    );
    let subject = world.git(&["log", "-1", "--format=%s"]);
    assert!(
        subject.starts_with("dbctl restore billing from backup"),
        "{subject}"
    );
}

/// A Redis 7.0 database `name` of size 1 whose spec has `backup:` set to `backup_yaml`
/// (its indented body), committed.
fn redis_with_backup(world: &World, name: &str, backup_yaml: &str) -> std::path::PathBuf {
    world
        .dbctl(&[
            "create",
            "--type",
            "redis",
            "--version",
            "7.0",
            "--size",
            "1",
            name,
        ])
        .ok();
    let spec = world.repo.join(format!("etc/databases/{name}.yml"));
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str(&format!("backup:\n{backup_yaml}"));
    std::fs::write(&spec, text).unwrap();
    world.git(&["commit", "-qam", &format!("{name}: backup settings")]);
    spec
}

#[test]
fn retention_removes_exactly_the_backups_it_lets_go() {
    let world = world_with_stores();
    let spec = redis_with_backup(
        &world,
        "tokens",
        "  store: swift\n  retention:\n    full: 2\n",
    );
    let first = world.dbctl(&["backup", "tokens", "-o", "json"]).ok().json();
    // The manifest records the spec it was taken of, retention included.
    let recorded = first["manifest"]["spec"].as_str().unwrap();
    assert!(
        recorded.contains("name: tokens") && recorded.contains("full: 2"),
        "{recorded}"
    );
    let first = first["manifest"]["id"].as_str().unwrap().to_owned();
    let second = backup(&world, "tokens", "swift");
    let third = world.dbctl(&["backup", "tokens", "-o", "json"]).ok().json();
    assert_eq!(third["expired"], serde_json::json!([first]));
    let third = third["manifest"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        backup_ids(&world, "tokens", "swift"),
        vec![second.clone(), third.clone()]
    );
    // Nothing of the expired one is left: no interrupted entry either.
    let list = world
        .dbctl(&["backups", "tokens", "-o", "json"])
        .ok()
        .json();
    assert_eq!(list["incomplete"], serde_json::json!([]));
    // `--expire` with a tighter policy removes the older of the two.
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("full: 2", "full: 1")).unwrap();
    world.git(&["commit", "-qam", "tokens: keep one backup"]);
    let list = world
        .dbctl(&["backups", "tokens", "--expire", "-o", "json"])
        .ok()
        .json();
    assert_eq!(list["expired"], serde_json::json!([second]));
    assert_eq!(backup_ids(&world, "tokens", "swift"), vec![third]);
}

/// Writes rows 1–10 into table `payments` of `name`, backs it up (the world's default
/// store), commits rows 11–20 (t1), notes the time, commits rows 21–30 (t2), and waits
/// until the WAL with t2 is archived. Returns the backup's id and the time between t1
/// and t2 (`YYYY-MM-DD HH:MM:SS` in Asia/Kolkata).
fn rows_at_t1_and_t2(world: &World, conn: &serde_json::Value, name: &str) -> (String, String) {
    psql(
        conn,
        "create table payments(id int, at timestamptz default now()); insert into payments select generate_series(1, 10)",
    );
    let base = world.dbctl(&["backup", name, "-o", "json"]).ok().json()["manifest"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // t1: committed after the base backup, before the target time.
    psql(conn, "insert into payments select generate_series(11, 20)");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let target = psql(
        conn,
        "select to_char(now() at time zone 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS')",
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // t2: after it.
    psql(conn, "insert into payments select generate_series(21, 30)");
    let admin = |sql: &str| {
        world
            .dbctl(&["sql", name, "--admin", "-c", sql])
            .ok()
            .stdout
    };
    crate::support::switch_wal_and_wait_archived(&admin);
    (base, target)
}

/// Restores `name` to `target` (between t1 and t2 of [`rows_at_t1_and_t2`]) from
/// `base`: only the rows up to t1 are there.
fn restores_to_between_t1_and_t2(
    world: &World,
    conn: &serde_json::Value,
    name: &str,
    base: &str,
    target: &str,
) {
    let report = world
        .dbctl(&[
            "restore",
            name,
            "--to-time",
            &format!("{target} Asia/Kolkata"),
            "--yes",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(report["backup"], base);
    assert_eq!(
        psql(conn, "select count(*), max(id) from payments"),
        "20|20"
    );
}

#[test]
fn postgresql_point_in_time_recovery_keeps_only_what_was_committed_before_the_time() {
    let world = world_with_stores();
    edit_config(&world, |text| {
        text.replacen(
            "  plan: small\n",
            "  plan: small\n  backup_store: swift\n",
            1,
        )
    });
    world.git(&["commit", "-qam", "test: archive to swift"]);
    let conn = postgresql(&world, "payments");
    let (base, target) = rows_at_t1_and_t2(&world, &conn, "payments");
    restores_to_between_t1_and_t2(&world, &conn, "payments", &base, &target);
    // Promoted, not paused: it takes writes, and archives them on a new timeline.
    psql(&conn, "insert into payments values (99)");
    assert_eq!(psql(&conn, "select pg_is_in_recovery()"), "f");

    // A time before the first backup is refused, and nothing changes.
    world
        .dbctl(&[
            "restore",
            "payments",
            "--to-time",
            "2020-01-01 00:00 Europe/Paris",
            "--yes",
        ])
        .fails_with("is before the first backup of `payments`");
    assert_eq!(psql(&conn, "select count(*) from payments"), "21");

    // Retention keeping one backup lets the first go, with the WAL only it needed; the
    // WAL the kept backup replays from, and the timeline histories, stay.
    let spec = world.repo.join("etc/databases/payments.yml");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("backup:\n  retention:\n    full: 1\n");
    std::fs::write(&spec, text).unwrap();
    world.git(&["commit", "-qam", "payments: keep one backup"]);
    let wal = || swift::shared().list(&container_of(&world), "payments/wal/");
    let before = wal();
    let second = world
        .dbctl(&["backup", "payments", "-o", "json"])
        .ok()
        .json();
    assert_eq!(second["expired"], serde_json::json!([base]));
    let from = second["manifest"]["position"].as_str().unwrap().to_owned();
    let after = wal();
    assert!(
        after.len() < before.len(),
        "no WAL was removed: {before:?} → {after:?}"
    );
    assert!(after.iter().any(|n| n.ends_with(".history")), "{after:?}");
    for name in &after {
        let name = name.rsplit('/').next().unwrap();
        assert!(
            name.ends_with(".history") || name[8..] >= from[8..],
            "{name} is older than what the kept backup needs ({from})"
        );
    }
}

#[test]
fn delete_takes_a_final_backup_to_the_databases_store_first() {
    let world = world_with_stores();
    // A store that cannot be opened (its directory is a file): the final backup fails,
    // and the database is left as it was.
    let blocked = world.dir.path().join("not-a-directory");
    std::fs::write(&blocked, "").unwrap();
    edit_config(&world, |text| {
        text + &format!(
            "  blocked:\n    kind: dir\n    path: {}\n",
            blocked.display()
        )
    });
    world.git(&["commit", "-qam", "test: a store that cannot be opened"]);
    let spec = redis_with_backup(&world, "sessions", "  store: blocked\n");
    let conn = world.reveal("sessions");
    redis(&conn, "SET cart:7 three-apples\n");
    let pids = world.server_pids();
    world
        .dbctl(&["delete", "sessions", "--yes"])
        .fails_with("nothing was deleted");
    assert!(spec.exists(), "a failed final backup removed the spec");
    assert_eq!(
        world.server_pids(),
        pids,
        "a failed final backup stopped the server"
    );
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("store: blocked", "store: here")).unwrap();
    world.git(&["commit", "-qam", "sessions: back up to here"]);
    let dry = world
        .dbctl(&["delete", "sessions", "--yes", "--dry-run"])
        .ok();
    assert!(
        dry.stdout.contains("back up to store `here`"),
        "{}",
        dry.stdout
    );
    let elsewhere = world
        .dbctl(&[
            "delete",
            "sessions",
            "--yes",
            "--dry-run",
            "--store",
            "swift",
        ])
        .ok();
    assert!(
        elsewhere.stdout.contains("back up to store `swift`"),
        "{}",
        elsewhere.stdout
    );
    let report = world
        .dbctl(&["delete", "sessions", "--yes", "-o", "json"])
        .ok()
        .json();
    assert_eq!(report["final_backup"]["store"], "here");
    let id = report["final_backup"]["id"].as_str().unwrap();
    // The backup is complete in the store (its manifest written last) and records the
    // spec of the database it was taken of.
    let manifest = world
        .dir
        .path()
        .join(format!("backups/sessions/{id}/manifest.json"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert!(
        manifest["spec"]
            .as_str()
            .unwrap()
            .contains("name: sessions"),
        "{manifest}"
    );
    assert!(manifest["raw_bytes"].as_u64().unwrap() > 0, "{manifest}");
    assert!(!spec.exists(), "the spec was not removed");

    // The deleted database comes back from its final backup: its backups are listed by
    // store, the spec recorded in the backup is restored and committed with a new
    // connection file, and the data is there.
    world
        .dbctl(&["restore", "sessions", "--yes"])
        .fails_with("pass `--store`");
    world
        .dbctl(&["backups", "sessions", "--store", "here", "--expire"])
        .fails_with("was deleted");
    let listed = world
        .dbctl(&["backups", "sessions", "--store", "here", "-o", "json"])
        .ok()
        .json();
    assert_eq!(listed["backups"][0]["id"], id, "{listed}");
    world
        .dbctl(&["restore", "sessions", "--store", "here"])
        .fails_with("pass `--yes`");
    assert!(!spec.exists(), "a refused restore wrote the spec");
    world
        .dbctl(&["restore", "sessions", "--store", "here", "--yes"])
        .ok();
    assert!(spec.exists(), "the restore did not write the spec back");
    assert!(
        std::fs::read_to_string(&spec)
            .unwrap()
            .contains("store: here"),
        "the spec is not the one the backup recorded"
    );
    let conn = world.reveal("sessions");
    assert_eq!(redis(&conn, "GET cart:7\n"), "three-apples");
    let log = world.git(&["log", "-1", "--format=%s", "--name-only"]);
    assert!(
        log.contains(&format!("dbctl restore sessions from backup {id}"))
            && log.contains("etc/databases/sessions.yml")
            && log.contains("connections/sessions.yml"),
        "{log}"
    );
}

#[test]
fn a_restore_drill_restores_the_backup_apart_checks_it_and_records_the_recovery_time() {
    let world = world_with_stores();
    let conn = postgresql(&world, "ledger");
    psql(
        &conn,
        "create table entries(id int primary key); insert into entries select generate_series(1, 30); create table accounts(id int); insert into accounts values (1), (2)",
    );
    let id = backup(&world, "ledger", "here");
    // Written after the backup: the drill restores what the backup holds.
    psql(&conn, "insert into entries select generate_series(31, 40)");
    let before = world.snapshot();
    let pids = world.server_pids();

    let passed = world
        .dbctl(&[
            "backup",
            "verify",
            "ledger",
            "--store",
            "here",
            "--query",
            "select count(*) from entries",
            "--expect",
            "30",
            "-o",
            "json",
        ])
        .ok()
        .json();
    let drill = &passed["drill"];
    assert_eq!(passed["backup"], id.as_str(), "{passed}");
    assert_eq!(drill["ok"], true, "{passed}");
    assert_eq!(drill["counts"]["public.entries"], 30, "{passed}");
    assert_eq!(drill["counts"]["public.accounts"], 2, "{passed}");
    assert!(drill["restore_seconds"].as_f64().unwrap() > 0.0, "{passed}");
    // The scratch database is gone again: no server, no instance, no file in the repo;
    // the database itself was not touched.
    assert_eq!(world.server_pids(), pids, "the scratch server still runs");
    assert!(!world.instance_dir("ledger-drill").exists());
    assert_eq!(world.snapshot(), before, "the drill changed the repo");
    assert_eq!(psql(&conn, "select count(*) from entries"), "40");

    // A check that fails is a failed drill (exit 1), recorded like a pass; `backups`
    // shows the last one.
    let failed = world.dbctl(&[
        "backup",
        "verify",
        "ledger",
        "--store",
        "here",
        "--query",
        "select count(*) from entries",
        "--expect",
        "40",
    ]);
    assert_eq!(failed.code, 1, "{}\n{}", failed.stdout, failed.stderr);
    assert!(failed.stdout.contains("FAILED"), "{}", failed.stdout);
    assert_eq!(world.server_pids(), pids, "a failed drill left its server");
    let listed = world
        .dbctl(&["backups", "ledger", "--store", "here", "-o", "json"])
        .ok()
        .json();
    let last = &listed["backups"][0]["last_drill"];
    assert_eq!(last["ok"], false, "{listed}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("`--expect`ed `40`"),
        "{listed}"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            world
                .dir
                .path()
                .join(format!("backups/ledger/{id}/manifest.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["drills"].as_array().unwrap().len(),
        2,
        "{manifest}"
    );
    let table = world
        .dbctl(&["backups", "ledger", "--store", "here"])
        .ok()
        .stdout;
    assert!(table.contains("FAILED"), "{table}");
}

#[test]
fn archive_wal_false_leaves_postgresql_without_an_archive_command() {
    let world = world_with_stores();
    edit_config(&world, |text| {
        text.replacen(
            "  plan: small\n",
            "  plan: small\n  backup_store: here\n",
            1,
        )
    });
    for (name, backup) in [
        ("archived", ""),
        ("unarchived", "backup: {archive_wal: false}\n"),
    ] {
        std::fs::write(
            world.repo.join(format!("etc/databases/{name}.yml")),
            format!("name: {name}\nengine: postgresql\nversion: \"15\"\nsize_gb: 1\n{backup}"),
        )
        .unwrap();
    }
    let conf = |name: &str| {
        world
            .dbctl(&["render", name, "-o", "json"])
            .ok()
            .stdout
            .contains("archive_command")
    };
    assert!(conf("archived"), "a store's default did not archive WAL");
    assert!(!conf("unarchived"), "`archive_wal: false` still archives");
}

/// Writes `spec` with `text` (a schedule added), commits it, and checks that `plan`
/// shows the schedule as the pending change.
fn schedule_is_planned(world: &World, spec: &Path, text: &str) {
    std::fs::write(spec, text).unwrap();
    world.git(&["commit", "-qam", "test: a backup schedule"]);
    let plan = world.dbctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("backup.schedule"), "{}", plan.stdout);
}

#[test]
fn a_backup_schedule_is_planned_applied_as_a_systemd_timer_that_backs_up_and_removed() {
    let world = world_with_stores();
    let spec = redis_with_backup(&world, "carts", "  store: here\n");
    assert_eq!(world.dbctl(&["plan", "--detailed-exitcode"]).code, 0);
    let text = std::fs::read_to_string(&spec).unwrap();
    schedule_is_planned(
        &world,
        &spec,
        &format!("{text}  schedule: daily 01:30 Europe/Paris\n"),
    );
    let pids = world.server_pids();
    world.dbctl(&["apply"]).ok();
    assert_eq!(world.server_pids(), pids, "a schedule restarted the server");
    assert_eq!(world.dbctl(&["plan", "--detailed-exitcode"]).code, 0);

    let dir = world.instance_dir("carts").join("systemd");
    let ScheduleUnits { service, timer } = ScheduleUnits::read(&dir, "carts");
    assert_eq!(
        ScheduleUnits::value(&timer, "OnCalendar"),
        "*-*-* 01:30:00 Europe/Paris"
    );
    // What the timer starts is a backup of this database: run it as systemd would,
    // with the unit's environment only.
    let environment = ScheduleUnits::value(&service, "Environment");
    let exec = ScheduleUnits::value(&service, "ExecStart");
    let before = backup_ids(&world, "carts", "here").len();
    let out = std::process::Command::new("env")
        .arg("-i")
        .arg(format!("PATH={}", std::env::var("PATH").unwrap()))
        .arg(environment.trim_matches('"'))
        .arg("sh")
        .arg("-c")
        .arg(&exec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{exec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(backup_ids(&world, "carts", "here").len(), before + 1);

    // Without the schedule the units go, and nothing else changes.
    std::fs::write(&spec, text).unwrap();
    world.git(&["commit", "-qam", "carts: no schedule"]);
    world.dbctl(&["apply"]).ok();
    assert!(
        std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none()),
        "the timer is still there"
    );
    assert_eq!(world.server_pids(), pids);
}

#[test]
fn giving_a_running_postgresql_a_store_is_planned_and_starts_its_wal_archiving() {
    let world = world_with_stores();
    let conn = postgresql(&world, "audit");
    assert_eq!(psql(&conn, "show archive_mode"), "off");
    let spec = world.repo.join("etc/databases/audit.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("{text}backup:\n  store: swift\n")).unwrap();
    world.git(&["commit", "-qam", "audit: back up to swift"]);
    let plan = world.dbctl(&["plan", "audit", "-o", "json"]).ok().json();
    let text = plan.to_string();
    assert!(
        text.contains("backup.wal_archive") && text.contains("\"swift\""),
        "{plan}"
    );
    world.dbctl(&["apply", "--now"]).ok();
    assert_eq!(world.dbctl(&["plan", "--detailed-exitcode"]).code, 0);
    assert_eq!(psql(&conn, "show archive_mode"), "on");
    psql(&conn, "create table t as select generate_series(1, 1000) g");
    world
        .dbctl(&["sql", "audit", "--admin", "-c", "select pg_switch_wal()"])
        .ok();
    let archived = (0..40).any(|_| {
        let found = !swift::shared()
            .list(&container_of(&world), "audit/wal/")
            .is_empty();
        if !found {
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        found
    });
    assert!(
        archived,
        "no WAL segment reached the store after the change"
    );
}

#[test]
fn a_dir_store_postgres_cannot_write_is_refused_before_wal_archiving_fails_quietly() {
    let world = world_with_stores();
    // `here` is in the world's private temporary directory: root's only.
    world.commit_spec(
        "journal",
        "name: journal\nengine: postgresql\nsize_gb: 1\nversion: \"15\"\nbackup:\n  store: here\n",
        "journal archives to a directory",
    );
    let before = world.snapshot();
    let pids = world.server_pids();
    let out = world.dbctl(&["apply"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("is not writable by `postgres`"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(world.snapshot(), before);
    assert_eq!(world.server_pids(), pids);
    assert!(!world.instance_dir("journal").exists());
    // A Keystone Swift store whose openrc cannot be read here (wal-push would get its
    // credentials from it): refused the same way, naming the file and the way out.
    edit_config(&world, |text| {
        text.replacen(
            "backup_stores:\n",
            "backup_stores:\n  cloud:\n    kind: swift\n    openrc: /etc/dbctl/openrc.sh\n    container: dbctl\n",
            1,
        )
    });
    std::fs::write(
        world.repo.join("etc/databases/journal.yml"),
        "name: journal\nengine: postgresql\nsize_gb: 1\nversion: \"15\"\nbackup:\n  store: cloud\n",
    )
    .unwrap();
    world.git(&["commit", "-qam", "journal archives to Keystone Swift"]);
    let before = world.snapshot();
    let out = world.dbctl(&["apply"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("/etc/dbctl/openrc.sh")
            && out.stdout.contains("backup store `cloud`")
            && out.stdout.contains("archive_wal: false"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(world.snapshot(), before);
    assert!(!world.instance_dir("journal").exists());
}

#[test]
fn kubernetes_renders_the_backup_schedule_for_cloudnative_pg_and_mariadb_operator() {
    let world = World::new();
    edit_config(&world, |text| {
        text.replacen("targets:\n", "targets:\n  k8s:\n    platform: kubernetes\n    backup_destination: s3://backups/dbctl\n", 1)
    });
    std::fs::write(
        world.repo.join("etc/databases/reports.yml"),
        "name: reports\nengine: postgresql\nversion: \"15\"\nsize_gb: 1\nbackup:\n  schedule: daily 01:30 Europe/Paris\n",
    )
    .unwrap();
    let out = world
        .dbctl(&["render", "reports", "--target", "k8s"])
        .ok()
        .stdout;
    assert!(
        out.contains("schedule: \"CRON_TZ=Europe/Paris 0 30 1 * * *\""),
        "{out}"
    );
    // mariadb-operator's Backup: five fields and the zone beside them, the spec's
    // retention, the destination's bucket and prefix.
    std::fs::write(
        world.repo.join("etc/databases/shop.yml"),
        "name: shop\nengine: mariadb\nversion: \"10.11\"\nsize_gb: 1\nbackup:\n  schedule: Sun 23:15 Asia/Kolkata\n  retention: {days: 7}\n",
    )
    .unwrap();
    let out = world
        .dbctl(&["render", "shop", "--target", "k8s"])
        .ok()
        .stdout;
    for line in [
        "kind: Backup",
        "cron: \"15 23 * * 0\"",
        "timeZone: \"Asia/Kolkata\"",
        "maxRetention: \"168h\"",
        "bucket: \"backups\"",
        "prefix: \"dbctl\"",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
}

#[test]
fn dry_runs_of_backup_restore_and_rotation_check_everything_and_change_nothing() {
    let world = world_with_stores();
    redis_with_backup(&world, "carts", "  store: here\n");
    let conn = world.reveal("carts");
    let redis = |command: &str| {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", conn["host"].as_str().unwrap(), "-p"])
            .arg(conn["port"].to_string())
            .args([
                "--user",
                conn["username"].as_str().unwrap(),
                "--no-auth-warning",
            ])
            .env("REDISCLI_AUTH", conn["password"].as_str().unwrap())
            .args(command.split(' '))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let listed = |world: &World| {
        world.dbctl(&["backups", "carts", "-o", "json"]).ok().json()["backups"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = world.snapshot();

    let dry = world.dbctl(&["backup", "carts", "--dry-run"]).ok().stdout;
    assert!(
        dry.contains("dry run") && dry.contains("store `here`") && dry.contains("nothing changed"),
        "{dry}"
    );
    assert_eq!(listed(&world), 0, "a dry run backed up");
    // So does an incremental backup of an engine that has none.
    world
        .dbctl(&["backup", "carts", "--dry-run", "--type", "incr"])
        .fails_with("incremental backups (`--type incr`) are built for PostgreSQL 17");
    // A store that cannot be opened fails the dry run as it would the backup.
    world
        .dbctl(&["backup", "carts", "--dry-run", "--store", "nowhere"])
        .fails_with("unknown backup store `nowhere`");

    world.dbctl(&["backup", "carts"]).ok();
    redis("SET after-the-backup 1");
    let dry = world
        .dbctl(&["restore", "carts", "--dry-run", "-o", "json"])
        .ok()
        .json();
    assert_eq!(dry["verb"], "restore", "{dry}");
    let would = dry["would"].to_string();
    assert!(would.contains("replace the data of `carts`"), "{dry}");
    assert_eq!(redis("GET after-the-backup"), "1", "a dry run restored");

    let dry = world
        .dbctl(&["rotate-credentials", "carts", "--dry-run"])
        .ok()
        .stdout;
    assert!(dry.contains("login `carts_r`"), "{dry}");
    assert_eq!(redis("PING"), "PONG", "the old login stopped working");
    assert_eq!(world.snapshot(), before, "a dry run changed the repo");
    assert_eq!(world.reveal("carts")["password"], conn["password"]);
}

/// `targets:` with a `vm` target reaching `sshd` as root (this machine as the
/// "remote" host), its instances in the world's state directory, ports from about
/// `first_port`.
fn ssh_target(world: &World, sshd: &crate::support::sshd::Sshd, first_port: u16) -> String {
    format!(
        "targets:\n  vm:\n    platform: ssh\n    hosts: [127.0.0.1]\n    port: {}\n    user: root\n    identity: {}\n    known_hosts: {}\n    state_dir: {}\n    listen: 127.0.0.1\n    first_port: {}\n",
        sshd.port,
        sshd.client_key.display(),
        sshd.known_hosts.display(),
        world.state.display(),
        first_port + (std::process::id() % 500) as u16 * 10,
    )
}

#[test]
fn postgresql_over_ssh_archives_wal_with_dbctl_on_the_host_and_recovers_to_a_time() {
    use crate::support::sshd::Sshd;
    let world = world_with_stores();
    let sshd = Sshd::start(&world.dir.path().join("sshd"));
    let target = ssh_target(&world, &sshd, 41_000);
    edit_config(&world, |text| {
        text.replacen("targets:\n", &target, 1).replacen(
            "  plan: small\n",
            "  plan: small\n  backup_store: s3\n",
            1,
        )
    });
    world.git(&["commit", "-qam", "test: an ssh target archiving to s3"]);
    world
        .dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--size",
            "1",
            "ledger",
            "--target",
            "vm",
        ])
        .ok();
    let conn = world.reveal("ledger");
    // The server's archive_command runs a copy of this dbctl that dbctl put on the host.
    let conf =
        std::fs::read_to_string(world.instance_dir("ledger").join("data/postgresql.conf")).unwrap();
    let line = conf
        .lines()
        .find(|l| l.starts_with("archive_command"))
        .unwrap_or_else(|| panic!("no archive_command in {conf}"));
    let agent_dir = world.state.join(".dbctl/bin");
    assert!(
        line.contains(&agent_dir.display().to_string()) && line.contains("wal-push"),
        "{line}"
    );
    let agents: Vec<_> = std::fs::read_dir(&agent_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(
        std::fs::metadata(&agents[0]).unwrap().len(),
        std::fs::metadata(assert_cmd::cargo::cargo_bin("dbctl"))
            .unwrap()
            .len(),
        "the host's copy is this dbctl"
    );

    let (base, target) = rows_at_t1_and_t2(&world, &conn, "ledger");
    restores_to_between_t1_and_t2(&world, &conn, "ledger", &base, &target);
    assert_eq!(psql(&conn, "select pg_is_in_recovery()"), "f");

    // A store the host cannot reach is found out before the server archives into it.
    edit_config(&world, |text| {
        text + &format!(
            "  nowhere:\n    kind: s3\n    url: http://127.0.0.1:9\n    container: none\n    user: test:tester\n    secret_file: {}\n",
            swift::shared().key_file.display()
        )
    });
    world.git(&["commit", "-qam", "test: a store nobody reaches"]);
    let spec = world.repo.join("etc/databases/ledger.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("{text}backup:\n  store: nowhere\n")).unwrap();
    world.git(&["commit", "-qam", "ledger: archive nowhere"]);
    let out = world.dbctl(&["apply", "ledger"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        format!("{}{}", out.stdout, out.stderr)
            .contains("cannot reach backup store `nowhere` from 127.0.0.1"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(psql(&conn, "select count(*) from payments"), "20");
}

#[test]
fn a_backup_schedule_on_an_ssh_host_runs_dbctls_copy_there_in_a_repo_of_the_database() {
    use std::os::unix::fs::PermissionsExt;

    use crate::support::sshd::Sshd;
    let world = world_with_stores();
    let sshd = Sshd::start(&world.dir.path().join("sshd"));
    let target = ssh_target(&world, &sshd, 42_000);
    edit_config(&world, |text| text.replacen("targets:\n", &target, 1));
    world.git(&["commit", "-qam", "test: an ssh target"]);
    world
        .dbctl(&[
            "create", "--type", "redis", "--size", "1", "queue", "--target", "vm",
        ])
        .ok();
    let conn = world.reveal("queue");
    redis(&conn, "SET job:1 pending\n");
    let spec = world.repo.join("etc/databases/queue.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    schedule_is_planned(
        &world,
        &spec,
        &format!("{text}backup:\n  store: s3\n  schedule: Sun 03:00 Europe/Paris\n"),
    );
    world.dbctl(&["apply"]).ok();
    assert_eq!(world.dbctl(&["plan", "--detailed-exitcode"]).code, 0);

    let instance = world.instance_dir("queue");
    let ScheduleUnits { service, timer } = ScheduleUnits::read(&instance.join("systemd"), "queue");
    assert_eq!(
        ScheduleUnits::value(&timer, "OnCalendar"),
        "Sun *-*-* 03:00:00 Europe/Paris"
    );
    let exec = ScheduleUnits::value(&service, "ExecStart");
    assert!(
        exec.contains(&world.state.join(".dbctl/bin/dbctl-").display().to_string())
            && exec.contains(&instance.join("agent").display().to_string()),
        "the host runs dbctl's copy in the database's own repo: {exec}"
    );
    // The store's secret is on the host, for root only, and not in the repo there.
    let secret = instance.join("agent.secret");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let config = std::fs::read_to_string(instance.join("agent/etc/dbctl.yml")).unwrap();
    assert!(!config.contains("testing"), "{config}");

    // Run what the timer starts as systemd would: only the unit's environment, on the
    // host (through sshd), with nothing of the operator's repo.
    let before = backup_ids(&world, "queue", "s3").len();
    let environment = ScheduleUnits::value(&service, "Environment");
    let out = std::process::Command::new("ssh")
        .args(["-i", &sshd.client_key.display().to_string()])
        .args([
            "-o",
            &format!("UserKnownHostsFile={}", sshd.known_hosts.display()),
            "-o",
            "BatchMode=yes",
            "-p",
            &sshd.port.to_string(),
            "root@127.0.0.1",
        ])
        .arg(format!(
            "cd / && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin {} sh -c '{}'",
            environment.trim_matches('"'),
            exec
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{exec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = world
        .dbctl(&["backups", "queue", "--store", "s3", "-o", "json"])
        .ok()
        .json();
    let backups = after["backups"].as_array().unwrap();
    assert_eq!(backups.len(), before + 1, "{after}");
    assert_eq!(backups.last().unwrap()["target"], "vm", "{after}");

    // Without the schedule the units, the repo and the secret go.
    std::fs::write(&spec, format!("{text}backup:\n  store: s3\n")).unwrap();
    world.git(&["commit", "-qam", "queue: no schedule"]);
    world.dbctl(&["apply"]).ok();
    assert!(!instance.join("agent").exists());
    assert!(!secret.exists());
    assert!(
        std::fs::read_dir(instance.join("systemd")).map_or(true, |mut d| d.next().is_none()),
        "the timer is still there"
    );
}

/// The manifests of a full backup and two incremental ones taken after it: each
/// incremental one names the one before as its parent and is less than half the full
/// one's size (the sizes are printed for the note).
fn assert_chain(
    engine: &str,
    full: &serde_json::Value,
    first: &serde_json::Value,
    second: &serde_json::Value,
) {
    assert_eq!(first["parent"], full["id"], "{first}");
    assert_eq!(second["parent"], first["id"], "{second}");
    eprintln!(
        "{engine}: full {} bytes; incremental {} and {} bytes",
        full["raw_bytes"], first["raw_bytes"], second["raw_bytes"]
    );
    for incr in [first, second] {
        assert!(
            incr["raw_bytes"].as_u64().unwrap() * 2 < full["raw_bytes"].as_u64().unwrap(),
            "an incremental backup is not smaller than the full one: {} vs {}",
            incr["raw_bytes"],
            full["raw_bytes"]
        );
    }
}

/// PostgreSQL 17's incremental backups (`--type incr`): a full backup, then two
/// incremental ones, each holding only what changed since the one before; with the
/// data directory lost, a restore of the latest brings back every row (the chain
/// unpacked and combined by `pg_combinebackup`), and a restore of the first
/// incremental one exactly the rows it saw. Without a backup to build on, or on a
/// server before 17, `--type incr` is refused and nothing is stored.
#[test]
fn postgresql_17_incremental_backups_restore_through_their_chain() {
    let world = world_with_stores();
    world.postgresql_17_in("/opt/dbctl-test/postgresql/17-full/bin");
    world
        .dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--version",
            "17",
            "--size",
            "1",
            "ledger",
        ])
        .ok();
    let conn = world.reveal("ledger");
    psql(
        &conn,
        "create table entries (id int primary key, pad text); insert into entries select g, repeat('x', 500) from generate_series(1, 20000) g",
    );
    let count = || psql(&conn, "select count(*), max(id) from entries");
    world
        .dbctl(&["backup", "ledger", "--store", "s3", "--type", "incr"])
        .fails_with("has no backup in store `s3` for an incremental backup to build on");
    assert!(backup_ids(&world, "ledger", "s3").is_empty());

    let take = |kind: &str| {
        world
            .dbctl(&[
                "backup", "ledger", "--store", "s3", "--type", kind, "-o", "json",
            ])
            .ok()
            .json()["manifest"]
            .clone()
    };
    let full = take("full");
    let dry = world
        .dbctl(&[
            "backup",
            "ledger",
            "--store",
            "s3",
            "--type",
            "incr",
            "--dry-run",
        ])
        .ok()
        .stdout;
    assert!(
        dry.contains(&format!(
            "an incremental backup (on top of backup `{}`)",
            full["id"].as_str().unwrap()
        )),
        "{dry}"
    );
    assert!(
        full["backup_manifest"]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("backup_manifest.zst.age")),
        "PostgreSQL's backup_manifest is not kept: {full}"
    );
    psql(&conn, "update entries set pad = 'b' where id <= 100");
    let first = take("incr");
    psql(&conn, "insert into entries values (20001, 'c')");
    let second = take("incr");
    assert_eq!(first["kind"], "incr");
    assert_chain("postgresql", &full, &first, &second);
    let listed = world
        .dbctl(&["backups", "ledger", "--store", "s3", "-o", "json"])
        .ok()
        .json();
    let kinds: Vec<&str> = listed["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "incr").count(),
        2,
        "{listed}"
    );
    let human = world
        .dbctl(&["backups", "ledger", "--store", "s3"])
        .ok()
        .stdout;
    assert!(human.contains("incr"), "{human}");

    // The disk is lost: the latest (incremental) backup restores with its chain.
    destroy_data(&world, "ledger", "postgresql");
    world
        .dbctl(&["restore", "ledger", "--store", "s3", "--yes"])
        .ok();
    assert_eq!(count(), "20001|20001");
    assert_eq!(
        psql(&conn, "select count(*) from entries where pad = 'b'"),
        "100"
    );
    // The first incremental backup: its rows, not the second's.
    let id = first["id"].as_str().unwrap();
    world
        .dbctl(&[
            "restore", "ledger", "--store", "s3", "--backup", id, "--yes",
        ])
        .ok();
    assert_eq!(count(), "20000|20000");
    assert_eq!(
        psql(&conn, "select count(*) from entries where pad = 'b'"),
        "100"
    );

    // PostgreSQL 15 has no incremental backups: refused, nothing stored.
    let old = postgresql(&world, "ledger15");
    psql(&old, "create table t (i int)");
    backup(&world, "ledger15", "s3");
    world
        .dbctl(&["backup", "ledger15", "--store", "s3", "--type", "incr"])
        .fails_with("kept no `backup_manifest`");
    assert_eq!(backup_ids(&world, "ledger15", "s3").len(), 1);
}

/// MariaDB's incremental backups (`mariadb-backup --incremental-lsn` from the
/// checkpoint LSN the backup before logged): a full backup and two incremental ones on
/// it; with the data directory lost, the latest restores through its chain (the full
/// one prepared, each incremental one applied in order), and the first incremental one
/// exactly to its rows. Redis has no incremental backups: refused, nothing stored.
#[test]
fn mariadb_incremental_backups_restore_through_their_chain() {
    let world = world_with_stores();
    for (engine, version, name) in [("mariadb", "10.11", "shop"), ("redis", "7.0", "cache")] {
        world
            .dbctl(&[
                "create",
                "--type",
                engine,
                "--version",
                version,
                "--size",
                "1",
                name,
            ])
            .ok();
    }
    let conn = world.reveal("shop");
    mariadb(
        &conn,
        "create table carts (id int primary key, pad text); insert into carts select seq, repeat('x', 500) from seq_1_to_20000",
    );
    let count = || mariadb(&conn, "select count(*), max(id), sum(pad = 'b') from carts");
    let take = |kind: &str| {
        world
            .dbctl(&[
                "backup", "shop", "--store", "swift", "--type", kind, "-o", "json",
            ])
            .ok()
            .json()["manifest"]
            .clone()
    };
    let full = take("full");
    assert!(
        full["checkpoint_lsn"]
            .as_str()
            .is_some_and(|l| !l.is_empty()),
        "no checkpoint LSN recorded: {full}"
    );
    mariadb(&conn, "update carts set pad = 'b' where id <= 100");
    let first = take("incr");
    mariadb(&conn, "insert into carts values (20001, 'c')");
    let second = take("incr");
    assert_chain("mariadb", &full, &first, &second);

    destroy_data(&world, "shop", "mariadb");
    world
        .dbctl(&["restore", "shop", "--store", "swift", "--yes"])
        .ok();
    assert_eq!(count(), "20001\t20001\t100");
    let id = first["id"].as_str().unwrap();
    world
        .dbctl(&[
            "restore", "shop", "--store", "swift", "--backup", id, "--yes",
        ])
        .ok();
    assert_eq!(count(), "20000\t20000\t100");

    backup(&world, "cache", "swift");
    world
        .dbctl(&["backup", "cache", "--store", "swift", "--type", "incr"])
        .fails_with("`cache` is redis");
    assert_eq!(backup_ids(&world, "cache", "swift").len(), 1);
}
