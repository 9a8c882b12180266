//! `plan` and `apply` over every spec of the repo, on the local platform.

use crate::support::{World, client};

fn write_spec(world: &World, name: &str, engine: &str, version: &str) {
    std::fs::write(
        world.repo.join(format!("etc/databases/{name}.yml")),
        format!(
            "name: {name}\nengine: {engine}\nversion: \"{version}\"\nsize_gb: 1\nplan: xsmall\n"
        ),
    )
    .unwrap();
}

#[test]
fn plan_then_apply_converges_every_spec_in_one_commit() {
    let world = World::new();
    write_spec(&world, "cache-a", "redis", "7.0");
    write_spec(&world, "cache-b", "redis", "7.0");
    write_spec(&world, "orders", "postgresql", "15");
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "three specs"]);

    let plan = world.dbctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains("Plan: 3 database(s) to change: 3 to create, 0 to change in place"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+ orders (target local)"),
        "{}",
        plan.stdout
    );
    let json = world.dbctl(&["plan", "-o", "json"]).ok().json();
    assert!(
        json["databases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["changes"][0]["action"] == "create"),
        "{json}"
    );

    let head = world.head();
    let applied = world
        .dbctl(&["apply", "--parallel", "3", "-o", "json"])
        .ok()
        .json();
    assert_eq!(applied["applied"].as_array().unwrap().len(), 3, "{applied}");
    assert_eq!(
        world
            .git(&["rev-list", "--count", &format!("{head}..HEAD")])
            .trim(),
        "1"
    );
    let message = world.git(&["log", "-1", "--format=%s"]);
    assert_eq!(message.trim(), "dbctl apply: cache-a, cache-b, orders");
    assert_eq!(world.dirty(), "");
    for name in ["cache-a", "cache-b"] {
        let conn = world.reveal(name);
        let port = conn["port"].as_u64().unwrap().to_string();
        let password = conn["password"].as_str().unwrap().to_owned();
        let pong = client(
            "redis-cli",
            &[
                "-p",
                &port,
                "--user",
                conn["username"].as_str().unwrap(),
                "--no-auth-warning",
                "PING",
            ],
            &[("REDISCLI_AUTH", &password)],
            None,
        );
        assert_eq!(pong.trim(), "PONG");
    }
    let plan = world.dbctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("No changes: 3 database(s) match their specs."),
        "{}",
        plan.stdout
    );
    world.dbctl(&["apply"]).ok();
    assert_eq!(
        world
            .git(&["rev-list", "--count", &format!("{head}..HEAD")])
            .trim(),
        "1"
    );

    // A server that died is converged (restarted) by the next apply.
    let pid = std::fs::read_to_string(world.instance_dir("cache-b").join("run/redis.pid")).unwrap();
    std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let plan = world.dbctl(&["plan", "-o", "json"]).ok().json();
    let row = plan["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cache-b")
        .unwrap()
        .clone();
    assert_eq!(row["changes"][0]["attribute"], "state", "{row}");
    assert_eq!(row["changes"][0]["disruption"], "restart", "{row}");
    world.dbctl(&["apply"]).ok();
    assert_eq!(
        world
            .dbctl(&["status", "cache-b", "-o", "json"])
            .ok()
            .json()["status"]["state"],
        "up"
    );
    for name in ["cache-a", "cache-b", "orders"] {
        world
            .dbctl(&["delete", name, "--yes", "--skip-final-backup", "-q"])
            .ok();
    }
}

#[test]
fn apply_refuses_an_invalid_spec_before_touching_anything() {
    let world = World::new();
    write_spec(&world, "good", "redis", "7.0");
    write_spec(&world, "bad", "redis", "9.9");
    let run = world.dbctl(&["apply"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("etc/databases/bad.yml") && run.stderr.contains("version `9.9`"),
        "{}",
        run.stderr
    );
    assert!(!world.state.exists(), "apply started something");
}
