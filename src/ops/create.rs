//! `dbctl create`: validate, write the spec, run the platform's create playbook, write
//! the connection file and commit both.
//!
//! Order matters for safety: everything is validated and the platform's preflight
//! passes before any file, process or directory appears; the lock is then taken; the
//! spec is written before infrastructure changes so a crashed run is found and
//! converged by the next one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Session;
use crate::change::Change;
use crate::gitops::connection::ConnectionFile;
use crate::gitops::{Repo, git};
use crate::output::Report;
use crate::platform::{Request, State};
use crate::secret;
use crate::spec::{Draft, Given, Source};

/// Flags of `dbctl create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Database name.
    pub name: String,
    /// `--type`: engine or alias.
    pub engine: String,
    /// `--size` in GB.
    pub size_gb: Option<u64>,
    /// `--version`.
    pub version: Option<String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--plan`.
    pub plan: Option<String>,
    /// `--database`.
    pub database: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--deletion-protection`.
    pub deletion_protection: bool,
    /// `--allow CIDR`.
    pub allowed_cidrs: Vec<String>,
    /// `--param KEY=VALUE`.
    pub parameters: BTreeMap<String, String>,
    /// `--no-commit`.
    pub no_commit: bool,
    /// `--push`.
    pub push: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--lock-timeout` in seconds.
    pub lock_timeout_s: u64,
}

/// What `create` did.
#[derive(Debug, Serialize)]
pub struct CreateReport {
    /// Database name.
    pub name: String,
    /// Engine.
    pub engine: String,
    /// Version series of the spec.
    pub version: String,
    /// Full server version.
    pub server_version: Option<String>,
    /// Target.
    pub target: String,
    /// Client address.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// URI without password.
    pub uri: Option<String>,
    /// The spec file (repo-relative).
    pub spec_file: PathBuf,
    /// The connection file (repo-relative).
    pub connection_file: PathBuf,
    /// False when the database already existed healthy and nothing was done.
    pub changed: bool,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// The commit made, if any.
    pub commit: Option<String>,
    /// True when pushed.
    pub pushed: bool,
}

impl Report for CreateReport {
    fn human(&self) -> String {
        let mut text = String::new();
        if self.dry_run {
            text.push_str(&format!(
                "dry run: would create `{}` ({} {}) on target `{}`, writing {} and {}\n",
                self.name,
                self.engine,
                self.version,
                self.target,
                self.spec_file.display(),
                self.connection_file.display()
            ));
            return text;
        }
        if self.changed {
            text.push_str(&format!(
                "created `{}`: {} {} on target `{}` at {}:{}\n",
                self.name,
                self.engine,
                self.server_version.as_deref().unwrap_or(&self.version),
                self.target,
                self.host.as_deref().unwrap_or("?"),
                self.port.unwrap_or(0)
            ));
        } else {
            text.push_str(&format!(
                "`{}` already exists and is up; nothing to do\n",
                self.name
            ));
        }
        text.push_str(&format!(
            "connection file: {}\n",
            self.connection_file.display()
        ));
        if let Some(commit) = &self.commit {
            text.push_str(&format!("committed {}\n", &commit[..commit.len().min(12)]));
        }
        if self.pushed {
            text.push_str("pushed\n");
        }
        text
    }
}

fn flag<T>(value: Option<T>, flag: &'static str) -> Option<Given<T>> {
    value.map(|value| Given {
        value,
        source: Source::Flag(flag),
    })
}

/// Runs `dbctl create`.
///
/// # Errors
/// Invalid input (nothing changed), a lock held by another run, or a failed step.
pub fn create(session: &Session, opts: &CreateOptions) -> Result<CreateReport> {
    let repo = session.repo()?;
    if !opts.no_commit {
        repo.require_git()?;
    }
    let draft = Draft {
        name: Given {
            value: opts.name.clone(),
            source: Source::Flag("NAME"),
        },
        engine: Given {
            value: opts.engine.clone(),
            source: Source::Flag("--type"),
        },
        version: flag(opts.version.clone(), "--version"),
        size_gb: flag(opts.size_gb, "--size"),
        plan: flag(opts.plan.clone(), "--plan"),
        target: flag(opts.target.clone(), "--target"),
        database: flag(opts.database.clone(), "--database"),
        user: flag(opts.user.clone(), "--user"),
        deletion_protection: opts.deletion_protection,
        allowed_cidrs: opts.allowed_cidrs.clone(),
        parameters: opts.parameters.clone(),
        parameters_source: Source::Flag("--param"),
        allowed_cidrs_source: Source::Flag("--allow"),
        maintenance: None,
        backup_store: None,
        backup_retention: None,
        backup_archive_wal: None,
        backup_schedule: None,
    };
    // The platform's preferred version needs the target; validate once without it to
    // find the target, then choose.
    let target_name = opts
        .target
        .clone()
        .unwrap_or_else(|| repo.config.default_target.clone());
    let platform = repo
        .config
        .target(&target_name)
        .map(|t| session.driver(&repo, t))
        .transpose()?;
    let spec = draft.validate(&repo.catalog, &repo.config, &|engine, _target| {
        platform.as_ref().and_then(|p| p.preferred_version(engine))
    })?;
    let platform = match platform {
        Some(p) if spec.target == target_name => p,
        _ => session.platform(&repo, &spec)?,
    };

    let spec_rel = Repo::spec_rel(&spec.name);
    let conn_rel = Repo::connection_rel(&spec.name);
    if let Some(existing) = repo.load_spec(&spec.name)?
        && existing != spec
    {
        bail!(
            "database `{}` already exists with a different spec in `{}`; this create asks for {}; keep the spec's values, or delete the database first",
            spec.name,
            spec_rel.display(),
            describe_difference(&existing, &spec)
        );
    }
    if repo.config.recipients.is_empty() {
        return Err(secret::SecretError::NoRecipients.into());
    }
    check_enforceable(&spec, platform.as_ref())?;
    let noop = |_: usize, _: usize, _: &str| {};
    platform.preflight(&Request {
        spec: &spec,
        changes: &[Change::create(&spec)],
        password: None,
        login: None,
        progress: &noop,
        output: None,
        restore: None,
    })?;

    let mut report = CreateReport {
        name: spec.name.clone(),
        engine: spec.engine.to_string(),
        version: spec.version.clone(),
        server_version: None,
        target: spec.target.clone(),
        host: None,
        port: None,
        uri: None,
        spec_file: spec_rel.clone(),
        connection_file: conn_rel.clone(),
        changed: false,
        dry_run: opts.dry_run,
        commit: None,
        pushed: false,
    };
    if opts.dry_run {
        return Ok(report);
    }

    let printer = &session.printer;
    let progress = |i: usize, n: usize, name: &str| printer.step(i, n, name);
    let converged = converge(
        &repo,
        &spec,
        platform.as_ref(),
        &Gate {
            operation: "create",
            identity: &session.identity,
            lock_timeout_s: opts.lock_timeout_s,
            // A create is not a change to a running database: it never waits.
            window: None,
            now: jiff::Timestamp::now(),
            restore: None,
        },
        printer,
        &progress,
    )?;
    report.changed = converged.changed;
    report.server_version = converged.server_version;
    report.host = converged.host;
    report.port = converged.port;
    report.uri = converged.uri;
    // Commit even when nothing changed: an earlier run may have written the files and
    // failed to commit them (a held git lock, a full disk).
    if !opts.no_commit {
        report.commit = commit(&repo, &[&spec_rel, &conn_rel], &spec.name)?;
        if opts.push && report.commit.is_some() {
            git::push(repo.root())?;
            report.pushed = true;
        }
    }
    Ok(report)
}

/// What [`converge`] found or did.
#[derive(Debug, Clone, Serialize)]
pub struct Converged {
    /// False when nothing was applied.
    pub changed: bool,
    /// The changes applied.
    pub applied: Vec<Change>,
    /// Disruptive changes left for the maintenance window, and when it opens.
    pub deferred: Vec<Change>,
    /// When the deferred changes will run (the window's next opening).
    pub deferred_until: Option<String>,
    /// Full server version.
    pub server_version: Option<String>,
    /// Client address.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// URI without password.
    pub uri: Option<String>,
}

/// When and as whom [`converge`] may act.
pub struct Gate<'a> {
    /// The verb, for the lock's owner (`create`, `apply`, `resize`, …).
    pub operation: &'a str,
    /// The identity that decrypts the committed connection file.
    pub identity: &'a Path,
    /// Seconds to wait for another run's lock.
    pub lock_timeout_s: u64,
    /// The maintenance window; `None`: disruptive changes run now (`--now`, create).
    pub window: Option<crate::change::window::Window>,
    /// The time the window is checked against.
    pub now: jiff::Timestamp,
    /// A backup to restore (`dbctl restore`): its `~ data` change runs now, whatever
    /// the window (an operator asked for it).
    pub restore: Option<Restoring<'a>>,
}

/// A restore for [`converge`]: the change to show and apply, and what to restore.
pub struct Restoring<'a> {
    /// `-/+ data` (data movement), naming the backup.
    pub change: Change,
    /// The backup (and the WAL of a point-in-time recovery).
    pub source: crate::platform::Restore<'a>,
}

/// Splits `changes` into what may run at `now` and what waits for `window` (restart
/// or worse outside it), with the window's next opening.
pub fn gate(
    changes: Vec<Change>,
    window: Option<&crate::change::window::Window>,
    now: jiff::Timestamp,
) -> (Vec<Change>, Vec<Change>, Option<String>) {
    let Some(next) = window.and_then(|w| w.next_start(now)) else {
        return (changes, Vec::new(), None);
    };
    // Creating, or starting a database that is down, never waits: it serves nobody.
    let (now_ok, later): (Vec<_>, Vec<_>) = changes.into_iter().partition(|c| {
        !c.disruption.needs_window()
            || c.action == crate::change::Action::Create
            || c.attribute == "state"
    });
    if later.is_empty() {
        (now_ok, later, None)
    } else {
        (
            now_ok,
            later,
            Some(next.strftime("%Y-%m-%d %H:%M %Z").to_string()),
        )
    }
}

/// Plans `spec` against what runs on `platform`: the pure [`crate::change::plan`],
/// plus a missing connection file (new credentials).
///
/// # Errors
/// The platform cannot be queried, or the change is refused.
pub fn plan_changes(
    repo: &Repo,
    spec: &crate::spec::Spec,
    platform: &dyn crate::platform::Platform,
) -> Result<(Vec<Change>, crate::platform::Observed)> {
    let observed = platform.observe(spec)?;
    let digests = platform.artifact_digests(spec)?;
    let want = crate::change::Want {
        spec,
        artifact_digests: &digests,
        capabilities: platform.capabilities(spec),
        wal_archive: platform.wal_archive(spec),
    };
    let mut changes = crate::change::plan(&want, &observed)?;
    let conn_missing = repo
        .anchor()
        .kind(&Repo::connection_rel(&spec.name))?
        .is_none();
    if conn_missing && observed.state != crate::platform::State::Absent {
        changes.push(Change {
            action: crate::change::Action::Create,
            attribute: "connection_file".into(),
            old: None,
            new: Some(
                Repo::connection_rel(&spec.name)
                    .display()
                    .to_string()
                    .into(),
            ),
            disruption: crate::change::Disruption::None,
            reason: "missing: new credentials are issued and committed".into(),
        });
    }
    Ok((changes, observed))
}

/// Brings one validated spec to its desired state on `platform`, without committing.
/// Under the database's lock it plans again (another run may have acted), applies
/// what may run now — disruptive changes wait for the window in `gate` — and writes
/// the spec file (if missing) and the connection file.
///
/// Credentials survive a re-run: when the connection file exists, its password
/// (decrypted with the identity) is the one the platform keeps, and the file is only
/// rewritten when how to reach the database changed; only a database without a
/// connection file gets a new password. A first create that fails stops the server
/// and removes what this run made (instance, spec file), so nothing runs half-made.
///
/// # Errors
/// The lock is held elsewhere, a refused change, a connection file this identity
/// cannot decrypt, or a failed step (with the server log's last errors where the
/// platform has them).
pub fn converge(
    repo: &Repo,
    spec: &crate::spec::Spec,
    platform: &dyn crate::platform::Platform,
    gate_by: &Gate<'_>,
    printer: &crate::output::Printer,
    progress: crate::platform::Progress<'_>,
) -> Result<Converged> {
    check_enforceable(spec, platform)?;
    let _lock = super::lock(repo, &spec.name, gate_by.operation, gate_by.lock_timeout_s)?;
    // The repo's lock serialises runs of this clone; the lease, on the database's
    // host, those of every clone (two CI runners).
    let _lease = platform.lease(
        spec,
        &lease_holder(repo, gate_by.operation),
        std::time::Duration::from_secs(gate_by.lock_timeout_s),
    )?;
    let spec_rel = Repo::spec_rel(&spec.name);
    let conn_rel = Repo::connection_rel(&spec.name);
    let spec_on_disk = repo.read_text(&spec_rel)?;
    let existing = repo.connection(&spec.name)?;
    let (changes, before) = plan_changes(repo, spec, platform)?;
    let (mut now, deferred, deferred_until) = gate(changes, gate_by.window.as_ref(), gate_by.now);
    if let Some(restoring) = &gate_by.restore {
        now.push(restoring.change.clone());
    }
    let endpoint = before.endpoint.clone();
    let mut converged = Converged {
        changed: false,
        applied: Vec::new(),
        deferred,
        deferred_until,
        server_version: before.server_version.clone(),
        host: endpoint.as_ref().map(|e| e.host.clone()),
        port: endpoint.as_ref().map(|e| e.port),
        uri: existing.as_ref().map(|c| c.uri.clone()),
    };
    if now.is_empty() {
        if spec_on_disk.is_none() {
            repo.write(&spec_rel, spec.to_yaml().as_bytes(), 0o644)?;
        }
        return Ok(converged);
    }
    let password = match &existing {
        Some(conn) => secret::decrypt(
            &conn.password,
            gate_by.identity,
            &format!("{}: password", conn_rel.display()),
        )
        .with_context(|| {
            format!(
                "`{}` is {}; dbctl keeps its credentials and needs them to change it: use an identity of `secrets.recipients` (`--identity`, DBCTL_IDENTITY), or remove the connection file to issue new credentials",
                spec.name, before.state
            )
        })?,
        None => secret::generate_password(),
    };
    let fresh = existing.is_none() && before.state == State::Absent;
    let wrote_spec = spec_on_disk.is_none();
    if wrote_spec {
        repo.write(&spec_rel, spec.to_yaml().as_bytes(), 0o644)?;
    }
    printer.status(&format!(
        "{} `{}` ({} {}) on target `{}`",
        if fresh { "creating" } else { "changing" },
        spec.name,
        spec.engine,
        spec.version,
        spec.target
    ));
    let sink = |line: &str| printer.output(line);
    let request = Request {
        spec,
        changes: &now,
        password: Some(&password),
        login: existing.as_ref().map(|c| c.username.as_str()),
        progress,
        output: printer
            .verbose()
            .then_some(&sink as crate::platform::OutputSink<'_>),
        restore: gate_by.restore.as_ref().map(|r| &r.source),
    };
    // What the changes need (binaries, disk space for a larger size, templates) is
    // checked before anything changes.
    platform.preflight(&request)?;
    let applied = match platform.apply(&request) {
        Ok(applied) => applied,
        Err(err) if fresh => {
            // Nothing of this database existed before this run: leave nothing behind.
            let noop = |_: usize, _: usize, _: &str| {};
            let cleaned = platform.apply(&Request {
                spec,
                changes: &[Change::delete(spec)],
                password: None,
                login: None,
                progress: &noop,
                output: None,
                restore: None,
            });
            if wrote_spec {
                let _ = repo.anchor().remove_all(&spec_rel);
            }
            let note = match cleaned {
                Ok(_) => "dbctl stopped the server and removed what this run created".to_owned(),
                Err(e) => format!(
                    "cleaning up failed too ({e:#}); `dbctl delete {} --yes` retries it",
                    spec.name
                ),
            };
            return Err(err.context(format!("cannot create `{}` ({note})", spec.name)));
        }
        Err(err) => return Err(err.context(format!("cannot change `{}`", spec.name))),
    };
    let endpoint = applied
        .endpoint
        .clone()
        .or(endpoint)
        .with_context(|| format!("`{}`: the platform reported no endpoint", spec.name))?;
    let uri = applied.uri.clone().unwrap_or_default();
    let conn = ConnectionFile {
        name: spec.name.clone(),
        engine: spec.engine.to_string(),
        version: spec.version.clone(),
        host: endpoint.host.clone(),
        port: endpoint.port,
        database: spec.database.clone(),
        // After `rotate-credentials` the login is the owner's alternate.
        username: existing
            .as_ref()
            .map_or_else(|| spec.user.clone(), |c| c.username.clone()),
        password: String::new(),
        uri: uri.clone(),
        target: spec.target.clone(),
        written_at: jiff::Timestamp::now().to_string(),
    };
    let unchanged = existing.as_ref().is_some_and(|old| {
        ConnectionFile {
            password: String::new(),
            written_at: old.written_at.clone(),
            ..conn.clone()
        } == ConnectionFile {
            password: String::new(),
            ..old.clone()
        }
    });
    if !unchanged {
        let encrypted = match &existing {
            // The same password keeps its ciphertext: no diff for readers of the repo.
            Some(old) => old.password.clone(),
            None => secret::encrypt(&password, &repo.config.recipients)?,
        };
        let conn = ConnectionFile {
            password: encrypted,
            ..conn
        };
        repo.write(&conn_rel, conn.to_yaml().as_bytes(), 0o644)?;
    }
    converged.changed = true;
    converged.applied = now;
    converged.server_version = applied.server_version;
    converged.host = Some(endpoint.host);
    converged.port = Some(endpoint.port);
    converged.uri = Some(uri);
    Ok(converged)
}

/// How long a lease lasts unless renewed or released, in seconds: a live runner renews
/// it every third of this, so a crashed runner's lease frees the database the same
/// hour. `DBCTL_LEASE_TTL_S` overrides it (a positive number of seconds).
pub const LEASE_TTL_S: i64 = 30 * 60;

/// [`LEASE_TTL_S`], or `DBCTL_LEASE_TTL_S` when that is a positive number.
fn lease_ttl_s() -> i64 {
    std::env::var("DBCTL_LEASE_TTL_S")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(LEASE_TTL_S)
}

/// This run as a lease holder.
pub fn lease_holder(repo: &Repo, operation: &str) -> crate::platform::LeaseHolder {
    let now = jiff::Timestamp::now();
    crate::platform::LeaseHolder {
        token: format!("{:016x}", rand::random::<u64>()),
        operation: operation.to_owned(),
        user: crate::transport::current_user_name(),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pid: std::process::id(),
        repo: repo.root().display().to_string(),
        since: now.to_string(),
        expires_at: now
            .checked_add(jiff::Span::new().seconds(lease_ttl_s()))
            .unwrap_or(now)
            .to_string(),
    }
}

/// Refuses a spec whose `allowed_cidrs` the server on a host platform cannot enforce
/// (see [`crate::spec::check_enforceable_cidrs`]).
fn check_enforceable(
    spec: &crate::spec::Spec,
    platform: &dyn crate::platform::Platform,
) -> Result<()> {
    use crate::spec::PlatformKind;
    if matches!(
        platform.kind(),
        PlatformKind::Local | PlatformKind::Ssh | PlatformKind::Pacemaker | PlatformKind::Openstack
    ) {
        crate::spec::check_enforceable_cidrs(spec).map_err(|m| {
            anyhow::anyhow!(
                "`{}`: key `allowed_cidrs`: {m}",
                Repo::spec_rel(&spec.name).display()
            )
        })?;
    }
    Ok(())
}

fn commit(repo: &Repo, paths: &[&Path], name: &str) -> Result<Option<String>> {
    Ok(git::commit_paths(
        repo.root(),
        paths,
        &format!("dbctl create {name}"),
        git::Removals::Refused,
    )?
    .map(|oid| oid.to_string()))
}

fn describe_difference(old: &crate::spec::Spec, new: &crate::spec::Spec) -> String {
    let old_v = serde_json::to_value(old).unwrap_or_default();
    let new_v = serde_json::to_value(new).unwrap_or_default();
    let mut diffs = Vec::new();
    if let (Some(a), Some(b)) = (old_v.as_object(), new_v.as_object()) {
        for (key, value) in b {
            if a.get(key) != Some(value) {
                diffs.push(format!(
                    "`{key}` {} (the spec has {})",
                    value,
                    a.get(key).map_or("nothing".into(), ToString::to_string)
                ));
            }
        }
    }
    diffs.join(", ")
}
