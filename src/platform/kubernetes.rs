//! The `kubernetes` platform: databases run by operators on a Kubernetes cluster,
//! through its API with kube-rs.
//!
//! The manifests `playbooks/kubernetes/create.yml` renders (a CloudNativePG `Cluster`,
//! a mariadb-operator `MariaDB`, or a `StatefulSet` with its `Service`; the application
//! `Secret`; a `NetworkPolicy`) are applied with server-side apply (`Patch::Apply`,
//! field manager `dbctl`, forced), the Secret with the real password — which therefore
//! never lands in Git — and, for Redis, a `<name>-acl` Secret with its users. What was
//! applied ([`Applied`]) is the annotation `dbctl.io/applied` of the database's main
//! object, where `observe` reads it back. `apply` waits for the operator to report
//! the database ready (CloudNativePG: `status.readyInstances` = `spec.instances`;
//! mariadb-operator: condition `Ready`; StatefulSet: `status.readyReplicas`) and reads
//! the endpoint from its `Service`. `plan` shows the server-side dry run's differences
//! from the live object ([`super::Platform::preview`]).
//!
//! The cluster comes from `KUBECONFIG` (or `~/.kube/config`, or the in-cluster service
//! account), as kubectl finds it; the namespace is the target's `namespace`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::cloud::{Cloud, Names};
use super::{Admin, Artifact, Capabilities, Observed, Options, Request, Response, State};
use crate::catalog::{Catalog, EngineKind};
use crate::change::{Applied, Endpoint};
use crate::gitops::Repo;
use crate::retry::{Check, Policy, Polled};
use crate::spec::{PlatformKind, Spec, Target};

/// The annotation holding what dbctl applied (JSON) on the database's main object.
const APPLIED_ANNOTATION: &str = "dbctl.io/applied";

/// The field manager of dbctl's server-side applies.
const FIELD_MANAGER: &str = "dbctl";

/// How long dbctl waits for the operator unless `--timeout` says otherwise.
const READY_TIMEOUT: Duration = Duration::from_mins(15);

/// The artifact key of a database's rendered manifests among its digests.
const KUBERNETES_ARTIFACT: &str = "kubernetes/";

/// The resource behind a manifest's `apiVersion` and `kind` (plural by Kubernetes'
/// conventions for the kinds dbctl renders).
fn api_resource(object: &Value) -> Result<ApiResource> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if kind.is_empty() || version.is_empty() {
        bail!("a rendered manifest has no `apiVersion`/`kind`: {object}");
    }
    let lower = kind.to_ascii_lowercase();
    let plural = match lower.as_str() {
        "networkpolicy" => "networkpolicies".to_owned(),
        "mariadb" => "mariadbs".to_owned(),
        _ => format!("{lower}s"),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        &plural,
    ))
}

/// The name of a manifest's object.
fn name_of(object: &Value) -> Result<String> {
    object["metadata"]["name"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("a rendered manifest has no `metadata.name`: {object}"))
}

/// Whether the operator reports the database's main object ready.
fn ready(object: &Value) -> bool {
    let status = &object["status"];
    match object["kind"].as_str() {
        Some("Cluster") => {
            let want = object["spec"]["instances"].as_u64().unwrap_or(1);
            status["readyInstances"].as_u64().unwrap_or(0) >= want
        }
        Some("StatefulSet") => {
            let want = object["spec"]["replicas"].as_u64().unwrap_or(1);
            status["readyReplicas"].as_u64().unwrap_or(0) >= want
        }
        _ => status["conditions"].as_array().is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        }),
    }
}

/// The Service clients use: CloudNativePG's read-write `<name>-rw`, otherwise the
/// database's own `<name>`.
fn service_name(spec: &Spec) -> String {
    match spec.engine {
        EngineKind::Postgresql => format!("{}-rw", spec.name),
        _ => spec.name.clone(),
    }
}

/// The lines of what differs between `live` and `wanted` under `spec` (and the
/// labels), as `~ spec.path: old → new`; at most 40.
fn diff_lines(live: &Value, wanted: &Value, kind: &str, name: &str) -> Vec<String> {
    fn walk(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    walk(
                        x.get(key).unwrap_or(&Value::Null),
                        y.get(key).unwrap_or(&Value::Null),
                        &format!("{path}.{key}"),
                        out,
                    );
                }
            }
            _ if a == b => {}
            (Value::Null, _) => out.push(format!("+ {path} = {b}")),
            (_, Value::Null) => out.push(format!("- {path} = {a}")),
            _ => out.push(format!("~ {path}: {a} → {b}")),
        }
    }
    let mut lines = Vec::new();
    walk(&live["spec"], &wanted["spec"], "spec", &mut lines);
    if lines.is_empty() {
        return lines;
    }
    lines.insert(0, format!("kubernetes: {kind} {name}: server-side dry run"));
    lines.truncate(40);
    lines
}

/// A `kubernetes` target's driver.
pub struct Kubernetes {
    target: Target,
    catalog: Catalog,
    cloud: Cloud,
    client: std::sync::OnceLock<kube::Client>,
    runtime: tokio::runtime::Handle,
    timeout: Option<Duration>,
}

impl Kubernetes {
    /// Binds `target` of `repo`; reads the kubeconfig when first needed.
    ///
    /// # Errors
    /// No runtime.
    pub fn new(repo: &Repo, target: &Target, options: &Options) -> Result<Self> {
        Ok(Self {
            target: target.clone(),
            catalog: repo.catalog.clone(),
            cloud: Cloud::new(repo, target),
            client: std::sync::OnceLock::new(),
            runtime: options
                .runtime
                .clone()
                .context("the kubernetes platform needs the run's async runtime")?,
            timeout: options.timeout,
        })
    }

    fn block<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// The cluster's client, from `KUBECONFIG` as kubectl finds it.
    fn client(&self) -> Result<kube::Client> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let client = self.block(async {
            let config = kube::Config::infer().await.with_context(|| {
                format!(
                    "target `{}` (kubernetes): no cluster to talk to: set KUBECONFIG (or ~/.kube/config) as for kubectl",
                    self.target.name
                )
            })?;
            kube::Client::try_from(config).context("cannot build the Kubernetes client")
        })?;
        Ok(self.client.get_or_init(|| client).clone())
    }

    fn api(&self, resource: &ApiResource) -> Result<Api<DynamicObject>> {
        Ok(Api::namespaced_with(
            self.client()?,
            &self.target.cloud.namespace,
            resource,
        ))
    }

    /// The rendered manifests of `spec` as objects, in apply order (the Secret first).
    fn manifests(&self, spec: &Spec) -> Result<Vec<Value>> {
        let mut objects = Vec::new();
        for artifact in self.cloud.render(spec)? {
            let docs: Vec<Value> = serde_saphyr::from_multiple(&artifact.content)
                .map_err(|e| anyhow::anyhow!("`{}` is not YAML: {e}", artifact.path))?;
            objects.extend(docs.into_iter().filter(|d| !d.is_null()));
        }
        Ok(objects)
    }

    /// The database's main object among `objects`: the operator's resource or the
    /// StatefulSet.
    fn main<'v>(spec: &Spec, objects: &'v [Value]) -> Result<&'v Value> {
        objects
            .iter()
            .find(|o| {
                matches!(o["kind"].as_str(), Some("Cluster" | "MariaDB" | "StatefulSet"))
                    && o["metadata"]["name"] == spec.name.as_str()
            })
            .with_context(|| {
                format!(
                    "playbooks/kubernetes/create.yml renders no Cluster, MariaDB or StatefulSet `{}`",
                    spec.name
                )
            })
    }

    /// Server-side applies `object` (`dry_run`: the API server's result without
    /// storing it).
    fn apply_object(&self, object: &Value, dry_run: bool) -> Result<Value> {
        let resource = api_resource(object)?;
        let name = name_of(object)?;
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        if dry_run {
            params = params.dry_run();
        }
        let api = self.api(&resource)?;
        let applied = self
            .block(api.patch(&name, &params, &Patch::Apply(object)))
            .map_err(|e| self.error(&e, "apply", &resource.kind, &name))?;
        Ok(serde_json::to_value(applied)?)
    }

    fn get(&self, resource: &ApiResource, name: &str) -> Result<Option<Value>> {
        let api = self.api(resource)?;
        let found = self
            .block(api.get_opt(name))
            .map_err(|e| self.error(&e, "get", &resource.kind, name))?;
        found
            .map(serde_json::to_value)
            .transpose()
            .map_err(Into::into)
    }

    fn delete(&self, resource: &ApiResource, name: &str) -> Result<()> {
        let api = self.api(resource)?;
        match self.block(api.delete(name, &DeleteParams::foreground())) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(self.error(&e, "delete", &resource.kind, name)),
        }
    }

    /// An API error naming the target, the verb, the resource and the namespace.
    fn error(&self, err: &kube::Error, verb: &str, kind: &str, name: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "Kubernetes (target `{}`) refused to {verb} {kind} `{name}` in namespace `{}`: {}",
            self.target.name,
            self.target.cloud.namespace,
            crate::playbook::runner::display_chain(err)
        )
    }

    fn secret_resource() -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets")
    }

    /// An Opaque Secret `name` with `data`, server-side applied.
    fn apply_secret(&self, spec: &Spec, name: &str, data: &BTreeMap<&str, &str>) -> Result<()> {
        let secret = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": self.target.cloud.namespace,
                "labels": {"app.kubernetes.io/managed-by": "dbctl", "dbctl.io/database": spec.name},
            },
            "type": "Opaque",
            "stringData": data,
        });
        self.apply_object(&secret, false).map(|_| ())
    }

    /// Waits until the operator reports `object` ready (`--timeout`, default 15
    /// minutes).
    fn wait_ready(&self, object: &Value) -> Result<Value> {
        let resource = api_resource(object)?;
        let name = name_of(object)?;
        let timeout = self.timeout.unwrap_or(READY_TIMEOUT);
        let polled = Policy::until(Some(timeout), Duration::from_secs(1))
            .growing_to(Duration::from_secs(5))
            .poll(
                &format!("{} `{name}` to be ready", resource.kind),
                || -> Result<_> {
                    Ok(match self.get(&resource, &name)? {
                        Some(live) if ready(&live) => Check::Ready(live),
                        live => Check::Pending(live.map(|l| l["status"].clone())),
                    })
                },
            )?;
        match polled {
            Polled::Ready(live) => Ok(live),
            Polled::TimedOut(status) => bail!(
                "{} `{name}` in namespace `{}` (target `{}`) is not ready after {} s; its status: {}; `--timeout SECONDS` waits longer",
                resource.kind,
                self.target.cloud.namespace,
                self.target.name,
                timeout.as_secs(),
                status.unwrap_or(Value::Null)
            ),
        }
    }

    /// The endpoint clients use: the Service's cluster DNS name and its port.
    fn endpoint(&self, spec: &Spec) -> Result<Option<Endpoint>> {
        let name = service_name(spec);
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Service"),
            "services",
        );
        let Some(service) = self.get(&resource, &name)? else {
            return Ok(None);
        };
        let port = service["spec"]["ports"][0]["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .or_else(|| self.catalog.engine(spec.engine).map(|e| e.port));
        Ok(port.map(|port| Endpoint {
            host: format!("{name}.{}.svc", self.target.cloud.namespace),
            port,
        }))
    }

    /// `objects` with the application password in the application Secret and what is
    /// applied annotated on the main object.
    fn prepared(&self, spec: &Spec, password: Option<&SecretString>) -> Result<Vec<Value>> {
        let names = Names::new(&spec.name);
        let applied = Applied::of(spec, super::Platform::artifact_digests(self, spec)?);
        let applied = serde_json::to_string(&applied)?;
        let mut objects = self.manifests(spec)?;
        for object in &mut objects {
            if object["kind"] == "Secret" && object["metadata"]["name"] == names.secret.as_str() {
                if let Some(password) = password {
                    object["stringData"]["password"] = password.expose_secret().into();
                }
            } else if matches!(
                object["kind"].as_str(),
                Some("Cluster" | "MariaDB" | "StatefulSet")
            ) && object["metadata"]["name"] == spec.name.as_str()
            {
                object["metadata"]["annotations"][APPLIED_ANNOTATION] = applied.clone().into();
            }
        }
        Ok(objects)
    }
}

impl super::Platform for Kubernetes {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Kubernetes
    }

    fn preferred_version(&self, _engine: EngineKind) -> Option<String> {
        None
    }

    fn capabilities(&self, _spec: &Spec) -> Capabilities {
        // The operators roll a changed resource (a restart per instance) and expand
        // volumes where the storage class allows.
        Capabilities {
            configure: true,
            minor_upgrade: true,
            grow: Some(crate::change::Disruption::Restart),
            // The operators' own scheduled backups, to `backup_destination`.
            schedule_backups: self.target.cloud.backup_destination.is_some(),
            ..Capabilities::default()
        }
    }

    fn artifact_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>> {
        let files: String = self
            .cloud
            .render(spec)?
            .iter()
            .map(|a| format!("--- {}\n{}", a.path, a.content))
            .collect();
        Ok(crate::change::digests([(
            format!("{KUBERNETES_ARTIFACT}{}", spec.name).as_str(),
            files.as_str(),
        )]))
    }

    fn preview(&self, spec: &Spec, password: Option<&SecretString>) -> Result<Vec<String>> {
        let objects = self.prepared(spec, password)?;
        let main = Self::main(spec, &objects)?;
        let resource = api_resource(main)?;
        let Some(live) = self.get(&resource, &spec.name)? else {
            return Ok(vec![format!(
                "kubernetes: {} {} will be created",
                resource.kind, spec.name
            )]);
        };
        let wanted = self.apply_object(main, true)?;
        Ok(diff_lines(&live, &wanted, &resource.kind, &spec.name))
    }

    fn observe(&self, spec: &Spec) -> Result<Observed> {
        let objects = self.manifests(spec)?;
        let main = Self::main(spec, &objects)?;
        let resource = api_resource(main)?;
        let Some(live) = self.get(&resource, &spec.name)? else {
            return Ok(Observed::absent());
        };
        let applied: Option<Applied> = live["metadata"]["annotations"][APPLIED_ANNOTATION]
            .as_str()
            .and_then(|text| serde_json::from_str(text).ok());
        let mut observed = Observed {
            state: if ready(&live) { State::Up } else { State::Down },
            applied,
            endpoint: self.endpoint(spec)?,
            ..Observed::absent()
        };
        if observed.state == State::Down {
            observed.detail = Some(format!(
                "{} `{}` is not ready: {}",
                resource.kind, spec.name, live["status"]
            ));
        }
        observed.details.insert(
            "kubernetes".into(),
            serde_json::json!({
                "namespace": self.target.cloud.namespace,
                "kind": resource.kind,
                "name": spec.name,
                "status": live["status"],
            }),
        );
        Ok(observed)
    }

    fn preflight(&self, req: &Request<'_>) -> Result<()> {
        let objects = self.manifests(req.spec)?;
        let main = Self::main(req.spec, &objects)?;
        // Reachable, and the credentials may read the namespace.
        self.get(&api_resource(main)?, &req.spec.name)?;
        if !req.deletes() {
            // The API server validates every object (a server-side dry run) before
            // any is applied, so a refused one leaves nothing half made.
            for object in &self.prepared(req.spec, None)? {
                self.apply_object(object, true)?;
            }
        }
        Ok(())
    }

    fn apply(&self, req: &Request<'_>) -> Result<Response> {
        let spec = req.spec;
        if req.deletes() {
            (req.progress)(1, 1, "Delete the resources");
            let objects = self.manifests(spec)?;
            for object in objects.iter().rev() {
                self.delete(&api_resource(object)?, &name_of(object)?)?;
            }
            for extra in [format!("{}-acl", spec.name), format!("{}-root", spec.name)] {
                self.delete(&Self::secret_resource(), &extra)?;
            }
            return Ok(Response::default());
        }
        let password = req.password()?;
        let objects = self.prepared(spec, Some(password))?;
        (req.progress)(1, 3, "Server-side apply the manifests");
        if spec.engine == EngineKind::Redis {
            let acl = format!(
                "user default off\nuser {} on >{} ~* &* +@all -@admin\n",
                spec.user,
                password.expose_secret()
            );
            self.apply_secret(
                spec,
                &format!("{}-acl", spec.name),
                &BTreeMap::from([("users.acl", acl.as_str())]),
            )?;
        }
        if spec.engine == EngineKind::Mongodb {
            let root = Self::secret_resource();
            if self.get(&root, &format!("{}-root", spec.name))?.is_none() {
                let generated = crate::secret::generate_password();
                self.apply_secret(
                    spec,
                    &format!("{}-root", spec.name),
                    &BTreeMap::from([("password", generated.expose_secret())]),
                )?;
            }
        }
        for object in &objects {
            self.apply_object(object, false)?;
        }
        (req.progress)(2, 3, "Wait for the operator to report it ready");
        self.wait_ready(Self::main(spec, &objects)?)?;
        (req.progress)(3, 3, "Read the Service");
        let endpoint = self.endpoint(spec)?.with_context(|| {
            format!(
                "`{}` is ready but has no Service `{}` in namespace `{}`",
                spec.name,
                service_name(spec),
                self.target.cloud.namespace
            )
        })?;
        Ok(super::endpoint_response(
            spec,
            endpoint,
            PlatformKind::Kubernetes,
        ))
    }

    fn admin(&self, spec: &Spec) -> Result<Box<dyn Admin + '_>> {
        bail!(
            "`{}` runs on Kubernetes (target `{}`): dbctl has no admin channel there yet; use the operator's tools (`kubectl cnpg psql {}`, `kubectl exec`)",
            spec.name,
            self.target.name,
            spec.name
        )
    }

    fn render(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        self.cloud.render(spec)
    }

    fn describe(&self, spec: &Spec) -> Result<serde_json::Value> {
        self.cloud.describe(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_map_to_their_resources() {
        let cluster = serde_json::json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster"});
        let r = api_resource(&cluster).unwrap();
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("postgresql.cnpg.io", "v1", "clusters")
        );
        let policy =
            serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"});
        assert_eq!(api_resource(&policy).unwrap().plural, "networkpolicies");
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret"});
        let r = api_resource(&secret).unwrap();
        assert_eq!((r.group.as_str(), r.plural.as_str()), ("", "secrets"));
        assert!(api_resource(&serde_json::json!({})).is_err());
    }

    #[test]
    fn readiness_is_read_as_each_operator_reports_it() {
        let cnpg = |ready: u64| serde_json::json!({"kind": "Cluster", "spec": {"instances": 2}, "status": {"readyInstances": ready}});
        assert!(!ready(&cnpg(1)));
        assert!(ready(&cnpg(2)));
        let maria = serde_json::json!({"kind": "MariaDB", "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(ready(&maria));
        let sts = serde_json::json!({"kind": "StatefulSet", "spec": {"replicas": 1}, "status": {}});
        assert!(!ready(&sts));
    }

    #[test]
    fn the_dry_run_diff_names_each_changed_path() {
        let live = serde_json::json!({"spec": {"instances": 1, "postgresql": {"parameters": {"work_mem": "4MB"}}}});
        let wanted = serde_json::json!({"spec": {"instances": 1, "postgresql": {"parameters": {"work_mem": "64MB", "max_connections": "200"}}}});
        assert_eq!(
            diff_lines(&live, &wanted, "Cluster", "orders"),
            [
                "kubernetes: Cluster orders: server-side dry run",
                "+ spec.postgresql.parameters.max_connections = \"200\"",
                "~ spec.postgresql.parameters.work_mem: \"4MB\" → \"64MB\"",
            ]
        );
        assert!(diff_lines(&live, &live, "Cluster", "orders").is_empty());
    }
}
