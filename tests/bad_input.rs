//! Bad input exits 1 with a message naming the flag or file, line and key, and leaves
//! the repo (no commit, no file) and the machine (no process, no data dir) unchanged.

use crate::support::{Snapshot, World};

#[track_caller]
fn assert_unchanged(world: &World, before: &Snapshot) {
    assert_eq!(world.head(), before.head, "a commit was made");
    assert_eq!(world.dirty(), before.dirty, "files changed in the repo");
    assert!(!world.state.exists(), "the state directory was created");
    assert!(world.server_pids().is_empty(), "a server was started");
}

#[test]
fn bad_create_flags_are_refused_before_any_change() {
    let world = World::new();
    let before = world.snapshot();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--type", "postgresql", "My_DB"],
            &["`NAME`", "`My_DB` is not allowed", "lowercase letters"],
        ),
        (&["--type", "postgresql", "db;rm"], &["is not allowed"]),
        (
            &["--type", "oracle", "db1"],
            &["`--type`", "unknown engine `oracle`", "postgresql", "mysql"],
        ),
        (
            &["--type", "postgresql", "--size", "0", "db1"],
            &["`--size`", "0 GB is out of range", "1 to 65536"],
        ),
        (
            &["--type", "postgresql", "--size", "70000", "db1"],
            &["`--size`", "70000 GB is out of range"],
        ),
        (
            &["--type", "postgresql", "--version", "99", "db1"],
            &["`--version`", "version `99` is not in the catalog", "15"],
        ),
        (
            &["--type", "postgresql", "--target", "nowhere", "db1"],
            &["`--target`", "unknown target `nowhere`", "`local`"],
        ),
        (
            &["--type", "postgresql", "--plan", "huge", "db1"],
            &["`--plan`", "unknown plan `huge`", "small"],
        ),
        (
            &["--type", "mongodb", "db1"],
            &["`mongodb` cannot run on platform `local`", "kubernetes"],
        ),
        (
            &["--type", "postgresql", "--size", "65536", "db1"],
            &["not enough disk space", "65536 GB"],
        ),
        (
            &["--type", "postgresql", "--database", "a-b", "db1"],
            &["`--database`", "`a-b` is not allowed"],
        ),
        (
            &["--type", "postgresql", "--user", "postgres", "db1"],
            &["`--user`", "reserved"],
        ),
        (
            &["--type", "postgresql", "--param", "bad key=1", "db1"],
            &["`--param`", "not a postgresql setting dbctl allows"],
        ),
        (
            &["--type", "redis", "--database", "16", "db1"],
            &["`--database`", "0 to 15"],
        ),
        (
            &["--type", "postgresql", "--size=-5", "db1"],
            &["invalid value '-5' for '--size <GB>'"],
        ),
    ];
    assert!(cases.len() >= 10);
    for (args, needles) in cases {
        let mut full = vec!["create"];
        full.extend_from_slice(args);
        let run = world.dbctl(&full);
        assert_eq!(run.code, 1, "{args:?} exited {}: {}", run.code, run.stderr);
        for needle in *needles {
            assert!(
                run.stderr.contains(needle),
                "{args:?}: stderr lacks {needle:?}:\n{}",
                run.stderr
            );
        }
        assert_unchanged(&world, &before);
    }
}

#[test]
fn json_errors_are_json() {
    let world = World::new();
    let run = world.dbctl(&["create", "--type", "oracle", "db1", "-o", "json"]);
    assert_eq!(run.code, 1);
    let json = run.json();
    assert!(
        json["error"].as_str().unwrap().contains("unknown engine"),
        "{json}"
    );
}

#[test]
fn bad_config_names_file_line_and_key() {
    let world = World::new();
    let config = world.repo.join("etc/dbctl.yml");
    let good = std::fs::read_to_string(&config).unwrap();
    let cases = [
        (
            good.replace(
                "default_target: local",
                "default_target: local\ncolour: blue",
            ),
            vec!["etc/dbctl.yml", "line 5", "unknown field `colour`"],
        ),
        (
            good.replace("default_target: local", "default_target: elsewhere"),
            vec![
                "etc/dbctl.yml",
                "line 4",
                "`default_target`",
                "`elsewhere` is not a target",
            ],
        ),
        (
            good.replace("platform: local", "platform: vmware"),
            vec![
                "etc/dbctl.yml",
                "`targets.local.platform`",
                "unknown platform `vmware`",
                "kubernetes",
            ],
        ),
        (
            good.replace("platform: local", "platform: local\n    runtime: docker"),
            vec![
                "etc/dbctl.yml",
                "`targets.local.runtime`",
                "allowed: nomad, pacemaker",
            ],
        ),
        (
            good.replace("platform: local", "platform: local\n    node_local: true"),
            vec![
                "etc/dbctl.yml",
                "`targets.local.node_local`",
                "for a `pacemaker` target without `hosts`",
            ],
        ),
        (
            good.replace("    - age1", "    - notage1"),
            vec!["`secrets.recipients`", "not an age recipient"],
        ),
    ];
    for (text, needles) in cases {
        std::fs::write(&config, &text).unwrap();
        world.git(&["commit", "-qam", "break config"]);
        let before = world.snapshot();
        let run = world.dbctl(&["create", "--type", "redis", "db1"]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        for needle in needles {
            assert!(
                run.stderr.contains(needle),
                "stderr lacks {needle:?}:\n{}",
                run.stderr
            );
        }
        assert_unchanged(&world, &before);
    }
}

#[test]
fn openstack_target_files_are_checked_before_any_change() {
    let world = World::new();
    let config = world.repo.join("etc/dbctl.yml");
    let good = std::fs::read_to_string(&config).unwrap();
    let target = |extra: &str| {
        good.replacen(
            "targets:\n",
            &format!("targets:\n  os:\n    platform: openstack\n    runtime: pacemaker\n{extra}"),
            1,
        )
    };
    std::fs::create_dir_all(world.repo.join("files")).unwrap();
    std::fs::write(
        world.repo.join("files/env.yaml"),
        "resource_registry: [unclosed\n",
    )
    .unwrap();
    std::fs::write(
        world.repo.join("files/openrc.sh"),
        "export OS_AUTH_URL=http://127.0.0.1:9/v3\n",
    )
    .unwrap();
    let cases = [
        (
            target(""),
            vec!["`targets.os.openrc` in etc/dbctl.yml is missing"],
        ),
        (
            target("    heat_environment: files/none.yaml\n    openrc: files/openrc.sh\n"),
            vec![
                "`targets.os.heat_environment`",
                "cannot read",
                "files/none.yaml",
            ],
        ),
        (
            target("    heat_environment: files/env.yaml\n    openrc: files/openrc.sh\n"),
            vec![
                "`targets.os.heat_environment`",
                "files/env.yaml",
                "not valid YAML",
            ],
        ),
        (
            target("    openrc: files/openrc.sh\n"),
            vec![
                "`targets.os.openrc`",
                "files/openrc.sh",
                "missing OS_USERNAME",
            ],
        ),
    ];
    for (text, needles) in cases {
        std::fs::write(&config, &text).unwrap();
        world.git(&["add", "-A"]);
        world.git(&["commit", "-qm", "openstack target"]);
        let before = world.snapshot();
        let run = world.dbctl(&["create", "--type", "postgresql", "--target", "os", "db1"]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        for needle in needles {
            assert!(
                run.stderr.contains(needle),
                "stderr lacks {needle:?}:\n{}",
                run.stderr
            );
        }
        assert_unchanged(&world, &before);
    }
}

/// A `node_local` pacemaker target is what a group's scheduled backups run with on a
/// node: it cannot create (nor change or delete) a database.
#[test]
fn a_node_local_target_refuses_to_create() {
    let world = World::with_targets("  nodes:\n    platform: pacemaker\n    node_local: true\n");
    let before = world.snapshot();
    let run = world.dbctl(&["create", "--type", "redis", "--target", "nodes", "db1"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for needle in [
        "target `nodes` is `node_local`",
        "backs up and reports status only",
        "from the repo whose target reaches every node",
    ] {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            run.stderr
        );
    }
    assert_unchanged(&world, &before);
}

/// A `node_local` target reads each database's layout (`etc/groups/<name>.json`, which
/// the cluster's repo wrote): one that is missing, or a link, is named with why.
#[test]
fn a_node_local_target_names_a_layout_it_cannot_read_and_why() {
    let world = World::with_targets("  nodes:\n    platform: pacemaker\n    node_local: true\n");
    world.commit_spec(
        "kv",
        "name: kv\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\ntarget: nodes\n",
        "kv on the node",
    );
    let before = world.snapshot();
    let layout = world.repo.join("etc/groups/kv.json");
    for (case, why) in [
        ("missing", "it does not exist"),
        ("a link", "is a symbolic link"),
    ] {
        if case == "a link" {
            std::fs::create_dir_all(layout.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink("/etc/hostname", &layout).unwrap();
        }
        let run = world.dbctl(&["status", "kv"]);
        assert_eq!(run.code, 1, "{case}: {}", run.stderr);
        for needle in [
            "target `nodes` is `node_local`",
            &format!("`{}`, which cannot be read", layout.display()),
            why,
        ] {
            assert!(
                run.stderr.contains(needle),
                "{case}: stderr lacks {needle:?}:\n{}",
                run.stderr
            );
        }
    }
    std::fs::remove_file(&layout).unwrap();
    assert_unchanged(&world, &before);
}

#[test]
fn bad_spec_files_name_file_line_and_key() {
    let world = World::new();
    let spec = world.repo.join("etc/databases/broken.yml");
    let base = "name: broken\nengine: postgresql\nversion: \"15\"\nsize_gb: 10\n";
    let cases = [
        (
            format!("{base}sizee: 3\n"),
            vec![
                "etc/databases/broken.yml",
                "line 5",
                "unknown field `sizee`",
            ],
        ),
        (
            base.replace("size_gb: 10", "size_gb: ten"),
            vec!["etc/databases/broken.yml", "line 4", "invalid"],
        ),
        (
            base.replace("size_gb: 10", "size_gb: 99999"),
            vec![
                "etc/databases/broken.yml",
                "line 4",
                "`size_gb`",
                "out of range",
            ],
        ),
        (
            base.replace("name: broken", "name: other"),
            vec![
                "etc/databases/broken.yml",
                "line 1",
                "differs from the file name",
            ],
        ),
        (
            base.replace("engine: postgresql", "engine: db2"),
            vec!["line 2", "unknown engine `db2`"],
        ),
        (
            format!("{base}maintenance:\n  window: \"Sun 02:00-03:00 Mars/Olympus\"\n"),
            vec![
                "etc/databases/broken.yml",
                "line 6",
                "`maintenance.window`",
                "IANA time zone",
            ],
        ),
        (
            base.replace("\"15\"", "\"8\""),
            vec!["line 3", "version `8`"],
        ),
    ];
    for (text, needles) in cases {
        std::fs::write(&spec, &text).unwrap();
        for args in [
            vec!["status", "broken"],
            vec!["delete", "broken", "--yes", "--skip-final-backup"],
            vec!["render", "broken"],
        ] {
            let run = world.dbctl(&args);
            assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
            for needle in &needles {
                assert!(
                    run.stderr.contains(needle),
                    "{args:?}: stderr lacks {needle:?}:\n{}",
                    run.stderr
                );
            }
        }
        assert!(spec.exists(), "a failed delete removed the spec");
        // `list` shows the broken spec and exits 1.
        let list = world.dbctl(&["list"]);
        assert_eq!(list.code, 1);
        assert!(list.stdout.contains("invalid"), "{}", list.stdout);
    }
    assert!(world.server_pids().is_empty());
}

#[test]
fn outside_a_gitops_repo_the_error_says_init() {
    let world = World::bare();
    world
        .dbctl(&["create", "--type", "postgresql", "db1"])
        .fails_with("run `dbctl init`");
    world.dbctl(&["list"]).fails_with("etc/dbctl.yml");
}

#[test]
fn a_catalog_key_that_would_do_nothing_is_refused() {
    let world = World::new();
    let engines = include_str!("../etc/engines.yml").replacen(
        "  service_user: mysql\n",
        "  service_user: mysql\n  bin_dirs: {\"10.11\": \"/opt/mariadb/bin\"}\n",
        1,
    );
    assert!(engines.contains("bin_dirs"), "the catalog changed shape");
    std::fs::write(world.repo.join("etc/engines.yml"), engines).unwrap();
    let before = world.snapshot();
    let run = world.dbctl(&["create", "--type", "redis", "db1"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("etc/engines.yml")
            && run.stderr.contains("`mariadb.bin_dirs` is not allowed"),
        "{}",
        run.stderr
    );
    assert_unchanged(&world, &before);
}
