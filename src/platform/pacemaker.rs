//! The `pacemaker` platform: an existing pacemaker/corosync cluster whose nodes dbctl
//! reaches over SSH. A database is a resource group — filesystem on a loop-mounted
//! disk image in the target's `shared_dir`, virtual IP (`IPaddr2`), and the engine as a
//! pacemaker resource (`ocf:heartbeat:pgsql`) — so it fails over as one.
//!
//! `create`: prepare the data directory on the first node (playbook
//! `pacemaker/<engine>/prepare.yml`, skipped once the group exists), push the rendered
//! pcs script (idempotent: `pcs cluster cib-push … diff-against=…`), wait until every
//! member runs on one node, then create the application role there
//! (`pacemaker/<engine>/bootstrap.yml`). Only PostgreSQL has templates so far.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use minijinja::Value;
use minijinja::value::Serde;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::cloud::{Cloud, REDACTED};
use super::{
    Artifact, CreateRequest, CreateResponse, Options, OutputSink, Progress, State, Status,
};
use crate::catalog::{Catalog, EngineKind};
use crate::engine::{self, Engine, Instance, Located};
use crate::gitops::Repo;
use crate::playbook::Playbook;
use crate::playbook::runner::Runner;
use crate::render::Renderer;
use crate::spec::{PlatformKind, Spec, Target};
use crate::transport::{CommandSpec, Ssh, SshOptions, Transport};

/// How long members of a group may take to start or stop.
const GROUP_TIMEOUT: Duration = Duration::from_secs(180);

/// One cluster node: its pacemaker name and its SSH connection.
struct Node {
    name: String,
    ssh: Ssh,
}

/// Where a group's members run, as `crm_resource --locate` tells.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// The pacemaker group.
    pub group: String,
    /// Member → node running it (`None`: stopped).
    pub resources: BTreeMap<String, Option<String>>,
    /// The node running every member, when they all run on one.
    pub active_node: Option<String>,
    /// Nodes pacemaker reports online.
    pub online_nodes: Vec<String>,
}

/// The pacemaker platform bound to one target.
pub struct Pacemaker {
    target: Target,
    catalog: Catalog,
    assets: crate::assets::Assets,
    renderer: Renderer,
    cloud: Cloud,
    nodes: Vec<Node>,
}

impl Pacemaker {
    /// Connects to every node in the target's `hosts` and learns its pacemaker name.
    ///
    /// # Errors
    /// A failed SSH connection, or a host where `crm_node -n` fails (not a cluster node).
    pub fn new(repo: &Repo, target: &Target, options: &Options) -> Result<Self> {
        let mut nodes = Vec::new();
        for host in &target.ssh.hosts {
            let mut opts = SshOptions::new(host);
            opts.port = target.ssh.port;
            opts.user.clone_from(&target.ssh.user);
            opts.identity = target.ssh.identity.as_ref().map(|p| repo.root().join(p));
            opts.known_hosts = target.ssh.known_hosts.as_ref().map(|p| repo.root().join(p));
            opts.accept_new_host_keys =
                options.accept_new_host_keys || target.ssh.accept_new_host_keys;
            let ssh = Ssh::connect(&opts)?;
            let out = ssh.run(&CommandSpec::new("crm_node", ["-n"]))?;
            if !out.success() {
                bail!(
                    "{host} (target `{}`) is not a pacemaker node: `crm_node -n` failed: {}",
                    target.name,
                    out.stderr.trim()
                );
            }
            nodes.push(Node {
                name: out.stdout.trim().to_owned(),
                ssh,
            });
        }
        Ok(Self {
            target: target.clone(),
            catalog: repo.catalog.clone(),
            assets: repo.assets.clone(),
            renderer: Renderer::new(&repo.assets),
            cloud: Cloud::new(repo, target),
            nodes,
        })
    }

    fn first(&self) -> &Node {
        &self.nodes[0]
    }

    fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    fn group(spec: &Spec) -> String {
        format!("db-{}", spec.name)
    }

    fn mountpoint(&self, spec: &Spec) -> PathBuf {
        self.target
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/srv/dbctl"))
            .join(&spec.name)
    }

    fn device(&self, spec: &Spec) -> PathBuf {
        Path::new(&self.target.cloud.shared_dir).join(format!("{}.img", spec.name))
    }

    fn check_engine(&self, spec: &Spec) -> Result<Box<dyn Engine>> {
        if spec.engine != EngineKind::Postgresql {
            bail!(
                "engine `{}` cannot run on platform `pacemaker` yet: dbctl has pacemaker templates for postgresql only",
                spec.engine
            );
        }
        Ok(engine::for_host(spec.engine, "pacemaker")?)
    }

    fn instance(&self, spec: &Spec, engine: &dyn Engine, t: &dyn Transport) -> Instance {
        let mountpoint = self.mountpoint(spec);
        let port = self.catalog.engine(spec.engine).map_or(5432, |e| e.port);
        Instance {
            name: spec.name.clone(),
            engine: spec.engine,
            version: spec.version.clone(),
            host: self.target.cloud.vip.clone().unwrap_or_default(),
            listen: "*".into(),
            port,
            data_dir: mountpoint.join("pgdata"),
            conf_dir: mountpoint.clone(),
            run_dir: PathBuf::from("/run/postgresql"),
            log_dir: mountpoint.join("log"),
            dir: mountpoint,
            service_user: self
                .catalog
                .engine(spec.engine)
                .map(|e| e.service_user.clone()),
            admin_user: engine.admin_user(t),
            size_gb: spec.size_gb,
            database: spec.database.clone(),
            user: spec.user.clone(),
        }
    }

    fn context(
        &self,
        spec: &Spec,
        instance: &Instance,
        located: &Located,
        secrets: &BTreeMap<&str, String>,
    ) -> Result<Value> {
        let plan = self
            .catalog
            .plan(&spec.plan)
            .with_context(|| format!("plan `{}` is not in the catalog", spec.plan))?;
        Ok(minijinja::context! {
            spec => Value::from(Serde(spec)),
            plan => Value::from(Serde(plan)),
            target => Value::from(Serde(&self.target)),
            instance => Value::from(Serde(instance)),
            bin => Value::from(Serde(&located.bin)),
            secrets => Value::from(Serde(secrets)),
            mountpoint => self.mountpoint(spec).to_string_lossy().into_owned(),
            device => self.device(spec).to_string_lossy().into_owned(),
        })
    }

    fn run_playbook(
        &self,
        node: &Node,
        spec: &Spec,
        engine: &dyn Engine,
        path: &str,
        secrets: BTreeMap<&str, String>,
        sinks: (Progress<'_>, Option<OutputSink<'_>>),
    ) -> Result<()> {
        let (progress, output) = sinks;
        let located = engine.locate(&node.ssh, Some(&spec.version), &[])?;
        let instance = self.instance(spec, engine, &node.ssh);
        let ctx = self.context(spec, &instance, &located, &secrets)?;
        let playbook = Playbook::load(&self.assets, path)?;
        let runner = Runner {
            transport: &node.ssh,
            renderer: &self.renderer,
            engine,
            instance: &instance,
            bin: &located.bin,
            ctx,
            secrets: secrets
                .values()
                .map(|v| secrecy::SecretString::from(v.clone()))
                .collect(),
            progress,
            output,
        };
        runner.run(&playbook)?;
        Ok(())
    }

    fn group_exists(&self, group: &str) -> Result<bool> {
        let out = self
            .first()
            .ssh
            .run(&CommandSpec::new("pcs", ["resource", "config", group]))?;
        Ok(out.success())
    }

    /// Where each member of `group` runs.
    ///
    /// # Errors
    /// SSH failures.
    pub fn view(&self, spec: &Spec) -> Result<ClusterView> {
        let group = Self::group(spec);
        let ssh = &self.first().ssh;
        let mut resources = BTreeMap::new();
        for member in ["fs", "vip", "engine"] {
            let id = format!("{group}-{member}");
            let out = ssh.run(&CommandSpec::new(
                "crm_resource",
                ["--locate", "--resource", &id],
            ))?;
            let node = out
                .stdout
                .lines()
                .find_map(|l| l.split("is running on:").nth(1))
                .map(|n| n.trim().to_owned());
            resources.insert(id, node);
        }
        let nodes: Vec<_> = resources.values().collect();
        let active_node = match nodes.first() {
            Some(Some(first)) if nodes.iter().all(|n| n.as_ref() == Some(first)) => {
                Some(first.clone())
            }
            _ => None,
        };
        let out = ssh.run(&CommandSpec::new("crm_node", ["--list"]))?;
        let online_nodes = out
            .stdout
            .lines()
            .filter(|l| l.contains("member"))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .collect();
        Ok(ClusterView {
            group,
            resources,
            active_node,
            online_nodes,
        })
    }

    fn wait_started(&self, spec: &Spec) -> Result<ClusterView> {
        let deadline = Instant::now() + GROUP_TIMEOUT;
        loop {
            let view = self.view(spec)?;
            if view.active_node.is_some() {
                return Ok(view);
            }
            if Instant::now() >= deadline {
                bail!(
                    "resource group `{}` did not start within {} s on target `{}`: {:?}",
                    view.group,
                    GROUP_TIMEOUT.as_secs(),
                    self.target.name,
                    view.resources
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn pcs_script(&self, spec: &Spec) -> Result<Artifact> {
        self.cloud
            .render_operation(spec, "create")?
            .into_iter()
            .find(|a| a.path.ends_with(".pcs.sh"))
            .context("playbooks/pacemaker/create.yml renders no `.pcs.sh` artifact")
    }
}

impl super::Platform for Pacemaker {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Pacemaker
    }

    fn preferred_version(&self, kind: EngineKind) -> Option<String> {
        let engine = engine::for_host(kind, "pacemaker").ok()?;
        let known = self.catalog.engine(kind)?.versions.clone();
        engine
            .locate(&self.first().ssh, None, &known)
            .ok()
            .map(|l| l.version)
    }

    fn preflight(&self, spec: &Spec) -> Result<()> {
        let engine = self.check_engine(spec)?;
        for node in &self.nodes {
            engine.locate(&node.ssh, Some(&spec.version), &[])?;
            if node.ssh.find_program(&["pcs".into()]).is_none() {
                bail!(
                    "`pcs` is not installed on {} (node {})",
                    node.ssh.host(),
                    node.name
                );
            }
        }
        self.pcs_script(spec)?;
        Ok(())
    }

    fn create(&self, req: &CreateRequest<'_>) -> Result<CreateResponse> {
        let spec = req.spec;
        let engine = self.check_engine(spec)?;
        let group = Self::group(spec);
        let progress = req.progress;
        if !self.group_exists(&group)? {
            let secrets = BTreeMap::from([("password", REDACTED.to_owned())]);
            self.run_playbook(
                self.first(),
                spec,
                engine.as_ref(),
                &format!("pacemaker/{}/prepare.yml", spec.engine),
                secrets,
                (progress, req.output),
            )?;
        }
        for node in &self.nodes {
            node.ssh.make_dir(&self.mountpoint(spec), 0o755, None)?;
        }
        progress(1, 3, &format!("Push resource group {group}"));
        let script = self.pcs_script(spec)?;
        let remote = PathBuf::from(format!("/tmp/dbctl-{group}.pcs.sh"));
        let ssh = &self.first().ssh;
        ssh.write_file(&remote, script.content.as_bytes(), 0o700, None)?;
        let out = ssh.run(
            &CommandSpec::new("sh", [remote.to_string_lossy().into_owned()])
                .timeout(Duration::from_secs(120)),
        )?;
        ssh.remove_all(&remote)?;
        if !out.success() {
            bail!(
                "pushing resource group `{group}` on {} failed: {}",
                ssh.host(),
                out.stderr.trim()
            );
        }
        progress(2, 3, &format!("Wait until {group} runs on one node"));
        let view = self.wait_started(spec)?;
        let active = view
            .active_node
            .as_deref()
            .and_then(|n| self.node(n))
            .context("the node running the group is not in the target's `hosts`")?;
        progress(
            3,
            3,
            &format!("Create the application role on {}", active.name),
        );
        let secrets = BTreeMap::from([("password", req.password.expose_secret().to_owned())]);
        let noop = |_: usize, _: usize, _: &str| {};
        self.run_playbook(
            active,
            spec,
            engine.as_ref(),
            &format!("pacemaker/{}/bootstrap.yml", spec.engine),
            secrets,
            (&noop, req.output),
        )?;
        let located = engine.locate(&active.ssh, Some(&spec.version), &[])?;
        let instance = self.instance(spec, engine.as_ref(), &active.ssh);
        let probe = engine.probe(&active.ssh, &instance, &located.bin)?;
        Ok(CreateResponse {
            host: instance.host.clone(),
            port: instance.port,
            uri: engine
                .uri(&spec.user, &instance.host, instance.port, &spec.database)
                .to_string(),
            server_version: probe.version,
        })
    }

    fn status(&self, spec: &Spec) -> Result<Status> {
        let engine = self.check_engine(spec)?;
        let view = self.view(spec)?;
        let mut status = Status {
            state: State::Absent,
            server_version: None,
            host: self.target.cloud.vip.clone(),
            port: None,
            used_bytes: 0,
            database_bytes: None,
            allotted_gb: spec.size_gb,
            detail: None,
            cluster: Some(view.clone()),
        };
        if !self.group_exists(&view.group)? {
            return Ok(status);
        }
        status.state = State::Down;
        let Some(active) = view.active_node.as_deref().and_then(|n| self.node(n)) else {
            status.detail = Some(format!("group `{}` is not running on one node", view.group));
            return Ok(status);
        };
        let instance = self.instance(spec, engine.as_ref(), &active.ssh);
        status.port = Some(instance.port);
        status.used_bytes = active.ssh.used_bytes(&instance.dir);
        let probe = engine
            .locate(&active.ssh, Some(&spec.version), &[])
            .and_then(|l| engine.probe(&active.ssh, &instance, &l.bin));
        match probe {
            Ok(probe) => {
                status.state = State::Up;
                status.server_version = Some(probe.version);
                status.database_bytes = probe.data_bytes;
            }
            Err(err) => status.detail = Some(err.to_string()),
        }
        Ok(status)
    }

    fn delete(&self, spec: &Spec, progress: Progress<'_>) -> Result<()> {
        let group = Self::group(spec);
        let ssh = &self.first().ssh;
        if self.group_exists(&group)? {
            progress(1, 2, &format!("Stop and remove resource group {group}"));
            for args in [
                vec!["resource", "disable", group.as_str(), "--wait=120"],
                vec!["resource", "delete", group.as_str()],
            ] {
                let out =
                    ssh.run(&CommandSpec::new("pcs", args).timeout(Duration::from_secs(150)))?;
                if !out.success() {
                    bail!(
                        "removing `{group}` on {} failed: {}",
                        ssh.host(),
                        out.stderr.trim()
                    );
                }
            }
        }
        progress(2, 2, "Remove the disk image and mountpoints");
        ssh.remove_all(&self.device(spec))?;
        for node in &self.nodes {
            node.ssh.remove_all(&self.mountpoint(spec))?;
        }
        Ok(())
    }

    fn render(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        self.cloud.render_operation(spec, "create")
    }

    fn describe(&self, spec: &Spec) -> Result<serde_json::Value> {
        super::Platform::describe(&self.cloud, spec)
    }
}
