//! Connection files (`connections/<name>.yml`): how to reach a database, committed to
//! the GitOps repo with the password age-encrypted (ASCII armor).

use serde::{Deserialize, Serialize};

/// The contents of `connections/<name>.yml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionFile {
    /// Database name.
    pub name: String,
    /// Engine.
    pub engine: String,
    /// Engine version series from the spec.
    pub version: String,
    /// Client address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Application database (redis: database index).
    pub database: String,
    /// Application user.
    pub username: String,
    /// The password, age-encrypted to `secrets.recipients`, ASCII-armored.
    pub password: String,
    /// URI without the password.
    pub uri: String,
    /// Target name.
    pub target: String,
    /// When dbctl wrote the file (RFC 3339, UTC).
    pub written_at: String,
}

impl ConnectionFile {
    /// The YAML text with a header comment.
    pub fn to_yaml(&self) -> String {
        let body = serde_saphyr::to_string(self).unwrap_or_default();
        format!(
            "# Connection to `{}`, written by dbctl. The password is age-encrypted;\n# `dbctl connection {} --reveal` decrypts it.\n{body}",
            self.name, self.name
        )
    }

    /// Parses a connection file.
    ///
    /// # Errors
    /// The parser's message with line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_saphyr::from_str(text).map_err(|e| crate::spec::parse_message(&e))
    }
}
