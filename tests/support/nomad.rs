//! `NomadDouble`: a test double of Nomad's HTTP API (no Nomad server can run here),
//! built from the documented endpoints in `../shared/reference/nomad`
//! (`api-docs-jobs.mdx`, `api-docs-allocations.mdx`) and Nomad's variables API. It
//! serves what dbctl uses, validates every job body with dbctl's typed job structs
//! (unknown fields refused, as Nomad's decoder does), keeps jobs, allocations and
//! variables per namespace, checks `X-Nomad-Token` when given one, and schedules the
//! way Nomad reports it: a registered service job gets a `running`, healthy allocation
//! on 127.0.0.1 at the port its group reserves (its earlier allocations stop), a batch
//! job a `complete` one, a dispatch of a parameterized job a child job
//! `<id>/dispatch-<n>` whose allocation ends with the exit code and output the test
//! scripts. It runs no containers: what it proves is dbctl's use of the API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use serde_json::{Value, json};

/// What the double holds.
#[derive(Default)]
pub struct Cluster {
    /// (namespace, job id) → (job JSON, version).
    pub jobs: BTreeMap<(String, String), (Value, u64)>,
    /// Every allocation.
    pub allocations: Vec<Allocation>,
    /// (namespace, path) → items.
    pub variables: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Payloads of dispatches, in order.
    pub payloads: Vec<Vec<u8>>,
    /// Every request as `METHOD /path`.
    pub requests: Vec<String>,
    /// The token every request must carry, if any.
    pub token: Option<String>,
    /// What a dispatched job's task prints and exits with.
    pub dispatch: (String, String, i32),
    dispatches: u64,
}

/// One allocation.
#[derive(Clone)]
pub struct Allocation {
    pub id: String,
    pub namespace: String,
    pub job: String,
    pub version: u64,
    pub client_status: String,
    pub desired_status: String,
    pub port: Option<u16>,
    pub task: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Allocation {
    fn stub(&self) -> Value {
        let events = match self.exit_code {
            Some(code) => json!([{"Type": "Started"}, {"Type": "Terminated", "ExitCode": code}]),
            None => json!([{"Type": "Started"}]),
        };
        json!({
            "ID": self.id,
            "JobID": self.job,
            "Namespace": self.namespace,
            "JobVersion": self.version,
            "TaskGroup": "db",
            "DesiredStatus": self.desired_status,
            "ClientStatus": self.client_status,
            "DeploymentStatus": if self.port.is_some() { json!({"Healthy": true}) } else { Value::Null },
            "TaskStates": {self.task.clone(): {
                "State": if self.client_status == "running" { "running" } else { "dead" },
                "Failed": self.exit_code.is_some_and(|c| c != 0),
                "Events": events,
            }},
        })
    }
}

/// The running double: its address for `NOMAD_ADDR`, and its state.
pub struct NomadDouble {
    pub addr: String,
    pub cluster: Arc<Mutex<Cluster>>,
    _runtime: tokio::runtime::Runtime,
}

type Shared = Arc<Mutex<Cluster>>;

impl NomadDouble {
    /// Starts the double on a free port of 127.0.0.1; `token`: the ACL token it
    /// demands (`None`: ACLs off).
    pub fn start(token: Option<&str>) -> Self {
        Self::serve(token, None)
    }

    /// [`Self::start`] on `address` (`10.203.0.1:0`) inside network namespace
    /// `namespace`, where the dbctl under test runs.
    pub fn start_in(token: Option<&str>, namespace: &str, address: &str) -> Self {
        Self::serve(token, Some((namespace, address)))
    }

    fn serve(token: Option<&str>, at: Option<(&str, &str)>) -> Self {
        let cluster: Shared = Arc::new(Mutex::new(Cluster {
            token: token.map(str::to_owned),
            dispatch: (String::new(), String::new(), 0),
            ..Cluster::default()
        }));
        let app = Router::new()
            .route("/v1/jobs", any(jobs))
            .route("/v1/job/{*rest}", any(job))
            .route("/v1/allocation/{id}", get(allocation))
            .route("/v1/var/{*path}", any(variable))
            .route("/v1/client/fs/logs/{id}", get(logs))
            .with_state(Arc::clone(&cluster));
        let (runtime, addr) = match at {
            Some((namespace, address)) => super::serve_double_in(app, namespace, address),
            None => super::serve_double(app),
        };
        let addr = format!("http://{addr}");
        Self {
            addr,
            cluster,
            _runtime: runtime,
        }
    }

    /// Writes items into the variable at `path` in `namespace`, as an operator would.
    pub fn put_variable(&self, namespace: &str, path: &str, items: &[(&str, &str)]) {
        self.cluster.lock().unwrap().variables.insert(
            (namespace.into(), path.into()),
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
    }

    /// Scripts what the next dispatched jobs print (stdout, stderr) and exit with.
    pub fn script_dispatch(&self, stdout: &str, stderr: &str, code: i32) {
        self.cluster.lock().unwrap().dispatch = (stdout.into(), stderr.into(), code);
    }

    /// The job `id` in `namespace` as registered, and its version.
    pub fn job(&self, namespace: &str, id: &str) -> Option<(Value, u64)> {
        self.cluster
            .lock()
            .unwrap()
            .jobs
            .get(&(namespace.into(), id.into()))
            .cloned()
    }

    /// Job ids in `namespace`.
    pub fn job_ids(&self, namespace: &str) -> Vec<String> {
        self.cluster
            .lock()
            .unwrap()
            .jobs
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The variable at `path` in `namespace`.
    pub fn variable(&self, namespace: &str, path: &str) -> Option<BTreeMap<String, String>> {
        self.cluster
            .lock()
            .unwrap()
            .variables
            .get(&(namespace.into(), path.into()))
            .cloned()
    }

    /// Every allocation of `job`.
    pub fn allocations(&self, job: &str) -> Vec<Allocation> {
        self.cluster
            .lock()
            .unwrap()
            .allocations
            .iter()
            .filter(|a| a.job == job)
            .cloned()
            .collect()
    }
}

fn namespace(query: &BTreeMap<String, String>) -> String {
    query
        .get("namespace")
        .cloned()
        .unwrap_or_else(|| "default".into())
}

/// Records the request; whether it carries the right token (Nomad answers 403
/// "Permission denied" otherwise: [`refused`]).
fn admit(cluster: &Shared, method: &Method, path: &str, headers: &HeaderMap) -> bool {
    let mut c = cluster.lock().unwrap();
    c.requests.push(format!("{method} {path}"));
    c.token.as_ref().is_none_or(|token| {
        headers.get("X-Nomad-Token").and_then(|v| v.to_str().ok()) == Some(token.as_str())
    })
}

fn refused() -> Response {
    (StatusCode::FORBIDDEN, "Permission denied").into_response()
}

async fn jobs(
    State(cluster): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    if !admit(&cluster, &method, "/v1/jobs", &headers) {
        return refused();
    }
    let ns = namespace(&query);
    match method {
        Method::GET => {
            let prefix = query.get("prefix").cloned().unwrap_or_default();
            let c = cluster.lock().unwrap();
            let list: Vec<Value> = c
                .jobs
                .iter()
                .filter(|((n, id), _)| n == &ns && id.starts_with(&prefix))
                .map(|((_, id), (job, version))| {
                    json!({"ID": id, "Type": job["Type"], "Version": version, "Status": "running"})
                })
                .collect();
            axum::Json(list).into_response()
        }
        Method::POST => register(&cluster, &ns, &body),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// `POST /v1/jobs`: validates the body with the typed job structs, stores the job
/// (a new version when it differs) and schedules it.
fn register(cluster: &Shared, ns: &str, body: &[u8]) -> Response {
    let registration: dbctl::platform::nomad_api::JobRegistration =
        match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("failed to decode job: {e}"),
                )
                    .into_response();
            }
        };
    let job = serde_json::to_value(&registration.job).unwrap();
    let id = registration.job.id.clone();
    let mut c = cluster.lock().unwrap();
    let key = (ns.to_owned(), id.clone());
    let version = match c.jobs.get(&key) {
        Some((old, v)) if *old == job => *v,
        Some((_, v)) => v + 1,
        None => 0,
    };
    let changed = c.jobs.get(&key).is_none_or(|(_, v)| *v != version);
    c.jobs.insert(key, (job.clone(), version));
    // Parameterized jobs wait for a dispatch, periodic ones for their time.
    if changed
        && registration.job.parameterized_job.is_none()
        && registration.job.periodic.is_none()
    {
        schedule(&mut c, ns, &registration.job, version, None);
    }
    axum::Json(json!({"EvalID": format!("eval-{id}-{version}"), "JobModifyIndex": version + 1, "Warnings": ""}))
        .into_response()
}

/// Places an allocation of `job` at `version`: services run (earlier ones stop),
/// batch jobs complete (a dispatched one with the scripted output).
fn schedule(
    c: &mut Cluster,
    ns: &str,
    job: &dbctl::platform::nomad_api::Job,
    version: u64,
    payload: Option<&[u8]>,
) {
    let group = job.task_groups.first();
    let task = group
        .and_then(|g| g.tasks.first())
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let port = group
        .and_then(|g| g.networks.as_ref())
        .and_then(|n| n.first())
        .and_then(|n| serde_json::to_value(n).ok())
        .and_then(|n| n["ReservedPorts"][0]["Value"].as_u64())
        .and_then(|p| u16::try_from(p).ok());
    let service = job.job_type == "service";
    for earlier in c.allocations.iter_mut().filter(|a| a.job == job.id) {
        earlier.desired_status = "stop".into();
        if earlier.client_status == "running" {
            earlier.client_status = "complete".into();
        }
    }
    let (stdout, stderr, code) = if payload.is_some() {
        c.dispatch.clone()
    } else {
        (String::new(), String::new(), 0)
    };
    let n = c.allocations.len();
    c.allocations.push(Allocation {
        id: format!("{n:08x}-0000-4000-8000-000000000000"),
        namespace: ns.into(),
        job: job.id.clone(),
        version,
        client_status: if service {
            "running"
        } else if code == 0 {
            "complete"
        } else {
            "failed"
        }
        .into(),
        desired_status: "run".into(),
        port: if service { port } else { None },
        task,
        exit_code: (!service).then_some(code),
        stdout,
        stderr,
    });
}

async fn job(
    State(cluster): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Path(rest): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    if !admit(&cluster, &method, &format!("/v1/job/{rest}"), &headers) {
        return refused();
    }
    let ns = namespace(&query);
    if let Some(id) = rest.strip_suffix("/allocations") {
        let c = cluster.lock().unwrap();
        let list: Vec<Value> = c
            .allocations
            .iter()
            .filter(|a| a.namespace == ns && a.job == id)
            .map(Allocation::stub)
            .collect();
        return axum::Json(list).into_response();
    }
    if let Some(id) = rest.strip_suffix("/plan") {
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let registration: dbctl::platform::nomad_api::JobRegistration =
            match serde_json::from_value(json!({"Job": body["Job"]})) {
                Ok(r) => r,
                Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            };
        let c = cluster.lock().unwrap();
        let new = serde_json::to_value(&registration.job).unwrap();
        let mut diff = match c.jobs.get(&(ns, id.to_owned())) {
            None => json!({"Type": "Added"}),
            Some((old, _)) => object_diff(old, &new),
        };
        diff["ID"] = json!(id);
        return axum::Json(json!({"Diff": diff, "Warnings": ""})).into_response();
    }
    if let Some(id) = rest.strip_suffix("/dispatch") {
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(body["Payload"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let mut c = cluster.lock().unwrap();
        let Some((parent, _)) = c.jobs.get(&(ns.clone(), id.to_owned())).cloned() else {
            return (StatusCode::NOT_FOUND, "job not found").into_response();
        };
        let mut child: dbctl::platform::nomad_api::Job = serde_json::from_value(parent).unwrap();
        if child.parameterized_job.is_none() {
            return (StatusCode::BAD_REQUEST, "job is not parameterized").into_response();
        }
        c.dispatches += 1;
        child.id = format!("{id}/dispatch-{}", c.dispatches);
        child.parameterized_job = None;
        c.payloads.push(payload.clone());
        let value = serde_json::to_value(&child).unwrap();
        c.jobs.insert((ns.clone(), child.id.clone()), (value, 0));
        schedule(&mut c, &ns, &child, 0, Some(&payload));
        return axum::Json(json!({"DispatchedJobID": child.id, "EvalID": "eval-dispatch"}))
            .into_response();
    }
    let key = (ns, rest.clone());
    let mut c = cluster.lock().unwrap();
    match method {
        Method::GET => match c.jobs.get(&key) {
            Some((job, version)) => {
                let mut job = job.clone();
                job["Version"] = json!(version);
                job["Status"] = json!("running");
                axum::Json(job).into_response()
            }
            None => (StatusCode::NOT_FOUND, "job not found").into_response(),
        },
        Method::DELETE => {
            c.jobs.remove(&key);
            if query.get("purge").map(String::as_str) == Some("true") {
                c.allocations.retain(|a| a.job != rest);
            }
            axum::Json(json!({"EvalID": ""})).into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn allocation(
    State(cluster): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !admit(&cluster, &method, &format!("/v1/allocation/{id}"), &headers) {
        return refused();
    }
    let c = cluster.lock().unwrap();
    let Some(a) = c.allocations.iter().find(|a| a.id == id) else {
        return (StatusCode::NOT_FOUND, "alloc not found").into_response();
    };
    let mut full = a.stub();
    // The documented shape (api-docs/allocations.mdx, "Read Allocation").
    full["Resources"] = json!({"Networks": [{
        "Device": "lo", "IP": "127.0.0.1",
        "ReservedPorts": a.port.map(|p| json!([{"Label": "db", "Value": p}])),
        "DynamicPorts": null
    }]});
    axum::Json(full).into_response()
}

async fn variable(
    State(cluster): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Path(path): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    if !admit(&cluster, &method, &format!("/v1/var/{path}"), &headers) {
        return refused();
    }
    let key = (namespace(&query), path.clone());
    let mut c = cluster.lock().unwrap();
    match method {
        Method::GET => match c.variables.get(&key) {
            Some(items) => axum::Json(json!({"Namespace": key.0, "Path": path, "Items": items}))
                .into_response(),
            None => (StatusCode::NOT_FOUND, "variable not found").into_response(),
        },
        Method::PUT => {
            let body: Value = match serde_json::from_slice(&body) {
                Ok(b) => b,
                Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            };
            if body["Path"] != json!(path) {
                return (StatusCode::BAD_REQUEST, "Path does not match the URL").into_response();
            }
            let items: BTreeMap<String, String> =
                match serde_json::from_value(body["Items"].clone()) {
                    Ok(i) => i,
                    Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
                };
            c.variables.insert(key, items);
            axum::Json(body).into_response()
        }
        Method::DELETE => {
            c.variables.remove(&key);
            StatusCode::OK.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn logs(
    State(cluster): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if !admit(
        &cluster,
        &method,
        &format!("/v1/client/fs/logs/{id}"),
        &headers,
    ) {
        return refused();
    }
    let c = cluster.lock().unwrap();
    let Some(a) = c.allocations.iter().find(|a| a.id == id) else {
        return (StatusCode::NOT_FOUND, "alloc not found").into_response();
    };
    if query.get("task") != Some(&a.task) {
        return (StatusCode::BAD_REQUEST, "unknown task").into_response();
    }
    match query.get("type").map(String::as_str) {
        Some("stdout") => a.stdout.clone().into_response(),
        Some("stderr") => a.stderr.clone().into_response(),
        _ => (StatusCode::BAD_REQUEST, "type must be stdout or stderr").into_response(),
    }
}

/// Nomad's diff of two JSON objects, in the documented shape ("Create Job Plan"):
/// scalar fields as `Fields` (values as strings), nested objects as `Objects`, and
/// `TaskGroups`/`Tasks` matched by `Name`; `Type` is `Edited` or `None`.
fn object_diff(old: &Value, new: &Value) -> Value {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let empty = serde_json::Map::new();
    let (old_map, new_map) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = old_map.keys().chain(new_map.keys()).collect();
    keys.sort();
    keys.dedup();
    let (mut fields, mut objects, mut groups, mut tasks) = (vec![], vec![], vec![], vec![]);
    for key in keys {
        let (a, b) = (
            old_map.get(key).unwrap_or(&Value::Null),
            new_map.get(key).unwrap_or(&Value::Null),
        );
        if a == b {
            continue;
        }
        match (key.as_str(), a, b) {
            ("TaskGroups" | "Tasks", Value::Array(xs), Value::Array(ys)) => {
                for y in ys {
                    let x = xs.iter().find(|x| x["Name"] == y["Name"]).unwrap_or(&Value::Null);
                    let mut d = object_diff(x, y);
                    if d["Type"] != "None" {
                        d["Name"] = y["Name"].clone();
                        if key == "TaskGroups" {
                            groups.push(d);
                        } else {
                            tasks.push(d);
                        }
                    }
                }
            }
            (_, Value::Object(_), _) | (_, _, Value::Object(_)) => {
                let mut d = object_diff(a, b);
                d["Name"] = json!(key);
                objects.push(d);
            }
            _ => fields.push(json!({
                "Type": if a.is_null() { "Added" } else if b.is_null() { "Deleted" } else { "Edited" },
                "Name": key, "Old": text(a), "New": text(b), "Annotations": null
            })),
        }
    }
    let changed =
        !(fields.is_empty() && objects.is_empty() && groups.is_empty() && tasks.is_empty());
    json!({
        "Type": if changed { "Edited" } else { "None" },
        "Fields": fields, "Objects": objects, "TaskGroups": groups, "Tasks": tasks,
    })
}
