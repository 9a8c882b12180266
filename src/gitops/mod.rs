//! The GitOps repo: its layout (`etc/dbctl.yml`, `etc/databases/`, `connections/`),
//! loading specs and configuration, committing with git and locking databases.

pub mod connection;
pub mod git;
pub mod lock;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::assets::Assets;
use crate::catalog::Catalog;
use crate::spec::{Config, Draft, Spec};

/// Path of the configuration, relative to the repo root.
pub const CONFIG_PATH: &str = "etc/dbctl.yml";
/// Directory of specs, relative to the repo root.
pub const SPECS_DIR: &str = "etc/databases";
/// Directory of connection files, relative to the repo root.
pub const CONNECTIONS_DIR: &str = "connections";
/// dbctl's private working directory in the repo (locks); git-ignored.
pub const WORK_DIR: &str = ".dbctl";

/// A GitOps repo with its configuration and catalog loaded.
#[derive(Debug)]
pub struct Repo {
    root: PathBuf,
    /// The validated `etc/dbctl.yml`.
    pub config: Config,
    /// Engines and plans (built in, or the repo's overrides).
    pub catalog: Catalog,
    /// Templates and playbooks with the repo's overrides.
    pub assets: Assets,
}

impl Repo {
    /// Opens the GitOps repo at `root`: reads the catalog and `etc/dbctl.yml`.
    ///
    /// # Errors
    /// No `etc/dbctl.yml` (suggesting `dbctl init`), or an invalid configuration or catalog.
    pub fn open(root: &Path) -> Result<Self> {
        let root = root
            .canonicalize()
            .with_context(|| format!("GitOps repo `{}` does not exist", root.display()))?;
        let config_file = root.join(CONFIG_PATH);
        if !config_file.is_file() {
            bail!(
                "`{}` is not a dbctl GitOps repo: `{CONFIG_PATH}` is missing; run `dbctl init` there or pass `--repo`",
                root.display()
            );
        }
        let assets = Assets::new(Some(&root));
        let catalog = Catalog::load(&assets)?;
        let text = std::fs::read_to_string(&config_file)
            .with_context(|| format!("cannot read `{}`", config_file.display()))?;
        let config = Config::parse(&text, Path::new(CONFIG_PATH), &catalog)?;
        Ok(Self {
            root,
            config,
            catalog,
            assets,
        })
    }

    /// The repo's root directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `etc/databases/<name>.yml`, relative to the root.
    pub fn spec_rel(name: &str) -> PathBuf {
        Path::new(SPECS_DIR).join(format!("{name}.yml"))
    }

    /// `connections/<name>.yml`, relative to the root.
    pub fn connection_rel(name: &str) -> PathBuf {
        Path::new(CONNECTIONS_DIR).join(format!("{name}.yml"))
    }

    /// Absolute path of a repo-relative path.
    pub fn path(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// Loads and validates the spec of `name`; `Ok(None)` when there is no spec file.
    ///
    /// # Errors
    /// An unreadable or invalid spec, naming file, line and key.
    pub fn load_spec(&self, name: &str) -> Result<Option<Spec>> {
        let rel = Self::spec_rel(name);
        let text = match std::fs::read_to_string(self.path(&rel)) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read `{}`", rel.display()));
            }
        };
        let draft = Draft::parse(&text, &rel)?;
        Ok(Some(draft.validate(
            &self.catalog,
            &self.config,
            &|_, _| None,
        )?))
    }

    /// The target `name` given with `flag` (e.g. `--target`).
    ///
    /// # Errors
    /// An unknown target, listing the targets of `etc/dbctl.yml`.
    pub fn target(&self, name: &str, flag: &str) -> Result<&crate::spec::Target> {
        self.config.target(name).with_context(|| {
            format!(
                "unknown target `{name}` for `{flag}`; allowed: {}",
                self.config
                    .targets
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// Every spec of the repo, validated, sorted by name.
    ///
    /// # Errors
    /// The first invalid spec, naming its file, line and key.
    pub fn specs(&self) -> Result<Vec<Spec>> {
        let mut specs = Vec::new();
        for name in self.spec_names()? {
            specs.extend(self.load_spec(&name)?);
        }
        Ok(specs)
    }

    /// Names of every spec file in `etc/databases/`, sorted.
    ///
    /// # Errors
    /// An unreadable directory.
    pub fn spec_names(&self) -> Result<Vec<String>> {
        let dir = self.root.join(SPECS_DIR);
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(err) => return Err(err).with_context(|| format!("cannot read `{SPECS_DIR}`")),
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot read `{SPECS_DIR}`"))?
                .path();
            if path.extension().is_some_and(|e| e == "yml")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                names.push(stem.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Writes `contents` to `path` atomically (temporary file in the same directory, fsync,
/// rename) with Unix `mode`, creating parent directories.
///
/// # Errors
/// Any I/O failure, naming the file.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = path
        .parent()
        .with_context(|| format!("`{}` has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write `{}`", path.display()))
}
