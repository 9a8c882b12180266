//! The `terraform` platform with real Terraform: a repo override of the database
//! template that uses only Terraform's built-in `terraform_data` (no cloud provider to
//! download) with the outputs dbctl reads, and the state in an S3 backend — the test
//! Swift's S3 API. dbctl runs init, apply, output and destroy in its working
//! directory; the password goes in as `TF_VAR_password`.

use std::sync::atomic::{AtomicU16, Ordering};

use crate::support::{Run, World, swift};

static BUCKETS: AtomicU16 = AtomicU16::new(0);

/// The database every step works on.
const CREATE: &[&str] = &[
    "create",
    "--type",
    "redis",
    "--version",
    "7.0",
    "--size",
    "1",
    "--target",
    "tf",
    "cache",
];

/// dbctl with the S3 credentials of the test Swift in the environment, as a CI job
/// passes its cloud credentials.
fn dbctl(world: &World, args: &[&str]) -> Run {
    dbctl_with_key(world, args, "testing")
}

/// [`dbctl`] with `key` as the S3 secret key.
fn dbctl_with_key(world: &World, args: &[&str], key: &str) -> Run {
    let out = world
        .command(args)
        .env("AWS_ACCESS_KEY_ID", "test:tester")
        .env("AWS_SECRET_ACCESS_KEY", key)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `terraform` target whose state lives in `bucket` of the test Swift, and the
/// override of its Redis template.
fn configure(world: &World, port: u16, bucket: &str) {
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    let target = format!(
        "targets:\n  tf:\n    platform: terraform\n    provider: aws\n    region: us-east-1\n    backend:\n      type: s3\n      bucket: {bucket}\n      key: dbctl\n      region: us-east-1\n      endpoint: http://127.0.0.1:{port}\n      use_path_style: \"true\"\n      skip_credentials_validation: \"true\"\n      skip_region_validation: \"true\"\n      skip_requesting_account_id: \"true\"\n      skip_metadata_api_check: \"true\"\n      skip_s3_checksum: \"true\"\n"
    );
    std::fs::write(&config, text.replacen("targets:\n", &target, 1)).unwrap();
    let overrides = world.repo.join("templates/terraform/aws");
    std::fs::create_dir_all(&overrides).unwrap();
    std::fs::write(
        overrides.join("redis.tf.json.j2"),
        r#"{#- A stand-in for ElastiCache: Terraform's built-in terraform_data holds what the
    service would be given; the outputs are the real ones. -#}
{
  "variable": {"password": {"type": "string", "sensitive": true}},
  "resource": {"terraform_data": {"db": {"input": {
    "name": {{ spec.name | tojson }}, "version": {{ spec.version | tojson }},
    "size_gb": {{ spec.size_gb }}, "parameters": {{ spec.parameters | tojson }}
  }}}},
  "locals": {
    "db_host": "10.20.30.40", "db_port": {{ port }}, "db_name": "0",
    "db_user": "default", "db_password": "${var.password}"
  }
}
"#,
    )
    .unwrap();
    world.git(&["add", "-A"]);
    world.git(&["commit", "-qm", "test: a terraform target, state in S3"]);
}

#[test]
fn terraform_creates_changes_and_destroys_with_its_state_in_s3() {
    let world = World::new();
    let swift = swift::shared();
    let bucket = format!(
        "tfstate-{}-{}",
        std::process::id(),
        BUCKETS.fetch_add(1, Ordering::SeqCst)
    );
    swift.container(&bucket);
    configure(&world, swift.port, &bucket);

    // Credentials the backend refuses: exit 1 naming the target, nothing written.
    let before = world.snapshot();
    let refused = dbctl_with_key(&world, CREATE, "not-the-key");
    let said = &refused.stderr;
    assert_eq!(refused.code, 1, "{said}");
    assert!(
        said.contains("target `tf`") && said.contains("init"),
        "{said}"
    );
    assert!(!said.contains("not-the-key"), "{said}");
    assert_eq!(world.snapshot(), before);
    assert!(swift.list(&bucket, "dbctl/").is_empty());

    let created = dbctl(&world, CREATE).ok();
    for step in ["terraform init", "terraform apply"] {
        assert!(created.stderr.contains(step), "{}", created.stderr);
    }
    let conn = world.reveal("cache");
    assert_eq!(conn["host"], "10.20.30.40", "the `host` output: {conn}");
    assert_eq!(conn["port"], 6379);
    let password = conn["password"].as_str().unwrap().to_owned();
    // The state is in the backend, one object for this database.
    assert_eq!(
        swift.list(&bucket, "dbctl/"),
        ["dbctl/cache/terraform.tfstate"]
    );
    let log = world.git(&["log", "-p"]);
    assert!(!log.contains(&password), "the password is in Git");
    let status = dbctl(&world, &["status", "cache", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["state"], "up", "{status}");
    let plan = dbctl(&world, &["plan", "cache", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);

    // A larger size changes the rendered files: planned, applied through Terraform,
    // recorded in the state, nothing left planned.
    let planned = dbctl(
        &world,
        &["resize", "cache", "--size", "2", "--dry-run", "-o", "json"],
    )
    .ok()
    .json();
    let attributes = World::dry_run_attributes(&planned);
    assert_eq!(
        attributes,
        ["size_gb", "artifact.terraform/cache"],
        "{planned}"
    );
    // The plan shows Terraform's own plan of the change under dbctl's.
    let spec = world.repo.join("etc/databases/cache.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("size_gb: 1", "size_gb: 2")).unwrap();
    let plan = dbctl(&world, &["plan", "cache"]).ok();
    assert!(
        plan.stdout
            .contains("| terraform: update terraform_data.db")
            && plan
                .stdout
                .contains("| terraform: Plan: 0 to add, 1 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    // A runner whose identity cannot decrypt the password plans without Terraform's.
    let blind = world
        .command(&["plan", "cache"])
        .env("DBCTL_IDENTITY", world.dir.path().join("no-identity.txt"))
        .env("AWS_ACCESS_KEY_ID", "test:tester")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let blind = String::from_utf8_lossy(&blind.stdout);
    assert!(
        blind.contains("size_gb: 1 → 2")
            && blind.contains("terraform: no plan here: it needs the password"),
        "{blind}"
    );
    std::fs::write(&spec, text).unwrap();
    dbctl(&world, &["resize", "cache", "--size", "2", "--now"]).ok();
    let status = dbctl(&world, &["status", "cache", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"]["applied"]["size_gb"], 2, "{status}");
    let plan = dbctl(&world, &["plan", "cache", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);

    // Another clone (another working directory) sees the same database: the state
    // is remote.
    let other_state = world.dir.path().join("other-runner-state");
    let out = world
        .command(&["plan", "cache", "--detailed-exitcode"])
        .env("DBCTL_STATE_DIR", &other_state)
        .env("AWS_ACCESS_KEY_ID", "test:tester")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Delete destroys it; the working directory goes.
    let workdir = world.state.join("terraform/tf/cache");
    assert!(workdir.join("main.tf.json").exists());
    let deleted = dbctl(&world, &["delete", "cache", "--yes", "--skip-final-backup"]).ok();
    assert!(
        deleted.stderr.contains("terraform destroy"),
        "{}",
        deleted.stderr
    );
    assert!(!workdir.exists(), "the working directory is left");
    assert!(!world.repo.join("etc/databases/cache.yml").exists());
}
