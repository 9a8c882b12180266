//! Raw serde types mirroring the YAML files exactly (`deny_unknown_fields`), with source
//! positions kept for validation messages. [`super::model`] holds the validated types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// `etc/databases/<name>.yml`: the desired state of one database.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "dbctl database spec")]
pub struct RawSpec {
    /// The database name; must equal the file name without `.yml`.
    /// Lowercase letters, digits and `-`, starting with a letter, at most 63 characters.
    #[schemars(with = "String", regex(pattern = r"^[a-z][a-z0-9-]{0,62}$"))]
    pub name: Spanned<String>,
    /// The engine: `postgresql`, `mariadb` (alias `mysql`), `redis` or `mongodb`.
    #[schemars(with = "String")]
    pub engine: Spanned<String>,
    /// The engine version from the catalog (`etc/engines.yml`), e.g. `"15"` or `"10.11"`.
    #[schemars(with = "String")]
    pub version: Spanned<String>,
    /// Allotted data size in GB, 1 to 65536.
    #[schemars(with = "u64", range(min = 1, max = 65536))]
    pub size_gb: Spanned<u64>,
    /// Sizing plan from `etc/plans.yml` (cpu, memory); default from `etc/dbctl.yml`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub plan: Option<Spanned<String>>,
    /// Target from `etc/dbctl.yml` `targets`; default is `default_target`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub target: Option<Spanned<String>>,
    /// Application database name (SQL engines) or database index 0-15 (redis);
    /// default: the name with `-` replaced by `_` (redis: `0`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub database: Option<Spanned<String>>,
    /// Application user; default: the name with `-` replaced by `_`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub user: Option<Spanned<String>>,
    /// When true, `dbctl delete` refuses to delete this database.
    #[serde(default)]
    pub deletion_protection: bool,
    /// Engine parameters written into the server configuration (`max_connections: "200"`).
    /// Keys: letters, digits, `_`, `.` and `-`.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// `etc/dbctl.yml`: targets, secret recipients and defaults.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "dbctl configuration")]
pub struct RawConfig {
    /// The target used when a spec names none.
    #[schemars(with = "String")]
    pub default_target: Spanned<String>,
    /// Where databases run, by name.
    pub targets: BTreeMap<String, RawTarget>,
    /// Who can read secret fields of connection files.
    #[serde(default)]
    pub secrets: RawSecrets,
    /// Defaults for new specs.
    #[serde(default)]
    pub defaults: RawDefaults,
}

/// One target in `etc/dbctl.yml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// The platform: `local`, `ssh`, `openstack`, `nomad`, `kubernetes` or `terraform`.
    #[schemars(with = "String")]
    pub platform: Spanned<String>,
    /// What this target is, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// `local`: directory for server data, configuration and logs
    /// (default: `--state-dir`, else the user's data dir; `/var/lib/dbctl` for root).
    #[serde(default)]
    pub state_dir: Option<String>,
    /// `local`: the address clients use, written to connection files (default `127.0.0.1`).
    #[serde(default)]
    pub address: Option<String>,
    /// `local`: first TCP port to try when allocating one (default: the engine's
    /// standard port + 10000, e.g. 15432). Ports already recorded or bound are skipped.
    #[serde(default)]
    pub first_port: Option<u16>,
}

/// `secrets` in `etc/dbctl.yml`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    /// age recipients (`age1…`) that can decrypt connection-file secrets.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub recipients: Vec<Spanned<String>>,
}

/// `defaults` in `etc/dbctl.yml`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Plan for specs that name none (default `small`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub plan: Option<Spanned<String>>,
}
