//! Templates and playbooks in the GitOps repo override the built-in ones at the same
//! path; `render` shows what would be written.

use crate::support::{World, psql};

#[test]
fn a_repo_template_override_wins_for_render_and_create() {
    let world = World::new();
    world
        .dbctl(&[
            "create",
            "-t",
            "postgresql",
            "--size",
            "1",
            "tuned",
            "--dry-run",
        ])
        .ok();
    assert!(!world.state.exists(), "--dry-run created the state dir");
    assert_eq!(world.dirty(), "", "--dry-run wrote files");
    world
        .dbctl(&[
            "create",
            "-t",
            "postgresql",
            "--size",
            "1",
            "tuned",
            "--no-commit",
        ])
        .ok();
    let builtin = world.dbctl(&["render", "tuned"]).ok().stdout;
    assert!(builtin.contains("max_connections = 100"), "{builtin}");
    assert!(!builtin.contains(&"0".repeat(32)));
    let dir = world.repo.join("templates/local/postgresql");
    std::fs::create_dir_all(&dir).unwrap();
    let over = builtin
        .split("--- ")
        .find(|s| s.starts_with("local/tuned/data/postgresql.conf"))
        .unwrap()
        .split_once('\n')
        .unwrap()
        .1
        .replace("max_connections = 100", "max_connections = 42");
    std::fs::write(dir.join("postgresql.conf.j2"), over).unwrap();
    let rendered = world.dbctl(&["render", "tuned"]).ok().stdout;
    assert!(rendered.contains("max_connections = 42"), "{rendered}");
    // The override reaches the running server: re-run create after stopping it.
    let out_dir = world.dir.path().join("rendered");
    world
        .dbctl(&["render", "tuned", "--out", out_dir.to_str().unwrap()])
        .ok();
    assert!(out_dir.join("local/tuned/data/postgresql.conf").is_file());
    let pid =
        std::fs::read_to_string(world.instance_dir("tuned").join("data/postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap();
    std::process::Command::new("kill")
        .args(["-INT", pid])
        .status()
        .unwrap();
    // Wait for the postmaster to exit (not just to stop answering).
    for _ in 0..300 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        world.dbctl(&["status", "tuned", "-o", "json"]).json()["status"]["state"],
        "down"
    );
    world
        .dbctl(&["create", "-t", "postgresql", "--size", "1", "tuned"])
        .ok();
    let shown = psql(&world.reveal("tuned"), "show max_connections");
    assert_eq!(shown.trim(), "42");
    world
        .dbctl(&["delete", "tuned", "--yes", "--skip-final-backup"])
        .ok();
}

#[test]
fn a_broken_override_is_caught_before_any_change() {
    let world = World::new();
    let dir = world.repo.join("templates/local/redis");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("redis.conf.j2"), "port {{ instance.port }\n").unwrap();
    let run = world.dbctl(&["create", "-t", "redis", "--size", "1", "broken"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("redis.conf.j2"), "{}", run.stderr);
    assert!(!world.state.exists());
    assert!(!world.repo.join("etc/databases/broken.yml").exists());
}
