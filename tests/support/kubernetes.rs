//! `KubeDouble`: a test double of the Kubernetes API server (none can run here) for
//! the calls dbctl makes: server-side apply (`PATCH` with
//! `application/apply-patch+yaml`, `fieldManager`, `force`, `dryRun=All`), `GET` and
//! `DELETE` of namespaced objects, with `Status` bodies for errors as the API
//! conventions document. Every applied body is validated as the API server would with
//! strict field validation: custom resources against the CRD schemas in
//! `../shared/reference`, core kinds with kubernetes-validate (`tests/validate/
//! kubernetes.py` in the validators' venv). A bearer token is required. It plays the
//! operators too, as their docs describe their status: a CloudNativePG `Cluster` gets
//! `readyInstances` and its `<name>-rw` Service, a `MariaDB` the `Ready` condition and
//! its Service, a `StatefulSet` its `readyReplicas`. No pod runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use serde_json::{Value, json};

/// (api prefix `v1` or `group/version`, namespace, plural, name).
pub type Key = (String, String, String, String);

#[derive(Default)]
pub struct ApiState {
    pub objects: BTreeMap<Key, Value>,
    /// Every request as `METHOD /path?query`.
    pub requests: Vec<String>,
    token: String,
    venv_python: PathBuf,
}

pub struct KubeDouble {
    pub kubeconfig: PathBuf,
    pub state: Arc<Mutex<ApiState>>,
    _runtime: tokio::runtime::Runtime,
}

type Shared = Arc<Mutex<ApiState>>;

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        })),
    )
        .into_response()
}

impl KubeDouble {
    /// Starts the double and writes a kubeconfig for it into `dir` (context `double`,
    /// the token `token`).
    pub fn start(dir: &Path, token: &str) -> Self {
        let venv = std::env::var_os("DBCTL_TEST_VENV").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"),
            PathBuf::from,
        );
        let state: Shared = Arc::new(Mutex::new(ApiState {
            token: token.to_owned(),
            venv_python: venv.join("bin/python"),
            ..ApiState::default()
        }));
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/{plural}/{name}", any(core))
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}",
                any(grouped),
            )
            .with_state(Arc::clone(&state));
        let (runtime, addr) = super::serve_double(app);
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: double\nclusters:\n- name: double\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: dbctl\n    namespace: default\nusers:\n- name: dbctl\n  user:\n    token: {token}\n"
            ),
        )
        .unwrap();
        Self {
            kubeconfig,
            state,
            _runtime: runtime,
        }
    }

    /// The object at `api` (`v1`, `postgresql.cnpg.io/v1`), `namespace`, `plural`, `name`.
    pub fn get(&self, api: &str, namespace: &str, plural: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(api.into(), namespace.into(), plural.into(), name.into()))
            .cloned()
    }

    /// The `plural/name` of every object in `namespace` but the Services the operators
    /// made: what dbctl applied and must delete.
    pub fn applied_names(&self, namespace: &str) -> Vec<String> {
        self.names(namespace)
            .into_iter()
            .filter(|n| !n.starts_with("services/"))
            .collect()
    }

    /// Every object's `plural/name` in `namespace`.
    pub fn names(&self, namespace: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .objects
            .keys()
            .filter(|k| k.1 == namespace)
            .map(|k| format!("{}/{}", k.2, k.3))
            .collect()
    }
}

async fn core(
    State(state): State<Shared>,
    method: Method,
    headers: HeaderMap,
    UrlPath((ns, plural, name)): UrlPath<(String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    serve(
        &state,
        &method,
        &headers,
        &("v1".into(), ns, plural, name),
        &query,
        &body,
    )
}

async fn grouped(
    State(state): State<Shared>,
    method: Method,
    headers: HeaderMap,
    UrlPath((group, version, ns, plural, name)): UrlPath<(String, String, String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    serve(
        &state,
        &method,
        &headers,
        &(format!("{group}/{version}"), ns, plural, name),
        &query,
        &body,
    )
}

fn serve(
    state: &Shared,
    method: &Method,
    headers: &HeaderMap,
    key: &Key,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Response {
    {
        let mut s = state.lock().unwrap();
        s.requests.push(format!(
            "{method} {}/{}/{}/{} {query:?}",
            key.0, key.1, key.2, key.3
        ));
        let bearer = format!("Bearer {}", s.token);
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
            return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        }
    }
    match *method {
        Method::GET => match state.lock().unwrap().objects.get(key) {
            Some(object) => axum::Json(object.clone()).into_response(),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{} \"{}\" not found", key.2, key.3),
            ),
        },
        Method::DELETE => match state.lock().unwrap().objects.remove(key) {
            Some(object) => axum::Json(object).into_response(),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{} \"{}\" not found", key.2, key.3),
            ),
        },
        Method::PATCH => apply(state, headers, key, query, body),
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "method not allowed",
        ),
    }
}

/// Server-side apply: the body must be the whole object for the URL, valid strictly;
/// it is merged over what is stored (status kept), and the operators react.
fn apply(
    state: &Shared,
    headers: &HeaderMap,
    key: &Key,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Response {
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/apply-patch+yaml")
    {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "not an apply patch",
        );
    }
    if query.get("fieldManager").is_none() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "fieldManager is required for apply requests",
        );
    }
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not an object",
        );
    };
    if object["metadata"]["name"] != key.3.as_str() || object["apiVersion"] != key.0.as_str() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the object does not match the URL",
        );
    }
    if let Err(message) = validate(state, &object) {
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &message);
    }
    // What the API server stores: stringData folded into data, base64.
    if let Some(data) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
        for (k, v) in data.as_object().into_iter().flatten() {
            object["data"][k] = json!(
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default())
            );
        }
    }
    let mut s = state.lock().unwrap();
    let stored = if let Some(old) = s.objects.get(key) {
        let mut merged = old.clone();
        for field in ["spec", "data", "type"] {
            if !object[field].is_null() {
                merged[field] = object[field].clone();
            }
        }
        for field in ["labels", "annotations"] {
            for (k, v) in object["metadata"][field].as_object().into_iter().flatten() {
                merged["metadata"][field][k] = v.clone();
            }
        }
        let version = merged["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        merged["metadata"]["resourceVersion"] = json!((version + 1).to_string());
        merged
    } else {
        object["metadata"]["uid"] = json!(format!("uid-{}-{}", key.2, key.3));
        object["metadata"]["resourceVersion"] = json!("1");
        object["metadata"]["managedFields"] =
            json!([{"manager": query["fieldManager"], "operation": "Apply"}]);
        object
    };
    if query.get("dryRun").map(String::as_str) == Some("All") {
        return axum::Json(stored).into_response();
    }
    s.objects.insert(key.clone(), stored.clone());
    operate(&mut s, key, &stored);
    let result = s.objects.get(key).cloned().unwrap_or(stored);
    axum::Json(result).into_response()
}

/// The operators' answers, as their docs describe them.
fn operate(s: &mut ApiState, key: &Key, object: &Value) {
    let service = |name: &str, port: u64| {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": key.1},
               "spec": {"type": "ClusterIP", "ports": [{"name": "db", "port": port}]}})
    };
    let mut update = |status: Value, svc: Option<(String, u64)>| {
        if let Some(stored) = s.objects.get_mut(key) {
            stored["status"] = status;
        }
        if let Some((name, port)) = svc {
            s.objects.insert(
                ("v1".into(), key.1.clone(), "services".into(), name.clone()),
                service(&name, port),
            );
        }
    };
    match object["kind"].as_str() {
        Some("Cluster") => {
            let instances = object["spec"]["instances"].as_u64().unwrap_or(1);
            update(
                json!({"instances": instances, "readyInstances": instances, "phase": "Cluster in healthy state"}),
                Some((format!("{}-rw", key.3), 5432)),
            );
        }
        Some("MariaDB") => update(
            json!({"conditions": [{"type": "Ready", "status": "True", "reason": "StatefulSetReady"}]}),
            Some((
                key.3.clone(),
                object["spec"]["port"].as_u64().unwrap_or(3306),
            )),
        ),
        Some("StatefulSet") => {
            let replicas = object["spec"]["replicas"].as_u64().unwrap_or(1);
            update(
                json!({"replicas": replicas, "readyReplicas": replicas}),
                None,
            );
        }
        _ => {}
    }
}

/// Strict validation, as `tests/validate/kubernetes.py` does for rendered manifests.
fn validate(state: &Shared, object: &Value) -> Result<(), String> {
    let python = state.lock().unwrap().venv_python.clone();
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .map_err(|e| e.to_string())?;
    std::fs::write(file.path(), object.to_string()).map_err(|e| e.to_string())?;
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&python)
        .arg(here.join("tests/validate/kubernetes.py"))
        .arg(here.join("../shared/reference"))
        .arg(file.path())
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}
