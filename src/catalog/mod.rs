//! The catalog: engines (versions, ports, images) and plans (cpu, memory, default
//! size), read from `etc/engines.yml` and `etc/plans.yml` — built in, overridable by the
//! GitOps repo's files at the same paths.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::assets::{AssetError, Assets, Tree};

/// A database kind dbctl manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// PostgreSQL.
    Postgresql,
    /// MariaDB (also answers to `mysql`).
    Mariadb,
    /// Redis.
    Redis,
    /// MongoDB.
    Mongodb,
}

impl EngineKind {
    /// Every engine, in catalog order.
    pub const ALL: [Self; 4] = [Self::Postgresql, Self::Mariadb, Self::Redis, Self::Mongodb];

    /// The canonical name used in specs, paths and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgresql => "postgresql",
            Self::Mariadb => "mariadb",
            Self::Redis => "redis",
            Self::Mongodb => "mongodb",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One engine's catalog entry (`etc/engines.yml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineEntry {
    /// Other names accepted for `--type` and `engine:` (e.g. `mysql` for mariadb).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Versions dbctl knows, oldest first (`"15"`, `"10.11"`).
    pub versions: Vec<String>,
    /// The version a new spec gets when none is given and the platform has no preference.
    pub default_version: String,
    /// The engine's standard TCP port.
    pub port: u16,
    /// Container image without tag; the version is the tag.
    pub image: String,
    /// The distro user that owns server processes when dbctl runs as root.
    pub service_user: String,
    /// Version → directory of its binaries, for a build outside the distro's paths (a
    /// second PostgreSQL major for upgrades); looked at before the standard paths.
    #[serde(default)]
    pub bin_dirs: BTreeMap<String, String>,
}

/// A sizing preset (`etc/plans.yml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// What the plan is for.
    #[serde(default)]
    pub description: String,
    /// CPU cores (may be fractional).
    pub cpu: f64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Default data size in GB when a spec gives none.
    pub size_gb: u32,
}

/// Errors loading the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error(transparent)]
    Asset(#[from] AssetError),
    /// The file is missing from both the repo and the binary.
    #[error("catalog file `etc/{0}` is missing")]
    Missing(&'static str),
    /// The file is not valid YAML of the expected shape.
    #[error("invalid catalog file {origin}: {message}")]
    Parse {
        /// Where the file came from.
        origin: String,
        /// The parser's message with line and column.
        message: String,
    },
    /// An entry breaks a rule the parser cannot check.
    #[error("invalid catalog file {origin}: {message}")]
    Invalid {
        /// Where the file came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// Engines and plans.
#[derive(Debug, Clone)]
pub struct Catalog {
    engines: BTreeMap<EngineKind, EngineEntry>,
    plans: BTreeMap<String, Plan>,
}

impl Catalog {
    /// Loads `etc/engines.yml` and `etc/plans.yml`, preferring the GitOps repo's copies.
    ///
    /// # Errors
    /// A missing, unreadable or malformed file, or an engine entry whose
    /// `default_version` is not among its `versions`.
    pub fn load(assets: &Assets) -> Result<Self, CatalogError> {
        let engines_asset = assets
            .get(Tree::Etc, "engines.yml")?
            .ok_or(CatalogError::Missing("engines.yml"))?;
        let plans_asset = assets
            .get(Tree::Etc, "plans.yml")?
            .ok_or(CatalogError::Missing("plans.yml"))?;
        let engines: BTreeMap<EngineKind, EngineEntry> =
            serde_saphyr::from_str(&engines_asset.text).map_err(|e| CatalogError::Parse {
                origin: engines_asset.origin.to_string(),
                message: crate::spec::parse_message(&e),
            })?;
        let plans: BTreeMap<String, Plan> =
            serde_saphyr::from_str(&plans_asset.text).map_err(|e| CatalogError::Parse {
                origin: plans_asset.origin.to_string(),
                message: crate::spec::parse_message(&e),
            })?;
        for (kind, entry) in &engines {
            // Only PostgreSQL's binaries are found by directory (its majors install side
            // by side); a key that would do nothing is refused.
            if *kind != EngineKind::Postgresql && !entry.bin_dirs.is_empty() {
                return Err(CatalogError::Invalid {
                    origin: engines_asset.origin.to_string(),
                    message: format!(
                        "`{kind}.bin_dirs` is not allowed: only `postgresql.bin_dirs` names directories of binaries"
                    ),
                });
            }
            if let Some(version) = entry.bin_dirs.keys().find(|v| !entry.versions.contains(v)) {
                return Err(CatalogError::Invalid {
                    origin: engines_asset.origin.to_string(),
                    message: format!(
                        "`{kind}.bin_dirs` names version `{version}`, which is not one of `{kind}.versions`"
                    ),
                });
            }
            if !entry.versions.contains(&entry.default_version) {
                return Err(CatalogError::Invalid {
                    origin: engines_asset.origin.to_string(),
                    message: format!(
                        "`{kind}.default_version` `{}` is not one of `{kind}.versions`",
                        entry.default_version
                    ),
                });
            }
        }
        if plans.is_empty() {
            return Err(CatalogError::Invalid {
                origin: plans_asset.origin.to_string(),
                message: "no plans defined".into(),
            });
        }
        Ok(Self { engines, plans })
    }

    /// Resolves an engine name or alias (`mysql` → mariadb); `None` when unknown.
    pub fn resolve_engine(&self, name: &str) -> Option<EngineKind> {
        let lower = name.to_ascii_lowercase();
        self.engines
            .iter()
            .find(|(kind, entry)| kind.as_str() == lower || entry.aliases.contains(&lower))
            .map(|(kind, _)| *kind)
    }

    /// Every engine name accepted, for error messages: `postgresql, mariadb (mysql), …`.
    pub fn engine_names(&self) -> String {
        self.engines
            .iter()
            .map(|(kind, entry)| {
                if entry.aliases.is_empty() {
                    kind.to_string()
                } else {
                    format!("{kind} (alias {})", entry.aliases.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The entry of `kind`.
    ///
    /// # Panics
    /// Never for kinds obtained from [`Catalog::resolve_engine`]; the built-in catalog
    /// lists every [`EngineKind`] (a test checks it).
    pub fn engine(&self, kind: EngineKind) -> Option<&EngineEntry> {
        self.engines.get(&kind)
    }

    /// The directory of `version`'s binaries the catalog names (`bin_dirs`), when the
    /// build sits outside the distro's paths.
    pub fn bin_dir(&self, kind: EngineKind, version: &str) -> Option<&str> {
        self.engines
            .get(&kind)
            .and_then(|e| e.bin_dirs.get(version))
            .map(String::as_str)
    }

    /// The plan named `name`.
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// Plan names, sorted, for error messages.
    pub fn plan_names(&self) -> Vec<&str> {
        self.plans.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_lists_every_engine_and_resolves_aliases() {
        let catalog = Catalog::load(&Assets::new(None)).unwrap();
        for kind in EngineKind::ALL {
            assert!(catalog.engine(kind).is_some(), "{kind} missing");
        }
        assert_eq!(catalog.resolve_engine("mysql"), Some(EngineKind::Mariadb));
        assert_eq!(
            catalog.resolve_engine("PostgreSQL"),
            Some(EngineKind::Postgresql)
        );
        assert_eq!(catalog.resolve_engine("oracle"), None);
        assert!(catalog.plan("small").is_some());
    }
}
