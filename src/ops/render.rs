//! `dbctl render`: print or write the artifacts of one database without touching
//! anything.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::Session;
use crate::gitops::write_atomic;
use crate::output::Report;
use crate::platform::Artifact;

/// The rendered artifacts.
#[derive(Debug, Serialize)]
pub struct RenderReport {
    /// Database name.
    pub name: String,
    /// Artifacts in playbook order.
    pub artifacts: Vec<Artifact>,
    /// The directory they were written to (`--out`).
    pub out: Option<PathBuf>,
}

impl Report for RenderReport {
    fn human(&self) -> String {
        if let Some(out) = &self.out {
            return self
                .artifacts
                .iter()
                .map(|a| format!("wrote {}\n", out.join(&a.path).display()))
                .collect();
        }
        self.artifacts
            .iter()
            .map(|a| {
                let mut content = a.content.clone();
                if !content.ends_with('\n') {
                    content.push('\n');
                }
                format!("--- {}\n{content}", a.path)
            })
            .collect()
    }
}

/// Runs `dbctl render NAME [--out DIR]`.
///
/// # Errors
/// Unknown database, invalid spec, template error, or a file that cannot be written.
pub fn render(session: &Session, name: &str, out: Option<&Path>) -> Result<RenderReport> {
    let repo = session.repo()?;
    let spec = session.existing_spec(&repo, name)?;
    let platform = session.platform(&repo, &spec)?;
    let artifacts = platform.render(&spec)?;
    if let Some(out) = out {
        for artifact in &artifacts {
            write_atomic(
                &out.join(&artifact.path),
                artifact.content.as_bytes(),
                0o644,
            )?;
        }
    }
    Ok(RenderReport {
        name: spec.name,
        artifacts,
        out: out.map(Path::to_path_buf),
    })
}
