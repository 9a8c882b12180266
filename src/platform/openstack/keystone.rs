//! Keystone v3 password authentication from an openrc file, and the service catalog.
//!
//! API: <https://docs.openstack.org/api-ref/identity/v3/#password-authentication-with-scoped-authorization>
//! (`POST /v3/auth/tokens`; the token comes back in the `X-Subject-Token` header, the
//! catalog in the body).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::OpenstackError;

/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_mins(1);

/// Keystone v3 credentials, as an openrc file sets them (`OS_AUTH_URL`, `OS_USERNAME`,
/// `OS_PASSWORD`, `OS_PROJECT_NAME`, `OS_USER_DOMAIN_NAME`, `OS_PROJECT_DOMAIN_NAME`,
/// `OS_REGION_NAME`, `OS_INTERFACE`; `*_ID` forms of project and domains too).
pub struct Credentials {
    /// The file they came from, for messages.
    pub source: PathBuf,
    vars: BTreeMap<String, String>,
    password: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .field("vars", &self.vars)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads `export OS_…=value` lines of an openrc file without running it (quotes are
    /// removed; values referring to shell variables, like Horizon's prompted
    /// `$OS_PASSWORD_INPUT`, count as unset). A variable the file leaves unset is taken
    /// from the environment, so CI can supply `OS_PASSWORD` as a secret.
    ///
    /// # Errors
    /// The file cannot be read, or `OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD` or a
    /// project is missing from both.
    pub fn from_openrc(path: &Path) -> Result<Self, OpenstackError> {
        let text = std::fs::read_to_string(path).map_err(|source| OpenstackError::Openrc {
            path: path.to_owned(),
            message: source.to_string(),
        })?;
        Self::from_openrc_text(&text, path)
    }

    /// [`Self::from_openrc`] on text already read (from the repo, without following
    /// links); `path` names it in errors.
    ///
    /// # Errors
    /// As [`Self::from_openrc`].
    pub fn from_openrc_text(text: &str, path: &Path) -> Result<Self, OpenstackError> {
        Self::parse(text, path, None)
    }

    /// [`Self::from_openrc`] with the password from elsewhere (a backup store's
    /// `secret_file` or `secret_env`) instead of `OS_PASSWORD`.
    ///
    /// # Errors
    /// As [`Self::from_openrc`].
    pub fn from_openrc_with_password(
        path: &Path,
        password: SecretString,
    ) -> Result<Self, OpenstackError> {
        let text = std::fs::read_to_string(path).map_err(|source| OpenstackError::Openrc {
            path: path.to_owned(),
            message: source.to_string(),
        })?;
        Self::parse(&text, path, Some(password))
    }

    fn parse(
        text: &str,
        path: &Path,
        password: Option<SecretString>,
    ) -> Result<Self, OpenstackError> {
        let mut vars = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if !key.starts_with("OS_")
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                continue;
            }
            let value = unquote(value.trim());
            if value.contains('$') || value.is_empty() {
                continue;
            }
            vars.insert(key.to_owned(), value);
        }
        for (key, value) in std::env::vars() {
            if key.starts_with("OS_") && !value.is_empty() {
                vars.entry(key).or_insert(value);
            }
        }
        let from_file = SecretString::from(vars.remove("OS_PASSWORD").unwrap_or_default());
        let password = password.unwrap_or(from_file);
        let creds = Self {
            source: path.to_owned(),
            vars,
            password,
        };
        let mut missing: Vec<&str> = ["OS_AUTH_URL", "OS_USERNAME"]
            .into_iter()
            .filter(|k| creds.get(k).is_none())
            .collect();
        if creds.password.expose_secret().is_empty() {
            missing.push("OS_PASSWORD");
        }
        if creds.get("OS_PROJECT_NAME").is_none() && creds.get("OS_PROJECT_ID").is_none() {
            missing.push("OS_PROJECT_NAME (or OS_PROJECT_ID)");
        }
        if !missing.is_empty() {
            return Err(OpenstackError::Openrc {
                path: path.to_owned(),
                message: format!(
                    "missing {}; set them in the file (`export OS_…=…`) or the environment",
                    missing.join(", ")
                ),
            });
        }
        Ok(creds)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// What another machine running dbctl for this repo is given (a resource group's
    /// scheduled backups): an openrc file of these credentials without the password
    /// (`export OS_…='…'` lines, environment values included), and the password, for
    /// a file of its own.
    pub fn split_for_machine(&self) -> (String, SecretString) {
        let mut text = String::from(
            "# Written by dbctl: Keystone v3 credentials, the password in a file of its own.\n",
        );
        for (key, value) in &self.vars {
            text.push_str(&format!("export {key}='{value}'\n"));
        }
        (text, self.password.clone())
    }

    /// The Keystone v3 base URL (`…/v3`).
    pub fn auth_url(&self) -> String {
        let url = self
            .get("OS_AUTH_URL")
            .unwrap_or_default()
            .trim_end_matches('/');
        if url.ends_with("/v3") {
            url.to_owned()
        } else {
            format!("{url}/v3")
        }
    }

    fn domain(&self, kind: &str) -> serde_json::Value {
        if let Some(id) = self.get(&format!("OS_{kind}_DOMAIN_ID")) {
            json!({"id": id})
        } else {
            json!({"name": self.get(&format!("OS_{kind}_DOMAIN_NAME")).unwrap_or("Default")})
        }
    }

    fn request_body(&self) -> serde_json::Value {
        let project = match self.get("OS_PROJECT_ID") {
            Some(id) => json!({"id": id}),
            None => json!({
                "name": self.get("OS_PROJECT_NAME").unwrap_or_default(),
                "domain": self.domain("PROJECT"),
            }),
        };
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.get("OS_USERNAME").unwrap_or_default(),
                "domain": self.domain("USER"),
                "password": self.password.expose_secret(),
            }}},
            "scope": {"project": project},
        }})
    }
}

fn unquote(value: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    value
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// An authenticated session: the token and the endpoints dbctl uses.
pub struct Session {
    pub(super) client: Client,
    pub(super) token: SecretString,
    /// The Heat (`orchestration`) endpoint, with the project in its path
    /// (`http://host:8004/v1/<project id>`).
    pub heat_url: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: Token,
}

#[derive(Deserialize)]
struct Token {
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    interface: String,
    #[serde(default)]
    region_id: Option<String>,
    #[serde(default)]
    region: Option<String>,
    url: String,
}

impl Session {
    /// Authenticates with `creds` and finds Heat in the catalog (interface
    /// `OS_INTERFACE`, default `public`; region `OS_REGION_NAME` when set).
    ///
    /// # Errors
    /// Keystone unreachable, credentials refused (the status and Keystone's message,
    /// never the password), or no orchestration endpoint.
    pub fn authenticate(creds: &Credentials) -> Result<Self, OpenstackError> {
        let (client, token, catalog) = issue(creds)?;
        let heat_url = endpoint(creds, &catalog, "orchestration", "Heat")?;
        Ok(Self {
            client,
            token,
            heat_url,
        })
    }
}

/// A token for `creds` and the Swift (`object-store`) endpoint of its project
/// (`http://host:8080/v1/AUTH_<project id>`), chosen like Heat's in
/// [`Session::authenticate`]: what a Swift client needs.
///
/// # Errors
/// As [`Session::authenticate`], or no object-store endpoint.
pub fn object_store(creds: &Credentials) -> Result<(String, SecretString), OpenstackError> {
    let (_, token, catalog) = issue(creds)?;
    Ok((endpoint(creds, &catalog, "object-store", "Swift")?, token))
}

/// `POST /v3/auth/tokens` with the password method: the client, the token
/// (`X-Subject-Token`) and the service catalog.
fn issue(creds: &Credentials) -> Result<(Client, SecretString, Vec<CatalogEntry>), OpenstackError> {
    let client = Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| OpenstackError::http("Keystone", &creds.auth_url(), &e))?;
    let url = format!("{}/auth/tokens", creds.auth_url());
    let response = client
        .post(&url)
        .json(&creds.request_body())
        .send()
        .map_err(|e| OpenstackError::http("Keystone", &url, &e))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().unwrap_or_default();
        return Err(OpenstackError::Api {
            service: "Keystone",
            method: "POST".into(),
            url,
            status: status.as_u16(),
            message: super::api_message(&body),
        });
    }
    let token = response
        .headers()
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .map(|v| SecretString::from(v.to_owned()))
        .ok_or_else(|| OpenstackError::Protocol {
            service: "Keystone",
            message: format!("{url} answered without an X-Subject-Token header"),
        })?;
    let body: TokenBody = response.json().map_err(|e| OpenstackError::Protocol {
        service: "Keystone",
        message: format!("unexpected token body from {url}: {e}"),
    })?;
    Ok((client, token, body.token.catalog))
}

/// The URL of service `kind` (`orchestration`, `object-store`) in `catalog`, on
/// interface `OS_INTERFACE` (default `public`) and in region `OS_REGION_NAME` when set.
fn endpoint(
    creds: &Credentials,
    catalog: &[CatalogEntry],
    kind: &str,
    name: &str,
) -> Result<String, OpenstackError> {
    let interface = creds.get("OS_INTERFACE").unwrap_or("public");
    let region = creds.get("OS_REGION_NAME");
    catalog
        .iter()
        .filter(|e| e.kind == kind)
        .flat_map(|e| &e.endpoints)
        .find(|e| {
            e.interface == interface
                && region.is_none_or(|r| {
                    e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r)
                })
        })
        .map(|e| e.url.trim_end_matches('/').to_owned())
        .ok_or_else(|| OpenstackError::Protocol {
            service: "Keystone",
            message: format!(
                "the service catalog has no `{interface}` {kind} ({name}) endpoint{}",
                region
                    .map(|r| format!(" in region `{r}`"))
                    .unwrap_or_default()
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openrc_values_are_read_without_running_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openrc.sh");
        std::fs::write(
            &path,
            "#!/bin/sh\nexport OS_AUTH_URL=https://keystone.example:5000\n\
             export OS_USERNAME='ops'\nexport OS_PASSWORD=\"s3cret\"\n\
             OS_PROJECT_NAME=dbs\nexport OS_REGION_NAME=$REGION\necho hi\n",
        )
        .unwrap();
        let creds = Credentials::from_openrc(&path).unwrap();
        assert_eq!(creds.auth_url(), "https://keystone.example:5000/v3");
        assert_eq!(creds.get("OS_USERNAME"), Some("ops"));
        assert_eq!(creds.get("OS_PROJECT_NAME"), Some("dbs"));
        assert_eq!(creds.password.expose_secret(), "s3cret");
        assert!(!format!("{creds:?}").contains("s3cret"));
        let body = creds.request_body().to_string();
        assert!(body.contains(r#""domain":{"name":"Default"}"#), "{body}");
    }

    #[test]
    fn a_machine_gets_the_openrc_without_its_password_and_the_password_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openrc.sh");
        std::fs::write(
            &path,
            "export OS_AUTH_URL=https://keystone.example:5000/v3\nexport OS_USERNAME=ops\n\
             export OS_PASSWORD='s3cret'\nexport OS_PROJECT_NAME=\"db team\"\n",
        )
        .unwrap();
        let (text, password) = Credentials::from_openrc(&path).unwrap().split_for_machine();
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(password.expose_secret(), "s3cret");
        let copy = dir.path().join("copy.sh");
        std::fs::write(&copy, &text).unwrap();
        let again = Credentials::from_openrc_with_password(&copy, password).unwrap();
        assert_eq!(again.auth_url(), "https://keystone.example:5000/v3");
        assert_eq!(again.get("OS_PROJECT_NAME"), Some("db team"));
        assert_eq!(again.password.expose_secret(), "s3cret");
    }

    #[test]
    fn a_missing_password_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openrc.sh");
        std::fs::write(
            &path,
            "export OS_AUTH_URL=http://k:5000/v3\nexport OS_USERNAME=u\nexport OS_PROJECT_NAME=p\n\
             read -sr OS_PASSWORD_INPUT\nexport OS_PASSWORD=$OS_PASSWORD_INPUT\n",
        )
        .unwrap();
        if std::env::var_os("OS_PASSWORD").is_none() {
            let err = Credentials::from_openrc(&path).unwrap_err().to_string();
            assert!(err.contains("OS_PASSWORD"), "{err}");
        }
    }
}
