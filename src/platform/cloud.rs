//! The cloud platforms (`openstack`, `nomad`, `kubernetes`, `terraform`) as renderers:
//! their playbooks (`playbooks/<platform>/create.yml`) list `artifact` steps, each a
//! template under `templates/<platform>/…`, and rendering them is pure — no network,
//! no clock, no randomness — so the same spec always gives byte-identical artifacts.
//!
//! Applying them is each platform's driver's (`openstack`, `nomad`, `kubernetes`,
//! `terraform`), which renders through [`Cloud`].

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use minijinja::Value;
use minijinja::value::Serde;
use serde::Serialize;

use super::Artifact;
use crate::assets::Assets;
use crate::backup::schedule::Schedule;
use crate::catalog::{Catalog, EngineKind};
use crate::gitops::Repo;
use crate::playbook::{ArtifactKind, Playbook};
use crate::render::Renderer;
use crate::spec::{PlatformKind, Spec, Target};

/// Placeholder for secrets in rendered artifacts (they are set when applied).
pub const REDACTED: &str = "<secret: set at create>";

/// Resource names derived from the database name, shared by every template.
#[derive(Debug, Clone, Serialize)]
pub struct Names {
    /// Heat stack of the floating IP: `db-<name>-ip`.
    pub ip_stack: String,
    /// Heat stack of the volume and backup container: `db-<name>-data`.
    pub data_stack: String,
    /// Heat stack of the server group and nodes: `db-<name>-cluster`.
    pub cluster_stack: String,
    /// Swift container for backups: `backup-<name>`.
    pub backup_container: String,
    /// Cinder volume and LVM volume group: `db-<name>-data` / `vg_<name>`.
    pub volume: String,
    /// LVM volume group (`-` → `_`).
    pub volume_group: String,
    /// Pacemaker resource prefix and group: `db-<name>`.
    pub resource_group: String,
    /// Nomad service job: `db-<name>`.
    pub job: String,
    /// Nomad configure batch job: `db-<name>-configure`.
    pub configure_job: String,
    /// Nomad parameterized SQL job: `db-<name>-sql`.
    pub sql_job: String,
    /// Host volume / mountpoint name: `db-<name>`.
    pub host_volume: String,
    /// Data mountpoint on nodes: `/srv/db/<name>`.
    pub mountpoint: String,
    /// Kubernetes Secret with the application credentials: `<name>-app`.
    pub secret: String,
}

impl Names {
    /// Names for database `name`.
    pub fn new(name: &str) -> Self {
        Self {
            ip_stack: format!("db-{name}-ip"),
            data_stack: format!("db-{name}-data"),
            cluster_stack: format!("db-{name}-cluster"),
            backup_container: format!("backup-{name}"),
            volume: format!("db-{name}-data"),
            volume_group: format!("vg_{}", name.replace('-', "_")),
            resource_group: format!("db-{name}"),
            job: format!("db-{name}"),
            configure_job: format!("db-{name}-configure"),
            sql_job: format!("db-{name}-sql"),
            host_volume: format!("db-{name}"),
            mountpoint: format!("/srv/db/{name}"),
            secret: format!("{name}-app"),
        }
    }
}

/// The shares of a database's volume group its logical volumes take, percent:
/// `(data, wal)` — PostgreSQL keeps its WAL apart (60, 20), the others have data only
/// (80, 0); the rest is headroom for snapshots. `openstack/pacemaker/storage.j2` makes
/// them, `openstack/pacemaker/grow.yml` grows them to these shares of a larger volume.
pub fn volume_shares(engine: EngineKind) -> (u32, u32) {
    if engine == EngineKind::Postgresql {
        (60, 20)
    } else {
        (80, 0)
    }
}

/// A backup schedule as a five-field cron and, when known, its IANA zone: the spec's
/// `backup.schedule`, else the target's `backup_schedule` (CloudNativePG's six fields,
/// seconds first: the seconds are dropped).
#[derive(Debug, Serialize)]
struct OperatorSchedule {
    cron: String,
    zone: Option<String>,
}

fn operator_schedule(spec: Option<&Schedule>, target: &str) -> OperatorSchedule {
    if let Some(s) = spec {
        OperatorSchedule {
            cron: s.cron(),
            zone: Some(s.zone.clone()),
        }
    } else {
        let fields: Vec<&str> = target.split_whitespace().collect();
        let cron = if fields.len() == 6 {
            fields[1..].join(" ")
        } else {
            fields.join(" ")
        };
        OperatorSchedule { cron, zone: None }
    }
}

/// The target's `backup_destination` when it is an S3 URL (`s3://BUCKET/PREFIX`), in
/// the parts mariadb-operator's `Backup.spec.storage.s3` takes: bucket, prefix, and the
/// `backup_endpoint` as `host:port` with TLS when its scheme is `https`.
#[derive(Debug, Serialize)]
struct S3Destination {
    bucket: String,
    prefix: String,
    endpoint: String,
    tls: bool,
}

impl S3Destination {
    fn of(cloud: &crate::spec::CloudOptions) -> Option<Self> {
        let rest = cloud.backup_destination.as_deref()?.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoint = cloud
            .backup_endpoint
            .as_deref()
            .unwrap_or("s3.amazonaws.com");
        let (tls, host) = match endpoint.split_once("://") {
            Some((scheme, host)) => (scheme == "https", host),
            None => (true, endpoint),
        };
        Some(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
            endpoint: host.trim_end_matches('/').to_owned(),
            tls,
        })
    }
}

/// Sizes derived from the plan and spec.
#[derive(Debug, Clone, Serialize)]
struct Sizing {
    /// Nomad CPU shares in MHz (cores × 1000).
    cpu_mhz: u64,
    /// Kubernetes CPU in millicores.
    cpu_millis: u64,
    /// Memory in MiB.
    memory_mb: u64,
    /// Data volume in GB.
    size_gb: u32,
    /// Share of the volume group for data, percent (PostgreSQL 60, others 80).
    data_pct: u32,
    /// Share for WAL, percent (PostgreSQL 20, others 0).
    wal_pct: u32,
    /// Nova flavor of the plan.
    flavor: String,
}

/// The renderer of a cloud platform's artifacts for one target, shared by its driver.
pub struct Cloud {
    kind: PlatformKind,
    target: Target,
    catalog: Catalog,
    assets: Assets,
    renderer: Renderer,
}

impl Cloud {
    /// Binds `target` of `repo`.
    pub fn new(repo: &Repo, target: &Target) -> Self {
        Self::with_assets(&repo.catalog, &repo.assets, target)
    }

    /// Binds `target` with an explicit catalog and assets (benchmarks, tests).
    pub fn with_assets(catalog: &Catalog, assets: &Assets, target: &Target) -> Self {
        Self {
            kind: target.platform,
            target: target.clone(),
            catalog: catalog.clone(),
            assets: assets.clone(),
            renderer: Renderer::new(assets),
        }
    }

    pub(crate) fn context(&self, spec: &Spec) -> Result<Value> {
        self.context_with(spec, &BTreeMap::new())
    }

    /// The template context with `known` outputs of Heat stacks (`vip`, `volume_id`,
    /// `floating_ip_id`) in place of their `stack-output:` placeholders.
    fn context_with(&self, spec: &Spec, known: &BTreeMap<&str, String>) -> Result<Value> {
        let entry = self
            .catalog
            .engine(spec.engine)
            .with_context(|| format!("engine `{}` is not in the catalog", spec.engine))?;
        let plan = self
            .catalog
            .plan(&spec.plan)
            .with_context(|| format!("plan `{}` is not in the catalog", spec.plan))?;
        let (data_pct, wal_pct) = volume_shares(spec.engine);
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "at least 1 after max(1.0); a plan's CPUs are far below 2^64 millis"
        )]
        let cpu_millis = (plan.cpu * 1000.0).round().max(1.0) as u64;
        let sizing = Sizing {
            cpu_mhz: cpu_millis,
            cpu_millis,
            memory_mb: plan.memory_mb,
            size_gb: spec.size_gb,
            data_pct,
            wal_pct,
            flavor: self
                .target
                .cloud
                .flavors
                .get(&spec.plan)
                .cloned()
                .unwrap_or_else(|| format!("db.{}", spec.plan)),
        };
        let secrets = BTreeMap::from([("password", REDACTED), ("admin_password", REDACTED)]);
        let names = Names::new(&spec.name);
        let output = |stack: &str, key: &str| format!("stack-output:{stack}/{key}");
        let mut outputs = BTreeMap::from([
            ("volume_id", output(&names.data_stack, "volume_id")),
            ("floating_ip_id", output(&names.ip_stack, "floating_ip_id")),
            ("vip", output(&names.cluster_stack, "vip")),
            ("openrc", "/etc/dbctl/openrc.sh".to_owned()),
        ]);
        for (key, value) in known {
            outputs.insert(key, value.clone());
        }
        let schedule = spec
            .backup
            .as_ref()
            .and_then(|b| b.schedule.as_deref())
            .and_then(|s| Schedule::parse(s).ok());
        Ok(minijinja::context! {
            spec => Value::from(Serde(spec)),
            plan => Value::from(Serde(plan)),
            engine => Value::from(Serde(entry)),
            image => format!("{}:{}", entry.image, spec.version),
            port => entry.port,
            target => Value::from(Serde(&self.target)),
            names => Value::from(Serde(&names)),
            outputs => Value::from(Serde(&outputs)),
            sizing => Value::from(Serde(&sizing)),
            secrets => Value::from(Serde(&secrets)),
            // `backup.schedule` as CloudNativePG's cron, else the target's.
            backup_cron => schedule
                .as_ref()
                .map_or_else(|| self.target.cloud.backup_schedule.clone(), Schedule::cron_with_seconds),
            // … and as a five-field cron with its zone (mariadb-operator's `Backup`).
            backup_schedule => Value::from(Serde(&operator_schedule(schedule.as_ref(), &self.target.cloud.backup_schedule))),
            // Days of backups the operators keep (`backup.retention.days`, else 30).
            backup_retention_days => spec
                .backup
                .as_ref()
                .and_then(|b| b.retention.as_ref())
                .and_then(|r| r.days)
                .unwrap_or(30),
            backup_s3 => Value::from(Serde(&S3Destination::of(&self.target.cloud))),
        })
    }

    /// The artifact steps of `playbook` that apply to `spec` in `ctx`: its engine is
    /// among the step's `engines` (when given) and the step's `when` holds.
    fn selected<'p>(
        &self,
        playbook: &'p Playbook,
        spec: &Spec,
        ctx: &Value,
    ) -> Result<Vec<&'p crate::playbook::ArtifactAction>> {
        let mut steps = Vec::new();
        for (step, when) in playbook.artifacts() {
            if !step.engines.is_empty() && !step.engines.iter().any(|e| e == spec.engine.as_str()) {
                continue;
            }
            if let Some(when) = when
                && !self.renderer.eval(when, ctx)?
            {
                continue;
            }
            steps.push(step);
        }
        Ok(steps)
    }

    fn describe_artifacts(&self, spec: &Spec) -> Result<serde_json::Value> {
        let playbook = Playbook::load(&self.assets, &format!("{}/create.yml", self.kind))?;
        let ctx = self.context(spec)?;
        let mut artifacts = Vec::new();
        for step in self.selected(&playbook, spec, &ctx)? {
            artifacts.push(serde_json::json!({
                "template": self.renderer.render_str(&step.template, &ctx, "artifact.template")?,
                "path": self.renderer.render_str(&step.path, &ctx, "artifact.path")?,
                "kind": step.kind,
                "vars": step.vars,
            }));
        }
        Ok(serde_json::json!({
            "name": spec.name,
            "context": serde_json::to_value(&ctx)?,
            "artifacts": artifacts,
        }))
    }

    /// Renders the control plane of an `openstack` target
    /// (`playbooks/openstack/control-plane.yml`): network and masters stacks and the
    /// inventory listing the nodes of `specs` (the databases on this target).
    ///
    /// # Errors
    /// Not an openstack target, or a broken template.
    pub fn render_control_plane(&self, specs: &[Spec]) -> Result<Vec<Artifact>> {
        if self.kind != PlatformKind::Openstack {
            bail!(
                "target `{}` uses platform `{}`; a control plane is rendered for `openstack` targets",
                self.target.name,
                self.kind
            );
        }
        let playbook = Playbook::load(&self.assets, "openstack/control-plane.yml")?;
        let names = BTreeMap::from([
            ("network", format!("{}-network", self.target.name)),
            ("masters", format!("{}-masters", self.target.name)),
        ]);
        let databases: Vec<_> = specs
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "engine": s.engine, "version": s.version}))
            .collect();
        let ctx = minijinja::context! {
            target => Value::from(Serde(&self.target)),
            names => Value::from(Serde(&names)),
            cidr => self.target.cloud.cidr.clone(),
            flavor => self.target.cloud.flavors.get("master").cloned().unwrap_or_else(|| "m1.medium".into()),
            databases => Value::from(Serde(&databases)),
        };
        let mut artifacts = Vec::new();
        for (step, _) in playbook.artifacts() {
            let path = self
                .renderer
                .render_str(&step.path, &ctx, "artifact.path")?;
            let mut content = self.renderer.render(&step.template, &ctx)?;
            if !content.ends_with('\n') {
                content.push('\n');
            }
            artifacts.push(Artifact { path, content });
        }
        Ok(artifacts)
    }

    /// Renders `playbooks/<platform>/<operation>.yml`'s artifacts for `spec`.
    ///
    /// # Errors
    /// A missing or broken playbook or template.
    pub fn render_operation(&self, spec: &Spec, operation: &str) -> Result<Vec<Artifact>> {
        self.render_operation_with(spec, operation, &BTreeMap::new())
    }

    /// [`Self::render_operation`] with `known` Heat outputs (`vip`, `volume_id`,
    /// `floating_ip_id`) in place of their `stack-output:` placeholders.
    ///
    /// # Errors
    /// A missing or broken playbook or template.
    pub fn render_operation_with(
        &self,
        spec: &Spec,
        operation: &str,
        known: &BTreeMap<&str, String>,
    ) -> Result<Vec<Artifact>> {
        Ok(self
            .render_steps(spec, operation, known)?
            .into_iter()
            .map(|(_, artifact)| artifact)
            .collect())
    }

    /// The artifacts of `kind` among `playbooks/<platform>/create.yml`'s (the Nomad
    /// jobs of an openstack target with `runtime: nomad`, as of a nomad target).
    ///
    /// # Errors
    /// A missing or broken playbook or template.
    pub fn render_kind(&self, spec: &Spec, kind: ArtifactKind) -> Result<Vec<Artifact>> {
        Ok(self
            .render_steps(spec, "create", &BTreeMap::new())?
            .into_iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, artifact)| artifact)
            .collect())
    }

    /// Each artifact step's kind and rendered artifact, in the playbook's order.
    fn render_steps(
        &self,
        spec: &Spec,
        operation: &str,
        known: &BTreeMap<&str, String>,
    ) -> Result<Vec<(ArtifactKind, Artifact)>> {
        let playbook = Playbook::load(&self.assets, &format!("{}/{operation}.yml", self.kind))?;
        let ctx = self.context_with(spec, known)?;
        let mut artifacts = Vec::new();
        for step in self.selected(&playbook, spec, &ctx)? {
            let template = self
                .renderer
                .render_str(&step.template, &ctx, "artifact.template")?;
            let path = self
                .renderer
                .render_str(&step.path, &ctx, "artifact.path")?;
            let ctx = if step.vars.is_empty() {
                ctx.clone()
            } else {
                minijinja::context! { ..Value::from(Serde(&step.vars)), ..ctx.clone() }
            };
            let mut content = self.renderer.render(&template, &ctx)?;
            if !content.ends_with('\n') {
                content.push('\n');
            }
            artifacts.push((step.kind, Artifact { path, content }));
        }
        Ok(artifacts)
    }
}

impl Cloud {
    /// Renders every artifact of `spec` for this target's platform
    /// (`playbooks/<platform>/create.yml`); secrets appear as placeholders. Terraform
    /// targets need a `provider` that offers the engine.
    ///
    /// # Errors
    /// A missing provider, an engine the provider's templates do not offer, a template
    /// or playbook error.
    pub fn render(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        if self.kind == PlatformKind::Terraform && self.target.cloud.provider.is_none() {
            bail!(
                "target `{}` (platform terraform) needs `provider`; allowed: {}",
                self.target.name,
                crate::spec::TERRAFORM_PROVIDERS.join(", ")
            );
        }
        if self.kind == PlatformKind::Terraform {
            let provider = self.target.cloud.provider.as_deref().unwrap_or_default();
            let template = format!("terraform/{provider}/{}.tf.json.j2", spec.engine);
            if !self.renderer.has_template(&template) {
                let offered: Vec<_> = EngineKind::ALL
                    .into_iter()
                    .filter(|e| {
                        self.renderer
                            .has_template(&format!("terraform/{provider}/{e}.tf.json.j2"))
                    })
                    .map(EngineKind::as_str)
                    .collect();
                bail!(
                    "target `{}`: provider `{provider}` offers no managed {} in dbctl's templates; engines it offers: {} (add `templates/{template}` to the GitOps repo to support it)",
                    self.target.name,
                    spec.engine,
                    offered.join(", ")
                );
            }
        }
        self.render_operation(spec, "create")
    }

    /// The template context of `spec` and the templates its playbook renders, as JSON
    /// (`dbctl render --context`).
    ///
    /// # Errors
    /// A template or playbook error.
    pub fn describe(&self, spec: &Spec) -> Result<serde_json::Value> {
        self.describe_artifacts(spec)
    }
}
