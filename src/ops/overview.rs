//! `dbctl status --all [--html DIR]`: every database of the repo at a glance — what
//! runs, its size against its allotment, its last backup and restore drill, and the
//! maintenance waiting for its window — as a table, JSON, or a static page (no
//! server: `templates/status/index.html.j2`, a sortable table and a chart of size and
//! backup age) to publish from CI.

use std::path::PathBuf;

use anyhow::{Context, Result};
use minijinja::Value;
use minijinja::value::Serde;
use serde::Serialize;

use super::Session;
use super::apply::{value, window_of};
use super::create::{gate, plan_changes};
use crate::gitops::Repo;
use crate::output::{Report, bytes, table};
use crate::spec::Spec;

/// A database's last backup.
#[derive(Debug, Serialize)]
pub struct LastBackup {
    /// Its id.
    pub id: String,
    /// The store it is in.
    pub store: String,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// Hours since then.
    pub age_hours: f64,
    /// Bytes of the database it holds (before compression).
    pub raw_bytes: u64,
}

/// A database's last restore drill (`dbctl backup verify`).
#[derive(Debug, Serialize)]
pub struct LastDrill {
    /// When it ran (RFC 3339).
    pub at: String,
    /// Whether it passed.
    pub ok: bool,
    /// The measured recovery time, seconds.
    pub rto_seconds: f64,
}

/// One database on the page.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// Name.
    pub name: String,
    /// Engine.
    pub engine: String,
    /// Version series the spec asks for.
    pub version: String,
    /// The running server's version, when up.
    pub server_version: Option<String>,
    /// Target.
    pub target: String,
    /// `up`, `down`, `absent`, or `unknown` (the platform could not be asked).
    pub state: String,
    /// Disk used by the instance, bytes (0 where the platform does not say).
    pub used_bytes: u64,
    /// The allotment, bytes (`size_gb` GiB).
    pub allotted_bytes: u64,
    /// The last backup, if any.
    pub last_backup: Option<LastBackup>,
    /// The last restore drill of the backups listed, if any.
    pub last_drill: Option<LastDrill>,
    /// Changes waiting for the maintenance window (`parameters.x: "a" → "b"`).
    pub pending: Vec<String>,
    /// When they run.
    pub runs_at: Option<String>,
    /// What could not be found out (an unreachable host, a store that refused).
    pub problems: Vec<String>,
}

impl Overview {
    /// `name` with nothing known yet (`-` for what its spec would say).
    fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            engine: "-".into(),
            version: "-".into(),
            server_version: None,
            target: "-".into(),
            state: "unknown".into(),
            used_bytes: 0,
            allotted_bytes: 0,
            last_backup: None,
            last_drill: None,
            pending: Vec::new(),
            runs_at: None,
            problems: Vec::new(),
        }
    }
}

/// `dbctl status --all`.
#[derive(Debug, Serialize)]
pub struct OverviewReport {
    /// When it was made (RFC 3339).
    pub generated_at: String,
    /// Every spec's database, by name.
    pub databases: Vec<Overview>,
    /// The page written with `--html`.
    pub html: Option<PathBuf>,
}

impl Report for OverviewReport {
    fn human(&self) -> String {
        let rows = self
            .databases
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    format!("{} {}", d.engine, d.version),
                    d.target.clone(),
                    d.state.clone(),
                    format!("{} / {}", bytes(d.used_bytes), bytes(d.allotted_bytes)),
                    d.last_backup
                        .as_ref()
                        .map_or_else(|| "none".into(), |b| format!("{:.1} h ago", b.age_hours)),
                    d.last_drill.as_ref().map_or_else(
                        || "never".into(),
                        |r| {
                            format!(
                                "{} (RTO {:.1} s)",
                                if r.ok { "passed" } else { "FAILED" },
                                r.rto_seconds
                            )
                        },
                    ),
                    match (&d.runs_at, d.pending.len()) {
                        (_, 0) => "-".into(),
                        (Some(at), n) => format!("{n} at {at}"),
                        (None, n) => format!("{n} now"),
                    },
                ]
            })
            .collect();
        let mut text = table(
            &[
                "NAME",
                "ENGINE",
                "TARGET",
                "STATE",
                "USED / ALLOTTED",
                "BACKUP",
                "DRILL",
                "PENDING",
            ],
            rows,
        );
        if let Some(path) = &self.html {
            text.push_str(&format!("wrote {}\n", path.display()));
        }
        text
    }
}

/// What `spec`'s database is, as far as it can be found out.
fn overview(session: &Session, repo: &Repo, spec: &Spec, now: jiff::Timestamp) -> Overview {
    let mut o = Overview {
        engine: spec.engine.to_string(),
        version: spec.version.clone(),
        target: spec.target.clone(),
        state: "unknown".into(),
        allotted_bytes: u64::from(spec.size_gb) << 30,
        ..Overview::named(&spec.name)
    };
    match session
        .platform(repo, spec)
        .and_then(|p| plan_changes(repo, spec, p.as_ref()))
    {
        Ok((changes, observed)) => {
            o.state = observed.state.to_string();
            o.server_version = observed.server_version;
            o.used_bytes = observed.used_bytes;
            match window_of(repo, spec) {
                Ok(window) => {
                    let (_, deferred, runs_at) = gate(changes, window.as_ref(), now);
                    o.pending = deferred
                        .iter()
                        .map(|c| {
                            format!(
                                "{}: {} → {}",
                                c.attribute,
                                value(c.old.as_ref()),
                                value(c.new.as_ref())
                            )
                        })
                        .collect();
                    o.runs_at = runs_at;
                }
                Err(err) => o.problems.push(format!("{err:#}")),
            }
        }
        Err(err) => o.problems.push(format!("{err:#}")),
    }
    // Backups: only where a store is configured (or the openstack default).
    if let Ok(store_name) = super::backup::store_name(repo, spec, None) {
        match super::backup::open_store(session, repo, &store_name)
            .and_then(|store| crate::backup::list(&store, &spec.name))
        {
            Ok((manifests, _)) => {
                if let Some(last) = manifests.iter().max_by_key(|m| m.finished_at) {
                    o.last_backup = Some(LastBackup {
                        id: last.id.clone(),
                        store: store_name.clone(),
                        finished_at: last.finished_at.to_string(),
                        age_hours: now.duration_since(last.finished_at).as_secs_f64() / 3600.0,
                        raw_bytes: last.raw_bytes,
                    });
                }
                o.last_drill = manifests
                    .iter()
                    .flat_map(|m| &m.drills)
                    .max_by_key(|d| d.at)
                    .map(|d| LastDrill {
                        at: d.at.to_string(),
                        ok: d.ok,
                        rto_seconds: d.restore_seconds,
                    });
            }
            Err(err) => o
                .problems
                .push(format!("backups in store `{store_name}`: {err:#}")),
        }
    }
    o
}

/// Runs `dbctl status --all`: every spec (invalid ones are reported, not fatal),
/// and with `html` the page `html/index.html`.
///
/// # Errors
/// The repo cannot be read; the page cannot be rendered or written.
pub fn overview_all(session: &Session, html: Option<&std::path::Path>) -> Result<OverviewReport> {
    let repo = session.repo()?;
    let now = jiff::Timestamp::now();
    let mut databases = Vec::new();
    for name in repo.spec_names()? {
        match repo.load_spec(&name) {
            Ok(Some(spec)) => databases.push(overview(session, &repo, &spec, now)),
            Ok(None) => {}
            Err(err) => databases.push(Overview {
                state: "invalid".into(),
                problems: vec![format!("{err:#}")],
                ..Overview::named(&name)
            }),
        }
    }
    let mut report = OverviewReport {
        generated_at: now.to_string(),
        databases,
        html: None,
    };
    if let Some(dir) = html {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        let renderer = crate::render::Renderer::new(&repo.assets);
        let max_age_hours = report
            .databases
            .iter()
            .filter_map(|d| d.last_backup.as_ref().map(|b| b.age_hours))
            .fold(0.0_f64, f64::max);
        let page = renderer.render(
            "status/index.html.j2",
            &minijinja::context! {
                report => Value::from(Serde(&report)),
                max_age_hours => max_age_hours,
            },
        )?;
        let path = dir.join("index.html");
        std::fs::write(&path, page)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        report.html = Some(path);
    }
    Ok(report)
}
