//! Built-in templates, playbooks and catalog, embedded in the binary, with overrides
//! from the GitOps repo at the same relative path.
//!
//! Lookup order for `templates/local/postgresql/postgresql.conf.j2`:
//! 1. `<repo>/templates/local/postgresql/postgresql.conf.j2`
//! 2. the embedded copy of this project's `templates/` directory.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");
static PLAYBOOKS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/playbooks");
static ETC: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/etc");

/// Which tree of assets a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// `templates/`: minijinja templates of artifacts and engine configuration.
    Templates,
    /// `playbooks/`: ordered steps of one operation on one platform.
    Playbooks,
    /// `etc/`: the catalog (`engines.yml`, `plans.yml`).
    Etc,
}

impl Tree {
    /// The directory name, both in this project and in a GitOps repo.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Templates => "templates",
            Self::Playbooks => "playbooks",
            Self::Etc => "etc",
        }
    }

    fn embedded(self) -> &'static Dir<'static> {
        match self {
            Self::Templates => &TEMPLATES,
            Self::Playbooks => &PLAYBOOKS,
            Self::Etc => &ETC,
        }
    }
}

/// Where an asset's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The GitOps repo's override file.
    Repo(PathBuf),
    /// The copy built into the binary (`templates/…` path inside this project).
    BuiltIn(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Repo(path) => write!(f, "{}", path.display()),
            Self::BuiltIn(path) => write!(f, "built-in {path}"),
        }
    }
}

/// One asset's text and where it came from.
#[derive(Debug, Clone)]
pub struct Asset {
    /// The UTF-8 text.
    pub text: String,
    /// Repo override or built-in.
    pub origin: Origin,
}

/// Errors reading an asset.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The override exists but cannot be read.
    // The cause is part of the message: template loaders pass errors on as text.
    #[error("cannot read the override `{path}`: {source}")]
    Read {
        /// The override file.
        path: PathBuf,
        /// Why (a link dbctl does not follow, an I/O error).
        source: crate::safefs::SafeFsError,
    },
    /// The asset is not valid UTF-8.
    #[error("`{0}` is not UTF-8 text")]
    NotUtf8(String),
}

/// Asset lookup with GitOps repo overrides.
#[derive(Debug, Clone)]
pub struct Assets {
    repo_root: Option<PathBuf>,
}

impl Assets {
    /// Lookup that prefers files under `repo_root` (a GitOps repo); `None` for built-ins only.
    pub fn new(repo_root: Option<&Path>) -> Self {
        Self {
            repo_root: repo_root.map(Path::to_path_buf),
        }
    }

    /// Reads `path` (relative, `/`-separated) from `tree`; `Ok(None)` when neither the
    /// repo nor the binary has it.
    ///
    /// # Errors
    /// An override that exists but is unreadable or not UTF-8.
    pub fn get(&self, tree: Tree, path: &str) -> Result<Option<Asset>, AssetError> {
        if path.split('/').any(|part| part == ".." || part.is_empty()) {
            return Ok(None);
        }
        if let Some(root) = &self.repo_root {
            let file = root.join(tree.dir_name()).join(path);
            let rel = Path::new(tree.dir_name()).join(path);
            match crate::safefs::Anchor::new(root).read(&rel) {
                Ok(Some(bytes)) => {
                    let text = String::from_utf8(bytes)
                        .map_err(|_| AssetError::NotUtf8(file.display().to_string()))?;
                    return Ok(Some(Asset {
                        text,
                        origin: Origin::Repo(file),
                    }));
                }
                Ok(None) => {}
                Err(source) => return Err(AssetError::Read { path: file, source }),
            }
        }
        let Some(file) = tree.embedded().get_file(path) else {
            return Ok(None);
        };
        let name = format!("{}/{path}", tree.dir_name());
        let text = file
            .contents_utf8()
            .ok_or_else(|| AssetError::NotUtf8(name.clone()))?;
        Ok(Some(Asset {
            text: text.to_owned(),
            origin: Origin::BuiltIn(name),
        }))
    }

    /// Relative paths of every built-in file of `tree` below `dir` (recursive, sorted).
    pub fn builtin_files(tree: Tree, dir: &str) -> Vec<String> {
        fn walk(dir: &Dir<'static>, out: &mut Vec<String>) {
            for file in dir.files() {
                out.push(file.path().to_string_lossy().into_owned());
            }
            for sub in dir.dirs() {
                walk(sub, out);
            }
        }
        let mut out = Vec::new();
        let root = tree.embedded();
        let start = if dir.is_empty() {
            Some(root)
        } else {
            root.get_dir(dir)
        };
        if let Some(start) = start {
            walk(start, &mut out);
        }
        out.sort();
        out
    }
}
