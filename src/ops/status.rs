//! `dbctl status` and `dbctl list`: live state by connecting to each server.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::Session;
use crate::output::{Report, bytes, table};
use crate::platform::{Observed, Platform};
use crate::spec::Spec;

/// `status` of one database.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The spec.
    pub spec: Spec,
    /// Its platform.
    pub platform: String,
    /// What the platform found.
    pub status: Observed,
    /// When the running server is of another version series than the spec asks:
    /// `15 running, 16 wanted`.
    pub version_drift: Option<String>,
    /// `--exit-code`: exit 3 unless the database is up.
    #[serde(skip)]
    pub exit_code_on_down: bool,
}

/// `15 running, 16 wanted` when `server` (`15.18`) is not of the `wanted` series (`16`).
pub fn version_drift(wanted: &str, server: Option<&str>) -> Option<String> {
    let server = server?;
    let same = server == wanted || server.starts_with(&format!("{wanted}."));
    (!same).then(|| {
        let wanted_depth = wanted.split('.').count();
        let running: Vec<&str> = server.split('.').take(wanted_depth).collect();
        format!("{} running, {wanted} wanted", running.join("."))
    })
}

impl Report for StatusReport {
    fn human(&self) -> String {
        let s = &self.status;
        let state = match &self.version_drift {
            Some(drift) => format!("{}, version drift ({drift})", s.state),
            None => s.state.to_string(),
        };
        let mut rows = vec![
            ("name", self.spec.name.clone()),
            ("state", state),
            (
                "engine",
                match &s.server_version {
                    Some(v) => format!("{} {} (server {v})", self.spec.engine, self.spec.version),
                    None => format!("{} {}", self.spec.engine, self.spec.version),
                },
            ),
            (
                "target",
                format!("{} ({})", self.spec.target, self.platform),
            ),
        ];
        if let Some(endpoint) = &s.endpoint {
            rows.push(("address", format!("{}:{}", endpoint.host, endpoint.port)));
            rows.push(("port", endpoint.port.to_string()));
        }
        rows.push((
            "size",
            format!(
                "{} used of {} GB allotted",
                bytes(s.used_bytes),
                s.applied.as_ref().map_or(self.spec.size_gb, |a| a.size_gb)
            ),
        ));
        if let Some(db) = s.database_bytes {
            // Redis reports its dataset in memory, not on disk.
            if self.spec.engine == crate::catalog::EngineKind::Redis {
                rows.push(("memory", format!("{} (dataset)", bytes(db))));
            } else {
                rows.push(("database", format!("{} of the used size", bytes(db))));
            }
        }
        if let Some(cluster) = s
            .details
            .get("cluster")
            .and_then(|v| {
                serde_json::from_value::<crate::platform::pacemaker::ClusterView>(v.clone()).ok()
            })
            .as_ref()
        {
            rows.push((
                "cluster",
                format!(
                    "group {} {} (online: {})",
                    cluster.groups.join(", "),
                    cluster
                        .active_node
                        .as_deref()
                        .map_or("not running on one node".to_owned(), |n| format!("on {n}")),
                    cluster.online_nodes.join(", ")
                ),
            ));
            for (resource, member) in &cluster.resources {
                rows.push((
                    "resource",
                    match (&member.node, member.disabled) {
                        (Some(node), _) => format!("{resource}: {} on {node}", member.role),
                        (None, true) => format!("{resource}: disabled"),
                        (None, false) => format!("{resource}: {}", member.role),
                    },
                ));
            }
        }
        if let Some(stacks) = s.details.get("stacks").and_then(|v| v.as_object())
            && !stacks.is_empty()
        {
            let stacks: Vec<_> = stacks
                .iter()
                .map(|(n, st)| format!("{n} {}", st.as_str().unwrap_or_default()))
                .collect();
            rows.push(("stacks", stacks.join(", ")));
        }
        if !s.pending_restart.is_empty() {
            rows.push((
                "pending",
                format!("restart for {}", s.pending_restart.join(", ")),
            ));
        }
        if let Some(detail) = &s.detail {
            rows.push(("detail", detail.clone()));
        }
        rows.iter()
            .map(|(k, v)| format!("{:<9} {v}\n", format!("{k}:")))
            .collect()
    }

    fn exit_code(&self) -> u8 {
        if self.exit_code_on_down && self.status.state != crate::platform::State::Up {
            3
        } else {
            0
        }
    }
}

/// One row of `list`.
#[derive(Debug, Serialize)]
pub struct ListEntry {
    /// Database name.
    pub name: String,
    /// The spec, when valid.
    pub spec: Option<Spec>,
    /// Live status, when the spec is valid.
    pub status: Option<Observed>,
    /// Why the spec could not be read (an invalid spec: `list` exits 1).
    pub error: Option<String>,
    /// Why the live state could not be read (a platform without status, an
    /// unreachable host); the row says `unknown`.
    pub status_error: Option<String>,
}

/// `list`: every spec in the repo with its live state.
#[derive(Debug, Serialize)]
pub struct ListReport {
    /// Rows, sorted by name.
    pub databases: Vec<ListEntry>,
}

impl Report for ListReport {
    fn human(&self) -> String {
        if self.databases.is_empty() {
            return "no databases; create one with `dbctl create --type postgresql --size 10 NAME`\n".into();
        }
        let rows = self
            .databases
            .iter()
            .map(|e| match (&e.spec, &e.status) {
                (Some(spec), Some(status)) => vec![
                    spec.name.clone(),
                    spec.engine.to_string(),
                    spec.version.clone(),
                    spec.target.clone(),
                    format!("{} GB", spec.size_gb),
                    match version_drift(&spec.version, status.server_version.as_deref()) {
                        Some(drift) => format!("{}, version drift ({drift})", status.state),
                        None => status.state.to_string(),
                    },
                    status
                        .endpoint
                        .as_ref()
                        .map_or_else(|| "-".into(), |e| format!("{}:{}", e.host, e.port)),
                ],
                (Some(spec), None) => vec![
                    spec.name.clone(),
                    spec.engine.to_string(),
                    spec.version.clone(),
                    spec.target.clone(),
                    format!("{} GB", spec.size_gb),
                    "unknown".into(),
                    e.status_error.clone().unwrap_or_default(),
                ],
                _ => vec![
                    e.name.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "invalid".into(),
                    e.error.clone().unwrap_or_default(),
                ],
            })
            .collect();
        table(
            &[
                "NAME", "ENGINE", "VERSION", "TARGET", "SIZE", "STATE", "ADDRESS",
            ],
            rows,
        )
    }

    fn exit_code(&self) -> u8 {
        u8::from(self.databases.iter().any(|e| e.error.is_some()))
    }
}

/// Runs `dbctl status NAME`.
///
/// # Errors
/// Unknown database or invalid spec.
pub fn status(session: &Session, name: &str, exit_code_on_down: bool) -> Result<StatusReport> {
    let repo = session.repo()?;
    let spec = session.existing_spec(&repo, name)?;
    let platform = session.platform(&repo, &spec)?;
    let status = platform.observe(&spec)?;
    Ok(StatusReport {
        platform: platform.kind().to_string(),
        version_drift: version_drift(&spec.version, status.server_version.as_deref()),
        spec,
        status,
        exit_code_on_down,
    })
}

/// Runs `dbctl list`. Invalid specs are listed with their error (exit code 1).
///
/// # Errors
/// The repo cannot be opened.
pub fn list(session: &Session) -> Result<ListReport> {
    let repo = session.repo()?;
    let mut databases = Vec::new();
    // One driver per target: SSH connections and Keystone sessions are made once.
    let mut platforms: BTreeMap<String, Result<std::sync::Arc<dyn Platform>, String>> =
        BTreeMap::new();
    for name in repo.spec_names()? {
        let entry = match repo.load_spec(&name) {
            Ok(Some(spec)) => {
                let platform = platforms.entry(spec.target.clone()).or_insert_with(|| {
                    session.platform(&repo, &spec).map_err(|e| format!("{e:#}"))
                });
                let status = match platform {
                    Ok(p) => p.observe(&spec).map_err(|e| format!("{e:#}")),
                    Err(e) => Err(e.clone()),
                };
                match status {
                    Ok(status) => ListEntry {
                        name,
                        spec: Some(spec),
                        status: Some(status),
                        error: None,
                        status_error: None,
                    },
                    Err(err) => ListEntry {
                        name,
                        spec: Some(spec),
                        status: None,
                        error: None,
                        status_error: Some(err),
                    },
                }
            }
            Ok(None) => continue,
            Err(err) => ListEntry {
                name,
                spec: None,
                status: None,
                error: Some(format!("{err:#}")),
                status_error: None,
            },
        };
        databases.push(entry);
    }
    Ok(ListReport { databases })
}
