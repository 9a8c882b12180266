//! The CI pipelines in `example/ci/` run as written: their job scripts are read from
//! the GitLab CI file and the GitHub Actions workflow and run, line for line as the
//! runners do (`set -e`, the variables the runner sets), in fresh clones of a bare
//! remote with dbctl on PATH — a merge request's plan, then main's apply and push.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{World, git_in};

/// A job's steps, each a shell script: GitLab's `script:` lines as one step (its
/// runner runs them in one shell), or the `run:` blocks of a GitHub job's steps (steps
/// that `uses:` an action are the runner's, not ours).
fn job_steps(file: &str, job: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("example/ci")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    if let Some(script) = doc[job]["script"].as_array() {
        return vec![
            script
                .iter()
                .map(|l| l.as_str().unwrap().to_owned() + "\n")
                .collect(),
        ];
    }
    doc["jobs"][job]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no job `{job}`", path.display()))
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect()
}

/// How the runner checks the repo out and hands over the identity.
#[derive(Clone, Copy)]
enum Runner {
    /// GitLab: the commit, detached; `DBCTL_IDENTITY` is a File variable.
    Gitlab,
    /// GitHub (actions/checkout): the branch, tracking the remote's; variables a step
    /// appends to `$GITHUB_ENV` reach the steps after it.
    Github,
}

/// The world's repo pushed to a bare remote (`main`).
fn remote(world: &World) -> PathBuf {
    let remote = world.dir.path().join("remote.git");
    git_in(
        world.dir.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            remote.to_str().unwrap(),
        ],
    );
    world.git(&["branch", "-M", "main"]);
    world.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
    world.git(&["push", "-q", "-u", "origin", "main"]);
    remote
}

/// Runs a job's `steps` in a fresh clone of `branch` checked out as `runner` does,
/// each under `bash -e -o pipefail` (as both runners do), with dbctl on PATH and
/// `vars`. Returns the exit code of the first failing step (or 0), the output and the
/// clone.
fn run_job(
    world: &World,
    remote: &Path,
    branch: &str,
    (runner, steps): (Runner, Vec<String>),
    vars: &[(&str, &str)],
) -> (i32, String, PathBuf) {
    let checkout = tempfile::Builder::new()
        .prefix("ci-checkout")
        .tempdir_in(world.dir.path())
        .unwrap()
        .keep();
    std::fs::remove_dir(&checkout).unwrap();
    git_in(
        world.dir.path(),
        &[
            "clone",
            "-q",
            "-b",
            branch,
            remote.to_str().unwrap(),
            checkout.to_str().unwrap(),
        ],
    );
    let mut env: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    match runner {
        Runner::Gitlab => {
            git_in(&checkout, &["checkout", "-q", "--detach"]);
            env.push((
                "DBCTL_IDENTITY".into(),
                world
                    .home
                    .join(".config/dbctl/identity.txt")
                    .display()
                    .to_string(),
            ));
        }
        Runner::Github => {}
    }
    let dbctl = assert_cmd::cargo::cargo_bin("dbctl");
    let path = format!(
        "{}:{}",
        dbctl.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut log = String::new();
    for step in steps {
        let out = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &step])
            .current_dir(&checkout)
            .env("PATH", &path)
            .env("HOME", &world.home)
            .env("XDG_CONFIG_HOME", world.home.join("ci-config"))
            .env("DBCTL_STATE_DIR", &world.state)
            .env_remove("DBCTL_IDENTITY")
            .env_remove("DBCTL_REPO")
            .env_remove("GIT_AUTHOR_NAME")
            .env_remove("GIT_COMMITTER_NAME")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        log.push_str(&String::from_utf8_lossy(&out.stdout));
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return (out.status.code().unwrap_or(-1), log, checkout);
        }
        if let Some((_, file)) = env.iter().find(|(k, _)| k == "GITHUB_ENV")
            && let Ok(text) = std::fs::read_to_string(file)
        {
            let set: Vec<(String, String)> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            env.extend(set);
        }
    }
    (0, log, checkout)
}

#[test]
fn the_example_pipelines_plan_merge_requests_and_apply_main() {
    let world = World::new();
    let remote = remote(&world);

    // A merge request adds a database: GitLab's plan job passes (changes pending is
    // what it is for) and its artifact is the Markdown plan.
    world.git(&["checkout", "-q", "-b", "add-cache"]);
    world.commit_spec(
        "cache",
        "name: cache\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\n",
        "a cache for the shop",
    );
    world.git(&["push", "-q", "origin", "add-cache"]);
    let mr = [("CI_PIPELINE_SOURCE", "merge_request_event")];
    let (code, out, checkout) = run_job(
        &world,
        &remote,
        "add-cache",
        (Runner::Gitlab, job_steps("gitlab-ci.yml", "plan")),
        &mr,
    );
    assert_eq!(code, 0, "{out}");
    let plan = std::fs::read_to_string(checkout.join("plan.md")).unwrap();
    assert!(
        plan.starts_with("### dbctl plan: 1 database(s) to change"),
        "{plan}"
    );
    assert!(plan.contains("#### `cache` (target `local`)"), "{plan}");
    assert!(plan.contains("| + | `database` |"), "{plan}");
    assert!(
        out.contains("#### `cache`"),
        "the job log shows the plan: {out}"
    );

    // Merged: GitLab's apply job on main creates it and pushes the connection file.
    world.git(&["checkout", "-q", "main"]);
    world.git(&["merge", "-q", "--ff-only", "add-cache"]);
    world.git(&["push", "-q", "origin", "main"]);
    let main = [
        ("CI_COMMIT_BRANCH", "main"),
        ("CI_DEFAULT_BRANCH", "main"),
        ("CI_SERVER_HOST", "gitlab.example.invalid"),
        ("DBCTL_PUSH_TOKEN", "glpat-not-used-by-a-file-remote"),
    ];
    let (code, out, _) = run_job(
        &world,
        &remote,
        "main",
        (Runner::Gitlab, job_steps("gitlab-ci.yml", "apply")),
        &main,
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("glpat-"), "the token was printed: {out}");
    let pushed = git_in(&remote, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(pushed.contains("connections/cache.yml"), "{pushed}");
    let log = git_in(&remote, &["log", "-1", "--format=%an %s", "main"]);
    assert!(log.starts_with("dbctl (CI) "), "{log}");

    // A pull request changes a setting: GitHub's plan job writes the change to the
    // job summary; on main its apply job applies it in place and pushes.
    world.git(&["pull", "-q", "--ff-only"]);
    std::fs::write(
        world.repo.join("etc/databases/cache.yml"),
        "name: cache\nengine: redis\nversion: \"7.0\"\nsize_gb: 1\nparameters:\n  maxmemory-policy: allkeys-lru\n",
    )
    .unwrap();
    world.git(&["checkout", "-q", "-b", "evict"]);
    world.git(&["commit", "-qam", "evict the least recently used keys"]);
    world.git(&["push", "-q", "origin", "evict"]);
    let summary = world.dir.path().join("summary.md");
    let runner_temp = tempfile::tempdir_in(world.dir.path()).unwrap();
    let github = |event: &str| {
        vec![
            ("GITHUB_EVENT_NAME", event.to_owned()),
            ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
            (
                "GITHUB_ENV",
                world.dir.path().join("github.env").display().to_string(),
            ),
            ("RUNNER_TEMP", runner_temp.path().display().to_string()),
            (
                "IDENTITY",
                std::fs::read_to_string(world.home.join(".config/dbctl/identity.txt")).unwrap(),
            ),
        ]
    };
    let vars = github("pull_request");
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out, _) = run_job(
        &world,
        &remote,
        "evict",
        (Runner::Github, job_steps("github/dbctl.yml", "plan")),
        &vars,
    );
    assert_eq!(code, 0, "{out}");
    let summary_text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary_text.contains("| ~ | `parameters.maxmemory-policy` |"),
        "{summary_text}"
    );
    world.git(&["checkout", "-q", "main"]);
    world.git(&["merge", "-q", "--ff-only", "evict"]);
    world.git(&["push", "-q", "origin", "main"]);
    let vars = github("push");
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out, _) = run_job(
        &world,
        &remote,
        "main",
        (Runner::Github, job_steps("github/dbctl.yml", "apply")),
        &vars,
    );
    assert_eq!(code, 0, "{out}");
    // The identity step wrote a 0600 file and pointed DBCTL_IDENTITY at it.
    let written = runner_temp.path().join("identity.txt");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&written).unwrap().permissions()
        ) & 0o777,
        0o600
    );
    let policy = world
        .dbctl(&[
            "sql",
            "cache",
            "--admin",
            "-c",
            "CONFIG GET maxmemory-policy",
        ])
        .ok()
        .stdout;
    assert!(policy.contains("allkeys-lru"), "{policy}");

    // Nothing is left to do: the next merge request's plan says so.
    let (code, out, checkout) = run_job(
        &world,
        &remote,
        "main",
        (Runner::Gitlab, job_steps("gitlab-ci.yml", "plan")),
        &mr,
    );
    assert_eq!(code, 0, "{out}");
    let plan = std::fs::read_to_string(checkout.join("plan.md")).unwrap();
    assert!(plan.starts_with("### dbctl plan: no changes"), "{plan}");
    world
        .dbctl(&[
            "delete",
            "cache",
            "--yes",
            "--skip-final-backup",
            "--no-commit",
        ])
        .ok();
}
