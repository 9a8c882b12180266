//! The `openstack` platform against a live Keystone + Heat (Debian's packages,
//! `tests/openstack/cloud.sh`) and a real two-node corosync/pacemaker cluster in network
//! namespaces (`tests/ha/cluster.sh`).
//!
//! Heat here runs Heat-native resources only, so the test's Heat environment
//! (`tests/openstack/heat-env.yaml`, a target's `heat_environment`) maps Nova, Neutron,
//! Cinder and Swift types onto provider templates and `OS::Heat::None`; its ports take
//! the namespace hosts' addresses, so the nodes Heat reports are the cluster's. There is
//! no Cinder or Neutron here either: the GitOps repo overrides the storage and network
//! members of the resource group (a shared disk image instead of a Cinder volume + LVM,
//! no floating IP) — the override mechanism an operator would use for another storage
//! design. Everything else is dbctl's built-in openstack playbook and templates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::support::cluster::{Client, Cluster, dbctl, dbctl_with, placement, reveal_in};
use crate::support::nomad::NomadDouble;
use crate::support::{ScheduleUnits, World};

/// Keystone and Heat in the cluster's bridge namespace, stopped by PID on drop.
struct Cloud {
    dir: PathBuf,
    namespace: String,
}

impl Cloud {
    fn up(dir: &Path, namespace: &str) -> Self {
        let cloud = Self {
            dir: dir.to_path_buf(),
            namespace: namespace.to_owned(),
        };
        let out = Command::new("ip")
            .args(["netns", "exec", namespace, "bash"])
            .arg(script())
            .args(["up", dir.to_str().unwrap(), "10.203.0.1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "Keystone + Heat did not come up:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cloud
    }

    fn openrc(&self) -> PathBuf {
        self.dir.join("openrc.sh")
    }

    /// The `OS_*` variables of the openrc file.
    fn env(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.openrc())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn password(&self) -> String {
        self.env()
            .into_iter()
            .find(|(k, _)| k == "OS_PASSWORD")
            .unwrap()
            .1
    }

    /// `openstack stack list` with the real client: name → status.
    fn stacks(&self) -> Vec<(String, String)> {
        self.list()
            .into_iter()
            .map(|s| {
                (
                    s["Stack Name"].as_str().unwrap().to_owned(),
                    s["Stack Status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Stacks updated since they were created.
    fn updated(&self) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|s| !s["Updated Time"].is_null())
            .map(|s| s["Stack Name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn list(&self) -> Vec<Value> {
        let mut stacks = self.openstack(&["stack", "list"]);
        stacks.sort_by_key(|s| s["Stack Name"].as_str().unwrap_or_default().to_owned());
        stacks
    }

    /// `openstack object list CONTAINER` with the real client: the objects' names.
    fn objects(&self, container: &str) -> Vec<String> {
        self.openstack(&["object", "list", container])
            .into_iter()
            .map(|o| o["Name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The real `openstack` client in the cloud's namespace, as the openrc's user:
    /// its JSON list.
    fn openstack(&self, args: &[&str]) -> Vec<Value> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace])
            .args(["/usr/bin/python3", "/usr/bin/openstack"])
            .args(args)
            .args(["-f", "json"]);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array().unwrap().clone()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", self.dir.to_str().unwrap()])
            .status();
    }
}

/// The test's stand-in for the Cinder volume Heat would create for database `name`:
/// an ext4 image on the nodes' shared storage.
fn disk_image(cluster: &Cluster, name: &str) -> PathBuf {
    let image = cluster.dir.join(format!("shared/{name}.img"));
    let made = Command::new("sh")
        .args([
            "-c",
            "truncate -s 1G \"$1\" && mkfs.ext4 -q -F \"$1\"",
            "sh",
        ])
        .arg(&image)
        .status()
        .unwrap();
    assert!(made.success());
    image
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openstack/cloud.sh")
}

/// The GitOps repo: an openstack target, its Heat environment, and the storage and
/// network overrides this machine needs (see the module's doc).
fn configure(world: &World, cluster: &Cluster, cloud: &Cloud) {
    let files = world.repo.join("files/heat");
    std::fs::create_dir_all(&files).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openstack");
    for name in ["port.yaml", "server.yaml"] {
        std::fs::copy(fixtures.join(name), files.join(name)).unwrap();
    }
    let env = std::fs::read_to_string(fixtures.join("heat-env.yaml")).unwrap()
        + "parameter_defaults:\n  node_addresses:\n    db-os-db-node-1: 10.203.0.11\n    db-os-db-node-2: 10.203.0.12\n    db-os-db-vip: 10.203.0.100\n    db-os-jobs-node-1: 10.203.0.11\n    db-os-jobs-node-2: 10.203.0.12\n    db-os-jobs-vip: 10.203.0.100\n  server_addresses:\n    db-os-db-node-1: 10.203.0.11\n    db-os-db-node-2: 10.203.0.12\n    db-os-jobs-node-1: 10.203.0.11\n    db-os-jobs-node-2: 10.203.0.12\n    os-test-masters-1: 10.203.0.51\n    os-test-masters-2: 10.203.0.52\n    os-test-masters-3: 10.203.0.53\n";
    std::fs::write(files.join("env.yaml"), env).unwrap();
    std::fs::copy(cloud.openrc(), world.repo.join("files/openrc.sh")).unwrap();
    std::fs::write(
        world.repo.join("files/bad-openrc.sh"),
        std::fs::read_to_string(cloud.openrc())
            .unwrap()
            .replace(&cloud.password(), "not-the-password"),
    )
    .unwrap();
    let overrides = world.repo.join("templates/openstack/pacemaker");
    std::fs::create_dir_all(&overrides).unwrap();
    std::fs::write(
        overrides.join("storage.j2"),
        format!(
            "{{#- This cloud has no Cinder: data lives on a disk image on shared storage. -#}}\n\
             {{%- set storage = [\n  {{\"id\": g ~ \"-fs-data\", \"class\": \"ocf\", \"provider\": \"heartbeat\", \"type\": \"Filesystem\",\n   \"params\": {{\"device\": \"{}/\" ~ spec.name ~ \".img\", \"directory\": names.mountpoint ~ \"/data\", \"fstype\": \"ext4\", \"options\": \"loop\"}}, \"interval\": \"20s\"}},\n] -%}}\n",
            cluster.dir.join("shared").display()
        ),
    )
    .unwrap();
    std::fs::write(
        overrides.join("network.j2"),
        "{#- This cloud has no floating IPs: the VIP only. -#}\n\
         {%- set network = [\n  {\"id\": g ~ \"-vip\", \"class\": \"ocf\", \"provider\": \"heartbeat\", \"type\": \"IPaddr2\",\n   \"params\": {\"ip\": outputs.vip, \"cidr_netmask\": \"24\"}, \"interval\": \"10s\"},\n] -%}\n",
    )
    .unwrap();
    // Storage on a disk image grows as on the pacemaker platform (the built-in grow
    // playbook goes with the built-in Cinder + LVM storage).
    let playbooks = world.repo.join("playbooks/openstack/pacemaker");
    std::fs::create_dir_all(&playbooks).unwrap();
    let image_grow = include_str!("../playbooks/pacemaker/grow.yml");
    assert!(
        image_grow.contains("\"{{ device }}\""),
        "grow.yml changed shape"
    );
    std::fs::write(
        playbooks.join("grow.yml"),
        image_grow.replace(
            "\"{{ device }}\"",
            &format!(
                "\"{}/{{{{ spec.name }}}}.img\"",
                cluster.dir.join("shared").display()
            ),
        ),
    )
    .unwrap();
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    let ssh = format!(
        "    user: root\n    identity: {}\n    known_hosts: {}\n",
        cluster.dir.join("client_key").display(),
        cluster.dir.join("known_hosts").display(),
    );
    let targets = format!(
        "targets:\n  os-test:\n    platform: openstack\n    runtime: pacemaker\n    openrc: files/openrc.sh\n    heat_environment: files/heat/env.yaml\n{ssh}  os-bad:\n    platform: openstack\n    runtime: pacemaker\n    openrc: files/bad-openrc.sh\n{ssh}  os-nomad:\n    platform: openstack\n    runtime: nomad\n    openrc: files/openrc.sh\n    heat_environment: files/heat/env.yaml\n{ssh}"
    );
    // Leases go under the world's directory (the nodes share this machine's
    // filesystem), so none outlives the test.
    let targets = targets.replace(
        "    heat_environment:",
        &format!(
            "    state_dir: {}\n    heat_environment:",
            world.dir.path().join("os-state").display()
        ),
    );
    // Backups go to the cloud's Swift: by default the database's own container in the
    // target's project; `cloud` names a store through Keystone with an openrc file.
    let store = format!(
        "backup_stores:\n  cloud:\n    kind: swift\n    openrc: {}\n    container: dbctl-backups\n",
        cloud.openrc().display()
    );
    std::fs::write(&config, text.replacen("targets:\n", &targets, 1) + &store).unwrap();
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "test: openstack target"]);
}

#[test]
fn openstack_heat_stacks_then_pacemaker_group_fail_over() {
    let world = World::new();
    let cluster = Cluster::up(&world.dir.path().join("cluster"), 'o');
    let cloud = Cloud::up(&world.dir.path().join("cloud"), &cluster.bridge());
    configure(&world, &cluster, &cloud);
    // The test's stand-in for the Cinder volume Heat would create.
    let image = disk_image(&cluster, "os-db");
    let create = [
        "create",
        "--type",
        "postgresql",
        "--version",
        "15",
        "--size",
        "1",
        "--target",
    ];

    // Refused credentials: a clear error naming Keystone and the openrc file; nothing
    // written, no stack created.
    let head = world.head();
    let bad = dbctl(
        &world,
        &cluster,
        &[&create[..], &["os-bad", "os-db"]].concat(),
    )
    .fails_with("Keystone refused");
    assert!(bad.stderr.contains("files/bad-openrc.sh"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("not-the-password"), "{}", bad.stderr);
    assert_eq!(world.head(), head);
    assert!(world.dirty().is_empty(), "{}", world.dirty());
    assert!(cloud.stacks().is_empty());

    let started = Instant::now();
    let run = dbctl(
        &world,
        &cluster,
        &[&create[..], &["os-test", "os-db"]].concat(),
    )
    .ok();
    eprintln!(
        "openstack create: {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        run.stderr
    );
    for step in [
        "Apply Heat stacks",
        "Push resource groups",
        "Create the application role",
    ] {
        assert!(run.stderr.contains(step), "{}", run.stderr);
    }
    assert!(!run.stderr.contains(&cloud.password()) && !run.stdout.contains(&cloud.password()));
    assert_eq!(
        cloud.stacks(),
        ["db-os-db-cluster", "db-os-db-data", "db-os-db-ip"]
            .map(|s| (s.to_owned(), "CREATE_COMPLETE".to_owned()))
    );
    let conn = reveal_in(&world, &cluster.bridge(), "os-db");
    assert_eq!(
        conn["host"], "10.203.0.100",
        "the VIP from the cluster stack: {conn}"
    );
    let password = conn["password"].as_str().unwrap().to_owned();
    let status = dbctl(&world, &cluster, &["status", "os-db", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    assert_eq!(
        status["status"]["details"]["cluster"]["groups"],
        serde_json::json!(["db-os-db-storage", "db-os-db-service"])
    );
    assert_eq!(
        status["status"]["details"]["stacks"],
        serde_json::json!({
            "db-os-db-cluster": "CREATE_COMPLETE",
            "db-os-db-data": "CREATE_COMPLETE",
            "db-os-db-ip": "CREATE_COMPLETE",
        })
    );
    let human = dbctl(&world, &cluster, &["status", "os-db"]).ok().stdout;
    assert!(
        human.contains("db-os-db-cluster CREATE_COMPLETE"),
        "{human}"
    );
    let (_, active_ip, _) = placement(&status);

    let sql = |password: &str, sql: &str| Client::Psql.query(&cluster, "os_db", password, sql);
    sql(&password, "create table t (id int primary key)").unwrap();
    sql(&password, "insert into t select generate_series(1, 500)").unwrap();

    // Someone removes the groups, and the nodes' image changes in etc/dbctl.yml: `apply`
    // updates the cluster stack only (the others are unchanged, by their digests) and
    // puts the groups back on the same storage (data kept, initdb not re-run).
    let out = cluster.ssh(
        active_ip,
        "pcs resource delete db-os-db-service && pcs resource delete db-os-db-storage",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = dbctl(&world, &cluster, &["status", "os-db", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "absent", "{status}");
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        "    runtime: pacemaker\n",
        "    runtime: pacemaker\n    image: debian-13\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    world.git(&["commit", "-qam", "test: nodes on debian-13"]);
    let applied = dbctl(&world, &cluster, &["apply", "--verbose"]).ok();
    for line in [
        "Heat stack db-os-db-cluster: updating",
        "Heat stack db-os-db-ip: unchanged",
        "Heat stack db-os-db-data: unchanged",
    ] {
        assert!(applied.stderr.contains(line), "{}", applied.stderr);
    }
    assert_eq!(cloud.updated(), ["db-os-db-cluster"]);
    assert_eq!(
        cloud.stacks(),
        ["db-os-db-cluster", "db-os-db-data", "db-os-db-ip"].map(|s| (
            s.to_owned(),
            if s.ends_with("cluster") {
                "UPDATE_COMPLETE"
            } else {
                "CREATE_COMPLETE"
            }
            .to_owned()
        ))
    );
    let conn = reveal_in(&world, &cluster.bridge(), "os-db");
    let password = conn["password"].as_str().unwrap().to_owned();
    assert_eq!(sql(&password, "select count(*) from t").unwrap(), "500");
    let status = dbctl(&world, &cluster, &["status", "os-db", "-o", "json"])
        .ok()
        .json();
    let (active, active_ip, standby) = placement(&status);

    // Both groups move together: storage first, then VIP and engine.
    let out = cluster.ssh(active_ip, &format!("pcs node standby {active} --wait=120"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = Client::Psql.query_until_up(&cluster, "os_db", &password, "select count(*) from t");
    assert_eq!(count, "500");
    let status = dbctl(&world, &cluster, &["status", "os-db", "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        status["status"]["details"]["cluster"]["active_node"], standby,
        "{status}"
    );
    let _ = cluster.ssh(active_ip, &format!("pcs node unstandby {active}"));

    // A restart-class parameter of the running database: the engine member of the
    // service group restarts; the stacks are left alone.
    let spec = world.repo.join("etc/databases/os-db.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("parameters: {}", "parameters:\n  max_connections: \"140\""),
    )
    .unwrap();
    world.git(&["commit", "-qam", "os: more connections"]);
    let stacks_before = cloud.stacks();
    let plan = dbctl(&world, &cluster, &["plan", "os-db", "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        plan["databases"][0]["changes"][0]["attribute"], "parameters.max_connections",
        "{plan}"
    );
    // Another runner's lease on the cluster's first node (the nodes share this
    // machine's filesystem) holds the change back, naming it; once it is gone the
    // change applies.
    let leases = world.dir.path().join("os-state/.leases");
    let leases = leases.as_path();
    std::fs::create_dir_all(leases).unwrap();
    let holder = serde_json::json!({
        "token": "t-other", "operation": "apply", "user": "ci@runner-2", "host": "runner-2",
        "pid": 4242, "repo": "/builds/other-clone", "since": "2026-12-04T10:00:00Z",
        "expires_at": "2999-01-01T00:00:00Z",
    });
    std::fs::write(leases.join("os-db.json"), holder.to_string()).unwrap();
    let held = dbctl(&world, &cluster, &["apply", "os-db", "--now"]);
    let said = format!("{}{}", held.stdout, held.stderr);
    assert_eq!(held.code, 1, "{said}");
    assert!(
        said.contains("being changed by another runner") && said.contains("runner-2"),
        "{said}"
    );
    std::fs::remove_file(leases.join("os-db.json")).unwrap();
    dbctl(&world, &cluster, &["apply", "os-db", "--now"]).ok();
    assert!(
        !leases.join("os-db.json").exists(),
        "apply left its lease behind"
    );
    let value = Client::Psql.query_until_up(&cluster, "os_db", &password, "show max_connections");
    assert_eq!(value, "140");
    assert_eq!(
        cloud.stacks(),
        stacks_before,
        "a parameter change touched Heat"
    );
    let plan = dbctl(&world, &cluster, &["plan", "os-db", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);

    // A changed Heat input of the running database (the nodes' image) is planned as
    // its stack's artifact, restart-class; apply updates that stack alone, data kept.
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("    image: debian-13\n", "    image: debian-13-slim\n", 1),
    )
    .unwrap();
    world.git(&["commit", "-qam", "test: nodes on debian-13-slim"]);
    let plan = dbctl(&world, &cluster, &["plan", "os-db", "-o", "json"])
        .ok()
        .json();
    let changes = plan["databases"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{plan}");
    assert_eq!(
        changes[0]["attribute"], "artifact.heat/db-os-db-cluster",
        "{plan}"
    );
    assert_eq!(changes[0]["disruption"], "restart", "{plan}");
    let applied = dbctl(&world, &cluster, &["apply", "os-db", "--now", "--verbose"]).ok();
    for line in [
        "Heat stack db-os-db-cluster: updating",
        "Heat stack db-os-db-ip: unchanged",
        "Heat stack db-os-db-data: unchanged",
    ] {
        assert!(applied.stderr.contains(line), "{}", applied.stderr);
    }
    let count = Client::Psql.query_until_up(&cluster, "os_db", &password, "select count(*) from t");
    assert_eq!(count, "500");
    let plan = dbctl(&world, &cluster, &["plan", "os-db", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);

    // Growing: the data stack's volume (Heat updates that stack alone), then the
    // storage on the node running the groups; the rows are kept, nothing is left
    // planned.
    let fs_bytes = || -> Option<u64> {
        let status = dbctl(&world, &cluster, &["status", "os-db", "-o", "json"])
            .ok()
            .json();
        let (_, ip, _) = placement(&status);
        let out = cluster.ssh(ip, "findmnt -n -b -o SIZE --mountpoint /srv/db/os-db/data");
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    assert!(fs_bytes().is_some_and(|b| b < 1 << 30), "{:?}", fs_bytes());
    let plan = dbctl(
        &world,
        &cluster,
        &["resize", "os-db", "--size", "2", "--dry-run", "-o", "json"],
    )
    .ok()
    .json();
    let planned = World::dry_run_attributes(&plan);
    assert_eq!(
        planned,
        ["size_gb", "artifact.heat/db-os-db-data"],
        "{plan}"
    );
    let grown = dbctl(
        &world,
        &cluster,
        &["resize", "os-db", "--size", "2", "--now", "--verbose"],
    )
    .ok();
    for line in [
        "Heat stack db-os-db-data: updating",
        "Heat stack db-os-db-cluster: unchanged",
    ] {
        assert!(grown.stderr.contains(line), "{}", grown.stderr);
    }
    assert_eq!(
        std::fs::metadata(&image).unwrap().len(),
        2 << 30,
        "the image did not grow"
    );
    assert!(
        fs_bytes().is_some_and(|b| b > 3 << 29),
        "the filesystem did not grow: {:?}",
        fs_bytes()
    );
    let count = Client::Psql.query_until_up(&cluster, "os_db", &password, "select count(*) from t");
    assert_eq!(count, "500");
    let plan = dbctl(&world, &cluster, &["plan", "os-db", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
    let stacks_before = cloud.stacks();

    // Backup and restore on the node running the groups, found through Heat's
    // outputs: rows written after the backup are gone again, the stacks untouched.
    let counted = dbctl(
        &world,
        &cluster,
        &["sql", "os-db", "-c", "select count(*) from t"],
    )
    .ok();
    assert!(
        counted.stdout.lines().any(|l| l.trim() == "500"),
        "{}",
        counted.stdout
    );
    let backup = dbctl(&world, &cluster, &["backup", "os-db", "-o", "json"])
        .ok()
        .json();
    // No store is named anywhere: the container the data stack makes for it.
    assert_eq!(backup["store"], "os-test/backup-os-db", "{backup}");
    let id = backup["manifest"]["id"].as_str().unwrap().to_owned();
    assert!(
        cloud
            .objects("backup-os-db")
            .iter()
            .any(|o| o.starts_with(&format!("os-db/{id}/")))
    );
    let named = dbctl(
        &world,
        &cluster,
        &["backup", "os-db", "--store", "cloud", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(named["store"], "cloud", "{named}");
    Client::Psql
        .query(
            &cluster,
            "os_db",
            &password,
            "insert into t select generate_series(501, 600)",
        )
        .unwrap();
    let restored = dbctl(
        &world,
        &cluster,
        &["restore", "os-db", "--yes", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(restored["backup"], id.as_str(), "{restored}");
    let count = Client::Psql.query_until_up(&cluster, "os_db", &password, "select count(*) from t");
    assert_eq!(
        count, "500",
        "the restore did not bring back the backup's rows"
    );
    assert_eq!(cloud.stacks(), stacks_before, "a restore touched Heat");
    // With no store named, the server archives its WAL into the same container through
    // Keystone (an openrc without the password and a 0600 password file beside the
    // data): a point-in-time recovery from it.
    let state = world.dir.path().join("os-state");
    crate::ha::restores_to_a_time_in_the_group(
        &world,
        &cluster,
        ("os-db", "os_db", &password),
        ("/srv/db/os-db/data", &state.to_string_lossy()),
    );
    assert!(
        cloud
            .objects("backup-os-db")
            .iter()
            .any(|o| o.starts_with("os-db/wal/")),
        "no WAL in the container"
    );
    let status = dbctl(&world, &cluster, &["status", "os-db", "-o", "json"])
        .ok()
        .json();
    let files = cluster.ssh(
        placement(&status).1,
        "cd /srv/db/os-db/data && stat -c '%n %a %U' wal-push.* && grep -c OS_PASSWORD wal-push.openrc",
    );
    let files = String::from_utf8_lossy(&files.stdout).into_owned();
    for file in ["wal-push.json", "wal-push.openrc", "wal-push.secret"] {
        assert!(files.contains(&format!("{file} 600 postgres")), "{files}");
    }
    assert!(
        files.trim_end().ends_with('0'),
        "the openrc holds the password: {files}"
    );
    backs_up_on_a_schedule_to_the_cloud(&world, &cluster, &cloud);

    // The control plane: the network and masters stacks through Heat, and the
    // inventory with the masters' and the database's nodes' addresses, committed; a
    // second run changes nothing.
    let control_plane_apply = || {
        dbctl(
            &world,
            &cluster,
            &[
                "control-plane",
                "--target",
                "os-test",
                "--apply",
                "-o",
                "json",
            ],
        )
        .ok()
        .json()
    };
    let applied = control_plane_apply();
    assert_eq!(applied["stacks"]["os-test-network"], "created", "{applied}");
    assert_eq!(applied["stacks"]["os-test-masters"], "created", "{applied}");
    let inventory =
        std::fs::read_to_string(world.repo.join("inventory/os-test/hosts.ini")).unwrap();
    for line in [
        "os-test-masters-1 ansible_host=10.203.0.51",
        "os-test-masters-3 ansible_host=10.203.0.53",
        "db-os-db-node-1 ansible_host=10.203.0.11 dbctl_engine=postgresql",
        "db-os-db-node-2 ansible_host=10.203.0.12",
    ] {
        assert!(inventory.contains(line), "{line:?} not in:\n{inventory}");
    }
    assert!(!inventory.contains("stack-output:"), "{inventory}");
    assert_eq!(
        world.git(&["log", "-1", "--format=%s"]).trim(),
        "dbctl control-plane os-test: inventory"
    );
    assert_eq!(world.dirty(), "");
    let again = control_plane_apply();
    assert_eq!(again["stacks"]["os-test-masters"], "unchanged", "{again}");
    assert_eq!(again["commit"], serde_json::Value::Null, "{again}");
    let control_plane = ["os-test-masters", "os-test-network"];

    // Delete takes a final backup, then the groups go from the CIB and the stacks
    // from Heat.
    let deleted = dbctl(
        &world,
        &cluster,
        &["delete", "os-db", "--yes", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(
        deleted["final_backup"]["store"], "os-test/backup-os-db",
        "{deleted}"
    );
    // The default container: the first backup, the point-in-time recovery's, the
    // scheduled one, the final one.
    for (store, count) in [("os-test/backup-os-db", 4), ("cloud", 1)] {
        let listed = dbctl(
            &world,
            &cluster,
            &["backups", "os-db", "--store", store, "-o", "json"],
        )
        .ok()
        .json();
        assert_eq!(
            listed["backups"].as_array().unwrap().len(),
            count,
            "{store}: {listed}"
        );
    }
    for group in ["db-os-db-storage", "db-os-db-service"] {
        let out = cluster.ssh("10.203.0.11", &format!("pcs resource config {group}"));
        assert!(!out.status.success(), "{group} still configured");
    }
    let units = world.dir.path().join("os-state/.dbctl/systemd");
    let left: Vec<_> = std::fs::read_dir(&units)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "the schedule's units outlive the database: {left:?}"
    );
    let mut left: Vec<String> = cloud.stacks().into_iter().map(|(name, _)| name).collect();
    left.sort();
    assert_eq!(left, control_plane, "only the control plane is left");

    nomad_runtime(&world, &cluster, &cloud);
    let mut left: Vec<String> = cloud.stacks().into_iter().map(|(name, _)| name).collect();
    left.sort();
    assert_eq!(left, control_plane, "only the control plane is left");
}

/// A backup schedule on the openstack group with no store named: the nodes back up to
/// the database's own container through Keystone with the target's credentials, the
/// password in a file of its own beside an openrc that has none. What the timer
/// starts, run on the node running the group with only the unit's environment, adds
/// a backup there.
fn backs_up_on_a_schedule_to_the_cloud(world: &World, cluster: &Cluster, cloud: &Cloud) {
    let spec = world.repo.join("etc/databases/os-db.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        format!("{text}backup:\n  schedule: daily 02:15 UTC\n"),
    )
    .unwrap();
    world.git(&["commit", "-qam", "os: nightly backups"]);
    let plan = dbctl(world, cluster, &["plan", "os-db", "-o", "json"])
        .ok()
        .json();
    let changes = plan["databases"][0]["changes"].as_array().unwrap().clone();
    assert_eq!(changes.len(), 1, "{plan}");
    assert_eq!(changes[0]["attribute"], "backup.schedule", "{plan}");
    dbctl(world, cluster, &["apply", "os-db"]).ok();
    let plan = dbctl(world, cluster, &["plan", "os-db", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);

    let unit = ScheduleUnits::read(&world.dir.path().join("os-state/.dbctl/systemd"), "os-db");
    assert_eq!(
        ScheduleUnits::value(&unit.timer, "OnCalendar"),
        "*-*-* 02:15:00 UTC"
    );
    let repo = "/srv/db/os-db/data/agent";
    assert_eq!(
        ScheduleUnits::value(&unit.service, "ConditionPathExists").trim_matches('"'),
        format!("{repo}/etc/dbctl.yml")
    );
    let status = dbctl(world, cluster, &["status", "os-db", "-o", "json"])
        .ok()
        .json();
    let (_, ip, _) = placement(&status);
    let openrc = cluster.ssh(ip, &format!("cat {repo}/files/openrc.sh"));
    let openrc = String::from_utf8_lossy(&openrc.stdout).into_owned();
    assert!(openrc.contains("OS_AUTH_URL"), "{openrc}");
    assert!(
        !openrc.contains(&cloud.password()),
        "the password is in the node's openrc"
    );
    let secret = cluster.ssh(ip, &format!("stat -c %a {repo}.secret"));
    assert_eq!(String::from_utf8_lossy(&secret.stdout).trim(), "600");

    let count = || {
        dbctl(
            world,
            cluster,
            &[
                "backups",
                "os-db",
                "--store",
                "os-test/backup-os-db",
                "-o",
                "json",
            ],
        )
        .ok()
        .json()["backups"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = count();
    let run = unit.timer_command();
    let out = cluster.ssh(ip, &run);
    assert!(
        out.status.success(),
        "{run}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(), before + 1);
}

/// `runtime: nomad`, the ancestor's design: Heat's stacks, then the groups with docker
/// and the Nomad agent, then the database's jobs through the control plane's Nomad
/// API. No Nomad runs here, so the API is `NomadDouble` (listening in the cluster's
/// network, where dbctl runs), and the nodes have no systemd, so the repo overrides
/// the groups' docker and nomad members with pacemaker's `Dummy` agent.
fn nomad_runtime(world: &World, cluster: &Cluster, cloud: &Cloud) {
    const TOKEN: &str = "5f0c1d9e-2b7a-4c3e-8d6f-9a1b2c3d4e5f";
    let nomad = NomadDouble::start_in(Some(TOKEN), &cluster.bridge(), "10.203.0.1:0");
    let env = [("NOMAD_ADDR", nomad.addr.as_str()), ("NOMAD_TOKEN", TOKEN)];
    disk_image(cluster, "os-jobs");
    std::fs::write(
        world.repo.join("templates/openstack/pacemaker/engine.j2"),
        "{#- These nodes have no systemd: docker and the Nomad agent are Dummy members. -#}\n\
         {%- set nomad_services = [\n\
           {\"id\": g ~ \"-docker\", \"class\": \"ocf\", \"provider\": \"pacemaker\", \"type\": \"Dummy\", \"params\": {}, \"interval\": \"10s\"},\n\
           {\"id\": g ~ \"-nomad\", \"class\": \"ocf\", \"provider\": \"pacemaker\", \"type\": \"Dummy\", \"params\": {}, \"interval\": \"10s\"},\n\
         ] %}\n\
         {%- set engine_resource = {\"id\": g ~ \"-engine\", \"class\": \"ocf\", \"provider\": \"pacemaker\", \"type\": \"Dummy\", \"params\": {}, \"interval\": \"10s\"} -%}\n",
    )
    .unwrap();
    world.git(&["add", "-A"]);
    world.git(&[
        "commit",
        "-qm",
        "test: docker and nomad members are Dummy here",
    ]);

    let create = [
        "create",
        "--type",
        "postgresql",
        "--version",
        "16",
        "--size",
        "1",
        "--target",
        "os-nomad",
        "os-jobs",
    ];
    // Without a token Nomad refuses, and nothing is made: no stack, no commit.
    let head = world.head();
    let refused = dbctl_with(
        world,
        cluster,
        &create,
        &[("NOMAD_ADDR", nomad.addr.as_str())],
    )
    .fails_with("os-nomad");
    assert!(refused.stderr.contains("403"), "{}", refused.stderr);
    assert_eq!(world.head(), head);
    assert!(
        !cloud
            .stacks()
            .iter()
            .any(|(name, _)| name.contains("os-jobs"))
    );

    let run = dbctl_with(world, cluster, &create, &env).ok();
    for step in [
        "Apply Heat stacks db-os-jobs-ip, db-os-jobs-data, db-os-jobs-cluster",
        "Push resource groups db-os-jobs-storage, db-os-jobs-service (docker, Nomad agent)",
        "Wait for a healthy allocation",
        "Run the configure job",
    ] {
        assert!(
            run.stderr.contains(step),
            "{step:?} not in:\n{}",
            run.stderr
        );
    }
    // The three jobs, the service job placed by the client meta the cluster stack
    // gives the nodes' agents; their variables hold the connection file's password.
    let mut ids = nomad.job_ids("default");
    ids.sort();
    assert_eq!(
        ids,
        ["db-os-jobs", "db-os-jobs-configure", "db-os-jobs-sql"]
    );
    let (service, _) = nomad.job("default", "db-os-jobs").unwrap();
    assert_eq!(
        service["Constraints"][0]["LTarget"], "${meta.dbctl_database}",
        "{service}"
    );
    assert_eq!(service["Constraints"][0]["RTarget"], "os-jobs");
    let conn = reveal_in(world, &cluster.bridge(), "os-jobs");
    let password = conn["password"].as_str().unwrap();
    assert_eq!(
        nomad.variable("default", "nomad/jobs/db-os-jobs").unwrap()["password"],
        password
    );
    assert!(!service.to_string().contains(password));
    // Clients reach the engine at the VIP that moves with the groups.
    assert_eq!(conn["host"], "10.203.0.100", "{conn}");
    assert_eq!(conn["port"], 5432, "{conn}");

    let plan_is_empty = || {
        let plan = dbctl_with(
            world,
            cluster,
            &["plan", "os-jobs", "--detailed-exitcode"],
            &env,
        );
        assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    };
    // Status: the stacks, where the groups run (docker and the agent with the
    // storage and VIP), and the job.
    let status = dbctl_with(world, cluster, &["status", "os-jobs", "-o", "json"], &env)
        .ok()
        .json();
    let details = &status["status"]["details"];
    assert_eq!(status["status"]["state"], "up", "{status}");
    let (active, _, _) = placement(&status);
    for member in [
        "db-os-jobs-docker",
        "db-os-jobs-nomad",
        "db-os-jobs-vip",
        "db-os-jobs-fs-data",
    ] {
        assert_eq!(
            details["cluster"]["resources"][member]["node"],
            active.as_str(),
            "{member}: {details}"
        );
    }
    assert_eq!(details["nomad"]["job"], "db-os-jobs", "{details}");
    assert_eq!(
        details["stacks"]["db-os-jobs-cluster"], "CREATE_COMPLETE",
        "{details}"
    );
    plan_is_empty();

    // A larger plan: a new flavor for the nodes' stack and more memory for the job;
    // `plan` shows Nomad's own diff, `apply` registers the new job version.
    let spec = world.repo.join("etc/databases/os-jobs.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("plan: small", "plan: medium")).unwrap();
    world.git(&["commit", "-qam", "os-jobs: medium"]);
    let plan = dbctl_with(world, cluster, &["plan", "os-jobs"], &env).ok();
    for line in [
        "artifact.heat/db-os-jobs-cluster",
        "artifact.nomad/db-os-jobs",
        "| nomad: job db-os-jobs: Edited",
        "| ~ TaskGroups.db.Tasks.postgresql.Resources.MemoryMB: \"2048\" → \"8192\"",
    ] {
        assert!(
            plan.stdout.contains(line),
            "{line:?} not in:\n{}",
            plan.stdout
        );
    }
    dbctl_with(world, cluster, &["apply", "os-jobs", "--now"], &env).ok();
    let (service, version) = nomad.job("default", "db-os-jobs").unwrap();
    assert_eq!(version, 1);
    assert_eq!(
        service["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"],
        8192
    );
    assert!(cloud.updated().contains(&"db-os-jobs-cluster".to_owned()));
    plan_is_empty();

    // `dbctl sql` is a dispatch of the SQL job.
    nomad.script_dispatch("1\n", "", 0);
    let out = dbctl_with(world, cluster, &["sql", "os-jobs", "-c", "select 1"], &env).ok();
    assert_eq!(out.stdout.trim(), "1");

    // Delete: the jobs and their variables, then the groups, then the stacks.
    dbctl_with(
        world,
        cluster,
        &["delete", "os-jobs", "--yes", "--skip-final-backup"],
        &env,
    )
    .ok();
    assert!(
        nomad.job_ids("default").is_empty(),
        "{:?}",
        nomad.job_ids("default")
    );
    assert!(nomad.variable("default", "nomad/jobs/db-os-jobs").is_none());
    for group in ["db-os-jobs-storage", "db-os-jobs-service"] {
        let out = cluster.ssh("10.203.0.11", &format!("pcs resource config {group}"));
        assert!(!out.status.success(), "{group} still configured");
    }
}
