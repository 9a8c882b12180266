//! PostgreSQL, MariaDB and Redis databases as pacemaker resource groups on a real two-node
//! corosync/pacemaker cluster in network namespaces (`tests/ha/cluster.sh`): dbctl runs
//! in the cluster's network, creates the group (filesystem on a loop-mounted image,
//! VIP, the engine), a client writes through the VIP, the active node goes to standby,
//! and every committed row is there on the other node.

use std::time::Instant;

use crate::support::cluster::{Client, Cluster, dbctl, placement, reveal_in};
use crate::support::{ScheduleUnits, World};

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
    let store = format!(
        "backup_stores:\n  here:\n    kind: dir\n    path: {}\n",
        world.dir.path().join("backups").display()
    );
    // PostgreSQL archives its WAL there from the nodes (which share this machine's
    // filesystem), as the server's user.
    let backups = world.dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let owned = std::process::Command::new("chown")
        .arg("postgres:postgres")
        .arg(&backups)
        .status()
        .unwrap();
    assert!(owned.success());
    let target = target + "    backup_store: here\n";
    std::fs::write(&config, text.replacen("targets:\n", &target, 1) + &store).unwrap();
    world.git(&["commit", "-qam", "test: pacemaker target, a backup store"]);
}

/// What a scenario runs through the client: `setup` once, `insert(first, last)` ten
/// times (100 rows each), then `count`, which must answer 1000.
struct Workload {
    setup: &'static str,
    insert: fn(u32, u32) -> String,
    count: &'static str,
}

/// One engine's scenario: create on the cluster, 1,000 rows committed through the VIP
/// in ten transactions, standby of the active node, every row there on the other node,
/// re-running create changes nothing, delete removes group and image.
fn fails_over_with_every_committed_row(tag: char, engine: &str, client: Client, work: &Workload) {
    let world = World::new();
    let cluster = Cluster::up(&world.dir.path().join("cluster"), tag);
    configure(&world, &cluster);
    let name = format!("ha-{engine}");
    let user = name.replace('-', "_");
    let create = [
        "create", "--type", engine, "--target", "ha-test", "--size", "1", &name,
    ];
    dbctl(&world, &cluster, &create).ok();
    let conn = reveal_in(&world, &cluster.bridge(), &name);
    assert_eq!(conn["host"], "10.203.0.100");
    let password = conn["password"].as_str().unwrap().to_owned();
    let status = dbctl(&world, &cluster, &["status", &name, "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    let (active, active_ip, standby) = placement(&status);

    // The target's VIP is this database's: a second one (or a restore drill's scratch
    // database) on the target is refused before anything changes.
    let before = world.snapshot();
    let second = [
        "create",
        "--type",
        engine,
        "--target",
        "ha-test",
        "--size",
        "1",
        "ha-second",
    ];
    dbctl(&world, &cluster, &second).fails_with(&format!(
        "its VIP 10.203.0.100 belongs to resource group `db-{name}`"
    ));
    assert_eq!(world.snapshot(), before);
    let out = cluster.ssh(active_ip, "pcs resource config db-ha-second");
    assert!(
        !out.status.success(),
        "the second database's group was made"
    );

    let sql = |sql: &str| client.query(&cluster, &user, &password, sql);
    sql(work.setup).unwrap();
    for batch in 0..10 {
        let first = batch * 100 + 1;
        sql(&(work.insert)(first, first + 99)).unwrap();
    }

    let started = Instant::now();
    let out = cluster.ssh(active_ip, &format!("pcs node standby {active} --wait=120"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = client.query_until_up(&cluster, &user, &password, work.count);
    eprintln!(
        "{engine} failover: the group ran on the other node and answered {:.1} s after `pcs node standby {active}`",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(count, "1000", "committed rows lost in failover");
    let status = dbctl(&world, &cluster, &["status", &name, "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up");
    assert_eq!(
        status["status"]["details"]["cluster"]["active_node"], standby,
        "{status}"
    );
    let human = dbctl(&world, &cluster, &["status", &name]).ok().stdout;
    assert!(
        human.contains(&format!("group db-{name} on {standby}")),
        "{human}"
    );

    if engine == "postgresql" {
        changes_in_the_running_group(&world, &cluster, &name, client, (&user, &password), work);
        let _ = cluster.ssh(active_ip, &format!("pcs node unstandby {active}"));
    }

    backs_up_and_restores_in_the_group(&world, &cluster, &name, client, (&user, &password), work);
    if engine == "redis" {
        backs_up_on_a_schedule_in_the_group(&world, &cluster, &name);
    }
    if engine == "mariadb" {
        backs_up_incrementally_in_the_group(
            &world,
            &cluster,
            &name,
            client,
            (&user, &password),
            work,
        );
    }
    if engine == "postgresql" {
        let dir = format!("/srv/dbctl-{}", cluster.id);
        restores_to_a_time_in_the_group(&world, &cluster, (&name, &user, &password), (&dir, &dir));
    }
    rotates_credentials_in_the_group(&world, &cluster, &name, client, (&user, &password), work);

    // Re-running create with what the spec says changes nothing.
    let mut again_args = create.to_vec();
    if engine == "postgresql" {
        again_args[6] = "2";
        again_args.extend(["--param", "max_connections=150", "--param", "work_mem=64MB"]);
    }
    let again = dbctl(&world, &cluster, &again_args).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    // Delete takes a final backup from the group first.
    let deleted = dbctl(&world, &cluster, &["delete", &name, "--yes", "-o", "json"])
        .ok()
        .json();
    assert_eq!(deleted["final_backup"]["store"], "here", "{deleted}");
    let listed = dbctl(
        &world,
        &cluster,
        &["backups", &name, "--store", "here", "-o", "json"],
    )
    .ok()
    .json();
    // The good backup, the point-in-time scenario's (PostgreSQL), the scheduled
    // one's (Redis) or the incremental chain (MariaDB: a full and two incremental
    // ones), the final one.
    let kept = if engine == "mariadb" { 5 } else { 3 };
    assert_eq!(
        listed["backups"].as_array().unwrap().len(),
        kept,
        "{listed}"
    );
    let out = cluster.ssh("10.203.0.11", &format!("pcs resource config db-{name}"));
    assert!(!out.status.success(), "group still configured");
    assert!(
        !cluster.dir.join(format!("shared/{name}.img")).exists(),
        "image left behind"
    );
    let _ = cluster.ssh(active_ip, &format!("pcs node unstandby {active}"));
    if engine == "postgresql" {
        // On the same cluster (the group above is gone, so the VIP is free).
        upgrades_a_minor_in_the_group(&world, &cluster);
    }
}

/// A minor upgrade of a running group: the catalog points PostgreSQL 17 at a newer
/// build (as a package upgrade does to the distro's path); `plan` shows `~ version`
/// (restart), `apply` gives the engine member the new binaries and restarts it, the
/// rows are kept, `plan` is empty after, and the other node runs the new build too.
fn upgrades_a_minor_in_the_group(world: &World, cluster: &Cluster) {
    world.postgresql_17_in("/opt/dbctl-test/postgresql/17.6/bin");
    let name = "ha-minor";
    dbctl(
        world,
        cluster,
        &[
            "create",
            "--type",
            "postgresql",
            "--version",
            "17",
            "--target",
            "ha-test",
            "--size",
            "1",
            name,
        ],
    )
    .ok();
    let conn = reveal_in(world, &cluster.bridge(), name);
    let password = conn["password"].as_str().unwrap().to_owned();
    let sql = |q: &str| Client::Psql.query_until_up(cluster, "ha_minor", &password, q);
    assert_eq!(sql("show server_version"), "17.6");
    sql("create table kept as select 7 as n");
    world.postgresql_17_in("/opt/dbctl-test/postgresql/17/bin");
    let plan = dbctl(world, cluster, &["plan", name, "-o", "json"])
        .ok()
        .json();
    // The binaries' new path also changes the group's rendered pcs script.
    let changes = &plan["databases"][0]["changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(2), "{plan}");
    assert_eq!(changes[0]["attribute"], "version", "{plan}");
    assert_eq!(changes[0]["new"], "17.7", "{plan}");
    assert_eq!(changes[0]["disruption"], "restart", "{plan}");
    assert_eq!(
        changes[1]["attribute"], "artifact.group/db-ha-minor",
        "{plan}"
    );
    dbctl(world, cluster, &["apply", name, "--now"]).ok();
    assert_eq!(sql("show server_version"), "17.7");
    assert_eq!(sql("select n from kept"), "7");
    let plan = dbctl(world, cluster, &["plan", name, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
    // The other node runs the same new binaries after a failover.
    let status = dbctl(world, cluster, &["status", name, "-o", "json"])
        .ok()
        .json();
    let (active, active_ip, standby) = placement(&status);
    let out = cluster.ssh(active_ip, &format!("pcs node standby {active} --wait=120"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sql("show server_version"), "17.7");
    assert_eq!(sql("select n from kept"), "7");
    let status = dbctl(world, cluster, &["status", name, "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        status["status"]["details"]["cluster"]["active_node"],
        standby
    );
    let _ = cluster.ssh(active_ip, &format!("pcs node unstandby {active}"));
    dbctl(
        world,
        cluster,
        &["delete", name, "--yes", "--skip-final-backup"],
    )
    .ok();
}

/// A parameter change on the running group: a reload-class and a restart-class one;
/// pacemaker restarts the engine member; the values hold after a failover back.
fn changes_in_the_running_group(
    world: &World,
    cluster: &Cluster,
    name: &str,
    client: Client,
    (user, password): (&str, &str),
    work: &Workload,
) {
    let spec = world.repo.join(format!("etc/databases/{name}.yml"));
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace(
            "parameters: {}",
            "parameters:\n  max_connections: \"150\"\n  work_mem: \"64MB\"",
        ),
    )
    .unwrap();
    world.git(&["commit", "-qam", "ha: more connections"]);
    let plan = dbctl(world, cluster, &["plan", name, "-o", "json"])
        .ok()
        .json();
    let changes = plan["databases"][0]["changes"].as_array().unwrap().clone();
    let disruption = |attr: &str| {
        changes
            .iter()
            .find(|c| c["attribute"] == attr)
            .map(|c| c["disruption"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        disruption("parameters.work_mem").as_deref(),
        Some("reload"),
        "{plan}"
    );
    assert_eq!(
        disruption("parameters.max_connections").as_deref(),
        Some("restart"),
        "{plan}"
    );
    dbctl(world, cluster, &["apply", name, "--now"]).ok();
    let sql = |q: &str| client.query_until_up(cluster, user, password, q);
    assert_eq!(sql("show max_connections"), "150");
    assert_eq!(sql("show work_mem"), "64MB");
    // The repo overrides a template the group's node writes: planned as that
    // artifact (reload), written on the node running the group, nothing left planned.
    let overrides = world.repo.join("templates/pacemaker/postgresql");
    std::fs::create_dir_all(&overrides).unwrap();
    std::fs::write(
        overrides.join("pg_hba.conf.j2"),
        include_str!("../templates/pacemaker/postgresql/pg_hba.conf.j2").to_owned()
            + "\n# reviewed by the database team\n",
    )
    .unwrap();
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "ha: our pg_hba"]);
    let plan = dbctl(world, cluster, &["plan", name, "-o", "json"])
        .ok()
        .json();
    let changes = &plan["databases"][0]["changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(1), "{plan}");
    assert_eq!(
        changes[0]["attribute"], "artifact.pacemaker/postgresql/pg_hba.conf.j2",
        "{plan}"
    );
    assert_eq!(changes[0]["disruption"], "reload", "{plan}");
    dbctl(world, cluster, &["apply", name]).ok();
    let status = dbctl(world, cluster, &["status", name, "-o", "json"])
        .ok()
        .json();
    let (_, ip, _) = placement(&status);
    let hba = cluster.ssh(
        ip,
        &format!("cat /srv/dbctl-{}/{name}/pgdata/pg_hba.conf", cluster.id),
    );
    assert!(
        String::from_utf8_lossy(&hba.stdout).contains("# reviewed by the database team"),
        "{}",
        String::from_utf8_lossy(&hba.stderr)
    );
    let plan = dbctl(world, cluster, &["plan", name, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
    // Grow the storage: the image and the mounted filesystem, data kept (offline
    // here: this machine may not resize a mounted ext4, so the group's filesystem
    // stops while it grows).
    // The size of the group's filesystem as the node running it has it mounted
    // (`None`: not mounted there).
    let fs_bytes = || -> Option<u64> {
        let status = dbctl(world, cluster, &["status", name, "-o", "json"])
            .ok()
            .json();
        let (_, ip, _) = placement(&status);
        let out = cluster.ssh(
            ip,
            &format!(
                "findmnt -n -b -o SIZE --mountpoint /srv/dbctl-{}/{name}",
                cluster.id
            ),
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    assert!(fs_bytes().is_some_and(|b| b < 1 << 30), "{:?}", fs_bytes());
    let plan = dbctl(
        world,
        cluster,
        &["resize", name, "--size", "2", "--dry-run"],
    )
    .ok();
    assert!(plan.stdout.contains("size_gb"), "{}", plan.stdout);
    dbctl(world, cluster, &["resize", name, "--size", "2", "--now"]).ok();
    let image = std::fs::metadata(cluster.dir.join(format!("shared/{name}.img"))).unwrap();
    assert_eq!(image.len(), 2 << 30);
    assert!(
        fs_bytes().is_some_and(|b| b > 3 << 29),
        "the filesystem did not grow: {:?}",
        fs_bytes()
    );
    assert_eq!(sql(work.count), "1000");
    let status = dbctl(world, cluster, &["status", name, "-o", "json"])
        .ok()
        .json();
    let (active, active_ip, _) = placement(&status);
    // Fail over back: the configuration and the grown filesystem live with the data.
    let other = if active == "node1" { "node2" } else { "node1" };
    let _ = cluster.ssh(active_ip, &format!("pcs node unstandby {other} --wait=120"));
    let out = cluster.ssh(active_ip, &format!("pcs node standby {active} --wait=120"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sql("show max_connections"), "150");
    assert_eq!(sql(work.count), "1000");
    let status = dbctl(world, cluster, &["status", name, "-o", "json"])
        .ok()
        .json();
    let (now, _, _) = placement(&status);
    assert_ne!(now, active, "{status}");
    assert!(
        fs_bytes().is_some_and(|b| b > 3 << 29),
        "the other node mounted the old size: {:?}",
        fs_bytes()
    );
    let _ = cluster.ssh(active_ip, &format!("pcs node unstandby {active}"));
    let plan = dbctl(world, cluster, &["plan", name, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
}

/// The admin channel, backup and restore on the node running the group (after the
/// failover: not the first node): `dbctl sql` counts the rows, a backup to the
/// target's `dir` store, rows written after it, a damaged backup refused with every
/// row kept, `restore --yes` in place, and through the VIP exactly the backed-up rows
/// are there; the database runs, nothing is planned.
fn backs_up_and_restores_in_the_group(
    world: &World,
    cluster: &Cluster,
    name: &str,
    client: Client,
    (user, password): (&str, &str),
    work: &Workload,
) {
    let counted = dbctl(world, cluster, &["sql", name, "-c", work.count]).ok();
    assert!(
        counted.stdout.lines().any(|l| l.trim() == "1000"),
        "{}",
        counted.stdout
    );
    let report = dbctl(world, cluster, &["backup", name, "-o", "json"])
        .ok()
        .json();
    let id = report["manifest"]["id"].as_str().unwrap().to_owned();
    assert!(
        report["manifest"]["raw_bytes"].as_u64().unwrap() > 0,
        "{report}"
    );
    // A drill's scratch database would share the VIP: refused, naming `--target`.
    dbctl(world, cluster, &["backup", "verify", name]).fails_with("--target");
    let out = cluster.ssh(
        "10.203.0.11",
        &format!("pcs resource config db-{name}-drill"),
    );
    assert!(!out.status.success(), "the drill's group was made");
    // On another target (`local`: this machine, where dbctl runs) the drill restores
    // the group's backup into a scratch database, finds its 1,000 rows, records the
    // result in the backup's manifest and removes the scratch database.
    let drill = dbctl(
        world,
        cluster,
        &[
            "backup", "verify", name, "--target", "local", "--query", work.count, "--expect",
            "1000", "-o", "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(drill["drill"]["ok"], true, "{drill}");
    assert_eq!(drill["drill"]["target"], "local", "{drill}");
    let listed = dbctl(world, cluster, &["backups", name, "-o", "json"])
        .ok()
        .json();
    let row = listed["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {listed}"));
    assert_eq!(
        row["last_drill"]["ok"], true,
        "the drill is not in the manifest: {listed}"
    );
    assert!(
        dbctl(world, cluster, &["list", "-o", "json"])
            .ok()
            .stdout
            .find(&format!("{name}-drill"))
            .is_none(),
        "the scratch database is left"
    );
    let sql = |q: &str| client.query_until_up(cluster, user, password, q);
    sql(&(work.insert)(1001, 1100));
    assert_eq!(sql(work.count), "1100");
    // A damaged backup (one byte of its object flipped) is refused at the end of its
    // stream, after the group's engine was stopped for it: the data it would have
    // replaced runs again, with every row.
    let damaged = dbctl(world, cluster, &["backup", name, "-o", "json"])
        .ok()
        .json()["manifest"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = world.dir.path().join(format!("backups/{name}/{damaged}"));
    let object = dir.join("data.zst.age");
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&object, &bytes).unwrap();
    dbctl(
        world,
        cluster,
        &["restore", name, "--backup", &damaged, "--yes"],
    )
    .fails_with("failed; the database runs on its data as before");
    assert_eq!(sql(work.count), "1100", "a refused restore lost rows");
    std::fs::remove_dir_all(&dir).unwrap();
    let restored = dbctl(world, cluster, &["restore", name, "--yes", "-o", "json"])
        .ok()
        .json();
    assert_eq!(restored["backup"], id.as_str(), "{restored}");
    assert_eq!(
        sql(work.count),
        "1000",
        "the restore did not bring back the backup's rows: {restored}"
    );
    let status = dbctl(world, cluster, &["status", name, "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    let plan = dbctl(world, cluster, &["plan", name, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
}

/// Incremental backups of a group (MariaDB: mariadb-backup's `--incremental-lsn` on
/// the node running it): a full backup, rows written, two incremental ones whose
/// manifests chain to it; `restore` of the latest brings back every row through the
/// chain, of the first incremental one the rows it saw, of the full one the rows
/// before (so the scenario goes on with its 1,000 rows).
fn backs_up_incrementally_in_the_group(
    world: &World,
    cluster: &Cluster,
    name: &str,
    client: Client,
    (user, password): (&str, &str),
    work: &Workload,
) {
    let sql = |q: &str| client.query_until_up(cluster, user, password, q);
    assert_eq!(sql(work.count), "1000");
    let take = |kind: &str| {
        dbctl(
            world,
            cluster,
            &["backup", name, "--type", kind, "-o", "json"],
        )
        .ok()
        .json()["manifest"]
            .clone()
    };
    let full = take("full");
    sql(&(work.insert)(1001, 1100));
    let first = take("incr");
    sql(&(work.insert)(1101, 1200));
    let second = take("incr");
    assert_eq!(first["kind"], "incr", "{first}");
    assert_eq!(first["parent"], full["id"], "{first}");
    assert_eq!(second["parent"], first["id"], "{second}");
    assert!(
        second["raw_bytes"].as_u64().unwrap() * 2 < full["raw_bytes"].as_u64().unwrap(),
        "an incremental backup is not smaller than the full one: {second} vs {full}"
    );
    dbctl(world, cluster, &["restore", name, "--yes"]).ok();
    assert_eq!(sql(work.count), "1200", "the chain's restore lost rows");
    for (manifest, rows) in [(&first, "1100"), (&full, "1000")] {
        let id = manifest["id"].as_str().unwrap();
        dbctl(world, cluster, &["restore", name, "--backup", id, "--yes"]).ok();
        assert_eq!(sql(work.count), rows, "restore of {id}");
    }
    let plan = dbctl(world, cluster, &["plan", name, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
}

/// Scheduled backups of a group: `backup.schedule` is planned and applied, a timer
/// on each node runs dbctl's copy there in a repo on the group's filesystem, so only
/// the node running the group (where it is mounted) backs up. What the timer starts,
/// run on that node with only the unit's environment, adds a backup to the target's
/// store; on the other node it finds no repo. Without a schedule, units and repo go.
fn backs_up_on_a_schedule_in_the_group(world: &World, cluster: &Cluster, name: &str) {
    let spec = world.repo.join(format!("etc/databases/{name}.yml"));
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(!text.contains("\nbackup:"), "{text}");
    std::fs::write(
        &spec,
        format!("{text}backup:\n  schedule: daily 01:30 UTC\n"),
    )
    .unwrap();
    world.git(&["commit", "-qam", "ha: nightly backups"]);
    let plan = dbctl(world, cluster, &["plan", name, "-o", "json"])
        .ok()
        .json();
    let changes = plan["databases"][0]["changes"].as_array().unwrap().clone();
    assert!(
        changes.iter().any(|c| c["attribute"] == "backup.schedule"),
        "{plan}"
    );
    dbctl(world, cluster, &["apply", name]).ok();
    let plan = dbctl(world, cluster, &["plan", name, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);

    let units = std::path::PathBuf::from(format!("/srv/dbctl-{}/.dbctl/systemd", cluster.id));
    let unit = ScheduleUnits::read(&units, name);
    assert_eq!(
        ScheduleUnits::value(&unit.timer, "OnCalendar"),
        "*-*-* 01:30:00 UTC"
    );
    let repo = format!("/srv/dbctl-{}/{name}/agent", cluster.id);
    assert_eq!(
        ScheduleUnits::value(&unit.service, "ConditionPathExists").trim_matches('"'),
        format!("{repo}/etc/dbctl.yml")
    );
    let exec = ScheduleUnits::value(&unit.service, "ExecStart");
    assert!(
        exec.contains(&format!("/srv/dbctl-{}/.dbctl/bin/dbctl-", cluster.id))
            && exec.contains(&repo),
        "the node runs dbctl's copy in the database's repo on the group's filesystem: {exec}"
    );
    let status = dbctl(world, cluster, &["status", name, "-o", "json"])
        .ok()
        .json();
    let (_, active_ip, _) = placement(&status);
    let standby_ip = if active_ip == "10.203.0.11" {
        "10.203.0.12"
    } else {
        "10.203.0.11"
    };
    // The `dir` store has no secret to copy; the repo is root's alone.
    let out = cluster.ssh(
        active_ip,
        &format!("stat -c %a {repo} {repo}/etc/dbctl.yml && test ! -e {repo}.secret"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["700", "600"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let before = dbctl(world, cluster, &["backups", name, "-o", "json"])
        .ok()
        .json()["backups"]
        .as_array()
        .unwrap()
        .len();
    let timer_run = unit.timer_command();
    // The other node has the timer but not the group's filesystem: its condition
    // fails there (systemd skips the run), and the command finds no repo.
    let out = cluster.ssh(standby_ip, &format!("test -e {repo}/etc/dbctl.yml"));
    assert!(
        !out.status.success(),
        "the repo is visible on the standby node"
    );
    let out = cluster.ssh(standby_ip, &timer_run);
    assert!(!out.status.success(), "a backup ran on the standby node");
    let out = cluster.ssh(active_ip, &timer_run);
    assert!(
        out.status.success(),
        "{timer_run}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = dbctl(world, cluster, &["backups", name, "-o", "json"])
        .ok()
        .json();
    let backups = after["backups"].as_array().unwrap();
    assert_eq!(backups.len(), before + 1, "{after}");
    assert_eq!(backups.last().unwrap()["target"], "ha-test", "{after}");

    std::fs::write(&spec, &text).unwrap();
    world.git(&["commit", "-qam", "ha: no schedule"]);
    dbctl(world, cluster, &["apply", name]).ok();
    let left: Vec<_> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(&format!("-{name}.")))
        .collect();
    assert!(left.is_empty(), "units left: {left:?}");
    let out = cluster.ssh(active_ip, &format!("test -e {repo}"));
    assert!(!out.status.success(), "the schedule's repo is left");
    let plan = dbctl(world, cluster, &["plan", name, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
}

/// Point-in-time recovery on the group: its server archives WAL through the dbctl
/// copy on the node (under `state_dir`'s `.dbctl/bin`) into the database's default
/// store; rows committed at t1 and t2, `restore --to-time` between them keeps exactly
/// the t1 rows, and the group runs on, taking writes. `layout_dir` holds the
/// instance's directory (its server log, shown on failure). Shared with the openstack
/// test (a Keystone store).
pub(crate) fn restores_to_a_time_in_the_group(
    world: &World,
    cluster: &Cluster,
    (name, user, password): (&str, &str, &str),
    (layout_dir, state_dir): (&str, &str),
) {
    let sql = |q: &str| Client::Psql.query_until_up(cluster, user, password, q);
    let admin = |q: &str| {
        dbctl(world, cluster, &["sql", name, "--admin", "-c", q])
            .ok()
            .stdout
    };
    let conf = admin("show archive_command");
    assert!(
        conf.contains(&format!("{state_dir}/.dbctl/bin/dbctl-")) && conf.contains("wal-push.json"),
        "the group's server does not archive through dbctl: {conf}"
    );
    sql("create table ledger (id int, at timestamptz default clock_timestamp())");
    let base = dbctl(world, cluster, &["backup", name, "-o", "json"])
        .ok()
        .json()["manifest"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    sql("insert into ledger select generate_series(1, 10)");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let target =
        sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS')");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    sql("insert into ledger select generate_series(11, 20)");
    crate::support::switch_wal_and_wait_archived(&admin);
    let restored = dbctl(
        world,
        cluster,
        &[
            "restore",
            name,
            "--to-time",
            &format!("{target} UTC"),
            "--yes",
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(restored["backup"], base.as_str(), "{restored}");
    let rows = sql("select count(*), max(id) from ledger");
    if rows != "10|10" {
        let status = dbctl(world, cluster, &["status", name, "-o", "json"])
            .ok()
            .json();
        let (_, ip, _) = placement(&status);
        let log = cluster.ssh(
            ip,
            &format!("tail -60 {layout_dir}/{name}/log/postgresql.log"),
        );
        panic!(
            "restored to {target} UTC: {rows} (want 10|10); rows: {}\n{restored}\nserver log:\n{}",
            sql("select id, at from ledger order by id"),
            String::from_utf8_lossy(&log.stdout)
        );
    }
    sql("insert into ledger values (99)");
    sql("drop table ledger");
}

/// Two rotations on the group: the first gives `<user>_r` a password and the
/// connection file names it while the old file's login keeps working; the second
/// (`--grace 1`) gives the owner a new password and retires `<user>_r`, so only the
/// newest file's login works.
fn rotates_credentials_in_the_group(
    world: &World,
    cluster: &Cluster,
    name: &str,
    client: Client,
    (user, password): (&str, &str),
    work: &Workload,
) {
    // Either login works in the database named like the owner.
    let count = |conn: &serde_json::Value| {
        client.query_as(
            cluster,
            (conn["username"].as_str().unwrap(), user),
            conn["password"].as_str().unwrap(),
            work.count,
        )
    };
    dbctl(world, cluster, &["rotate-credentials", name]).ok();
    let rotated = reveal_in(world, &cluster.bridge(), name);
    assert_eq!(rotated["username"], format!("{user}_r"), "{rotated}");
    assert_eq!(count(&rotated).as_deref(), Ok("1000"));
    assert_eq!(
        client.query(cluster, user, password, work.count).as_deref(),
        Ok("1000"),
        "the previous connection file's login stopped working"
    );
    dbctl(
        world,
        cluster,
        &["rotate-credentials", name, "--grace", "1"],
    )
    .ok();
    let newest = reveal_in(world, &cluster.bridge(), name);
    assert_eq!(newest["username"], user, "{newest}");
    assert_eq!(count(&newest).as_deref(), Ok("1000"));
    assert!(
        count(&rotated).is_err(),
        "the retired login `{user}_r` still works"
    );
    assert!(
        client.query(cluster, user, password, work.count).is_err(),
        "the owner's replaced password still works"
    );
}

#[test]
fn postgresql_group_fails_over_with_every_committed_row() {
    fails_over_with_every_committed_row(
        'h',
        "postgresql",
        Client::Psql,
        &Workload {
            setup: "create table orders (id int primary key, note text)",
            insert: |a, b| {
                format!("insert into orders select g, 'batch' from generate_series({a}, {b}) g")
            },
            count: "select count(*) from orders",
        },
    );
}

#[test]
fn mariadb_group_fails_over_with_every_committed_row() {
    fails_over_with_every_committed_row(
        'm',
        "mariadb",
        Client::Mariadb,
        &Workload {
            setup: "create table orders (id int primary key, note text)",
            insert: |a, b| format!("insert into orders select seq, 'batch' from seq_{a}_to_{b}"),
            count: "select count(*) from orders",
        },
    );
}

#[test]
fn redis_group_fails_over_with_every_committed_write() {
    // Each RPUSH is one acknowledged write; Redis's AOF (appendonly yes) is flushed
    // when the agent stops the server on standby.
    fails_over_with_every_committed_row(
        'r',
        "redis",
        Client::Redis,
        &Workload {
            setup: "DEL orders",
            insert: |a, b| {
                let values: Vec<String> = (a..=b).map(|i| i.to_string()).collect();
                format!("RPUSH orders {}", values.join(" "))
            },
            count: "LLEN orders",
        },
    );
}
