//! The Heat orchestration API: create, update, read and delete stacks, wait for them.
//!
//! API: <https://docs.openstack.org/api-ref/orchestration/v1/> — `POST /stacks`,
//! `GET /stacks/{name}` (redirects to `/stacks/{name}/{id}`), `PUT
//! /stacks/{name}/{id}`, `DELETE /stacks/{name}/{id}`. Templates and environments go as
//! YAML text; Heat parses them.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::RequestBuilder;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::OpenstackError;
use super::keystone::Session;
use crate::retry::{Check, Policy, Polled};

/// How long dbctl waits for a stack operation unless `--timeout` says otherwise; also
/// the stack's own `timeout_mins`.
pub const STACK_TIMEOUT: Duration = Duration::from_mins(30);

/// Tag prefix recording the digest of what a stack was last applied from.
const DIGEST_TAG: &str = "dbctl-sha256-";

/// What a stack should be.
#[derive(Debug, Clone)]
pub struct StackRequest {
    /// Stack name (`db-<name>-ip`).
    pub name: String,
    /// The HOT template, YAML.
    pub template: String,
    /// The Heat environment, YAML (empty for none).
    pub environment: String,
    /// Files the environment refers to (provider templates), by the name it uses.
    pub files: BTreeMap<String, String>,
}

impl StackRequest {
    /// SHA-256 of template, environment and files, hex (first 32 digits): equal digests
    /// mean an update would change nothing.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        for part in [&self.template, &self.environment] {
            hash.update(part.len().to_le_bytes());
            hash.update(part.as_bytes());
        }
        for (name, text) in &self.files {
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(text.len().to_le_bytes());
            hash.update(text.as_bytes());
        }
        hex::encode(hash.finalize())[..32].to_owned()
    }
}

/// A stack as `GET /stacks/{name}/{id}` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Stack {
    /// Stack UUID.
    pub id: String,
    /// Stack name.
    pub stack_name: String,
    /// `CREATE_COMPLETE`, `UPDATE_IN_PROGRESS`, `CREATE_FAILED`, …
    pub stack_status: String,
    /// Why it is in that status.
    #[serde(default)]
    pub stack_status_reason: Option<String>,
    /// Outputs (present when the stack is complete).
    #[serde(default)]
    pub outputs: Vec<Output>,
    /// Tags (`null` when none).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// One stack output.
#[derive(Debug, Clone, Deserialize)]
pub struct Output {
    /// Its key in the template's `outputs`.
    pub output_key: String,
    /// Its value (any JSON).
    #[serde(default)]
    pub output_value: serde_json::Value,
}

impl Stack {
    /// Whether an operation is still running.
    pub fn in_progress(&self) -> bool {
        self.stack_status.ends_with("_IN_PROGRESS")
    }

    /// Whether the last operation completed (create, update, check, resume…).
    pub fn complete(&self) -> bool {
        self.stack_status.ends_with("_COMPLETE") && !self.stack_status.starts_with("DELETE")
    }

    /// The digest dbctl tagged the stack with.
    pub fn digest(&self) -> Option<&str> {
        self.tags
            .iter()
            .flatten()
            .find_map(|t| t.strip_prefix(DIGEST_TAG))
    }

    /// Output `key`, when present and not null.
    pub fn output(&self, key: &str) -> Option<&serde_json::Value> {
        self.outputs
            .iter()
            .find(|o| o.output_key == key)
            .map(|o| &o.output_value)
            .filter(|v| !v.is_null())
    }
}

#[derive(Deserialize)]
struct StackBody {
    stack: Stack,
}

/// What [`Heat::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The stack did not exist and is being created.
    Created,
    /// The stack existed from other inputs and is being updated.
    Updated,
    /// The stack is complete from the same inputs: nothing to do.
    Unchanged,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Created => "creating",
            Self::Updated => "updating",
            Self::Unchanged => "unchanged",
        })
    }
}

/// A Heat client on an authenticated session.
pub struct Heat<'a> {
    session: &'a Session,
    timeout: Duration,
}

impl<'a> Heat<'a> {
    /// Heat at the session's orchestration endpoint, waiting up to `timeout` for a stack
    /// operation (`None`: [`STACK_TIMEOUT`]).
    pub fn new(session: &'a Session, timeout: Option<Duration>) -> Self {
        Self {
            session,
            timeout: timeout.unwrap_or(STACK_TIMEOUT),
        }
    }

    fn request(&self, method: Method, path: &str) -> (RequestBuilder, String) {
        let url = format!("{}/{path}", self.session.heat_url);
        let builder = self
            .session
            .client
            .request(method, &url)
            .header("X-Auth-Token", self.session.token.expose_secret())
            .header("Accept", "application/json");
        (builder, url)
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<reqwest::blocking::Response>, OpenstackError> {
        let method_name = method.as_str().to_owned();
        let (mut builder, url) = self.request(method, path);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = builder
            .send()
            .map_err(|e| OpenstackError::http("Heat", &url, &e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body = response.text().unwrap_or_default();
            return Err(OpenstackError::Api {
                service: "Heat",
                method: method_name,
                url,
                status: status.as_u16(),
                message: super::api_message(&body),
            });
        }
        Ok(Some(response))
    }

    /// The stack called `name`, or `None`.
    ///
    /// # Errors
    /// Heat unreachable or refusing.
    pub fn get(&self, name: &str) -> Result<Option<Stack>, OpenstackError> {
        let Some(response) = self.send(Method::GET, &format!("stacks/{name}"), None)? else {
            return Ok(None);
        };
        let body: StackBody = response.json().map_err(|e| OpenstackError::Protocol {
            service: "Heat",
            message: format!("unexpected body for stack `{name}`: {e}"),
        })?;
        Ok(Some(body.stack))
    }

    /// Creates the stack, or updates it when it exists from other inputs; leaves it
    /// alone when it is complete from the same ones (the digest tag). Does not wait.
    ///
    /// # Errors
    /// Heat refuses the template or environment (its message names the problem), or the
    /// stack is busy with another operation.
    pub fn apply(&self, req: &StackRequest) -> Result<Applied, OpenstackError> {
        let digest = req.digest();
        let mut body = json!({
            "template": req.template,
            "files": req.files,
            "timeout_mins": self.timeout.as_secs().div_ceil(60).max(1),
            "tags": format!("dbctl,{DIGEST_TAG}{digest}"),
        });
        if !req.environment.is_empty() {
            body["environment"] = json!(req.environment);
        }
        match self.get(&req.name)? {
            None => {
                body["stack_name"] = json!(req.name);
                self.send(Method::POST, "stacks", Some(&body))?;
                Ok(Applied::Created)
            }
            Some(stack) if stack.in_progress() => Err(OpenstackError::Busy {
                stack: req.name.clone(),
                status: stack.stack_status,
            }),
            Some(stack) if stack.complete() && stack.digest() == Some(digest.as_str()) => {
                Ok(Applied::Unchanged)
            }
            Some(stack) => {
                self.send(
                    Method::PUT,
                    &format!("stacks/{}/{}", stack.stack_name, stack.id),
                    Some(&body),
                )?;
                Ok(Applied::Updated)
            }
        }
    }

    /// Deletes the stack when it exists; does not wait.
    ///
    /// # Errors
    /// Heat unreachable or refusing.
    pub fn delete(&self, name: &str) -> Result<bool, OpenstackError> {
        let Some(stack) = self.get(name)? else {
            return Ok(false);
        };
        if stack.stack_status != "DELETE_IN_PROGRESS" {
            self.send(
                Method::DELETE,
                &format!("stacks/{}/{}", stack.stack_name, stack.id),
                None,
            )?;
        }
        Ok(true)
    }

    /// Polls until no operation runs on the stack; `None` once it is gone.
    ///
    /// # Errors
    /// The operation failed (Heat's reason), or the timeout passed.
    pub fn wait(&self, name: &str) -> Result<Option<Stack>, OpenstackError> {
        let policy = Policy::until(Some(self.timeout), Duration::from_millis(500))
            .growing_to(Duration::from_secs(3));
        let polled = policy.poll(&format!("Heat stack `{name}`"), || {
            Ok(match self.get(name)? {
                None => Check::Ready(None),
                Some(stack) if stack.stack_status == "DELETE_COMPLETE" => Check::Ready(None),
                Some(stack) if stack.stack_status.ends_with("_FAILED") => {
                    return Err(OpenstackError::StackFailed {
                        stack: name.to_owned(),
                        status: stack.stack_status,
                        reason: stack.stack_status_reason.unwrap_or_default(),
                    });
                }
                Some(stack) if !stack.in_progress() => Check::Ready(Some(stack)),
                Some(stack) => Check::Pending(stack.stack_status),
            })
        })?;
        match polled {
            Polled::Ready(stack) => Ok(stack),
            Polled::TimedOut(status) => Err(OpenstackError::StackTimeout {
                stack: name.to_owned(),
                status,
                seconds: self.timeout.as_secs(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_change_with_any_input() {
        let base = StackRequest {
            name: "db-a-ip".into(),
            template: "heat_template_version: 2018-08-31\n".into(),
            environment: String::new(),
            files: BTreeMap::new(),
        };
        let mut env = base.clone();
        env.environment = "parameter_defaults: {}\n".into();
        let mut files = base.clone();
        files.files.insert("port.yaml".into(), "x".into());
        assert_eq!(base.digest(), base.clone().digest());
        assert_ne!(base.digest(), env.digest());
        assert_ne!(base.digest(), files.digest());
        assert_eq!(base.digest().len(), 32);
    }

    #[test]
    fn stack_bodies_from_the_api_reference_parse() {
        // Shape of `GET /v1/{tenant_id}/stacks/{stack_name}/{stack_id}` in the Heat API
        // reference (trimmed).
        let body = r#"{"stack": {"id": "3095aefc-09fb-4bc7-b1f0-f21a304e864c",
            "stack_name": "db-a-cluster", "stack_status": "CREATE_COMPLETE",
            "stack_status_reason": "Stack CREATE completed successfully",
            "outputs": [{"output_key": "vip", "output_value": "10.0.0.5", "description": "VIP"},
                        {"output_key": "floating_ip", "output_value": null}],
            "tags": ["dbctl", "dbctl-sha256-abc"], "parameters": {}, "links": []}}"#;
        let stack = serde_json::from_str::<StackBody>(body).unwrap().stack;
        assert!(stack.complete());
        assert_eq!(stack.digest(), Some("abc"));
        assert_eq!(stack.output("vip"), Some(&json!("10.0.0.5")));
        assert_eq!(stack.output("floating_ip"), None);
    }
}
