//! Crash safety and locking: a create killed with SIGKILL at any step converges when
//! re-run; two creates of one database never proceed at once.

use crate::support::{World, psql};

fn check_answers(world: &World, name: &str) {
    assert_eq!(psql(&world.reveal(name), "select 1"), "1");
}

#[test]
fn create_killed_at_any_step_converges_on_rerun() {
    let world = World::new();
    // Steps of playbooks/local/postgresql/create.yml; kill while each is under way.
    for step in ["[1/7]", "[2/7]", "[5/7]", "[7/7]"] {
        let name = format!("crash-{}", &step[1..2]);
        let mut child = world.spawn_until(
            &["create", "--type", "postgresql", "--size", "1", &name],
            step,
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let rerun = world
            .dbctl(&["create", "--type", "postgresql", "--size", "1", &name])
            .ok();
        assert!(
            rerun.stdout.contains(&format!("created `{name}`")),
            "{step}: {}",
            rerun.stdout
        );
        check_answers(&world, &name);
        assert_eq!(world.dirty(), "", "{step}: files left uncommitted");
        world
            .dbctl(&["delete", &name, "--yes", "--skip-final-backup", "-q"])
            .ok();
    }
    assert!(world.server_pids().is_empty());
}

#[test]
fn concurrent_creates_of_one_database_never_both_proceed() {
    let world = World::new();
    let mut first = world.spawn_until(
        &["create", "--type", "postgresql", "--size", "1", "racy"],
        "[1/7]",
    );
    let second = world.dbctl(&["create", "--type", "postgresql", "--size", "1", "racy"]);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("database `racy` is locked by another run: dbctl create (pid"),
        "{}",
        second.stderr
    );
    // With --lock-timeout the second waits for the first, then finds nothing to do.
    let waiter = world
        .dbctl(&[
            "create",
            "--type",
            "postgresql",
            "--size",
            "1",
            "racy",
            "--lock-timeout",
            "120",
        ])
        .ok();
    assert!(waiter.stdout.contains("nothing to do"), "{}", waiter.stdout);
    assert!(first.wait().unwrap().success());
    check_answers(&world, "racy");
    world
        .dbctl(&["delete", "racy", "--yes", "--skip-final-backup"])
        .ok();
}
