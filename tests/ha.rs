//! PostgreSQL and MariaDB databases as pacemaker resource groups on a real two-node
//! corosync/pacemaker cluster in network namespaces (`tests/ha/cluster.sh`): dbctl runs
//! in the cluster's network, creates the group (filesystem on a loop-mounted image,
//! VIP, the engine), a client writes through the VIP, the active node goes to standby,
//! and every committed row is there on the other node.

use std::time::{Duration, Instant};

use crate::support::World;
use crate::support::cluster::{Cluster, dbctl};

fn psql(cluster: &Cluster, password: &str, sql: &str) -> Result<String, String> {
    let out = cluster.exec(
        &[
            "psql",
            "-h",
            "10.203.0.100",
            "-U",
            "my_ha_db",
            "-d",
            "my_ha_db",
            "-Atc",
            sql,
        ],
        &[("PGPASSWORD", password), ("PGCONNECT_TIMEOUT", "2")],
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Target `ha-test`: the cluster's nodes, VIP 10.203.0.100, images in its shared dir.
fn configure(world: &World, cluster: &Cluster) {
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    let target = format!(
        "targets:\n  ha-test:\n    platform: pacemaker\n    hosts: [10.203.0.11, 10.203.0.12]\n    user: root\n    identity: {}\n    known_hosts: {}\n    vip: 10.203.0.100\n    shared_dir: {}\n    state_dir: /srv/dbctl-{}\n",
        cluster.dir.join("client_key").display(),
        cluster.dir.join("known_hosts").display(),
        cluster.dir.join("shared").display(),
        cluster.id,
    );
    std::fs::write(&config, text.replacen("targets:\n", &target, 1)).unwrap();
    world.git(&["commit", "-qam", "test: pacemaker target"]);
}

#[test]
fn postgresql_group_fails_over_with_every_committed_row() {
    let world = World::new();
    let cluster = Cluster::up(&world.dir.path().join("cluster"), 'h');
    configure(&world, &cluster);

    dbctl(
        &world,
        &cluster,
        &[
            "create",
            "--type",
            "postgresql",
            "--target",
            "ha-test",
            "--size",
            "1",
            "my-ha-db",
        ],
    )
    .ok();
    let conn = dbctl(
        &world,
        &cluster,
        &["connection", "my-ha-db", "--reveal", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(conn["host"], "10.203.0.100");
    let password = conn["password"].as_str().unwrap().to_owned();
    let status = dbctl(&world, &cluster, &["status", "my-ha-db", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    let active = status["status"]["cluster"]["active_node"]
        .as_str()
        .unwrap()
        .to_owned();
    let (active_ip, standby) = if active == "node1" {
        ("10.203.0.11", "node2")
    } else {
        ("10.203.0.12", "node1")
    };

    // Committed writes through the VIP, in several transactions.
    psql(
        &cluster,
        &password,
        "create table orders (id int primary key, note text)",
    )
    .unwrap();
    for batch in 0..10 {
        let sql = format!(
            "insert into orders select g, 'batch {batch}' from generate_series({}, {}) g",
            batch * 100 + 1,
            batch * 100 + 100
        );
        psql(&cluster, &password, &sql).unwrap();
    }

    let started = Instant::now();
    let out = cluster.ssh(active_ip, &format!("pcs node standby {active}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = loop {
        match psql(&cluster, &password, "select count(*) from orders") {
            Ok(count) => break count,
            Err(err) => {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "no failover: {err}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let failover = started.elapsed();
    eprintln!(
        "failover: the VIP answered again {:.1} s after `pcs node standby {active}`",
        failover.as_secs_f64()
    );
    assert_eq!(count, "1000", "committed rows lost in failover");
    let status = dbctl(&world, &cluster, &["status", "my-ha-db", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up");
    assert_eq!(
        status["status"]["cluster"]["active_node"], standby,
        "{status}"
    );
    let human = dbctl(&world, &cluster, &["status", "my-ha-db"]).ok().stdout;
    assert!(
        human.contains(&format!("group db-my-ha-db on {standby}")),
        "{human}"
    );

    // Re-running create is a no-op; delete removes the group and the image.
    let again = dbctl(
        &world,
        &cluster,
        &[
            "create",
            "--type",
            "postgresql",
            "--target",
            "ha-test",
            "--size",
            "1",
            "my-ha-db",
        ],
    )
    .ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    dbctl(&world, &cluster, &["delete", "my-ha-db", "--yes"]).ok();
    let out = cluster.ssh("10.203.0.11", "pcs resource config db-my-ha-db");
    assert!(!out.status.success(), "group still configured");
    assert!(
        !cluster.dir.join("shared/my-ha-db.img").exists(),
        "image left behind"
    );
    let _ = cluster.ssh(active_ip, &format!("pcs node unstandby {active}"));
}

fn mariadb(cluster: &Cluster, password: &str, sql: &str) -> Result<String, String> {
    let out = cluster.exec(
        &[
            "mariadb",
            "--no-defaults",
            "--connect-timeout=2",
            "-h",
            "10.203.0.100",
            "-u",
            "ha_shop",
            "-D",
            "ha_shop",
            "-N",
            "-e",
            sql,
        ],
        &[("MYSQL_PWD", password)],
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn mariadb_group_fails_over_with_every_committed_row() {
    let world = World::new();
    let cluster = Cluster::up(&world.dir.path().join("cluster"), 'm');
    configure(&world, &cluster);
    dbctl(
        &world,
        &cluster,
        &[
            "create", "--type", "mariadb", "--target", "ha-test", "--size", "1", "ha-shop",
        ],
    )
    .ok();
    let conn = dbctl(
        &world,
        &cluster,
        &["connection", "ha-shop", "--reveal", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(conn["host"], "10.203.0.100");
    assert_eq!(conn["port"], 3306);
    let password = conn["password"].as_str().unwrap().to_owned();
    let status = dbctl(&world, &cluster, &["status", "ha-shop", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    let active = status["status"]["cluster"]["active_node"]
        .as_str()
        .unwrap()
        .to_owned();
    let (active_ip, standby) = if active == "node1" {
        ("10.203.0.11", "node2")
    } else {
        ("10.203.0.12", "node1")
    };
    mariadb(
        &cluster,
        &password,
        "create table orders (id int primary key) engine=InnoDB",
    )
    .unwrap();
    for batch in 0..5 {
        let sql = format!(
            "insert into orders select seq from seq_{}_to_{}",
            batch * 100 + 1,
            batch * 100 + 100
        );
        mariadb(&cluster, &password, &sql).unwrap();
    }

    let started = Instant::now();
    let out = cluster.ssh(active_ip, &format!("pcs node standby {active}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = loop {
        match mariadb(&cluster, &password, "select count(*) from orders") {
            Ok(count) => break count,
            Err(err) => {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "no failover: {err}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    eprintln!(
        "mariadb failover: the VIP answered again {:.1} s after `pcs node standby {active}`",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(count, "500", "committed rows lost in failover");
    let status = dbctl(&world, &cluster, &["status", "ha-shop", "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        status["status"]["cluster"]["active_node"], standby,
        "{status}"
    );

    dbctl(&world, &cluster, &["delete", "ha-shop", "--yes"]).ok();
    let out = cluster.ssh("10.203.0.11", "pcs resource config db-ha-shop");
    assert!(!out.status.success(), "group still configured");
    assert!(
        !cluster.dir.join("shared/ha-shop.img").exists(),
        "image left behind"
    );
    let _ = cluster.ssh(active_ip, &format!("pcs node unstandby {active}"));
}
