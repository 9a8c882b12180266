//! `dbctl control-plane`: the control plane of an `openstack` target — the network
//! backbone and Consul + Nomad masters as Heat stacks, and the inventory (`hosts.ini`)
//! of masters and every database's nodes on that target. Rendered by default; with
//! `--apply`, created or updated through Heat and the inventory, with the stacks' real
//! addresses, written to `inventory/<target>/hosts.ini` and committed.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;

use super::Session;
use super::render::{RenderReport, write_artifacts};
use crate::gitops::git;
use crate::output::Report;
use crate::platform::Cloud;
use crate::platform::openstack::Openstack;
use crate::spec::PlatformKind;

/// `--apply` and what goes with it.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// `--no-commit`.
    pub no_commit: bool,
    /// `--push`.
    pub push: bool,
    /// `--lock-timeout` in seconds.
    pub lock_timeout_s: u64,
}

/// `dbctl control-plane --apply`.
#[derive(Debug, Serialize)]
pub struct ControlPlaneReport {
    /// The target.
    pub target: String,
    /// Stack name → `created`, `updated` or `unchanged`.
    pub stacks: std::collections::BTreeMap<String, String>,
    /// The inventory written, repo-relative.
    pub inventory: PathBuf,
    /// The commit, when one was made.
    pub commit: Option<String>,
    /// Whether it was pushed.
    pub pushed: bool,
}

impl Report for ControlPlaneReport {
    fn human(&self) -> String {
        let mut text = String::new();
        for (stack, how) in &self.stacks {
            text.push_str(&format!("{stack}: {how}\n"));
        }
        text.push_str(&format!(
            "wrote {} (target {})\n",
            self.inventory.display(),
            self.target
        ));
        if let Some(commit) = &self.commit {
            text.push_str(&format!("committed {}\n", &commit[..commit.len().min(12)]));
        }
        text
    }
}

/// The inventory's place in the repo: `inventory/<target>/hosts.ini`.
pub fn inventory_rel(target: &str) -> PathBuf {
    Path::new("inventory").join(target).join("hosts.ini")
}

/// Runs `dbctl control-plane --target T [--out DIR]`: renders.
///
/// # Errors
/// Unknown or non-openstack target, invalid specs, template errors, unwritable files.
pub fn control_plane(session: &Session, target: &str, out: Option<&Path>) -> Result<RenderReport> {
    let repo = session.repo()?;
    let target = repo.target(target, "--target")?;
    let specs: Vec<_> = repo
        .specs()?
        .into_iter()
        .filter(|s| s.target == target.name)
        .collect();
    let artifacts = Cloud::new(&repo, target).render_control_plane(&specs)?;
    if let Some(out) = out {
        write_artifacts(out, &artifacts)?;
    }
    Ok(RenderReport {
        artifacts,
        out: out.map(Path::to_path_buf),
        contexts: Vec::new(),
    })
}

/// Runs `dbctl control-plane --target T --apply`: applies the network and masters
/// stacks through Heat, waits for them, writes the inventory with their addresses and
/// commits it.
///
/// # Errors
/// Unknown or non-openstack target, Keystone or Heat refusing, a failed stack (Heat's
/// reason), another run holding the target's lock, a failed commit.
pub fn apply(session: &Session, target: &str, opts: &ApplyOptions) -> Result<ControlPlaneReport> {
    let repo = session.repo()?;
    let target = repo.target(target, "--target")?.clone();
    if target.platform != PlatformKind::Openstack {
        bail!(
            "target `{}` uses platform `{}`; a control plane is applied on `openstack` targets",
            target.name,
            target.platform
        );
    }
    if !opts.no_commit {
        repo.require_git()?;
    }
    let specs: Vec<_> = repo
        .specs()?
        .into_iter()
        .filter(|s| s.target == target.name)
        .collect();
    let _lock = super::lock(
        &repo,
        &format!("control-plane-{}", target.name),
        "control-plane",
        opts.lock_timeout_s,
    )?;
    let printer = &session.printer;
    let progress = |i: usize, n: usize, step: &str| printer.step(i, n, step);
    let applied =
        Openstack::new(&repo, &target, &session.platform).apply_control_plane(&specs, &progress)?;
    let rel = inventory_rel(&target.name);
    repo.write(&rel, applied.inventory.as_bytes(), 0o644)?;
    let mut report = ControlPlaneReport {
        target: target.name.clone(),
        stacks: applied.stacks,
        inventory: rel.clone(),
        commit: None,
        pushed: false,
    };
    if !opts.no_commit {
        report.commit = git::commit_paths(
            repo.root(),
            &[&rel],
            &format!("dbctl control-plane {}: inventory", target.name),
            git::Removals::Refused,
        )?
        .map(|o| o.to_string());
        if opts.push && report.commit.is_some() {
            git::push(repo.root())?;
            report.pushed = true;
        }
    }
    Ok(report)
}
