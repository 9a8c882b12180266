//! The `nomad` platform through Nomad's HTTP API, against `NomadDouble` (no Nomad
//! server runs here; see `support/nomad.rs`), and against a real cluster when
//! `NOMAD_ADDR` is set (ignored otherwise).

use crate::support::World;
use crate::support::nomad::NomadDouble;

const TOKEN: &str = "0b0e6f4c-5a8e-4c2b-9d1e-3f6a7b8c9d0e";

/// A world whose `nmd` target is a Nomad cluster (namespace `dbs`, datacenter `dc1`).
fn world() -> World {
    World::with_targets("  nmd:\n    platform: nomad\n    datacenters: [dc1]\n    namespace: dbs\n")
}

#[test]
fn a_database_on_nomad_is_registered_observed_changed_queried_and_deleted_through_the_api() {
    let nomad = NomadDouble::start(Some(TOKEN));
    let env = [("NOMAD_ADDR", nomad.addr.as_str()), ("NOMAD_TOKEN", TOKEN)];
    let world = world();
    world
        .dbctl_with(
            &[
                "create",
                "--type",
                "postgresql",
                "--version",
                "16",
                "--size",
                "1",
                "orders",
                "--target",
                "nmd",
            ],
            &env,
        )
        .ok();
    // Three jobs in the target's namespace, each with its variable holding the
    // passwords; no job body carries a secret.
    let mut ids = nomad.job_ids("dbs");
    ids.sort();
    assert_eq!(ids, ["db-orders", "db-orders-configure", "db-orders-sql"]);
    let conn = world.reveal("orders");
    let password = conn["password"].as_str().unwrap().to_owned();
    for id in &ids {
        let items = nomad
            .variable("dbs", &format!("nomad/jobs/{id}"))
            .unwrap_or_else(|| panic!("no variable for {id}"));
        assert_eq!(items["password"], password);
        assert!(items["admin_password"].len() >= 20);
        let (job, _) = nomad.job("dbs", id).unwrap();
        assert!(
            !job.to_string().contains(&password),
            "{id} carries the password"
        );
        assert!(
            !job.to_string().contains(&items["admin_password"]),
            "{id} carries the admin password"
        );
    }
    // The connection file points at the allocation Nomad placed.
    assert_eq!(conn["target"], "nmd");
    assert_eq!(conn["host"], "127.0.0.1");
    assert_eq!(conn["port"], 5432);
    let configure = nomad.allocations("db-orders-configure");
    assert_eq!(configure.len(), 1);
    assert_eq!(configure[0].client_status, "complete");

    let status = world
        .dbctl_with(&["status", "orders", "-o", "json"], &env)
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    assert_eq!(
        status["status"]["details"]["nomad"]["job"], "db-orders",
        "{status}"
    );
    let plan = world.dbctl_with(&["plan", "--detailed-exitcode", "-o", "json"], &env);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);

    // A major version is refused: the data would need converting.
    world
        .dbctl_with(&["upgrade", "orders", "--version", "17", "--now"], &env)
        .fails_with("cannot upgrade postgresql across versions in place");
    // Another plan is a new job version: `plan` shows dbctl's changes and Nomad's own
    // diff of the job; `apply` registers it and Nomad replaces the allocation.
    let spec = world.repo.join("etc/databases/orders.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("plan: small", "plan: medium")).unwrap();
    world.git(&["commit", "-qam", "orders: medium"]);
    let plan = world.dbctl_with(&["plan"], &env).ok();
    assert!(
        plan.stdout.contains("artifact.nomad/db-orders")
            && plan.stdout.contains("| nomad: job db-orders: Edited")
            && plan.stdout.contains(
                "| ~ TaskGroups.db.Tasks.postgresql.Resources.MemoryMB: \"2048\" → \"8192\""
            ),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("dbctl_applied"), "{}", plan.stdout);
    let run = world
        .dbctl_with(&["apply", "--now", "-o", "json"], &env)
        .ok()
        .json();
    let changed: Vec<&str> = run["applied"][0]["result"]["applied"]
        .as_array()
        .unwrap_or_else(|| panic!("{run}"))
        .iter()
        .map(|c| c["attribute"].as_str().unwrap())
        .collect();
    assert!(
        changed.contains(&"plan") && changed.contains(&"artifact.nomad/db-orders"),
        "{run}"
    );
    let (service, version) = nomad.job("dbs", "db-orders").unwrap();
    assert_eq!(version, 1);
    assert_eq!(
        service["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"], 8192,
        "the medium plan's memory"
    );
    let allocations = nomad.allocations("db-orders");
    assert_eq!(allocations.len(), 2);
    assert_eq!(allocations[0].desired_status, "stop");
    assert_eq!(allocations[1].client_status, "running");
    let plan = world.dbctl_with(&["plan", "--detailed-exitcode"], &env);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    // The administrator's password survives the change.
    let admin = nomad.variable("dbs", "nomad/jobs/db-orders").unwrap()["admin_password"].clone();

    // `dbctl sql` dispatches the SQL job with the batch as its payload and prints what
    // the task printed, with its exit code.
    nomad.script_dispatch("42\n", "", 0);
    let out = world
        .dbctl_with(&["sql", "orders", "-c", "select 40 + 2"], &env)
        .ok();
    assert_eq!(out.stdout, "42\n");
    let payloads = nomad.cluster.lock().unwrap().payloads.clone();
    assert_eq!(
        String::from_utf8_lossy(payloads.last().unwrap()).trim(),
        "select 40 + 2"
    );
    assert!(
        !nomad
            .job_ids("dbs")
            .iter()
            .any(|id| id.contains("/dispatch-")),
        "the dispatched job was left: {:?}",
        nomad.job_ids("dbs")
    );
    nomad.script_dispatch("", "ERROR:  relation \"nope\" does not exist\n", 3);
    let failed = world.dbctl_with(&["sql", "orders", "-c", "select * from nope"], &env);
    assert_eq!(failed.code, 3, "{}{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.contains("relation \"nope\""),
        "{}",
        failed.stderr
    );
    assert_eq!(
        nomad.variable("dbs", "nomad/jobs/db-orders").unwrap()["admin_password"],
        admin
    );

    world
        .dbctl_with(&["delete", "orders", "--yes", "--skip-final-backup"], &env)
        .ok();
    assert!(
        nomad.job_ids("dbs").is_empty(),
        "{:?}",
        nomad.job_ids("dbs")
    );
    assert!(nomad.variable("dbs", "nomad/jobs/db-orders").is_none());
    assert!(!world.repo.join("connections/orders.yml").exists());
}

#[test]
fn wrong_credentials_or_no_nomad_exit_1_naming_it_and_change_nothing() {
    let nomad = NomadDouble::start(Some(TOKEN));
    let world = world();
    let head = world.git(&["rev-parse", "HEAD"]);
    let create = [
        "create", "--type", "redis", "--size", "1", "cache", "--target", "nmd",
    ];
    let refused = world
        .dbctl_with(
            &create,
            &[
                ("NOMAD_ADDR", nomad.addr.as_str()),
                ("NOMAD_TOKEN", "wrong"),
            ],
        )
        .fails_with("403");
    assert!(
        refused.stderr.contains(&nomad.addr) && refused.stderr.contains("target `nmd`"),
        "{}",
        refused.stderr
    );
    assert!(nomad.job_ids("dbs").is_empty());
    assert!(nomad.cluster.lock().unwrap().variables.is_empty());
    world
        .dbctl_with(&create, &[("NOMAD_ADDR", "http://127.0.0.1:9")])
        .fails_with("cannot be reached");
    world
        .dbctl_with(&create, &[("NOMAD_ADDR", "ftp://nomad:4646")])
        .fails_with("NOMAD_ADDR `ftp://nomad:4646`");
    assert_eq!(world.git(&["rev-parse", "HEAD"]), head);
    assert!(!world.repo.join("etc/databases/cache.yml").exists());
}

/// Against a real Nomad cluster (with the docker driver and a `dbs` namespace): create a
/// Redis, answer through `dbctl sql`, delete.
#[test]
#[ignore = "needs NOMAD_ADDR (and NOMAD_TOKEN with ACLs): a Nomad cluster with the docker driver"]
fn live_nomad_runs_a_database() {
    let addr = std::env::var("NOMAD_ADDR").expect("NOMAD_ADDR");
    let mut env = vec![("NOMAD_ADDR", addr.clone())];
    if let Ok(token) = std::env::var("NOMAD_TOKEN") {
        env.push(("NOMAD_TOKEN", token));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let world = world();
    world
        .dbctl_with(
            &[
                "create", "--type", "redis", "--size", "1", "live-kv", "--target", "nmd",
            ],
            &env,
        )
        .ok();
    let out = world
        .dbctl_with(&["sql", "live-kv", "-c", "PING"], &env)
        .ok();
    assert!(out.stdout.contains("PONG"), "{}", out.stdout);
    world
        .dbctl_with(&["delete", "live-kv", "--yes", "--skip-final-backup"], &env)
        .ok();
}

#[test]
fn a_backup_schedule_is_a_periodic_job_uploading_to_the_targets_destination() {
    let nomad = NomadDouble::start(None);
    let env = [("NOMAD_ADDR", nomad.addr.as_str())];
    let world = World::with_targets(
        "  nmd:\n    platform: nomad\n    datacenters: [dc1]\n    namespace: dbs\n    backup_destination: s3://backups/dbctl\n    backup_endpoint: https://s3.example.net\n",
    );
    // The operator gives the backup job its S3 keys.
    nomad.put_variable(
        "dbs",
        "nomad/jobs/db-shop-backup",
        &[("ACCESS_KEY_ID", "AK"), ("ACCESS_SECRET_KEY", "SK")],
    );
    world
        .dbctl_with(
            &[
                "create", "--type", "mariadb", "--size", "1", "shop", "--target", "nmd",
            ],
            &env,
        )
        .ok();
    assert!(
        nomad.job("dbs", "db-shop-backup").is_none(),
        "no schedule, no job"
    );
    let spec = world.repo.join("etc/databases/shop.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        format!("{text}backup:\n  schedule: daily 01:30 Europe/Paris\n"),
    )
    .unwrap();
    world.git(&["commit", "-qam", "shop: nightly backups"]);
    let plan = world.dbctl_with(&["plan"], &env).ok();
    assert!(plan.stdout.contains("backup.schedule"), "{}", plan.stdout);
    world.dbctl_with(&["apply"], &env).ok();
    let (job, _) = nomad
        .job("dbs", "db-shop-backup")
        .expect("the periodic job");
    assert_eq!(job["Periodic"]["Spec"], "30 1 * * *");
    assert_eq!(job["Periodic"]["TimeZone"], "Europe/Paris");
    assert_eq!(job["Periodic"]["ProhibitOverlap"], true);
    let upload = &job["TaskGroups"][0]["Tasks"][1];
    assert_eq!(
        upload["Config"]["args"][2],
        ":s3:backups/dbctl/shop/${NOMAD_ALLOC_ID}"
    );
    assert!(
        nomad.allocations("db-shop-backup").is_empty(),
        "a periodic job waits for its time"
    );
    // dbctl's passwords join the operator's keys, which stay.
    let items = nomad.variable("dbs", "nomad/jobs/db-shop-backup").unwrap();
    assert_eq!(items["ACCESS_KEY_ID"], "AK");
    assert_eq!(
        items["password"],
        world.reveal("shop")["password"].as_str().unwrap()
    );
    assert_eq!(
        world
            .dbctl_with(&["plan", "--detailed-exitcode"], &env)
            .code,
        0
    );
    // Without the schedule, the job goes.
    std::fs::write(&spec, text).unwrap();
    world.git(&["commit", "-qam", "shop: no schedule"]);
    world.dbctl_with(&["apply"], &env).ok();
    assert!(nomad.job("dbs", "db-shop-backup").is_none());
    let items = nomad.variable("dbs", "nomad/jobs/db-shop-backup").unwrap();
    assert_eq!(
        items.keys().collect::<Vec<_>>(),
        ["ACCESS_KEY_ID", "ACCESS_SECRET_KEY"],
        "the operator's keys stay, dbctl's passwords go"
    );
    // A target without a destination refuses a schedule.
    let world = World::with_targets(
        "  bare:\n    platform: nomad\n    datacenters: [dc1]\n    namespace: dbs\n",
    );
    world.commit_spec(
        "kv",
        "name: kv\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\ntarget: bare\nbackup:\n  schedule: daily 01:30 UTC\n",
        "kv",
    );
    let plan = world.dbctl_with(&["plan", "kv"], &env);
    assert_eq!(plan.code, 1, "{}{}", plan.stdout, plan.stderr);
    assert!(
        format!("{}{}", plan.stdout, plan.stderr).contains("backup.schedule"),
        "{}{}",
        plan.stdout,
        plan.stderr
    );
}
