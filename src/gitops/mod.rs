//! The GitOps repo: its layout (`etc/dbctl.yml`, `etc/databases/`, `connections/`),
//! loading specs and configuration, committing with git and locking databases.

pub mod connection;
pub mod git;
pub mod lock;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::assets::Assets;
use crate::catalog::Catalog;
use crate::safefs::Anchor;
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
    anchor: Anchor,
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
        let anchor = Anchor::new(&root);
        let Some(bytes) = anchor.read(Path::new(CONFIG_PATH))? else {
            bail!(
                "`{}` is not a dbctl GitOps repo: `{CONFIG_PATH}` is missing; run `dbctl init` there or pass `--repo`",
                root.display()
            );
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("`{CONFIG_PATH}` is not UTF-8 text"))?;
        let assets = Assets::new(Some(&root));
        let catalog = Catalog::load(&assets)?;
        let config = Config::parse(&text, Path::new(CONFIG_PATH), &catalog)?;
        Ok(Self {
            root,
            anchor,
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

    /// The repo's identity, the same in every clone: `repo_id` from `etc/dbctl.yml`,
    /// else `git:<root commit>` (the first commit of HEAD's history).
    ///
    /// # Errors
    /// Neither: no `repo_id` and no commit (or no git repo) to name the repo by.
    pub fn id(&self) -> Result<String> {
        if let Some(id) = &self.config.repo_id {
            return Ok(id.clone());
        }
        git::root_commit(&self.root)
            .map(|oid| format!("git:{oid}"))
            .with_context(|| {
                format!(
                    "cannot tell which GitOps repo `{}` is: `{CONFIG_PATH}` has no `repo_id` and git has no commit to name it by; add `repo_id: <8 to 64 characters>` there",
                    self.root.display()
                )
            })
    }

    /// Fails unless the repo is a git work tree, for verbs that commit.
    ///
    /// # Errors
    /// Naming the directory and the ways out (`git init`, `--no-commit`).
    pub fn require_git(&self) -> Result<()> {
        if git2::Repository::open(&self.root).is_ok_and(|r| !r.is_bare()) {
            Ok(())
        } else {
            bail!(
                "`{}` is not a git work tree: dbctl commits spec and connection files there; run `git init` (or `dbctl init`) in it, or pass `--no-commit`",
                self.root.display()
            )
        }
    }

    /// The repo root as an [`Anchor`]: reads and writes below it never follow links.
    pub fn anchor(&self) -> &Anchor {
        &self.anchor
    }

    /// Reads repo-relative `rel` as UTF-8 text without following links; `Ok(None)` when
    /// it does not exist.
    ///
    /// # Errors
    /// A link, a non-regular file, an I/O error or text that is not UTF-8, naming `rel`.
    pub fn read_text(&self, rel: &Path) -> Result<Option<String>> {
        match self.anchor.read(rel)? {
            None => Ok(None),
            Some(bytes) => {
                Ok(Some(String::from_utf8(bytes).map_err(|_| {
                    anyhow::anyhow!("`{}` is not UTF-8 text", rel.display())
                })?))
            }
        }
    }

    /// The connection file of `name`, parsed; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// A link, an unreadable file, or one that does not parse, naming the file.
    pub fn connection(&self, name: &str) -> Result<Option<connection::ConnectionFile>> {
        let rel = Self::connection_rel(name);
        let Some(text) = self.read_text(&rel)? else {
            return Ok(None);
        };
        connection::ConnectionFile::parse(&text).map(Some).map_err(|m| {
            anyhow::anyhow!(
                "invalid `{}`: {m}; restore it from git history, or remove it to get new credentials",
                rel.display()
            )
        })
    }

    /// The connection file of `name`, which must exist.
    ///
    /// # Errors
    /// As [`Self::connection`], or no file (`dbctl apply` writes it).
    pub fn require_connection(&self, name: &str) -> Result<connection::ConnectionFile> {
        self.connection(name)?.with_context(|| {
            format!(
                "no connection file `{}`; `dbctl apply` writes it once the database exists",
                Self::connection_rel(name).display()
            )
        })
    }

    /// Writes repo-relative `rel` atomically with `mode` (see [`write_atomic`]).
    ///
    /// # Errors
    /// As [`write_atomic`].
    pub fn write(&self, rel: &Path, contents: &[u8], mode: u32) -> Result<()> {
        write_atomic(&self.root, rel, contents, mode)
    }

    /// Loads and validates the spec of `name`; `Ok(None)` when there is no spec file.
    ///
    /// # Errors
    /// An unreadable or invalid spec, naming file, line and key.
    pub fn load_spec(&self, name: &str) -> Result<Option<Spec>> {
        let rel = Self::spec_rel(name);
        let Some(text) = self.read_text(&rel)? else {
            return Ok(None);
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
        let mut names: Vec<String> = self
            .anchor
            .list_dir(Path::new(SPECS_DIR))
            .with_context(|| format!("cannot read `{SPECS_DIR}`"))?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".yml").map(str::to_owned))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Writes `contents` to `rel` below `root` atomically (a new file with an unpredictable
/// name, fsync, rename) with Unix `mode`, creating parent directories, never following a
/// link (see [`crate::safefs`]).
///
/// # Errors
/// A link along the path, or any I/O failure, naming the file.
pub fn write_atomic(root: &Path, rel: &Path, contents: &[u8], mode: u32) -> Result<()> {
    Anchor::new(root)
        .write_atomic(rel, contents, mode, None)
        .with_context(|| format!("cannot write `{}`", rel.display()))
}
