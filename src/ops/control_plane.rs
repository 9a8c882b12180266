//! `dbctl control-plane`: render the control plane of an `openstack` target — the
//! network backbone and Consul + Nomad masters as Heat stacks, and the inventory
//! (`hosts.ini`) of masters and every database's nodes on that target.

use std::path::Path;

use anyhow::{Context, Result};

use super::Session;
use super::render::{RenderReport, write_artifacts};
use crate::platform::Cloud;

/// Runs `dbctl control-plane --target T [--out DIR]`.
///
/// # Errors
/// Unknown or non-openstack target, invalid specs, template errors, unwritable files.
pub fn control_plane(session: &Session, target: &str, out: Option<&Path>) -> Result<RenderReport> {
    let repo = session.repo()?;
    let target = repo.config.target(target).with_context(|| {
        format!(
            "unknown target `{target}`; allowed: {}",
            repo.config
                .targets
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut specs = Vec::new();
    for name in repo.spec_names()? {
        if let Some(spec) = repo.load_spec(&name)?
            && spec.target == target.name
        {
            specs.push(spec);
        }
    }
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
