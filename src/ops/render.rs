//! `dbctl render`: print or write the artifacts of databases without touching
//! anything. Rendering is pure: same repo in, byte-identical artifacts out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Session;
use crate::gitops::Repo;
use crate::output::Report;
use crate::platform::{self, Artifact, Platform};
use crate::spec::{PlatformKind, Spec, Target};

/// Flags of `dbctl render`.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Databases to render; empty with `all`.
    pub names: Vec<String>,
    /// `--all`: every spec of the repo.
    pub all: bool,
    /// `--target`: render for this target instead of the spec's.
    pub target: Option<String>,
    /// `--platform`: render for a default target of this platform.
    pub platform: Option<String>,
    /// `--out`: write files under this directory instead of printing them.
    pub out: Option<PathBuf>,
    /// `--context`: print each database's template context instead of artifacts.
    pub context: bool,
}

/// The rendered artifacts.
#[derive(Debug, Serialize)]
pub struct RenderReport {
    /// Artifacts of every database, in name then playbook order.
    pub artifacts: Vec<Artifact>,
    /// The directory they were written to (`--out`).
    pub out: Option<PathBuf>,
    /// With `--context`: each database's template context and artifact steps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<serde_json::Value>,
}

impl Report for RenderReport {
    fn human(&self) -> String {
        if !self.contexts.is_empty() {
            return format!(
                "{}\n",
                serde_json::to_string_pretty(&self.contexts).unwrap_or_default()
            );
        }
        if let Some(out) = &self.out {
            return format!(
                "wrote {} artifacts under {}\n",
                self.artifacts.len(),
                out.display()
            );
        }
        self.artifacts
            .iter()
            .map(|a| format!("--- {}\n{}", a.path, a.content))
            .collect()
    }
}

fn platform_target(repo: &Repo, opts: &RenderOptions) -> Result<Option<Target>> {
    if let Some(name) = &opts.target {
        let target = repo.target(name, "--target")?;
        return Ok(Some(target.clone()));
    }
    if let Some(name) = &opts.platform {
        let kind = PlatformKind::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .with_context(|| {
                format!(
                    "unknown platform `{name}` for `--platform`; allowed: {}",
                    PlatformKind::ALL.map(PlatformKind::as_str).join(", ")
                )
            })?;
        let mut target = Target::for_platform(kind);
        if kind == PlatformKind::Terraform {
            target.cloud.provider = Some("aws".into());
        }
        return Ok(Some(target));
    }
    Ok(None)
}

/// Writes `artifacts` under `out`, creating directories. No fsync: artifacts are
/// reproducible from the repo, and thousands of fsyncs would take seconds.
///
/// # Errors
/// A directory or file that cannot be written, named.
pub fn write_artifacts(out: &Path, artifacts: &[Artifact]) -> Result<()> {
    // Below `out` no link is followed: a planted one cannot redirect an artifact.
    let anchor = crate::safefs::Anchor::new(out);
    for artifact in artifacts {
        anchor
            .write_reproducible(Path::new(&artifact.path), artifact.content.as_bytes())
            .with_context(|| format!("cannot write `{}`", out.join(&artifact.path).display()))?;
    }
    Ok(())
}

/// The target `spec` renders for: `fixed` (from `--target`/`--platform`) or its own.
fn target_of(repo: &Repo, spec: &Spec, fixed: Option<&Target>) -> Result<Target> {
    match fixed {
        Some(t) => Ok(t.clone()),
        None => repo.config.target(&spec.target).cloned().with_context(|| {
            format!(
                "spec `{}` names unknown target `{}`",
                spec.name, spec.target
            )
        }),
    }
}

/// Renders `specs` with one driver per target (templates are parsed once per driver).
///
/// # Errors
/// The first template or playbook error, naming the database.
pub fn render_specs(
    repo: &Repo,
    specs: &[Spec],
    fixed: Option<&Target>,
    options: &platform::Options,
) -> Result<Vec<Artifact>> {
    let mut drivers: BTreeMap<String, Box<dyn Platform>> = BTreeMap::new();
    let mut artifacts = Vec::new();
    for spec in specs {
        let target = target_of(repo, spec, fixed)?;
        if !drivers.contains_key(&target.name) {
            drivers.insert(
                target.name.clone(),
                platform::for_target(repo, &target, options)?,
            );
        }
        let driver = &drivers[&target.name];
        artifacts.extend(
            driver
                .render(spec)
                .with_context(|| format!("cannot render `{}`", spec.name))?,
        );
    }
    Ok(artifacts)
}

/// Runs `dbctl render`.
///
/// # Errors
/// Unknown database, target or platform, an invalid spec, a template error, or a file
/// that cannot be written.
pub fn render(session: &Session, opts: &RenderOptions) -> Result<RenderReport> {
    let repo = session.repo()?;
    let names = if opts.all {
        repo.spec_names()?
    } else if opts.names.is_empty() {
        bail!("name a database to render, or pass `--all`");
    } else {
        opts.names.clone()
    };
    let specs = names
        .iter()
        .map(|n| session.existing_spec(&repo, n))
        .collect::<Result<Vec<_>>>()?;
    let fixed = platform_target(&repo, opts)?;
    if opts.context {
        let mut contexts = Vec::new();
        for spec in &specs {
            let target = target_of(&repo, spec, fixed.as_ref())?;
            contexts.push(platform::for_target(&repo, &target, &session.platform)?.describe(spec)?);
        }
        return Ok(RenderReport {
            artifacts: Vec::new(),
            out: None,
            contexts,
        });
    }
    let artifacts = render_specs(&repo, &specs, fixed.as_ref(), &session.platform)?;
    if let Some(out) = &opts.out {
        write_artifacts(out, &artifacts)?;
    }
    Ok(RenderReport {
        artifacts,
        out: opts.out.as_deref().map(Path::to_path_buf),
        contexts: Vec::new(),
    })
}
