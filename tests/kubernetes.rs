//! The `kubernetes` platform through the Kubernetes API (kube-rs, server-side apply),
//! against `KubeDouble` (no API server runs here; see `support/kubernetes.rs`), and
//! against a real cluster when `KUBECONFIG` is set (ignored otherwise).

use base64::Engine as _;

use crate::support::World;
use crate::support::kubernetes::KubeDouble;

const TOKEN: &str = "dbctl-test-token";

/// A world whose `k8s` target is a cluster's `dbs` namespace.
fn world() -> World {
    World::with_targets(
        "  k8s:\n    platform: kubernetes\n    namespace: dbs\n    allowed_namespaces: [apps]\n",
    )
}

#[test]
fn a_cloudnative_pg_database_is_applied_observed_changed_and_deleted_through_the_api() {
    let world = world();
    let kube = KubeDouble::start(world.dir.path(), TOKEN);
    let kubeconfig = kube.kubeconfig.display().to_string();
    let env = [("KUBECONFIG", kubeconfig.as_str())];
    world
        .dbctl_with(
            &[
                "create",
                "--type",
                "postgresql",
                "--version",
                "16",
                "--size",
                "2",
                "orders",
                "--target",
                "k8s",
            ],
            &env,
        )
        .ok();
    // The Secret holds the connection file's password (never in Git); the Cluster is
    // applied by dbctl's field manager and records what was applied.
    let conn = world.reveal("orders");
    let password = conn["password"].as_str().unwrap();
    let secret = kube.get("v1", "dbs", "secrets", "orders-app").unwrap();
    let stored = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["password"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(stored).unwrap(), password);
    let cluster = kube
        .get("postgresql.cnpg.io/v1", "dbs", "clusters", "orders")
        .unwrap();
    assert_eq!(cluster["spec"]["storage"]["size"], "2Gi");
    assert_eq!(cluster["metadata"]["managedFields"][0]["manager"], "dbctl");
    assert!(
        cluster["metadata"]["annotations"]["dbctl.io/applied"]
            .as_str()
            .is_some_and(|a| a.contains("\"version\":\"16\"")),
        "{cluster}"
    );
    assert!(
        kube.get(
            "networking.k8s.io/v1",
            "dbs",
            "networkpolicies",
            "orders-access"
        )
        .is_some()
    );
    assert!(!world.git(&["log", "-p"]).contains(password));
    // The connection file names the operator's read-write Service.
    assert_eq!(conn["host"], "orders-rw.dbs.svc");
    assert_eq!(conn["port"], 5432);

    let status = world
        .dbctl_with(&["status", "orders", "-o", "json"], &env)
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    assert_eq!(
        status["status"]["details"]["kubernetes"]["kind"], "Cluster",
        "{status}"
    );
    let plan = world.dbctl_with(&["plan", "--detailed-exitcode"], &env);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);

    // A parameter: planned with the server-side dry run's difference, applied.
    let spec = world.repo.join("etc/databases/orders.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("parameters: {}", "parameters:\n  work_mem: 64MB"),
    )
    .unwrap();
    world.git(&["commit", "-qam", "orders: work_mem"]);
    let plan = world.dbctl_with(&["plan"], &env).ok();
    assert!(
        plan.stdout.contains("parameters.work_mem")
            && plan
                .stdout
                .contains("| kubernetes: Cluster orders: server-side dry run")
            && plan
                .stdout
                .contains("| + spec.postgresql.parameters.work_mem = \"64MB\""),
        "{}",
        plan.stdout
    );
    let before = kube.state.lock().unwrap().objects.len();
    world.dbctl_with(&["apply", "--now"], &env).ok();
    let cluster = kube
        .get("postgresql.cnpg.io/v1", "dbs", "clusters", "orders")
        .unwrap();
    assert_eq!(
        cluster["spec"]["postgresql"]["parameters"]["work_mem"],
        "64MB"
    );
    assert_eq!(kube.state.lock().unwrap().objects.len(), before);
    let plan = world.dbctl_with(&["plan", "--detailed-exitcode"], &env);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);

    world
        .dbctl_with(&["delete", "orders", "--yes", "--skip-final-backup"], &env)
        .ok();
    let left = kube.applied_names("dbs");
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn mariadb_operator_and_redis_statefulset_databases_come_up_behind_their_services() {
    let world = world();
    let kube = KubeDouble::start(world.dir.path(), TOKEN);
    let kubeconfig = kube.kubeconfig.display().to_string();
    let env = [("KUBECONFIG", kubeconfig.as_str())];
    for (engine, name, port) in [("mariadb", "shop", 3306), ("redis", "cache", 6379)] {
        world
            .dbctl_with(
                &[
                    "create", "--type", engine, "--size", "1", name, "--target", "k8s",
                ],
                &env,
            )
            .ok();
        let conn = world.reveal(name);
        assert_eq!(conn["host"], format!("{name}.dbs.svc"), "{conn}");
        assert_eq!(conn["port"], port, "{conn}");
        let status = world
            .dbctl_with(&["status", name, "-o", "json"], &env)
            .ok()
            .json();
        assert_eq!(status["status"]["state"], "up", "{status}");
    }
    // mariadb-operator's resource, whose root password it generates.
    let maria = kube
        .get("k8s.mariadb.com/v1alpha1", "dbs", "mariadbs", "shop")
        .unwrap();
    assert_eq!(maria["spec"]["rootPasswordSecretKeyRef"]["generate"], true);
    // Redis reads its users from the `-acl` Secret dbctl makes from the password.
    let acl = kube.get("v1", "dbs", "secrets", "cache-acl").unwrap();
    let users = base64::engine::general_purpose::STANDARD
        .decode(acl["data"]["users.acl"].as_str().unwrap())
        .unwrap();
    let users = String::from_utf8(users).unwrap();
    let password = world.reveal("cache")["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        users.contains("user default off") && users.contains(&format!(">{password}")),
        "{users}"
    );
    for name in ["shop", "cache"] {
        world
            .dbctl_with(&["delete", name, "--yes", "--skip-final-backup"], &env)
            .ok();
    }
    let left = kube.applied_names("dbs");
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_manifest_the_api_server_refuses_or_bad_credentials_exit_1_and_change_nothing() {
    let world = world();
    let kube = KubeDouble::start(world.dir.path(), TOKEN);
    let create = [
        "create", "--type", "redis", "--size", "1", "cache", "--target", "k8s",
    ];
    // Another token: 401 from the API server, named.
    let wrong = world.dir.path().join("wrong-kubeconfig");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&kube.kubeconfig)
            .unwrap()
            .replace(TOKEN, "not-the-token"),
    )
    .unwrap();
    let refused = world
        .dbctl_with(&create, &[("KUBECONFIG", wrong.to_str().unwrap())])
        .fails_with("target `k8s`");
    assert!(
        refused.stderr.contains("Unauthorized"),
        "{}",
        refused.stderr
    );
    assert!(kube.names("dbs").is_empty());
    // A template override with a field the StatefulSet does not have: the API server's
    // strict validation refuses it, naming the object.
    let overrides = world.repo.join("templates/kubernetes");
    std::fs::create_dir_all(&overrides).unwrap();
    let builtin = include_str!("../templates/kubernetes/statefulset.yaml.j2");
    std::fs::write(
        overrides.join("statefulset.yaml.j2"),
        builtin.replacen("  serviceName:", "  servceName: typo\n  serviceName:", 1),
    )
    .unwrap();
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "a broken override"]);
    let head = world.git(&["rev-parse", "HEAD"]);
    let kubeconfig = kube.kubeconfig.display().to_string();
    let broken = world
        .dbctl_with(&create, &[("KUBECONFIG", kubeconfig.as_str())])
        .fails_with("StatefulSet `cache`");
    assert!(broken.stderr.contains("servceName"), "{}", broken.stderr);
    assert!(
        kube.names("dbs").is_empty(),
        "objects were applied before the refused one: {:?}",
        kube.names("dbs")
    );
    assert_eq!(world.git(&["rev-parse", "HEAD"]), head);
    assert!(!world.repo.join("connections/cache.yml").exists());
}

/// Against a real cluster with CloudNativePG installed and a `dbs` namespace.
#[test]
#[ignore = "needs KUBECONFIG: a cluster with CloudNativePG and a `dbs` namespace"]
fn live_kubernetes_runs_a_cloudnative_pg_database() {
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let env = [("KUBECONFIG", kubeconfig.as_str())];
    let world = world();
    world
        .dbctl_with(
            &[
                "create",
                "--type",
                "postgresql",
                "--size",
                "1",
                "live-pg",
                "--target",
                "k8s",
            ],
            &env,
        )
        .ok();
    let status = world
        .dbctl_with(&["status", "live-pg", "-o", "json"], &env)
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    world
        .dbctl_with(&["delete", "live-pg", "--yes", "--skip-final-backup"], &env)
        .ok();
}
