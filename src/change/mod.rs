//! The change model: what runs ([`Observed`]), what the spec wants, and the typed
//! difference between them ([`Change`]), computed by the pure [`plan`] — no I/O, no
//! clock (the maintenance window is applied by [`window`] with the time passed in).
//!
//! The shape follows Terraform's provider protocol (`PlanResourceChange`, then
//! `ApplyResourceChange` on the planned change) and kube-rs' sans-IO core: drivers
//! observe and apply, this module decides. Each change carries its symbol (`+` create,
//! `~` update in place, `-/+` replace, `-` delete), the attribute with old → new, its
//! [`Disruption`] and why.

pub mod window;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::EngineKind;
use crate::engine::parameter::{self, Apply};
use crate::spec::Spec;

/// Whether the database runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The server accepts connections.
    Up,
    /// It exists but the server does not answer.
    Down,
    /// Nothing exists on the target.
    Absent,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Absent => "not created",
        })
    }
}

/// How clients reach the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Client address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// What the platform applied last, as it recorded it (on the host: `instance.json`).
/// A database made before dbctl recorded this has none, and only state changes are
/// planned for it until its next apply records it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Target name.
    pub target: String,
    /// Engine version series (`15`).
    pub version: String,
    /// Allotted size in GB.
    pub size_gb: u32,
    /// Plan name.
    pub plan: String,
    /// Allowed networks.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// Engine parameters, canonical.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Template → sha256 of its text (built-in or the repo's override) for every
    /// template the database was built from.
    #[serde(default)]
    pub artifact_digests: BTreeMap<String, String>,
    /// `backup.schedule` as installed (`daily 01:00 Europe/Paris`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_schedule: Option<String>,
    /// The store WAL is archived to (`off`: none), where the platform archives
    /// ([`crate::platform::Platform::wal_archive`]); `None`: not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_archive: Option<String>,
}

impl Applied {
    /// What is applied after `changes`: `full` (the spec's values) when everything was
    /// (re)applied — a create, a restart — else `previous` with only the attributes of
    /// `changes` taken from `full`, so a change left for the window stays planned.
    pub fn after(previous: Option<Self>, full: Self, changes: &[Change], whole: bool) -> Self {
        let Some(mut applied) = previous.filter(|_| !whole) else {
            return full;
        };
        for change in changes {
            let attr = change.attribute.as_str();
            if let Some(key) = attr.strip_prefix("parameters.") {
                match full.parameters.get(key) {
                    Some(v) => applied.parameters.insert(key.to_owned(), v.clone()),
                    None => applied.parameters.remove(key),
                };
            } else if let Some(t) = attr.strip_prefix("artifact.") {
                if let Some(d) = full.artifact_digests.get(t) {
                    applied.artifact_digests.insert(t.to_owned(), d.clone());
                }
            } else {
                match attr {
                    "size_gb" => applied.size_gb = full.size_gb,
                    "plan" => applied.plan.clone_from(&full.plan),
                    "allowed_cidrs" => applied.allowed_cidrs.clone_from(&full.allowed_cidrs),
                    "version" => applied.version.clone_from(&full.version),
                    "backup.schedule" => applied.backup_schedule.clone_from(&full.backup_schedule),
                    "backup.wal_archive" => applied.wal_archive.clone_from(&full.wal_archive),
                    _ => {}
                }
            }
        }
        applied
    }

    /// What applying `spec` with `digests` records.
    pub fn of(spec: &Spec, digests: BTreeMap<String, String>) -> Self {
        Self {
            target: spec.target.clone(),
            version: spec.version.clone(),
            size_gb: spec.size_gb,
            plan: spec.plan.clone(),
            allowed_cidrs: spec.allowed_cidrs.clone(),
            parameters: spec.parameters.clone(),
            artifact_digests: digests,
            backup_schedule: spec.backup.as_ref().and_then(|b| b.schedule.clone()),
            wal_archive: None,
        }
    }
}

/// What runs, as the platform sees it. Platform-specific detail (the cluster view,
/// Heat stacks, …) is data in `details`, not a field per platform.
#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    /// Up, down or absent.
    pub state: State,
    /// The running server's full version (`15.18`), when up.
    pub server_version: Option<String>,
    /// The full version of the binaries installed for the spec's series, when the
    /// platform installs them (a newer minor means a minor upgrade is pending).
    pub installed_version: Option<String>,
    /// What was applied last.
    pub applied: Option<Applied>,
    /// How clients reach it.
    pub endpoint: Option<Endpoint>,
    /// Disk used by the instance, bytes.
    pub used_bytes: u64,
    /// Bytes the engine reports for the application database (Redis: the dataset in
    /// memory).
    pub database_bytes: Option<u64>,
    /// Settings the server reports as changed but needing a restart (PostgreSQL
    /// `pg_settings.pending_restart`).
    pub pending_restart: Vec<String>,
    /// The values the running server reports for the spec's `parameters`, when the
    /// platform reads them (hosts): a value other than the spec's is drift, planned
    /// as a change. Empty: not read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub running_parameters: BTreeMap<String, String>,
    /// Why it is down, when known.
    pub detail: Option<String>,
    /// Platform detail as data: `cluster` (pacemaker), `stacks` (openstack), `host`.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, Value>,
}

impl Observed {
    /// Nothing on the target.
    pub fn absent() -> Self {
        Self {
            state: State::Absent,
            server_version: None,
            installed_version: None,
            applied: None,
            endpoint: None,
            used_bytes: 0,
            database_bytes: None,
            pending_restart: Vec::new(),
            running_parameters: BTreeMap::new(),
            detail: None,
            details: serde_json::Map::new(),
        }
    }
}

/// What a change does, with its plan symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `+`: make it.
    Create,
    /// `~`: change it in place.
    Update,
    /// `-/+`: make it anew (data moves).
    Replace,
    /// `-`: remove it.
    Delete,
}

impl Action {
    /// `+`, `~`, `-/+` or `-`.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Create => "+",
            Self::Update => "~",
            Self::Replace => "-/+",
            Self::Delete => "-",
        }
    }
}

/// What clients notice while a change is applied, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disruption {
    /// Nothing.
    None,
    /// The server rereads its configuration; connections stay.
    Reload,
    /// The server restarts; connections drop for seconds.
    Restart,
    /// Data is copied or converted (a major upgrade, a move): minutes or more.
    DataMovement,
}

impl Disruption {
    /// Whether it waits for the maintenance window (restart or worse).
    pub fn needs_window(self) -> bool {
        self >= Self::Restart
    }
}

impl std::fmt::Display for Disruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "no disruption",
            Self::Reload => "reload",
            Self::Restart => "restart",
            Self::DataMovement => "data movement",
        })
    }
}

/// One typed difference between the spec and what runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// What it does.
    pub action: Action,
    /// The attribute (`database`, `state`, `parameters.work_mem`, `size_gb`, …).
    pub attribute: String,
    /// Its value now.
    pub old: Option<Value>,
    /// Its value after.
    pub new: Option<Value>,
    /// What clients notice.
    pub disruption: Disruption,
    /// Why, for people.
    pub reason: String,
}

impl Change {
    fn update(
        attribute: &str,
        old: Value,
        new: Value,
        disruption: Disruption,
        reason: &str,
    ) -> Self {
        Self {
            action: Action::Update,
            attribute: attribute.to_owned(),
            old: Some(old),
            new: Some(new),
            disruption,
            reason: reason.to_owned(),
        }
    }

    /// `+ database`: make it.
    pub fn create(spec: &Spec) -> Self {
        Self {
            action: Action::Create,
            attribute: "database".into(),
            old: None,
            new: Some(Value::String(format!("{} {}", spec.engine, spec.version))),
            disruption: Disruption::None,
            reason: "not created yet".into(),
        }
    }

    /// `- database`: stop it and remove its data.
    pub fn delete(spec: &Spec) -> Self {
        Self {
            action: Action::Delete,
            attribute: "database".into(),
            old: Some(Value::String(format!("{} {}", spec.engine, spec.version))),
            new: None,
            disruption: Disruption::DataMovement,
            reason: "deleted: its data is removed".into(),
        }
    }
}

/// A spec change the platform cannot make in place; `plan` and `apply` report it and
/// change nothing for that database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("`{attribute}` cannot change from {old} to {new}: {why}")]
pub struct Refusal {
    /// The attribute.
    pub attribute: String,
    /// Its value now.
    pub old: String,
    /// What the spec asks.
    pub new: String,
    /// Why, and what to do instead.
    pub why: String,
}

/// What the platform can change in place, per database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `size_gb` may grow, with what disruption (`None`: it cannot grow here).
    pub grow: Option<Disruption>,
    /// A minor upgrade (new binaries of the same series, restart).
    pub minor_upgrade: bool,
    /// A major upgrade (another series: data is converted).
    pub major_upgrade: bool,
    /// Parameters, plan, `allowed_cidrs` and templates.
    pub configure: bool,
    /// `backup.schedule` (a systemd timer on `local`).
    pub schedule_backups: bool,
    /// `dbctl backup`, `restore` and `backup verify`: the platform streams a backup
    /// out of the running database and restores one in place (`-/+ data`).
    pub backup: bool,
}

/// What the spec wants, beyond the spec itself: the digests of the templates its
/// platform renders now, and what the platform can do.
#[derive(Debug, Clone)]
pub struct Want<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// Template → sha256 of its text, as the repo renders it now.
    pub artifact_digests: &'a BTreeMap<String, String>,
    /// What the platform can change.
    pub capabilities: Capabilities,
    /// Where the server would archive WAL ([`crate::platform::Platform::wal_archive`]).
    pub wal_archive: Option<String>,
}

/// The version series of a full version: as many dot-separated parts as `like` has
/// (`15.18` like `15` → `15`; `10.11.19` like `10.11` → `10.11`).
pub fn series_of(full: &str, like: &str) -> String {
    let depth = like.split('.').count();
    full.split('.').take(depth).collect::<Vec<_>>().join(".")
}

/// How a change of one template's text takes effect: access rules and bootstrap SQL
/// are reread or rerun; every other configuration file needs a restart.
fn template_disruption(template: &str) -> Disruption {
    if template.ends_with("pg_hba.conf.j2")
        || template.ends_with(".sql.j2")
        || template.ends_with("users.acl.j2")
        || template.ends_with("acl-load.j2")
    {
        Disruption::Reload
    } else {
        Disruption::Restart
    }
}

/// How a plan change takes effect: the memory settings it drives are
/// `shared_buffers` (PostgreSQL: restart), `innodb_buffer_pool_size` and `maxmemory`
/// (MariaDB, Redis: changed at run time).
fn plan_disruption(engine: EngineKind) -> Disruption {
    match engine {
        EngineKind::Postgresql | EngineKind::Mongodb => Disruption::Restart,
        EngineKind::Mariadb | EngineKind::Redis => Disruption::Reload,
    }
}

/// The changes that bring `observed` to `want`, reloads before restarts; empty when
/// nothing differs. Pure.
///
/// # Errors
/// A [`Refusal`] for a change the platform cannot make in place: another target (use
/// restore into it), another engine, a smaller size, or an upgrade it cannot do.
pub fn plan(want: &Want<'_>, observed: &Observed) -> Result<Vec<Change>, Refusal> {
    let spec = want.spec;
    let caps = want.capabilities;
    let mut changes = Vec::new();
    let schedule = spec.backup.as_ref().and_then(|b| b.schedule.clone());
    if schedule.is_some() && !caps.schedule_backups {
        return Err(Refusal {
            attribute: "backup.schedule".into(),
            old: observed
                .applied
                .as_ref()
                .and_then(|a| a.backup_schedule.clone())
                .unwrap_or_else(|| "none".into()),
            new: schedule.clone().unwrap_or_default(),
            why: "scheduled backups run on `local` and `ssh` targets and resource groups (`pacemaker`, `openstack` with `runtime: pacemaker`) as a systemd timer, and are rendered for kubernetes; elsewhere run `dbctl backup` from cron or CI".into(),
        });
    }
    if observed.state == State::Absent {
        return Ok(vec![Change::create(spec)]);
    }
    let Some(applied) = &observed.applied else {
        // Made before dbctl recorded what it applied: converge state only.
        changes.extend(start(observed));
        return Ok(changes);
    };
    if applied.target != spec.target {
        return Err(Refusal {
            attribute: "target".into(),
            old: applied.target.clone(),
            new: spec.target.clone(),
            why: format!(
                "a database does not move between targets; use restore into the new target (`dbctl restore {} --target {}`), then delete the old one",
                spec.name, spec.target
            ),
        });
    }
    // Version: the running series (or the recorded one when down) against the spec.
    let running = observed
        .server_version
        .as_deref()
        .map_or_else(|| applied.version.clone(), |v| series_of(v, &spec.version));
    if running != spec.version {
        if !caps.major_upgrade {
            return Err(Refusal {
                attribute: "version".into(),
                old: running,
                new: spec.version.clone(),
                why: format!(
                    "this platform cannot upgrade {} across versions in place; restore a backup into a new database of version {}",
                    spec.engine, spec.version
                ),
            });
        }
        changes.push(Change {
            action: Action::Replace,
            attribute: "version".into(),
            old: Some(running.into()),
            new: Some(spec.version.clone().into()),
            disruption: Disruption::DataMovement,
            reason: "major upgrade: the data is converted to the new version".into(),
        });
    } else if let (Some(now), Some(installed)) =
        (&observed.server_version, &observed.installed_version)
        && now != installed
        && caps.minor_upgrade
    {
        changes.push(Change::update(
            "version",
            now.clone().into(),
            installed.clone().into(),
            Disruption::Restart,
            "minor upgrade: newer binaries of the same version are installed",
        ));
    }
    if spec.size_gb < applied.size_gb {
        return Err(Refusal {
            attribute: "size_gb".into(),
            old: format!("{} GB", applied.size_gb),
            new: format!("{} GB", spec.size_gb),
            why: format!(
                "a database does not shrink in place; restore a backup into a new database of {} GB",
                spec.size_gb
            ),
        });
    }
    if spec.size_gb > applied.size_gb {
        let Some(disruption) = caps.grow else {
            return Err(Refusal {
                attribute: "size_gb".into(),
                old: format!("{} GB", applied.size_gb),
                new: format!("{} GB", spec.size_gb),
                why: "this platform cannot grow storage in place yet".into(),
            });
        };
        changes.push(Change::update(
            "size_gb",
            applied.size_gb.into(),
            spec.size_gb.into(),
            disruption,
            if disruption == Disruption::None {
                "grow the allotment"
            } else {
                "grow the storage and its filesystem (the database may stop while it grows)"
            },
        ));
    }
    let configure = |changes: &mut Vec<Change>, change: Change| -> Result<(), Refusal> {
        if caps.configure {
            changes.push(change);
            Ok(())
        } else {
            Err(Refusal {
                attribute: change.attribute,
                old: change.old.map(|v| v.to_string()).unwrap_or_default(),
                new: change.new.map(|v| v.to_string()).unwrap_or_default(),
                why: "this platform cannot reconfigure a running database yet".into(),
            })
        }
    };
    if applied.plan != spec.plan {
        configure(
            &mut changes,
            Change::update(
                "plan",
                applied.plan.clone().into(),
                spec.plan.clone().into(),
                plan_disruption(spec.engine),
                "cpu and memory settings follow the plan",
            ),
        )?;
    }
    if applied.allowed_cidrs != spec.allowed_cidrs {
        configure(
            &mut changes,
            Change::update(
                "allowed_cidrs",
                serde_json::json!(applied.allowed_cidrs),
                serde_json::json!(spec.allowed_cidrs),
                Disruption::Reload,
                "who may connect",
            ),
        )?;
    }
    let keys: std::collections::BTreeSet<&String> = applied
        .parameters
        .keys()
        .chain(spec.parameters.keys())
        .collect();
    for key in keys {
        let (old, new) = (applied.parameters.get(key), spec.parameters.get(key));
        if old == new {
            continue;
        }
        // PostgreSQL returns a setting left out of its file to the default on reload;
        // MariaDB and Redis keep the running value until a restart.
        let reset_needs_restart = new.is_none() && spec.engine != EngineKind::Postgresql;
        let disruption = match parameter::setting(spec.engine, key).map(|s| s.apply) {
            Some(Apply::Reload) if !reset_needs_restart => Disruption::Reload,
            _ => Disruption::Restart,
        };
        let reason = match (old, new) {
            (None, _) => "set",
            (_, None) => "back to the engine's default",
            _ => "changed",
        };
        configure(
            &mut changes,
            Change {
                action: Action::Update,
                attribute: format!("parameters.{key}"),
                old: old.map(|v| v.clone().into()),
                new: new.map(|v| v.clone().into()),
                disruption,
                reason: reason.into(),
            },
        )?;
    }
    // Drift: a setting the spec (and the record) agree on, that the server runs with
    // another value — changed outside dbctl. Applying the spec's value again is the
    // fix, with the setting's own disruption.
    for (key, running) in &observed.running_parameters {
        let Some(wanted) = spec.parameters.get(key) else {
            continue;
        };
        let attribute = format!("parameters.{key}");
        if changes.iter().any(|c| c.attribute == attribute)
            || parameter::same_value(spec.engine, key, running, wanted)
        {
            continue;
        }
        let disruption = match parameter::setting(spec.engine, key).map(|s| s.apply) {
            Some(Apply::Reload) => Disruption::Reload,
            _ => Disruption::Restart,
        };
        configure(
            &mut changes,
            Change {
                action: Action::Update,
                attribute,
                old: Some(running.clone().into()),
                new: Some(wanted.clone().into()),
                disruption,
                reason: DRIFT.into(),
            },
        )?;
    }
    // A record without digests was written before the platform recorded them: not
    // compared until a whole apply (create, restart) records them.
    let recorded = !applied.artifact_digests.is_empty();
    for (template, digest) in want.artifact_digests.iter().filter(|_| recorded) {
        match applied.artifact_digests.get(template) {
            Some(old) if old == digest => {}
            old => configure(
                &mut changes,
                Change {
                    action: Action::Update,
                    attribute: format!("artifact.{template}"),
                    old: old.map(|d| short(d).into()),
                    new: Some(short(digest).into()),
                    disruption: template_disruption(template),
                    reason: "the template changed (built in, or the repo's override)".into(),
                },
            )?,
        }
    }
    if let (Some(old), Some(new)) = (&applied.wal_archive, &want.wal_archive)
        && old != new
    {
        // `archive_mode` itself needs a restart; another store only a new command.
        let toggles = old == "off" || new == "off";
        configure(
            &mut changes,
            Change::update(
                "backup.wal_archive",
                old.clone().into(),
                new.clone().into(),
                if toggles {
                    Disruption::Restart
                } else {
                    Disruption::Reload
                },
                "continuous WAL archiving follows the backup store",
            ),
        )?;
    }
    if applied.backup_schedule != schedule {
        let shown = |s: &Option<String>| s.clone().unwrap_or_else(|| "none".into()).into();
        changes.push(Change::update(
            "backup.schedule",
            shown(&applied.backup_schedule),
            shown(&schedule),
            Disruption::None,
            "when scheduled backups run",
        ));
    }
    for name in &observed.pending_restart {
        if !changes
            .iter()
            .any(|c| c.attribute == format!("parameters.{name}"))
        {
            changes.push(Change::update(
                &format!("parameters.{name}"),
                "set".into(),
                "in effect".into(),
                Disruption::Restart,
                "the server says this setting waits for a restart",
            ));
        }
    }
    changes.extend(start(observed));
    changes.sort_by_key(|c| c.disruption);
    Ok(changes)
}

/// `~ state: down → up` for a database that exists but does not run.
fn start(observed: &Observed) -> Option<Change> {
    (observed.state == State::Down).then(|| {
        Change::update(
            "state",
            "down".into(),
            "up".into(),
            Disruption::Restart,
            observed
                .detail
                .as_deref()
                .unwrap_or("the server does not answer"),
        )
    })
}

/// The reason of a change of a setting the server runs with another value than the
/// spec and the record say: changed outside dbctl.
pub const DRIFT: &str = "drift: the server runs another value (changed outside dbctl)";

impl Change {
    /// Whether the change puts back what runs differently from what was applied (a
    /// stopped server, a setting changed outside dbctl, binaries upgraded under a
    /// running server), rather than applying a spec that moved on.
    pub fn is_drift(&self) -> bool {
        self.attribute == "state"
            || self.reason == DRIFT
            || (self.attribute == "version" && self.action == Action::Update)
    }
}

/// The strongest disruption of `changes` (`None` when empty).
pub fn disruption(changes: &[Change]) -> Disruption {
    changes
        .iter()
        .map(|c| c.disruption)
        .max()
        .unwrap_or(Disruption::None)
}

fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

/// Each of `templates` (name → text) → the lowercase hex sha256 of its text.
pub fn digests<'a>(
    templates: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    templates
        .into_iter()
        .map(|(name, text)| {
            (
                name.to_owned(),
                hex::encode(Sha256::digest(text.as_bytes())),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            name: "db".into(),
            engine: EngineKind::Postgresql,
            version: "15".into(),
            size_gb: 10,
            plan: "small".into(),
            target: "local".into(),
            database: "db".into(),
            user: "db".into(),
            deletion_protection: false,
            allowed_cidrs: Vec::new(),
            parameters: BTreeMap::new(),
            maintenance: None,
            backup: None,
        }
    }

    fn up(applied: Applied) -> Observed {
        Observed {
            state: State::Up,
            server_version: Some("15.18".into()),
            installed_version: Some("15.18".into()),
            applied: Some(applied),
            ..Observed::absent()
        }
    }

    fn all() -> Capabilities {
        Capabilities {
            grow: Some(Disruption::None),
            minor_upgrade: true,
            major_upgrade: false,
            configure: true,
            schedule_backups: true,
            backup: true,
        }
    }

    fn render(changes: &[Change]) -> String {
        changes
            .iter()
            .map(|c| {
                format!(
                    "{} {}: {} -> {} ({})\n",
                    c.action.symbol(),
                    c.attribute,
                    c.old.as_ref().map_or("-".into(), ToString::to_string),
                    c.new.as_ref().map_or("-".into(), ToString::to_string),
                    c.disruption
                )
            })
            .collect()
    }

    #[test]
    fn a_matching_database_needs_nothing_and_an_absent_one_is_created() {
        let s = spec();
        let digests = BTreeMap::from([("t".to_owned(), "aa".to_owned())]);
        let want = Want {
            spec: &s,
            artifact_digests: &digests,
            capabilities: all(),
            wal_archive: None,
        };
        let observed = up(Applied::of(&s, digests.clone()));
        assert_eq!(plan(&want, &observed).unwrap(), Vec::new());
        let created = plan(&want, &Observed::absent()).unwrap();
        assert_eq!(
            render(&created),
            "+ database: - -> \"postgresql 15\" (no disruption)\n"
        );
    }

    #[test]
    fn a_setting_changed_outside_dbctl_is_drift_planned_back() {
        let mut s = spec();
        s.parameters.insert("work_mem".into(), "64MB".into());
        s.parameters.insert("max_connections".into(), "200".into());
        let digests = BTreeMap::new();
        let want = Want {
            spec: &s,
            artifact_digests: &digests,
            capabilities: all(),
            wal_archive: None,
        };
        let mut observed = up(Applied::of(&s, digests.clone()));
        // Same quantity, other spelling: no drift.
        observed.running_parameters = BTreeMap::from([
            ("work_mem".into(), "65536kB".into()),
            ("max_connections".into(), "200".into()),
        ]);
        assert_eq!(plan(&want, &observed).unwrap(), Vec::new());
        observed.running_parameters = BTreeMap::from([
            ("work_mem".into(), "4MB".into()),
            ("max_connections".into(), "100".into()),
        ]);
        insta::assert_snapshot!(render(&plan(&want, &observed).unwrap()), @r###"
        ~ parameters.work_mem: "4MB" -> "64MB" (reload)
        ~ parameters.max_connections: "100" -> "200" (restart)
        "###);
    }

    #[test]
    fn a_record_without_digests_is_not_compared_a_new_template_is() {
        let s = spec();
        let digests = BTreeMap::from([
            ("group/db-x".to_owned(), "aa".to_owned()),
            (
                "pacemaker/postgresql/pg_hba.conf.j2".to_owned(),
                "bb".to_owned(),
            ),
        ]);
        let want = Want {
            spec: &s,
            artifact_digests: &digests,
            capabilities: all(),
            wal_archive: None,
        };
        // Written before the platform recorded digests: nothing to restart for.
        let legacy = up(Applied::of(&s, BTreeMap::new()));
        assert_eq!(plan(&want, &legacy).unwrap(), Vec::new());
        // Recorded, and one template is new since.
        let recorded = up(Applied::of(
            &s,
            BTreeMap::from([("group/db-x".to_owned(), "aa".to_owned())]),
        ));
        insta::assert_snapshot!(render(&plan(&want, &recorded).unwrap()), @"~ artifact.pacemaker/postgresql/pg_hba.conf.j2: - -> \"bb\" (reload)\n");
    }

    #[test]
    fn spec_changes_are_typed_with_their_disruption_reloads_first() {
        let mut s = spec();
        let before = Applied::of(
            &s,
            BTreeMap::from([(
                "local/postgresql/pg_hba.conf.j2".to_owned(),
                "aa".to_owned(),
            )]),
        );
        s.parameters.insert("max_connections".into(), "200".into());
        s.parameters.insert("work_mem".into(), "64MB".into());
        s.size_gb = 20;
        s.allowed_cidrs = vec!["10.0.0.0/8".into()];
        let digests = BTreeMap::from([(
            "local/postgresql/pg_hba.conf.j2".to_owned(),
            "bbbbbbbbbbbbbbbb".to_owned(),
        )]);
        let want = Want {
            spec: &s,
            artifact_digests: &digests,
            capabilities: all(),
            wal_archive: None,
        };
        let changes = plan(&want, &up(before)).unwrap();
        insta::assert_snapshot!(render(&changes), @r###"
        ~ size_gb: 10 -> 20 (no disruption)
        ~ allowed_cidrs: [] -> ["10.0.0.0/8"] (reload)
        ~ parameters.work_mem: - -> "64MB" (reload)
        ~ artifact.local/postgresql/pg_hba.conf.j2: "aa" -> "bbbbbbbbbbbb" (reload)
        ~ parameters.max_connections: - -> "200" (restart)
        "###);
        assert_eq!(disruption(&changes), Disruption::Restart);
    }

    #[test]
    fn growing_takes_the_platforms_disruption_and_a_heat_stack_change_restarts() {
        let mut s = spec();
        let before = Applied::of(
            &s,
            BTreeMap::from([("heat/db-x-cluster".to_owned(), "aa".to_owned())]),
        );
        s.size_gb = 20;
        let digests = BTreeMap::from([("heat/db-x-cluster".to_owned(), "bb".to_owned())]);
        let want = Want {
            spec: &s,
            artifact_digests: &digests,
            capabilities: Capabilities {
                grow: Some(Disruption::Restart),
                ..all()
            },
            wal_archive: None,
        };
        insta::assert_snapshot!(render(&plan(&want, &up(before.clone())).unwrap()), @r###"
        ~ size_gb: 10 -> 20 (restart)
        ~ artifact.heat/db-x-cluster: "aa" -> "bb" (restart)
        "###);
        let cannot = Want {
            capabilities: Capabilities {
                grow: None,
                ..all()
            },
            ..want
        };
        let refusal = plan(&cannot, &up(before)).unwrap_err();
        assert_eq!(refusal.attribute, "size_gb");
        assert!(refusal.why.contains("cannot grow"), "{}", refusal.why);
    }

    #[test]
    fn what_cannot_change_in_place_is_refused() {
        let mut s = spec();
        let applied = Applied::of(&s, BTreeMap::new());
        let digests = BTreeMap::new();
        s.size_gb = 5;
        let want = Want {
            spec: &s,
            artifact_digests: &digests,
            capabilities: all(),
            wal_archive: None,
        };
        let refusal = plan(&want, &up(applied.clone())).unwrap_err();
        assert!(refusal.to_string().contains("does not shrink"), "{refusal}");
        let mut s = spec();
        s.target = "dr-cloud".into();
        let want = Want {
            spec: &s,
            artifact_digests: &digests,
            capabilities: all(),
            wal_archive: None,
        };
        let refusal = plan(&want, &up(applied.clone())).unwrap_err();
        assert!(
            refusal
                .to_string()
                .contains("use restore into the new target"),
            "{refusal}"
        );
        let mut s = spec();
        s.version = "16".into();
        let want = Want {
            spec: &s,
            artifact_digests: &digests,
            capabilities: all(),
            wal_archive: None,
        };
        assert!(plan(&want, &up(applied.clone())).is_err());
        let want = Want {
            capabilities: Capabilities {
                major_upgrade: true,
                ..all()
            },
            ..want
        };
        let changes = plan(&want, &up(applied)).unwrap();
        assert_eq!(
            render(&changes),
            "-/+ version: \"15\" -> \"16\" (data movement)\n"
        );
    }

    #[test]
    fn a_newer_minor_and_a_down_server_restart() {
        let s = spec();
        let digests = BTreeMap::new();
        let want = Want {
            spec: &s,
            artifact_digests: &digests,
            capabilities: all(),
            wal_archive: None,
        };
        let mut observed = up(Applied::of(&s, BTreeMap::new()));
        observed.installed_version = Some("15.19".into());
        assert_eq!(
            render(&plan(&want, &observed).unwrap()),
            "~ version: \"15.18\" -> \"15.19\" (restart)\n"
        );
        let mut down = up(Applied::of(&s, BTreeMap::new()));
        down.state = State::Down;
        down.server_version = None;
        assert_eq!(
            render(&plan(&want, &down).unwrap()),
            "~ state: \"down\" -> \"up\" (restart)\n"
        );
    }
}
