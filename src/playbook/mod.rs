//! Playbooks: ordered, typed steps for one operation of one engine on one platform,
//! read from `playbooks/<platform>/<engine>/<operation>.yml` (GitOps repo override
//! first, then built in). String arguments are minijinja templates rendered against
//! the operation's context (`spec`, `plan`, `instance`, `bin`, `secrets`).
//!
//! ```yaml
//! description: Create a PostgreSQL server on this machine
//! steps:
//!   - name: Initialise the data directory
//!     run:
//!       argv: ["{{ bin.initdb }}", "-D", "{{ instance.data_dir }}"]
//!       once: "{{ instance.dir }}/.initdb-done"
//!       fresh: "{{ instance.data_dir }}"
//! ```
//!
//! Every step is idempotent, so a playbook interrupted at any point converges when
//! run again. [`runner`] executes steps through a [`crate::transport::Transport`].

pub mod runner;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::assets::{Assets, Tree};

/// A parsed playbook.
#[derive(Debug, Clone, Serialize)]
pub struct Playbook {
    /// Where it came from (repo path or built-in path).
    pub origin: String,
    /// What it does.
    pub description: String,
    /// Steps, in order.
    pub steps: Vec<Step>,
}

/// One step: a name for progress output and exactly one action.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Shown in progress output.
    pub name: String,
    /// A condition (a template expression, e.g. `recovery is defined`): the step runs
    /// only when it is true; `None`: always.
    pub when: Option<String>,
    /// `loop` (as Ansible's): a template rendering to a JSON array; the action runs
    /// once per item, its templates seeing the item as `item` (e.g. `{{ range(1,
    /// parts) | list | tojson }}`: each incremental backup of a restore's chain).
    pub loop_items: Option<String>,
    /// What it does.
    pub action: Action,
}

/// Who owns files and runs commands of a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAs {
    /// The engine's service user (`postgres`, `mysql`, `redis` when dbctl runs as root;
    /// otherwise the invoking user).
    #[default]
    Service,
    /// The user running dbctl.
    Invoker,
}

/// Create directories (and parents); set mode and owner on each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirsAction {
    /// Directories (templated).
    pub paths: Vec<String>,
    /// Octal mode, e.g. `"0700"`.
    #[serde(default = "default_dir_mode")]
    pub mode: String,
    /// Owner.
    #[serde(default)]
    pub owner: RunAs,
}

/// Render a template to a file (atomic write).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateAction {
    /// Template under `templates/` (templated).
    pub src: String,
    /// Destination path (templated).
    pub dest: String,
    /// Octal mode, e.g. `"0600"`.
    #[serde(default = "default_file_mode")]
    pub mode: String,
    /// Owner.
    #[serde(default)]
    pub owner: RunAs,
}

/// Run a command to completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunAction {
    /// Program and arguments (each templated); never passed through a shell.
    pub argv: Vec<String>,
    /// Further arguments whose number varies: a template that renders to a JSON array
    /// of strings, appended to `argv` as they are (e.g. the directory of each backup
    /// `pg_combinebackup` combines).
    #[serde(default)]
    pub args: Option<String>,
    /// Run as.
    #[serde(default)]
    pub run_as: RunAs,
    /// Marker file: the step is skipped when it exists and written after success.
    #[serde(default)]
    pub once: Option<String>,
    /// Path removed before running (a half-done earlier attempt starts over).
    #[serde(default)]
    pub fresh: Option<String>,
    /// Working directory (templated; default: the instance directory).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Give the command the engine's admin credential in its environment (as
    /// [`StreamAction::admin_auth`]).
    #[serde(default)]
    pub admin_auth: bool,
    /// Timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

/// A command at one end of a backup stream: for `send`, its standard output is the
/// engine's physical backup (sealed and stored by dbctl); for `receive`, its standard
/// input is a stored backup, opened and checked by dbctl.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamAction {
    /// Program and arguments (each templated); never passed through a shell.
    pub argv: Vec<String>,
    /// Run as.
    #[serde(default)]
    pub run_as: RunAs,
    /// Give the command the engine's admin credential in its environment (Redis:
    /// `REDISCLI_AUTH`); engines whose admin logs in over the socket need none.
    #[serde(default)]
    pub admin_auth: bool,
    /// Timeout in seconds.
    #[serde(default = "default_stream_timeout")]
    pub timeout_s: u64,
    /// `receive` only: the directory the received data lands in (templated). While the
    /// stream arrives dbctl writes that directory's filesystem back to disk every
    /// half second (`syncfs(2)`), so the data reaches the disk while the stream is
    /// still being decoded and the server's start (PostgreSQL fsyncs a restored data
    /// directory before it recovers) does not wait for all of it.
    #[serde(default)]
    pub write_back: Option<String>,
}

fn default_stream_timeout() -> u64 {
    24 * 3600
}

/// Start the server unless the pid file names a live process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartAction {
    /// Program and arguments (each templated).
    pub argv: Vec<String>,
    /// The server's pid file (first line: pid) (templated).
    pub pidfile: String,
    /// True for servers that do not daemonise themselves: dbctl starts them in their
    /// own process group with output appended to `log`.
    #[serde(default)]
    pub detach: bool,
    /// Log file for detached servers (templated).
    #[serde(default)]
    pub log: Option<String>,
    /// Run as.
    #[serde(default)]
    pub run_as: RunAs,
    /// Timeout in seconds for the start command (not for detached servers).
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

/// Wait until the engine accepts connections (the engine's probe succeeds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitReadyAction {
    /// Give up after this many seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

/// Run an administration script with the engine's admin client; the script is a
/// template fed on stdin (it may use `secrets`, which never reach a command line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAction {
    /// Template under `templates/` (templated).
    pub script: String,
    /// Timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Extra attempts, 1 s apart, when the script fails (scripts are idempotent; a
    /// retry settles races such as an interrupted earlier run's statement finishing).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

/// Stop the server named by a pid file with a signal and wait for it to exit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopAction {
    /// The pid file (templated); absent means already stopped.
    pub pidfile: String,
    /// Signal name, e.g. `SIGINT` (PostgreSQL fast shutdown), `SIGTERM`.
    #[serde(default = "default_signal")]
    pub signal: String,
    /// After this many seconds, send SIGKILL.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

/// Remove files or directory trees; absent is fine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveAction {
    /// Paths (templated).
    pub paths: Vec<String>,
    /// Renamed to `<path>.removing` at once and removed by a detached `rm -rf` that
    /// outlives the step (what a restore replaced, gigabytes the database no longer
    /// needs); a `.removing` an earlier run left is removed first. Default: removed
    /// before the step ends.
    #[serde(default)]
    pub background: bool,
}

/// What kind of artifact a template renders, which says how a platform applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// An OpenStack Heat (HOT) stack template.
    HeatStack,
    /// A shell script of `pcs` commands.
    PcsScript,
    /// A pacemaker CIB XML fragment (`<configuration>` with resources and constraints).
    Cib,
    /// A Nomad job in the JSON API format (`{"Job": …}`).
    NomadJob,
    /// Kubernetes manifests (YAML).
    Manifest,
    /// Terraform JSON configuration (`*.tf.json`).
    Terraform,
    /// An Ansible-style inventory (`hosts.ini`).
    Inventory,
}

/// Render a template into an artifact that the platform applies (a Heat stack, a
/// Nomad job, a manifest…).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactAction {
    /// Template under `templates/` (templated).
    pub template: String,
    /// Output path, relative to the artifact directory (templated).
    pub path: String,
    /// How the platform applies it.
    pub kind: ArtifactKind,
    /// Only for these engines (empty: all).
    #[serde(default)]
    pub engines: Vec<String>,
    /// Extra template variables for this artifact (e.g. `format: cib`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// What a step does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Create directories.
    Dirs(DirsAction),
    /// Render a template to a file.
    Template(TemplateAction),
    /// Run a command.
    Run(RunAction),
    /// Start the server.
    Start(StartAction),
    /// Wait until ready.
    WaitReady(WaitReadyAction),
    /// Run an admin script.
    Admin(AdminAction),
    /// Stop the server.
    Stop(StopAction),
    /// Remove paths.
    Remove(RemoveAction),
    /// Render an artifact for the platform to apply.
    Artifact(ArtifactAction),
    /// Stream a backup out of a command's standard output (backup playbooks).
    Send(StreamAction),
    /// Stream a backup into a command's standard input (restore playbooks).
    Receive(StreamAction),
}

fn default_dir_mode() -> String {
    "0700".into()
}
fn default_file_mode() -> String {
    "0600".into()
}
fn default_timeout() -> u64 {
    60
}
fn default_retries() -> u32 {
    2
}
fn default_signal() -> String {
    "SIGTERM".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    description: String,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    when: Option<String>,
    #[serde(rename = "loop")]
    loop_items: Option<String>,
    dirs: Option<DirsAction>,
    template: Option<TemplateAction>,
    run: Option<RunAction>,
    start: Option<StartAction>,
    wait_ready: Option<WaitReadyAction>,
    admin: Option<AdminAction>,
    stop: Option<StopAction>,
    remove: Option<RemoveAction>,
    artifact: Option<ArtifactAction>,
    send: Option<StreamAction>,
    receive: Option<StreamAction>,
}

/// Playbook errors.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    /// No such playbook in the repo or the binary.
    #[error("playbook `playbooks/{0}` does not exist (neither in the GitOps repo nor built in)")]
    Missing(String),
    /// The file cannot be read.
    #[error(transparent)]
    Asset(#[from] crate::assets::AssetError),
    /// The YAML is malformed or has unknown keys.
    #[error("invalid playbook {origin}: {message}")]
    Parse {
        /// Where it came from.
        origin: String,
        /// Parser message with line and column.
        message: String,
    },
    /// A step has no action or several.
    #[error("invalid playbook {origin}: step `{step}` must have exactly one action of: {}", ACTIONS.join(", "))]
    Step {
        /// Where it came from.
        origin: String,
        /// The step's name.
        step: String,
    },
    /// A key on a step whose action does not take it.
    #[error("invalid playbook {origin}: step `{step}`: `{key}` belongs to `{action}` steps only")]
    Key {
        /// Where it came from.
        origin: String,
        /// The step's name.
        step: String,
        /// The key.
        key: &'static str,
        /// The action that takes it.
        action: &'static str,
    },
    /// A bad octal mode.
    #[error("invalid playbook {origin}: step `{step}`: mode `{mode}` is not octal like \"0600\"")]
    Mode {
        /// Where it came from.
        origin: String,
        /// The step's name.
        step: String,
        /// The value.
        mode: String,
    },
}

/// Action keys a step may hold.
pub const ACTIONS: [&str; 11] = [
    "dirs",
    "template",
    "run",
    "start",
    "wait_ready",
    "admin",
    "stop",
    "remove",
    "artifact",
    "send",
    "receive",
];

impl Playbook {
    /// Loads `playbooks/<path>`.
    ///
    /// # Errors
    /// [`PlaybookError`] naming the file and step.
    pub fn load(assets: &Assets, path: &str) -> Result<Self, PlaybookError> {
        let asset = assets
            .get(Tree::Playbooks, path)?
            .ok_or_else(|| PlaybookError::Missing(path.to_owned()))?;
        Self::parse(&asset.text, &asset.origin.to_string())
    }

    /// Parses playbook text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`PlaybookError::Parse`], [`PlaybookError::Step`], [`PlaybookError::Key`],
    /// [`PlaybookError::Mode`].
    pub fn parse(text: &str, origin: &str) -> Result<Self, PlaybookError> {
        let raw: RawPlaybook = serde_saphyr::from_str(text).map_err(|e| PlaybookError::Parse {
            origin: origin.to_owned(),
            message: crate::spec::parse_message(&e),
        })?;
        let mut steps = Vec::with_capacity(raw.steps.len());
        for step in raw.steps {
            let mut actions = Vec::new();
            actions.extend(step.dirs.map(Action::Dirs));
            actions.extend(step.template.map(Action::Template));
            actions.extend(step.run.map(Action::Run));
            actions.extend(step.start.map(Action::Start));
            actions.extend(step.wait_ready.map(Action::WaitReady));
            actions.extend(step.admin.map(Action::Admin));
            actions.extend(step.stop.map(Action::Stop));
            actions.extend(step.remove.map(Action::Remove));
            actions.extend(step.artifact.map(Action::Artifact));
            actions.extend(step.send.map(Action::Send));
            actions.extend(step.receive.map(Action::Receive));
            if actions.len() != 1 {
                return Err(PlaybookError::Step {
                    origin: origin.to_owned(),
                    step: step.name,
                });
            }
            let action = actions.remove(0);
            if let Action::Send(send) = &action
                && send.write_back.is_some()
            {
                return Err(PlaybookError::Key {
                    origin: origin.to_owned(),
                    step: step.name,
                    key: "write_back",
                    action: "receive",
                });
            }
            let mode = match &action {
                Action::Dirs(d) => Some(&d.mode),
                Action::Template(t) => Some(&t.mode),
                _ => None,
            };
            if let Some(mode) = mode
                && parse_mode(mode).is_none()
            {
                return Err(PlaybookError::Mode {
                    origin: origin.to_owned(),
                    step: step.name,
                    mode: mode.clone(),
                });
            }
            steps.push(Step {
                name: step.name,
                when: step.when,
                loop_items: step.loop_items,
                action,
            });
        }
        Ok(Self {
            origin: origin.to_owned(),
            description: raw.description,
            steps,
        })
    }

    /// The artifact steps, in order, each with its `when` condition.
    pub fn artifacts(&self) -> Vec<(&ArtifactAction, Option<&str>)> {
        self.steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Artifact(a) => Some((a, s.when.as_deref())),
                _ => None,
            })
            .collect()
    }

    /// Templates this playbook renders (template `src` and admin `script`), for `render`.
    pub fn templates(&self) -> Vec<(&str, Option<&str>)> {
        self.steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Template(t) => Some((t.src.as_str(), Some(t.dest.as_str()))),
                Action::Admin(a) => Some((a.script.as_str(), None)),
                _ => None,
            })
            .collect()
    }
}

/// Parses an octal mode string (`"0600"`, `"755"`).
pub fn parse_mode(mode: &str) -> Option<u32> {
    u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777)
}

/// A map of step counts by action, for summaries.
pub fn action_counts(playbook: &Playbook) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for step in &playbook.steps {
        let key = match step.action {
            Action::Dirs(_) => "dirs",
            Action::Template(_) => "template",
            Action::Run(_) => "run",
            Action::Start(_) => "start",
            Action::WaitReady(_) => "wait_ready",
            Action::Admin(_) => "admin",
            Action::Stop(_) => "stop",
            Action::Remove(_) => "remove",
            Action::Artifact(_) => "artifact",
            Action::Send(_) => "send",
            Action::Receive(_) => "receive",
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_playbook_parses() {
        let assets = Assets::new(None);
        let files = Assets::builtin_files(Tree::Playbooks, "");
        assert!(!files.is_empty());
        for file in files {
            Playbook::load(&assets, &file).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }

    #[test]
    fn a_step_needs_exactly_one_action() {
        let err = Playbook::parse(
            "description: x\nsteps:\n  - name: both\n    remove: {paths: [a]}\n    wait_ready: {}\n",
            "test.yml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("exactly one action"), "{err}");
        let err = Playbook::parse(
            "description: x\nsteps:\n  - name: a\n    bogus: {}\n",
            "t.yml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn write_back_belongs_to_receive_steps() {
        let err = Playbook::parse(
            "description: x\nsteps:\n  - name: Stream it\n    send: {argv: [cat], write_back: /srv}\n",
            "test.yml",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid playbook test.yml: step `Stream it`: `write_back` belongs to `receive` steps only"
        );
        Playbook::parse(
            "description: x\nsteps:\n  - name: Unpack\n    receive: {argv: [tar, -x], write_back: /srv}\n",
            "test.yml",
        )
        .unwrap();
    }
}
