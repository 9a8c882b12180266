//! `dbctl control-plane`: render the control plane of an `openstack` target — the
//! network backbone and Consul + Nomad masters as Heat stacks, and the inventory
//! (`hosts.ini`) of masters and every database's nodes on that target.

use std::path::Path;

use anyhow::Result;

use super::Session;
use super::render::{RenderReport, write_artifacts};
use crate::platform::Cloud;

/// Runs `dbctl control-plane --target T [--out DIR]`.
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
