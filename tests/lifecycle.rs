//! create → connect with the decrypted credentials → write and read → status → list →
//! delete, for each engine on the `local` platform.

use std::os::unix::fs::PermissionsExt;

use crate::support::{World, client, processes};

/// Asserts what every engine's lifecycle shares once the database is up.
fn check_created(world: &World, name: &str, password: &str) {
    // Git history holds the spec and the connection file, never the password.
    let log = world.git(&["log", "-p", "--all"]);
    assert!(log.contains(&format!("etc/databases/{name}.yml")), "{log}");
    assert!(log.contains(&format!("connections/{name}.yml")), "{log}");
    assert!(!log.contains(password), "password in git history");
    assert_eq!(world.dirty(), "", "create left uncommitted files");
    let conn = std::fs::read_to_string(world.repo.join(format!("connections/{name}.yml"))).unwrap();
    assert!(
        conn.contains("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{conn}"
    );
    assert!(!conn.contains(password));
    // No process has the password on its command line.
    for (pid, cmdline) in processes() {
        assert!(
            !cmdline.contains(password),
            "pid {pid} has the password: {cmdline}"
        );
    }
    // Nor does any server log.
    let logs = world.instance_dir(name).join("log");
    for entry in std::fs::read_dir(&logs).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(
            !text.contains(password),
            "password in {}",
            entry.path().display()
        );
    }
    // The identity file is private.
    let identity = world.home.join(".config/dbctl/identity.txt");
    let mode = std::fs::metadata(identity).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

fn check_status_and_list(world: &World, name: &str, engine: &str, port: u64) {
    let status = world.dbctl(&["status", name, "-o", "json"]).ok().json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    assert_eq!(status["status"]["endpoint"]["port"], port);
    assert_eq!(status["spec"]["engine"], engine);
    assert!(status["status"]["used_bytes"].as_u64().unwrap() > 0);
    assert!(
        status["status"]["server_version"]
            .as_str()
            .unwrap()
            .contains('.')
    );
    let human = world.dbctl(&["status", name]).ok().stdout;
    assert!(human.contains("state:    up"), "{human}");
    assert!(human.contains("GB allotted"), "{human}");
    let list = world.dbctl(&["list", "-o", "json"]).ok().json();
    let row = list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"));
    assert_eq!(row["status"]["state"], "up");
    let table = world.dbctl(&["list"]).ok().stdout;
    assert!(table.contains("NAME") && table.contains(name), "{table}");
}

fn check_deleted(world: &World, name: &str) {
    let pids_before = world.server_pids();
    assert!(!pids_before.is_empty(), "no server process before delete");
    world.dbctl(&["delete", name]).fails_with("pass `--yes`");
    // No backup store is configured here: delete refuses rather than lose the data
    // unbacked, and the server keeps running.
    world
        .dbctl(&["delete", name, "--yes"])
        .fails_with("--skip-final-backup");
    assert_eq!(
        world.server_pids(),
        pids_before,
        "a refused delete stopped the server"
    );
    world
        .dbctl(&["delete", name, "--yes", "--skip-final-backup"])
        .ok();
    assert!(
        world.server_pids().is_empty(),
        "server still running after delete"
    );
    assert!(
        !world.instance_dir(name).exists(),
        "instance dir left behind"
    );
    assert!(
        !world
            .repo
            .join(format!("etc/databases/{name}.yml"))
            .exists()
    );
    assert!(!world.repo.join(format!("connections/{name}.yml")).exists());
    assert_eq!(world.dirty(), "");
    let last = world.git(&["log", "-1", "--format=%s"]);
    assert_eq!(last.trim(), format!("dbctl delete {name}"));
    world.dbctl(&["status", name]).fails_with("no database");
}

#[test]
fn postgresql_lifecycle() {
    let world = World::new();
    let created = world
        .dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--size",
            "10",
            "my-first-db",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(created["changed"], true);
    assert!(
        created["connection_file"]
            .as_str()
            .unwrap()
            .ends_with("connections/my-first-db.yml")
    );
    let conn = world.reveal("my-first-db");
    let password = conn["password"].as_str().unwrap().to_owned();
    assert_eq!(password.len(), 32);
    let port = conn["port"].as_u64().unwrap();
    // The URI form works with psql as the README shows.
    let uri = world
        .dbctl(&["connection", "my-first-db", "--reveal", "--format", "uri"])
        .ok()
        .stdout;
    let one = client("psql", &[uri.trim(), "-Atc", "select 1"], &[], None);
    assert_eq!(one.trim(), "1");
    let port_s = port.to_string();
    let env = [("PGPASSWORD", password.as_str())];
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port_s,
        "-U",
        "my_first_db",
        "-d",
        "my_first_db",
        "-At",
    ];
    client(
        "psql",
        &[
            &args[..],
            &["-c", "create table t (x int); insert into t values (42)"],
        ]
        .concat(),
        &env,
        None,
    );
    let read = client(
        "psql",
        &[&args[..], &["-c", "select x from t"]].concat(),
        &env,
        None,
    );
    assert_eq!(read.trim(), "42");
    // A wrong password is refused: the server really authenticates.
    let out = std::process::Command::new("psql")
        .args([&args[..], &["-c", "select 1"]].concat())
        .env("PGPASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    check_created(&world, "my-first-db", &password);
    check_status_and_list(&world, "my-first-db", "postgresql", port);
    check_deleted(&world, "my-first-db");
}

#[test]
fn mariadb_lifecycle_through_the_mysql_alias() {
    let world = World::new();
    world
        .dbctl(&[
            "create", "--type", "mysql", "--size", "2", "shop", "--user", "shop_app",
        ])
        .ok();
    let spec = std::fs::read_to_string(world.repo.join("etc/databases/shop.yml")).unwrap();
    assert!(spec.contains("engine: mariadb"), "{spec}");
    let conn = world.reveal("shop");
    assert_eq!(conn["username"], "shop_app");
    let password = conn["password"].as_str().unwrap().to_owned();
    let port = conn["port"].as_u64().unwrap();
    let port_s = port.to_string();
    let env = [("MYSQL_PWD", password.as_str())];
    let args = [
        "--no-defaults",
        "-h",
        "127.0.0.1",
        "-P",
        &port_s,
        "-u",
        "shop_app",
        "shop",
        "-N",
        "-B",
    ];
    client(
        "mariadb",
        &[
            &args[..],
            &["-e", "create table t (x int); insert into t values (7)"],
        ]
        .concat(),
        &env,
        None,
    );
    let read = client(
        "mariadb",
        &[&args[..], &["-e", "select x from t"]].concat(),
        &env,
        None,
    );
    assert_eq!(read.trim(), "7");
    check_created(&world, "shop", &password);
    check_status_and_list(&world, "shop", "mariadb", port);
    check_deleted(&world, "shop");
}

#[test]
fn redis_lifecycle_with_acl_user() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "redis", "--size", "1", "cache"])
        .ok();
    let conn = world.reveal("cache");
    let password = conn["password"].as_str().unwrap().to_owned();
    let port = conn["port"].as_u64().unwrap();
    let port_s = port.to_string();
    let env = [("REDISCLI_AUTH", password.as_str())];
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port_s,
        "--user",
        "cache",
        "--no-auth-warning",
    ];
    assert_eq!(
        client(
            "redis-cli",
            &[&args[..], &["SET", "k", "v1"]].concat(),
            &env,
            None
        )
        .trim(),
        "OK"
    );
    assert_eq!(
        client(
            "redis-cli",
            &[&args[..], &["GET", "k"]].concat(),
            &env,
            None
        )
        .trim(),
        "v1"
    );
    // Without credentials the server refuses (the default user is off).
    let anon = client(
        "redis-cli",
        &["-h", "127.0.0.1", "-p", &port_s, "GET", "k"],
        &[],
        None,
    );
    assert!(anon.contains("NOAUTH"), "{anon}");
    check_created(&world, "cache", &password);
    check_status_and_list(&world, "cache", "redis", port);
    check_deleted(&world, "cache");
}

#[test]
fn databases_survive_dbctl_and_rerun_changes_nothing() {
    let world = World::new();
    world
        .dbctl(&["create", "--type", "redis", "--size", "1", "keep"])
        .ok();
    let head = world.head();
    let conn_before = std::fs::read_to_string(world.repo.join("connections/keep.yml")).unwrap();
    let again = world
        .dbctl(&["create", "--type", "redis", "--size", "1", "keep"])
        .ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(world.head(), head, "a no-op create committed");
    let conn_after = std::fs::read_to_string(world.repo.join("connections/keep.yml")).unwrap();
    assert_eq!(conn_before, conn_after);
    // Same answer from the spec's own values, given differently (alias, defaults).
    let json = world
        .dbctl(&["create", "-t", "redis", "--size", "1", "keep", "-o", "json"])
        .ok()
        .json();
    assert_eq!(json["changed"], false);
    world
        .dbctl(&["delete", "keep", "--yes", "--skip-final-backup"])
        .ok();
}

#[test]
fn deletion_protection_refuses_delete() {
    let world = World::new();
    world
        .dbctl(&[
            "create",
            "-t",
            "redis",
            "--size",
            "1",
            "precious",
            "--deletion-protection",
        ])
        .ok();
    let head = world.head();
    world
        .dbctl(&["delete", "precious", "--yes", "--skip-final-backup"])
        .fails_with("deletion_protection: true");
    assert_eq!(world.head(), head);
    assert_eq!(
        world
            .dbctl(&["status", "precious", "-o", "json"])
            .ok()
            .json()["status"]["state"],
        "up"
    );
    let spec = world.repo.join("etc/databases/precious.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("deletion_protection: true", "deletion_protection: false"),
    )
    .unwrap();
    world
        .dbctl(&["delete", "precious", "--yes", "--skip-final-backup"])
        .ok();
    assert!(world.server_pids().is_empty());
}

#[test]
fn wrong_identity_cannot_reveal() {
    let world = World::new();
    world
        .dbctl(&["create", "-t", "redis", "--size", "1", "secretive"])
        .ok();
    let other = world.dir.path().join("other-identity.txt");
    // A second identity, created through init of another repo.
    let other_repo = world.dir.path().join("other-repo");
    world
        .command(&[
            "init",
            "--repo",
            other_repo.to_str().unwrap(),
            "--identity",
            other.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let run = world.dbctl(&[
        "connection",
        "secretive",
        "--reveal",
        "--identity",
        other.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot decrypt"), "{}", run.stderr);
    // Without --reveal the password stays encrypted.
    let shown = world.dbctl(&["connection", "secretive"]).ok().stdout;
    assert!(shown.contains("BEGIN AGE ENCRYPTED FILE"), "{shown}");
    world
        .dbctl(&["delete", "secretive", "--yes", "--skip-final-backup"])
        .ok();
}
