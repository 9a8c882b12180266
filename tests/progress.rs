//! What an operator sees on a terminal: `dbctl apply` over several databases at once
//! draws one line per database (its current step, then its outcome) under a real
//! pseudo-terminal (tmux), while a pipe gets plain `name: [i/n] step` lines.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{World, psql};

/// Runs `args` in `world`'s repo inside a detached tmux session (a pseudo-terminal
/// of 120×40) and returns the screen once dbctl has exited.
fn on_a_terminal(world: &World, args: &[&str]) -> String {
    frames_on_a_terminal(world, args)
        .pop()
        .expect("at least the last screen")
}

/// [`on_a_terminal`], returning every distinct screen seen while dbctl ran (sampled
/// every 50 ms), the last one after it exited.
fn frames_on_a_terminal(world: &World, args: &[&str]) -> Vec<String> {
    let socket = format!("dbctl-test-{}", std::process::id());
    let dbctl = assert_cmd::cargo::cargo_bin("dbctl");
    let env = [
        ("HOME", world.home.display().to_string()),
        (
            "XDG_CONFIG_HOME",
            world.home.join(".config").display().to_string(),
        ),
        (
            "XDG_DATA_HOME",
            world.home.join(".local/share").display().to_string(),
        ),
        ("DBCTL_STATE_DIR", world.state.display().to_string()),
        ("GIT_AUTHOR_NAME", "t".into()),
        ("GIT_AUTHOR_EMAIL", "t@example.invalid".into()),
        ("GIT_COMMITTER_NAME", "t".into()),
        ("GIT_COMMITTER_EMAIL", "t@example.invalid".into()),
    ];
    let exports: String = env
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'; "))
        .collect();
    let script = format!(
        "cd '{}'; {exports}'{}' {}; echo DBCTL-EXIT=$?; sleep 120",
        world.repo.display(),
        dbctl.display(),
        args.join(" ")
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux is installed (scripts/test installs it)")
    };
    let started = tmux(&[
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "40",
        "-s",
        "t",
        &script,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let since = Instant::now();
    let mut frames: Vec<String> = Vec::new();
    loop {
        let out = tmux(&["capture-pane", "-p", "-t", "t"]);
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        let done = screen.contains("DBCTL-EXIT=");
        if frames.last() != Some(&screen) {
            frames.push(screen);
        }
        if done {
            break;
        }
        assert!(since.elapsed() < Duration::from_mins(2), "{frames:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux(&["kill-server"]);
    frames
}

#[test]
fn apply_draws_one_line_per_database_on_a_terminal() {
    let world = World::new();
    for name in ["kv-one", "kv-two", "kv-three"] {
        std::fs::write(
            world.repo.join(format!("etc/databases/{name}.yml")),
            format!("name: {name}\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\n"),
        )
        .unwrap();
    }
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "three caches"]);

    let screen = on_a_terminal(&world, &["apply", "--parallel", "3"]);
    assert!(screen.contains("DBCTL-EXIT=0"), "{screen}");
    for name in ["kv-one", "kv-two", "kv-three"] {
        let progress: Vec<&str> = screen
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{name}:")))
            .collect();
        assert_eq!(
            progress,
            [format!("  {name}: applied")],
            "one line for {name}, ending with its outcome:\n{screen}"
        );
    }
    assert!(
        !screen.contains("[1/"),
        "step lines were left on the terminal:\n{screen}"
    );

    // Piped (a CI log), the same run is plain lines, a step a line.
    for name in ["kv-one", "kv-two", "kv-three"] {
        world
            .dbctl(&["delete", name, "--yes", "--skip-final-backup"])
            .ok();
        std::fs::write(
            world.repo.join(format!("etc/databases/{name}.yml")),
            format!("name: {name}\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\n"),
        )
        .unwrap();
    }
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "three caches again"]);
    let piped = world.dbctl(&["apply", "--parallel", "3"]).ok();
    for name in ["kv-one", "kv-two", "kv-three"] {
        assert!(
            piped.stderr.contains(&format!("{name}: [1/")),
            "{}",
            piped.stderr
        );
        assert!(
            piped.stderr.contains(&format!("{name}: applied")),
            "{}",
            piped.stderr
        );
    }
}

#[test]
fn events_stream_json_lines_a_ci_system_can_follow() {
    let world = World::new();
    for name in ["ev-one", "ev-two"] {
        std::fs::write(
            world.repo.join(format!("etc/databases/{name}.yml")),
            format!("name: {name}\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\n"),
        )
        .unwrap();
    }
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "two caches"]);
    world
        .dbctl(&["apply", "--events"])
        .fails_with("use it with `-o json`");

    let run = world
        .dbctl(&["apply", "--parallel", "2", "-o", "json", "--events"])
        .ok();
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for name in ["ev-one", "ev-two"] {
        let of = |kind: &str| {
            events
                .iter()
                .filter(|e| e["event"] == kind && e["database"] == name)
                .count()
        };
        assert!(of("progress") >= 3, "{name}: {}", run.stdout);
        assert_eq!(of("done"), 1, "{name}: {}", run.stdout);
    }
    let last = events.last().unwrap();
    assert_eq!(last["event"], "result", "{}", run.stdout);
    assert_eq!(
        last["report"]["applied"].as_array().map(Vec::len),
        Some(2),
        "{last}"
    );
    assert!(
        !run.stderr.contains("[1/"),
        "progress went to stderr: {}",
        run.stderr
    );
    for name in ["ev-one", "ev-two"] {
        world
            .dbctl(&["delete", name, "--yes", "--skip-final-backup"])
            .ok();
    }
}

#[test]
fn verbose_traces_every_command_with_its_host_exit_code_and_time_and_no_secret() {
    let world = World::new();
    let quiet = world
        .dbctl(&["create", "--type", "redis", "--size", "1", "traced-a"])
        .ok();
    assert!(!quiet.stderr.contains(" ran "), "{}", quiet.stderr);
    let verbose = world
        .dbctl(&[
            "--verbose",
            "create",
            "--type",
            "redis",
            "--size",
            "1",
            "traced-b",
        ])
        .ok();
    let started = verbose
        .stderr
        .lines()
        .find(|l| l.contains(" ran ") && l.contains("redis-server") && l.contains("redis.conf"))
        .unwrap_or_else(|| panic!("{}", verbose.stderr));
    assert!(
        started.contains("host=\"localhost\"")
            && started.contains("code=0")
            && started.contains("ms="),
        "{started}"
    );
    let password = world.reveal("traced-b")["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!verbose.stderr.contains(&password), "a secret in the trace");
    for name in ["traced-a", "traced-b"] {
        world
            .dbctl(&["delete", name, "--yes", "--skip-final-backup"])
            .ok();
    }
}

#[test]
fn a_backup_draws_bytes_and_rate_on_a_terminal_and_nothing_in_a_pipe() {
    let world = World::new();
    let store = world.dir.path().join("store");
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}backup_stores:\n  here:\n    kind: dir\n    path: {}\n",
            store.display()
        ),
    )
    .unwrap();
    world.git(&["commit", "-qam", "a dir store"]);
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "big"])
        .ok();
    let conn = world.reveal("big");
    // About 80 MB of table: the backup takes a few seconds, the bar draws at 4 Hz.
    psql(
        &conn,
        "create table t as select md5(random()::text) || md5(random()::text) as v from generate_series(1, 1000000)",
    );

    let frames = frames_on_a_terminal(&world, &["backup", "big", "--store", "here"]);
    let last = frames.last().unwrap();
    assert!(last.contains("DBCTL-EXIT=0"), "{last}");
    // A bar line: the message, bytes moved in binary units, the rate, elapsed time.
    let bar = frames
        .iter()
        .flat_map(|f| f.lines())
        .find(|l| l.contains("backing up `big`") && l.contains("MiB ") && l.contains("/s"))
        .unwrap_or_else(|| panic!("no transfer bar with bytes and rate in {frames:#?}"));
    assert!(
        bar.split_whitespace()
            .any(|w| w.ends_with("MiB/s") || w.ends_with("KiB/s")),
        "{bar}"
    );
    assert!(
        !last
            .lines()
            .any(|l| l.contains("backing up `big`") && l.contains("/s")),
        "the bar was left on the terminal:\n{last}"
    );

    // Piped (a CI log): no bar, no carriage returns, only the plain lines.
    let piped = world.dbctl(&["backup", "big", "--store", "here"]).ok();
    assert!(!piped.stderr.contains("MiB/s"), "{}", piped.stderr);
    assert!(!piped.stderr.contains('\r'), "{}", piped.stderr);
    world
        .dbctl(&["delete", "big", "--yes", "--skip-final-backup"])
        .ok();
}
