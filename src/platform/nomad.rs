//! The `nomad` platform: databases on an existing Nomad cluster, through Nomad's HTTP
//! API (`api-docs/jobs.mdx`, `api-docs/allocations.mdx` and the variables API; see
//! `../shared/reference/nomad`).
//!
//! A database is three jobs rendered from `playbooks/nomad/create.yml` and checked
//! against the typed job structs ([`super::nomad_api`]): the service job `db-<name>`
//! running the engine, the batch job `db-<name>-configure` that makes the application
//! user and database, and the parameterized job `db-<name>-sql` that `dbctl sql`
//! dispatches. The jobs read their passwords from Nomad variables at their
//! workload-identity paths, `nomad/jobs/<job id>` (items `password`, `admin_password`),
//! which dbctl writes before it registers them, so no secret is in a job or in Git.
//! What was applied ([`Applied`]) is kept in the service job's `Meta.dbctl_applied`,
//! where `observe` reads it back on any runner.
//!
//! Reaching Nomad is read from the environment as the Nomad CLI reads it:
//! `NOMAD_ADDR` (default `http://127.0.0.1:4646`), `NOMAD_TOKEN` (sent as
//! `X-Nomad-Token`), `NOMAD_NAMESPACE` (else the target's `namespace`), `NOMAD_REGION`
//! (else the target's `region`) and `NOMAD_CACERT` (a PEM file trusted for `https`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::cloud::{Cloud, Names};
use super::nomad_api::JobRegistration;
use super::{
    Admin, Artifact, Capabilities, Observed, Options, Progress, Request, Response, Role, State,
};
use crate::catalog::EngineKind;
use crate::change::{Applied, Endpoint};
use crate::gitops::Repo;
use crate::playbook::ArtifactKind;
use crate::retry::{Check, Policy, Polled};
use crate::spec::{PlatformKind, Spec, Target};

/// Nomad's address when `NOMAD_ADDR` is unset (the CLI's default).
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:4646";

/// How long dbctl waits for an allocation unless `--timeout` says otherwise.
const ALLOCATION_TIMEOUT: Duration = Duration::from_mins(10);

/// The `Meta` key of the service job holding what dbctl applied (JSON).
const APPLIED_META: &str = "dbctl_applied";

/// The artifact key of a database's rendered jobs among its digests.
const NOMAD_ARTIFACT: &str = "nomad/";

/// Why a Nomad API call failed.
#[derive(Debug, thiserror::Error)]
pub enum NomadError {
    /// No answer (connection refused, TLS, timeout).
    #[error(
        "Nomad at {addr} (target `{target}`) cannot be reached ({method} {path}): {message}; set NOMAD_ADDR (and NOMAD_CACERT for https) to the cluster's API"
    )]
    Unreachable {
        /// The dbctl target.
        target: String,
        /// `NOMAD_ADDR`.
        addr: String,
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// The client's error.
        message: String,
    },
    /// An error status.
    #[error("Nomad at {addr} (target `{target}`) refused {method} {path} ({status}): {message}")]
    Api {
        /// The dbctl target.
        target: String,
        /// `NOMAD_ADDR`.
        addr: String,
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Nomad's message (its body).
        message: String,
    },
    /// A body that is not what the API documents.
    #[error(
        "Nomad at {addr} (target `{target}`) answered {method} {path} with a body dbctl cannot read: {message}"
    )]
    Protocol {
        /// The dbctl target.
        target: String,
        /// `NOMAD_ADDR`.
        addr: String,
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// What did not parse.
        message: String,
    },
}

/// How to reach Nomad, from the environment as the Nomad CLI reads it.
#[derive(Debug, Clone)]
pub struct NomadConfig {
    /// The dbctl target, for messages.
    pub target: String,
    /// `NOMAD_ADDR`.
    pub addr: url::Url,
    /// `NOMAD_TOKEN`.
    pub token: Option<SecretString>,
    /// `NOMAD_NAMESPACE`, else the target's `namespace`.
    pub namespace: String,
    /// `NOMAD_REGION`, else the target's `region`.
    pub region: Option<String>,
    /// `NOMAD_CACERT`: a PEM file of CAs to trust.
    pub cacert: Option<std::path::PathBuf>,
}

impl NomadConfig {
    /// Reads the environment for `target`.
    ///
    /// # Errors
    /// A `NOMAD_ADDR` that is not an `http`/`https` URL.
    pub fn from_env(target: &Target) -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let raw = var("NOMAD_ADDR").unwrap_or_else(|| DEFAULT_ADDR.to_owned());
        let addr = url::Url::parse(&raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .with_context(|| {
                format!(
                    "NOMAD_ADDR `{raw}` (target `{}`) is not an http(s) URL, e.g. {DEFAULT_ADDR}",
                    target.name
                )
            })?;
        Ok(Self {
            target: target.name.clone(),
            addr,
            token: var("NOMAD_TOKEN").map(SecretString::from),
            namespace: var("NOMAD_NAMESPACE").unwrap_or_else(|| target.cloud.namespace.clone()),
            region: var("NOMAD_REGION").or_else(|| target.cloud.region.clone()),
            cacert: var("NOMAD_CACERT").map(std::path::PathBuf::from),
        })
    }
}

/// One allocation as `GET /v1/job/:job_id/allocations` lists it (the fields dbctl
/// reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocationStub {
    /// Allocation ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// The job version it runs.
    #[serde(default)]
    pub job_version: u64,
    /// `pending`, `running`, `complete`, `failed`, `lost`.
    pub client_status: String,
    /// `run`, `stop`, `evict`.
    #[serde(default)]
    pub desired_status: String,
    /// The deployment's view of its health.
    #[serde(default)]
    pub deployment_status: Option<DeploymentStatus>,
    /// Task name → state.
    #[serde(default)]
    pub task_states: Option<BTreeMap<String, TaskState>>,
}

/// `AllocationStub.DeploymentStatus`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentStatus {
    /// Healthy once its checks passed for `MinHealthyTime`; `None` while unknown.
    #[serde(default)]
    pub healthy: Option<bool>,
}

/// One task's state in an allocation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskState {
    /// `pending`, `running`, `dead`.
    pub state: String,
    /// Whether it failed.
    #[serde(default)]
    pub failed: bool,
    /// Its events, oldest first.
    #[serde(default)]
    pub events: Option<Vec<TaskEvent>>,
}

/// One task event (`Terminated` carries the exit code).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskEvent {
    /// `Received`, `Started`, `Terminated`, `Driver Failure`, …
    #[serde(rename = "Type")]
    pub kind: String,
    /// The exit code of a `Terminated` event.
    #[serde(default)]
    pub exit_code: i32,
    /// Human text.
    #[serde(default)]
    pub display_message: Option<String>,
}

impl AllocationStub {
    /// The exit code of `task`'s last `Terminated` event.
    fn exit_code(&self, task: &str) -> Option<i32> {
        self.task_states
            .as_ref()?
            .get(task)?
            .events
            .as_ref()?
            .iter()
            .rev()
            .find(|e| e.kind == "Terminated")
            .map(|e| e.exit_code)
    }

    /// What its tasks last said, for messages.
    fn events(&self) -> String {
        self.task_states
            .iter()
            .flatten()
            .map(|(task, state)| {
                let last = state
                    .events
                    .as_ref()
                    .and_then(|e| e.last())
                    .map(|e| {
                        format!(
                            "{}{}",
                            e.kind,
                            e.display_message
                                .as_deref()
                                .filter(|m| !m.is_empty())
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                format!("{task} {} ({last})", state.state)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Nomad's HTTP API, async (reqwest), on the run's runtime.
pub struct NomadApi {
    http: reqwest::Client,
    config: NomadConfig,
}

impl NomadApi {
    /// A client for `config`.
    ///
    /// # Errors
    /// An unreadable `NOMAD_CACERT`.
    pub fn new(config: NomadConfig) -> Result<Self> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_mins(1));
        if let Some(path) = &config.cacert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read NOMAD_CACERT `{}`", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("NOMAD_CACERT `{}` is not PEM", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: builder
                .build()
                .context("cannot build the Nomad HTTP client")?,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NomadConfig {
        &self.config
    }

    /// Sends one request to `path` (under `/v1/`) with the namespace and region as
    /// query parameters; `Ok(None)` for 404.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Option<String>, NomadError> {
        let mut url = self.config.addr.clone();
        url.set_path(&format!("/v1/{path}"));
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("namespace", &self.config.namespace);
            if let Some(region) = &self.config.region {
                pairs.append_pair("region", region);
            }
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        let addr = self.config.addr.to_string();
        let shown = || (addr.clone(), method.to_string(), format!("/v1/{path}"));
        let mut request = self.http.request(method.clone(), url);
        if let Some(token) = &self.config.token {
            request = request.header("X-Nomad-Token", token.expose_secret());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            let (addr, method, path) = shown();
            NomadError::Unreachable {
                target: self.config.target.clone(),
                addr,
                method,
                path,
                message: crate::playbook::runner::display_chain(&e),
            }
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let (addr, method, path) = shown();
            return Err(NomadError::Api {
                target: self.config.target.clone(),
                addr,
                method,
                path,
                status: status.as_u16(),
                message: text.trim().to_owned(),
            });
        }
        Ok(Some(text))
    }

    /// [`NomadApi::send`], parsing the body as `T` (a 404 is an error).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Option<T>, NomadError> {
        let Some(text) = self.send(method.clone(), path, query, body).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| NomadError::Protocol {
                target: self.config.target.clone(),
                addr: self.config.addr.to_string(),
                method: method.to_string(),
                path: format!("/v1/{path}"),
                message: e.to_string(),
            })
    }

    /// Registers (creates or updates) a job: `POST /v1/jobs`. Returns the response
    /// (`EvalID`, `JobModifyIndex`, `Warnings`).
    ///
    /// # Errors
    /// Nomad refuses the job (its message names the field).
    pub async fn register(&self, job: &JobRegistration) -> Result<Value, NomadError> {
        let body = serde_json::to_value(job).unwrap_or_default();
        Ok(self
            .call(Method::POST, "jobs", &[], Some(&body))
            .await?
            .unwrap_or_default())
    }

    /// A dry run of the scheduler with the diff against the registered job: `POST
    /// /v1/job/:job_id/plan` with `Diff: true`.
    ///
    /// # Errors
    /// Nomad refuses the job.
    pub async fn plan(&self, job: &JobRegistration) -> Result<Value, NomadError> {
        let mut body = serde_json::to_value(job).unwrap_or_default();
        body["Diff"] = Value::Bool(true);
        Ok(self
            .call(
                Method::POST,
                &format!("job/{}/plan", job.job.id),
                &[],
                Some(&body),
            )
            .await?
            .unwrap_or_default())
    }

    /// The IDs of the jobs whose ID starts with `prefix`: `GET /v1/jobs?prefix=`.
    ///
    /// # Errors
    /// Nomad unreachable or refusing (a wrong token: 403).
    pub async fn job_ids(&self, prefix: &str) -> Result<Vec<String>, NomadError> {
        let jobs: Vec<Value> = self
            .call(Method::GET, "jobs", &[("prefix", prefix)], None)
            .await?
            .unwrap_or_default();
        Ok(jobs
            .iter()
            .filter_map(|j| j["ID"].as_str().map(str::to_owned))
            .collect())
    }

    /// The job, or `None`: `GET /v1/job/:job_id`.
    ///
    /// # Errors
    /// Nomad unreachable or refusing.
    pub async fn job(&self, id: &str) -> Result<Option<Value>, NomadError> {
        self.call(Method::GET, &format!("job/{id}"), &[], None)
            .await
    }

    /// The job's allocations: `GET /v1/job/:job_id/allocations`.
    ///
    /// # Errors
    /// Nomad unreachable or refusing.
    pub async fn allocations(&self, id: &str) -> Result<Vec<AllocationStub>, NomadError> {
        Ok(self
            .call(Method::GET, &format!("job/{id}/allocations"), &[], None)
            .await?
            .unwrap_or_default())
    }

    /// One allocation in full: `GET /v1/allocation/:alloc_id`.
    ///
    /// # Errors
    /// Nomad unreachable or refusing.
    pub async fn allocation(&self, id: &str) -> Result<Option<Value>, NomadError> {
        self.call(Method::GET, &format!("allocation/{id}"), &[], None)
            .await
    }

    /// Stops and purges a job: `DELETE /v1/job/:job_id?purge=true`; a job that is not
    /// there is no error.
    ///
    /// # Errors
    /// Nomad unreachable or refusing.
    pub async fn deregister(&self, id: &str) -> Result<(), NomadError> {
        self.send(
            Method::DELETE,
            &format!("job/{id}"),
            &[("purge", "true")],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Writes a variable's items: `PUT /v1/var/:path`.
    ///
    /// # Errors
    /// Nomad unreachable or refusing (ACL `variables:write`).
    pub async fn put_variable(
        &self,
        path: &str,
        items: &BTreeMap<String, SecretString>,
    ) -> Result<(), NomadError> {
        let items: BTreeMap<&str, &str> = items
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        let body = serde_json::json!({
            "Namespace": self.config.namespace,
            "Path": path,
            "Items": items,
        });
        self.send(Method::PUT, &format!("var/{path}"), &[], Some(&body))
            .await
            .map(|_| ())
    }

    /// A variable's items, or `None`: `GET /v1/var/:path`.
    ///
    /// # Errors
    /// Nomad unreachable or refusing.
    pub async fn variable(
        &self,
        path: &str,
    ) -> Result<Option<BTreeMap<String, SecretString>>, NomadError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Variable {
            #[serde(default)]
            items: BTreeMap<String, String>,
        }
        let found: Option<Variable> = self
            .call(Method::GET, &format!("var/{path}"), &[], None)
            .await?;
        Ok(found.map(|v| {
            v.items
                .into_iter()
                .map(|(k, v)| (k, SecretString::from(v)))
                .collect()
        }))
    }

    /// Deletes a variable: `DELETE /v1/var/:path`; one that is not there is no error.
    ///
    /// # Errors
    /// Nomad unreachable or refusing.
    pub async fn delete_variable(&self, path: &str) -> Result<(), NomadError> {
        self.send(Method::DELETE, &format!("var/{path}"), &[], None)
            .await
            .map(|_| ())
    }

    /// Dispatches a parameterized job with `payload` (at most 16 KiB, base64 in the
    /// body): `POST /v1/job/:job_id/dispatch`; the dispatched job's ID.
    ///
    /// # Errors
    /// Nomad refuses (not parameterized, payload too large).
    pub async fn dispatch(&self, id: &str, payload: &[u8]) -> Result<String, NomadError> {
        use base64::Engine as _;
        let body = serde_json::json!({
            "Payload": base64::engine::general_purpose::STANDARD.encode(payload),
            "Meta": {"dbctl_requested_by": crate::transport::current_user_name()},
        });
        let path = format!("job/{id}/dispatch");
        let answer: Value = self
            .call(Method::POST, &path, &[], Some(&body))
            .await?
            .unwrap_or_default();
        answer["DispatchedJobID"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| NomadError::Protocol {
                target: self.config.target.clone(),
                addr: self.config.addr.to_string(),
                method: "POST".into(),
                path: format!("/v1/{path}"),
                message: format!("no DispatchedJobID in {answer}"),
            })
    }

    /// A task's log (`stdout` or `stderr`) as plain text: `GET
    /// /v1/client/fs/logs/:alloc_id?task=…&type=…&plain=true`.
    ///
    /// # Errors
    /// Nomad unreachable or refusing.
    pub async fn logs(&self, alloc: &str, task: &str, kind: &str) -> Result<String, NomadError> {
        Ok(self
            .send(
                Method::GET,
                &format!("client/fs/logs/{alloc}"),
                &[("task", task), ("type", kind), ("plain", "true")],
                None,
            )
            .await?
            .unwrap_or_default())
    }
}

/// Where clients reach an allocation's `db` port: `AllocatedResources.Shared.Ports`
/// (Nomad ≥ 1.0), else the documented `Resources.Networks[].ReservedPorts /
/// DynamicPorts`.
fn endpoint_of(allocation: &Value) -> Option<Endpoint> {
    let port_of = |p: &Value| -> Option<u16> { u16::try_from(p["Value"].as_u64()?).ok() };
    if let Some(ports) = allocation["AllocatedResources"]["Shared"]["Ports"].as_array()
        && let Some(db) = ports.iter().find(|p| p["Label"] == "db")
        && let (Some(host), Some(port)) = (db["HostIP"].as_str(), port_of(db))
    {
        return Some(Endpoint {
            host: host.to_owned(),
            port,
        });
    }
    let networks = allocation["Resources"]["Networks"].as_array()?;
    networks.iter().find_map(|n| {
        let ports = n["ReservedPorts"]
            .as_array()
            .into_iter()
            .chain(n["DynamicPorts"].as_array())
            .flatten();
        let port = ports.filter(|p| p["Label"] == "db").find_map(&port_of)?;
        Some(Endpoint {
            host: n["IP"].as_str()?.to_owned(),
            port,
        })
    })
}

/// A `nomad` target's driver.
pub struct Nomad {
    target: Target,
    cloud: Cloud,
    api: NomadApi,
    runtime: tokio::runtime::Handle,
    timeout: Option<Duration>,
}

impl Nomad {
    /// Binds `target` of `repo`, reading how to reach Nomad from the environment.
    ///
    /// # Errors
    /// A bad `NOMAD_ADDR` or `NOMAD_CACERT`, or no runtime.
    pub fn new(repo: &Repo, target: &Target, options: &Options) -> Result<Self> {
        let runtime = options
            .runtime
            .clone()
            .context("the nomad platform needs the run's async runtime")?;
        Ok(Self {
            target: target.clone(),
            cloud: Cloud::new(repo, target),
            api: NomadApi::new(NomadConfig::from_env(target)?)?,
            runtime,
            timeout: options.timeout,
        })
    }

    fn block<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// The rendered jobs of `spec`, parsed (unknown fields refused): service,
    /// configure, SQL.
    fn jobs(&self, spec: &Spec) -> Result<Vec<JobRegistration>> {
        self.cloud
            .render_kind(spec, ArtifactKind::NomadJob)?
            .iter()
            .map(|a| {
                serde_json::from_str::<JobRegistration>(&a.content).with_context(|| {
                    format!(
                        "the rendered Nomad job `{}` of `{}` is not a valid job (templates/nomad/)",
                        a.path, spec.name
                    )
                })
            })
            .collect()
    }

    /// Waits until an allocation of `job` at `version` satisfies `done` (`Ok(true)`),
    /// fails (`Err`), up to `--timeout` (default 10 minutes).
    fn wait_allocation(
        &self,
        job: &str,
        version: u64,
        what: &str,
        done: impl Fn(&AllocationStub) -> Result<bool>,
    ) -> Result<AllocationStub> {
        let timeout = self.timeout.unwrap_or(ALLOCATION_TIMEOUT);
        let polled = Policy::until(Some(timeout), Duration::from_millis(500))
            .growing_to(Duration::from_secs(3))
            .poll(&format!("{what} of Nomad job `{job}`"), || -> Result<_> {
                let allocations = self.block(self.api.allocations(job))?;
                let current: Vec<_> = allocations
                    .into_iter()
                    .filter(|a| a.job_version == version && a.desired_status != "stop")
                    .collect();
                for allocation in &current {
                    if done(allocation)? {
                        return Ok(Check::Ready(allocation.clone()));
                    }
                }
                Ok(Check::Pending(current))
            })?;
        match polled {
            Polled::Ready(allocation) => Ok(allocation),
            Polled::TimedOut(seen) => {
                let states: Vec<String> = seen
                    .iter()
                    .map(|a| format!("{} {}: {}", a.id, a.client_status, a.events()))
                    .collect();
                bail!(
                    "Nomad job `{job}` (target `{}`) has no {what} after {} s: {}; `--timeout SECONDS` waits longer",
                    self.target.name,
                    timeout.as_secs(),
                    if states.is_empty() {
                        "no allocation placed".to_owned()
                    } else {
                        states.join("; ")
                    }
                )
            }
        }
    }

    /// Stops and purges `job` and the jobs it launched (`<job>/dispatch-…`,
    /// `<job>/periodic-…`).
    fn purge_with_children(&self, job: &str) -> Result<()> {
        let children = self.block(self.api.job_ids(&format!("{job}/")))?;
        for id in children.iter().map(String::as_str).chain([job]) {
            self.block(self.api.deregister(id))?;
        }
        Ok(())
    }

    /// Puts what is applied ([`Applied`]: the spec's values, and `digests`: the jobs'
    /// and, on openstack, the resource group's) into the service job's `Meta`, where
    /// `observe` reads it back.
    fn record_applied(
        spec: &Spec,
        service: &mut JobRegistration,
        digests: &BTreeMap<String, String>,
    ) -> Result<()> {
        let applied = Applied::of(spec, digests.clone());
        service
            .job
            .meta
            .get_or_insert_with(BTreeMap::new)
            .insert(APPLIED_META.into(), serde_json::to_string(&applied)?);
        Ok(())
    }

    /// Registers `job` and returns the version Nomad gave it.
    fn register(&self, job: &JobRegistration) -> Result<u64> {
        self.block(self.api.register(job))?;
        let registered = self.block(self.api.job(&job.job.id))?.with_context(|| {
            format!(
                "Nomad job `{}` is gone right after registering it",
                job.job.id
            )
        })?;
        Ok(registered["Version"].as_u64().unwrap_or_default())
    }

    /// The endpoint of the service job's running allocation.
    fn endpoint(&self, allocation: &AllocationStub) -> Result<Endpoint> {
        let full = self
            .block(self.api.allocation(&allocation.id))?
            .with_context(|| format!("Nomad allocation `{}` is gone", allocation.id))?;
        endpoint_of(&full).with_context(|| {
            format!(
                "Nomad allocation `{}` has no address for its `db` port",
                allocation.id
            )
        })
    }

    /// Writes the variable of each of `jobs` (`nomad/jobs/<job id>`): the application
    /// password and the administrator's, kept from the service job's variable when it
    /// has one, else new.
    /// Items the operator put there themselves (the backup job's
    /// `ACCESS_KEY_ID`/`ACCESS_SECRET_KEY`) are kept.
    fn write_variables(&self, spec: &Spec, password: &SecretString, jobs: &[&str]) -> Result<()> {
        let names = Names::new(&spec.name);
        let existing = self.block(self.api.variable(&variable_path(&names.job)))?;
        let admin = existing
            .and_then(|items| items.get("admin_password").cloned())
            .unwrap_or_else(crate::secret::generate_password);
        for job in jobs {
            let path = variable_path(job);
            let mut items = self.block(self.api.variable(&path))?.unwrap_or_default();
            items.insert("password".to_owned(), password.clone());
            items.insert("admin_password".to_owned(), admin.clone());
            self.block(self.api.put_variable(&path, &items))?;
        }
        Ok(())
    }
}

/// Nomad's job diff (`Diff` of a job plan, `api-docs/jobs.mdx` "Create Job Plan") as
/// lines: `job db-x: Edited`, then one line a changed field with its path
/// (`TaskGroups.db.Tasks.postgresql.Resources.MemoryMB: 2048 → 8192`); at most 40.
fn diff_lines(diff: &Value) -> Vec<String> {
    fn walk(node: &Value, path: &str, out: &mut Vec<String>) {
        // dbctl's own record of what it applied is not news to anyone.
        for field in node["Fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["Name"] != APPLIED_META)
        {
            let (name, old, new) = (
                field["Name"].as_str().unwrap_or("?"),
                field["Old"].as_str().unwrap_or(""),
                field["New"].as_str().unwrap_or(""),
            );
            match field["Type"].as_str() {
                Some("Added") => out.push(format!("+ {path}{name} = {new:?}")),
                Some("Deleted") => out.push(format!("- {path}{name} = {old:?}")),
                Some("Edited") => out.push(format!("~ {path}{name}: {old:?} → {new:?}")),
                _ => {}
            }
        }
        for (key, children) in [
            ("Objects", "Objects"),
            ("TaskGroups", "TaskGroups"),
            ("Tasks", "Tasks"),
        ] {
            for child in node[children].as_array().into_iter().flatten() {
                if child["Type"] == "None" {
                    continue;
                }
                let name = child["Name"].as_str().unwrap_or("?");
                let prefix = if key == "Objects" {
                    format!("{path}{name}.")
                } else {
                    format!("{path}{key}.{name}.")
                };
                walk(child, &prefix, out);
            }
        }
    }
    let kind = diff["Type"].as_str().unwrap_or("None");
    if kind == "None" || diff.is_null() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "nomad: job {}: {kind}",
        diff["ID"].as_str().unwrap_or("?")
    )];
    if kind == "Edited" {
        walk(diff, "", &mut lines);
    }
    lines.truncate(40);
    lines
}

/// The periodic backup job of a database: `db-<name>-backup`.
fn backup_job(names: &Names) -> String {
    format!("{}-backup", names.job)
}

/// The workload-identity variable path of a job: `nomad/jobs/<job id>`.
fn variable_path(job: &str) -> String {
    format!("nomad/jobs/{job}")
}

impl Nomad {
    /// sha256 of each rendered job, keyed `nomad/<job id>`: a changed job is planned
    /// as `~ artifact.nomad/<job id>`.
    ///
    /// # Errors
    /// A playbook or template that cannot be rendered.
    pub fn job_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>> {
        let jobs = self.cloud.render_kind(spec, ArtifactKind::NomadJob)?;
        let keyed: Vec<(String, String)> = jobs
            .into_iter()
            .map(|a| {
                let id = a
                    .path
                    .rsplit('/')
                    .next()
                    .unwrap_or(&a.path)
                    .trim_end_matches(".json")
                    .to_owned();
                (format!("{NOMAD_ARTIFACT}{id}"), a.content)
            })
            .collect();
        Ok(crate::change::digests(
            keyed.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ))
    }

    /// Nomad's own diff of each job against what runs (`jobs/plan`), as plan lines,
    /// with `digests` recorded as [`Self::converge`] would.
    ///
    /// # Errors
    /// Nomad refusing or unreachable; a job that does not render.
    pub fn job_diffs(
        &self,
        spec: &Spec,
        digests: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        let mut jobs = self.jobs(spec)?;
        if let Some(service) = jobs.first_mut() {
            Self::record_applied(spec, service, digests)?;
        }
        let mut lines = Vec::new();
        for job in &jobs {
            let answer = self.block(self.api.plan(job))?;
            lines.extend(diff_lines(&answer["Diff"]));
        }
        Ok(lines)
    }

    /// The service job and its allocations: `Up` with the running allocation's `db`
    /// port, else `Down` with Nomad's last events; what was applied from the job's
    /// `Meta`. Details under `nomad`.
    ///
    /// # Errors
    /// Nomad refusing or unreachable.
    pub fn observe_jobs(&self, spec: &Spec) -> Result<Observed> {
        let names = Names::new(&spec.name);
        let Some(job) = self.block(self.api.job(&names.job))? else {
            return Ok(Observed::absent());
        };
        let applied: Option<Applied> = job["Meta"][APPLIED_META]
            .as_str()
            .and_then(|text| serde_json::from_str(text).ok());
        let allocations = self.block(self.api.allocations(&names.job))?;
        let running = allocations
            .iter()
            .find(|a| a.client_status == "running" && a.desired_status == "run");
        let mut observed = Observed {
            state: State::Down,
            applied,
            ..Observed::absent()
        };
        match running {
            Some(allocation) => {
                observed.state = State::Up;
                observed.endpoint = Some(self.endpoint(allocation)?);
            }
            None => {
                observed.detail = Some(format!(
                    "Nomad job `{}` is {} with no running allocation{}",
                    names.job,
                    job["Status"].as_str().unwrap_or("?"),
                    allocations
                        .first()
                        .map(|a| format!(" (last: {} {}: {})", a.id, a.client_status, a.events()))
                        .unwrap_or_default()
                ));
            }
        }
        observed.details.insert(
            "nomad".into(),
            serde_json::json!({
                "address": self.api.config().addr.to_string(),
                "namespace": self.api.config().namespace,
                "job": names.job,
                "status": job["Status"],
                "version": job["Version"],
                "allocations": allocations
                    .iter()
                    .map(|a| serde_json::json!({"id": a.id, "status": a.client_status, "version": a.job_version}))
                    .collect::<Vec<_>>(),
            }),
        );
        Ok(observed)
    }

    /// Preflight: the jobs render and parse (unless `deletes`), Nomad answers and the
    /// token may read the namespace.
    ///
    /// # Errors
    /// A job that does not parse; Nomad refusing or unreachable.
    pub fn check(&self, spec: &Spec, deletes: bool) -> Result<()> {
        if !deletes {
            self.jobs(spec)?;
        }
        self.block(self.api.job_ids(&Names::new(&spec.name).job))?;
        Ok(())
    }

    /// Stops and purges the database's jobs (and what they launched), then deletes
    /// their variables; progress as steps `first`, `first + 1` of `total`.
    ///
    /// # Errors
    /// Nomad refusing or unreachable.
    pub fn purge(
        &self,
        spec: &Spec,
        progress: Progress<'_>,
        first: usize,
        total: usize,
    ) -> Result<()> {
        let names = Names::new(&spec.name);
        progress(first, total, "Stop and purge the Nomad jobs");
        // Dispatched SQL jobs an interrupted `dbctl sql` left behind, and the
        // backup job's launches, go too.
        let jobs = [
            backup_job(&names),
            names.sql_job.clone(),
            names.configure_job.clone(),
            names.job.clone(),
        ];
        for job in &jobs {
            self.purge_with_children(job)?;
        }
        progress(first + 1, total, "Delete the Nomad variables");
        for job in &jobs {
            self.block(self.api.delete_variable(&variable_path(job)))?;
        }
        Ok(())
    }

    /// Registers the database's jobs: writes the passwords into their variables,
    /// registers the service job with `digests` recorded in its `Meta`, waits for a
    /// healthy allocation of its new version, runs the configure job to completion,
    /// then registers the SQL job and the periodic backup job (or removes it). Five
    /// progress steps from `first` of `total`. Returns the running allocation's `db`
    /// address.
    ///
    /// # Errors
    /// Nomad refusing or unreachable, no healthy allocation within `--timeout`
    /// (Nomad's events in the message), the configure job failing (its stderr).
    pub fn converge(
        &self,
        req: &Request<'_>,
        digests: &BTreeMap<String, String>,
        first: usize,
        total: usize,
    ) -> Result<Endpoint> {
        let progress = |k: usize, what: &str| (req.progress)(first + k, total, what);
        let spec = req.spec;
        let names = Names::new(&spec.name);
        let password = req.password()?;
        let mut jobs = self.jobs(spec)?.into_iter();
        let (Some(mut service), Some(configure), Some(sql)) =
            (jobs.next(), jobs.next(), jobs.next())
        else {
            bail!(
                "playbooks/{}/create.yml renders fewer than three Nomad jobs for `{}` (service, configure, sql)",
                self.target.platform,
                spec.name
            );
        };
        // The periodic backup job, when `backup.schedule` renders one.
        let backup = jobs.next();
        let ids: Vec<&str> = [&service, &configure, &sql]
            .into_iter()
            .chain(&backup)
            .map(|j| j.job.id.as_str())
            .collect();
        progress(1, "Write the Nomad variables (passwords)");
        self.write_variables(spec, password, &ids)?;
        progress(2, "Register the service job");
        Self::record_applied(spec, &mut service, digests)?;
        let version = self.register(&service)?;
        progress(3, "Wait for a healthy allocation");
        let running = self.wait_allocation(
            &service.job.id,
            version,
            "healthy running allocation",
            |a| {
                if matches!(a.client_status.as_str(), "failed" | "lost") {
                    bail!(
                        "Nomad allocation `{}` of job `{}` {}: {}",
                        a.id,
                        service.job.id,
                        a.client_status,
                        a.events()
                    );
                }
                Ok(a.client_status == "running"
                    && a.deployment_status
                        .as_ref()
                        .is_none_or(|d| d.healthy == Some(true)))
            },
        )?;
        let endpoint = self.endpoint(&running)?;
        progress(4, "Run the configure job");
        let configured = self.register(&configure)?;
        let task = configure
            .job
            .task_groups
            .first()
            .and_then(|g| g.tasks.first())
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let done =
            self.wait_allocation(&configure.job.id, configured, "finished allocation", |a| {
                Ok(matches!(a.client_status.as_str(), "complete" | "failed"))
            })?;
        if done.client_status != "complete" || done.exit_code(&task).is_some_and(|c| c != 0) {
            let log = self
                .block(self.api.logs(&done.id, &task, "stderr"))
                .unwrap_or_default();
            bail!(
                "Nomad job `{}` (configure) failed in allocation `{}`: {}; its stderr: {}",
                configure.job.id,
                done.id,
                done.events(),
                log.trim()
            );
        }
        progress(5, "Register the SQL and backup jobs");
        self.register(&sql)?;
        let backup_id = backup_job(&names);
        if let Some(job) = &backup {
            self.register(job)?;
        } else {
            // No schedule (any more): no periodic job, nor its launches, nor dbctl's
            // passwords in its variable (the operator's S3 keys stay for next time).
            self.purge_with_children(&backup_id)?;
            let path = variable_path(&backup_id);
            if let Some(mut items) = self.block(self.api.variable(&path))? {
                items.remove("password");
                items.remove("admin_password");
                if items.is_empty() {
                    self.block(self.api.delete_variable(&path))?;
                } else {
                    self.block(self.api.put_variable(&path, &items))?;
                }
            }
        }
        Ok(endpoint)
    }

    /// The admin channel: dispatches of the SQL job `db-<name>-sql`.
    ///
    /// # Errors
    /// The SQL job is not registered; Nomad refusing or unreachable.
    pub fn sql_admin(&self, spec: &Spec) -> Result<Box<dyn Admin + '_>> {
        let names = Names::new(&spec.name);
        if self.block(self.api.job(&names.sql_job))?.is_none() {
            bail!(
                "`{}` has no SQL job `{}` on Nomad (target `{}`): `dbctl apply` registers it",
                spec.name,
                names.sql_job,
                self.target.name
            );
        }
        Ok(Box::new(NomadAdmin {
            nomad: self,
            job: names.sql_job,
        }))
    }
}

impl super::Platform for Nomad {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Nomad
    }

    fn preferred_version(&self, _engine: EngineKind) -> Option<String> {
        None
    }

    fn capabilities(&self, _spec: &Spec) -> Capabilities {
        // A changed job is a new job version: Nomad replaces the allocation (a
        // restart). Host volumes have no size to grow.
        Capabilities {
            configure: true,
            minor_upgrade: true,
            // A periodic job uploads to the target's S3 `backup_destination`.
            schedule_backups: self.target.cloud.backup_destination.is_some(),
            ..Capabilities::default()
        }
    }

    fn artifact_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>> {
        self.job_digests(spec)
    }

    fn preview(&self, spec: &Spec, _password: Option<&SecretString>) -> Result<Vec<String>> {
        self.job_diffs(spec, &self.job_digests(spec)?)
    }

    fn observe(&self, spec: &Spec) -> Result<Observed> {
        self.observe_jobs(spec)
    }

    fn preflight(&self, req: &Request<'_>) -> Result<()> {
        self.check(req.spec, req.deletes())
    }

    fn apply(&self, req: &Request<'_>) -> Result<Response> {
        if req.deletes() {
            self.purge(req.spec, req.progress, 1, 2)?;
            return Ok(Response::default());
        }
        let endpoint = self.converge(req, &self.job_digests(req.spec)?, 0, 5)?;
        Ok(super::endpoint_response(
            req.spec,
            endpoint,
            PlatformKind::Nomad,
        ))
    }

    fn admin(&self, spec: &Spec) -> Result<Box<dyn Admin + '_>> {
        self.sql_admin(spec)
    }

    fn render(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        self.cloud.render(spec)
    }

    fn describe(&self, spec: &Spec) -> Result<serde_json::Value> {
        self.cloud.describe(spec)
    }
}

/// The admin channel of a Nomad database: each batch is a dispatch of its SQL job,
/// whose task runs the engine's client as the administrator (`Role::Owner` batches
/// too: the job's client logs in as the administrator).
struct NomadAdmin<'a> {
    nomad: &'a Nomad,
    job: String,
}

impl Admin for NomadAdmin<'_> {
    fn run(
        &self,
        input: &mut (dyn std::io::Read + Send),
        output: &mut dyn std::io::Write,
        _role: Role<'_>,
    ) -> Result<(i32, String)> {
        let mut payload = Vec::new();
        input.read_to_end(&mut payload)?;
        // Nomad's dispatch payload limit.
        if payload.len() > 16 * 1024 {
            bail!(
                "the batch is {} bytes; a Nomad dispatch payload is at most 16 KiB",
                payload.len()
            );
        }
        let nomad = self.nomad;
        let child = nomad.block(nomad.api.dispatch(&self.job, &payload))?;
        let done = nomad.wait_allocation(&child, 0, "finished allocation", |a| {
            Ok(matches!(a.client_status.as_str(), "complete" | "failed"))
        })?;
        let stdout = nomad.block(nomad.api.logs(&done.id, "sql", "stdout"))?;
        let stderr = nomad.block(nomad.api.logs(&done.id, "sql", "stderr"))?;
        // The dispatched job has done its work: it goes, as a CLI run leaves nothing.
        nomad.block(nomad.api.deregister(&child))?;
        output.write_all(stdout.as_bytes())?;
        let code = done
            .exit_code("sql")
            .unwrap_or(i32::from(done.client_status != "complete"));
        Ok((code, stderr))
    }

    fn backup(
        &self,
        _output: &mut dyn std::io::Write,
        _progress: super::Progress<'_>,
        _incremental: Option<super::IncrementalBase<'_>>,
    ) -> Result<super::BackupTaken> {
        bail!(
            "backups of Nomad databases run as Nomad jobs (not built yet): on target `{}` use `dbctl sql` or a periodic job of your own",
            self.nomad.target.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nomads_job_diff_becomes_one_line_a_changed_field() {
        let diff = serde_json::json!({
            "Type": "Edited", "ID": "db-orders",
            "Fields": [{"Type": "None", "Name": "Priority", "Old": "50", "New": "50"}],
            "Objects": [{"Type": "Edited", "Name": "Meta", "Fields": [
                {"Type": "Edited", "Name": "dbctl_version", "Old": "16", "New": "17"}]}],
            "TaskGroups": [{"Type": "Edited", "Name": "db", "Tasks": [{
                "Type": "Edited", "Name": "postgresql",
                "Fields": [{"Type": "Added", "Name": "Leader", "Old": "", "New": "true"}],
                "Objects": [{"Type": "Edited", "Name": "Resources", "Fields": [
                    {"Type": "Edited", "Name": "MemoryMB", "Old": "2048", "New": "8192"}]}],
                "Annotations": ["forces create/destroy update"]
            }]}]
        });
        assert_eq!(
            diff_lines(&diff),
            [
                "nomad: job db-orders: Edited",
                "~ Meta.dbctl_version: \"16\" → \"17\"",
                "+ TaskGroups.db.Tasks.postgresql.Leader = \"true\"",
                "~ TaskGroups.db.Tasks.postgresql.Resources.MemoryMB: \"2048\" → \"8192\"",
            ]
        );
        assert!(diff_lines(&serde_json::json!({"Type": "None"})).is_empty());
        assert_eq!(
            diff_lines(&serde_json::json!({"Type": "Added", "ID": "db-x"})),
            ["nomad: job db-x: Added"]
        );
    }

    #[test]
    fn the_db_port_is_read_from_either_allocation_shape() {
        let shared = serde_json::json!({"AllocatedResources": {"Shared": {"Ports": [
            {"Label": "other", "Value": 1, "HostIP": "10.0.0.1"},
            {"Label": "db", "Value": 5432, "HostIP": "10.0.0.7"}
        ]}}});
        assert_eq!(
            endpoint_of(&shared),
            Some(Endpoint {
                host: "10.0.0.7".into(),
                port: 5432
            })
        );
        // The documented `Resources.Networks` (api-docs/allocations.mdx).
        let documented = serde_json::json!({"Resources": {"Networks": [
            {"IP": "127.0.0.1", "ReservedPorts": null, "DynamicPorts": [{"Label": "db", "Value": 23116}]}
        ]}});
        assert_eq!(endpoint_of(&documented).map(|e| e.port), Some(23116));
        assert_eq!(endpoint_of(&serde_json::json!({})), None);
    }
}
