//! The `pacemaker` platform: an existing pacemaker/corosync cluster whose nodes dbctl
//! reaches over SSH. A database is a resource group — filesystem on a loop-mounted
//! disk image in the target's `shared_dir`, virtual IP (`IPaddr2`), and the engine as a
//! pacemaker resource (`ocf:heartbeat:pgsql`, `ocf:heartbeat:mysql`, or
//! `ocf:heartbeat:anything` for Redis) — so it fails over as one.
//!
//! `create` ([`Deployment::create`], shared with the openstack platform): make the disk
//! image (`pacemaker/image.yml`, once), push the rendered pcs script with the engine
//! disabled (idempotent: `pcs cluster cib-push … diff-against=…`), wait until the
//! filesystem and VIP run on one node, prepare the data directory there
//! (`pacemaker/<engine>/prepare.yml`), enable the engine, wait, then create the
//! application user (`pacemaker/<engine>/bootstrap.yml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use minijinja::Value;
use minijinja::value::Serde;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::cloud::Cloud;
use super::{
    Admin, Applied, Artifact, Capabilities, Disruption, Endpoint, Observed, Options, OutputSink,
    Progress, Request, Response, State,
};
use crate::catalog::{Catalog, EngineKind};
use crate::engine::{self, Engine, Instance};
use crate::gitops::Repo;
use crate::playbook::Playbook;
use crate::playbook::runner::Runner;
use crate::render::Renderer;
use crate::retry::{Check, Policy, Polled};
use crate::spec::{PlatformKind, Spec, Target};
use crate::transport::{CommandSpec, Ssh, Transport};

/// How long members of a group may take to start or stop, unless `--timeout` says
/// otherwise.
const GROUP_TIMEOUT: Duration = Duration::from_mins(3);

/// One cluster node: its pacemaker name and its SSH connection.
pub struct Node {
    /// The node's name in pacemaker (`crm_node -n`).
    pub name: String,
    /// The connection to it (SSH; the recording double in unit tests).
    pub ssh: std::sync::Arc<dyn Transport>,
}

/// A cluster's first node, owning the cluster's connections ([`Cluster::into_first`]).
pub struct FirstNode(Cluster);

impl std::ops::Deref for FirstNode {
    type Target = dyn Transport;

    fn deref(&self) -> &(dyn Transport + 'static) {
        self.0.first().ssh.as_ref()
    }
}

/// One member of a database's groups, as `crm_mon --output-as=xml` reports it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Member {
    /// The node running it (`None`: stopped).
    pub node: Option<String>,
    /// Its role (`Started`, `Stopped`, …).
    pub role: String,
    /// Disabled on purpose (`target-role=Stopped`).
    pub disabled: bool,
}

/// Where a database's groups run, as `crm_mon --output-as=xml` tells.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ClusterView {
    /// The pacemaker groups of the database.
    pub groups: Vec<String>,
    /// Member → where it runs.
    pub resources: BTreeMap<String, Member>,
    /// The node running every enabled member, when they all run on one.
    pub active_node: Option<String>,
    /// Nodes pacemaker reports online.
    pub online_nodes: Vec<String>,
}

impl ClusterView {
    /// Reads `crm_mon --output-as=xml` (pacemaker 2.1's result schema:
    /// `/pacemaker-result/nodes/node[@online]`, `/pacemaker-result/resources/group/resource`
    /// with `node` children) for `groups`.
    ///
    /// # Errors
    /// Text that is not `crm_mon`'s XML.
    pub fn parse(xml: &str, groups: &[String]) -> Result<Self> {
        let doc = roxmltree::Document::parse(xml).context("crm_mon printed no valid XML")?;
        let root = doc.root_element();
        let online_nodes = child(root, "nodes")
            .into_iter()
            .flat_map(|n| n.children().filter(|c| c.has_tag_name("node")))
            .filter(|n| n.attribute("online") == Some("true"))
            .filter_map(|n| n.attribute("name").map(str::to_owned))
            .collect();
        let mut resources = BTreeMap::new();
        for group in child(root, "resources")
            .into_iter()
            .flat_map(|r| r.children().filter(|c| c.has_tag_name("group")))
            .filter(|g| {
                g.attribute("id")
                    .is_some_and(|id| groups.iter().any(|x| x == id))
            })
        {
            for r in group.children().filter(|c| c.has_tag_name("resource")) {
                let Some(id) = r.attribute("id") else {
                    continue;
                };
                let node = (r.attribute("active") == Some("true"))
                    .then(|| child(r, "node").and_then(|n| n.attribute("name")))
                    .flatten()
                    .map(str::to_owned);
                resources.insert(
                    id.to_owned(),
                    Member {
                        node,
                        role: r.attribute("role").unwrap_or("Unknown").to_owned(),
                        disabled: r
                            .attribute("target_role")
                            .is_some_and(|t| t.eq_ignore_ascii_case("stopped")),
                    },
                );
            }
        }
        let mut enabled = resources.values().filter(|m| !m.disabled);
        let active_node = match enabled.next() {
            Some(Member {
                node: Some(first), ..
            }) if enabled.all(|m| m.node.as_ref() == Some(first)) => Some(first.clone()),
            _ => None,
        };
        Ok(Self {
            groups: groups.to_vec(),
            resources,
            active_node,
            online_nodes,
        })
    }
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(tag))
}

/// A pacemaker/corosync cluster reached over SSH: push resource groups, see where they
/// run, remove them. Shared by the `pacemaker` platform and the `openstack` platform's
/// pacemaker step.
/// Cheap to clone: the nodes' connections are shared.
#[derive(Clone)]
pub struct Cluster {
    target: String,
    nodes: std::sync::Arc<[Node]>,
    /// `--timeout`: how long [`Cluster::wait_started`] and playbooks' readiness waits
    /// on the nodes wait (`None`: [`GROUP_TIMEOUT`], the playbook's own).
    timeout: Option<Duration>,
}

impl Cluster {
    /// Connects to every host at once with the target's SSH settings and learns each
    /// node's pacemaker name.
    ///
    /// # Errors
    /// A failed SSH connection, or a host where `crm_node -n` fails (not a cluster node).
    pub fn connect(
        root: &Path,
        target: &Target,
        hosts: &[String],
        options: &Options,
    ) -> Result<Self> {
        let nodes = super::par_map(hosts, |host| -> Result<Node> {
            let ssh = Ssh::connect(&super::ssh_options(root, target, host, options))?;
            let out = ssh.run(&CommandSpec::new("crm_node", ["-n"]))?;
            if !out.success() {
                bail!(
                    "{host} (target `{}`) is not a pacemaker node: `crm_node -n` failed: {}",
                    target.name,
                    out.stderr.trim()
                );
            }
            Ok(Node {
                name: out.stdout.trim().to_owned(),
                ssh: std::sync::Arc::new(ssh),
            })
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        if nodes.is_empty() {
            bail!("target `{}` lists no cluster nodes", target.name);
        }
        Ok(Self::of_nodes(&target.name, nodes, options.timeout))
    }

    /// The cluster as dbctl on one of its nodes sees it (a `node_local` target): this
    /// node alone, reached without SSH.
    ///
    /// # Errors
    /// This machine is not a pacemaker node (`crm_node -n` fails).
    pub fn this_node(target: &str, timeout: Option<Duration>) -> Result<Self> {
        let local = crate::transport::Local::new();
        let out = local.run(&CommandSpec::new("crm_node", ["-n"]))?;
        if !out.success() {
            bail!(
                "target `{target}` is `node_local` but this machine is not a pacemaker node: `crm_node -n` failed: {}",
                out.stderr.trim()
            );
        }
        let node = Node {
            name: out.stdout.trim().to_owned(),
            ssh: std::sync::Arc::new(local),
        };
        Ok(Self::of_nodes(target, vec![node], timeout))
    }

    /// The cluster of `target` made of `nodes` already reached (the recording double in
    /// unit tests), waiting up to `timeout` for groups (`None`: [`GROUP_TIMEOUT`]).
    pub fn of_nodes(target: &str, nodes: Vec<Node>, timeout: Option<Duration>) -> Self {
        Self {
            target: target.to_owned(),
            nodes: nodes.into(),
            timeout,
        }
    }

    /// The nodes, in the order of the hosts.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The first node's connection, owning the cluster: for what outlives a borrow
    /// of it (a lease).
    pub fn into_first(self) -> FirstNode {
        FirstNode(self)
    }

    /// The first node: where dbctl runs `pcs`.
    pub fn first(&self) -> &Node {
        &self.nodes[0]
    }

    /// The node pacemaker calls `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Whether `group` is in the CIB.
    ///
    /// # Errors
    /// SSH failures.
    pub fn group_exists(&self, group: &str) -> Result<bool> {
        let out = self
            .first()
            .ssh
            .run(&CommandSpec::new("pcs", ["resource", "config", group]))?;
        Ok(out.success())
    }

    /// The groups of the CIB holding an `IPaddr2` resource for `ip` (the groups of
    /// another database of the target when `ip` is its VIP).
    ///
    /// # Errors
    /// SSH failures, `cibadmin` failing, XML that does not parse.
    pub fn groups_with_ip(&self, ip: &str) -> Result<Vec<String>> {
        let ssh = self.first().ssh.as_ref();
        let out = ssh.run(&CommandSpec::new(
            "cibadmin",
            ["--query", "--scope", "resources"],
        ))?;
        if !out.success() {
            bail!(
                "`cibadmin --query` on {} (target `{}`) failed: {}",
                ssh.host(),
                self.target,
                out.stderr.trim()
            );
        }
        let doc = roxmltree::Document::parse(&out.stdout)
            .with_context(|| format!("the CIB of target `{}` is not XML", self.target))?;
        let mut groups: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("primitive") && n.attribute("type") == Some("IPaddr2"))
            .filter(|p| {
                p.descendants().any(|v| {
                    v.has_tag_name("nvpair")
                        && v.attribute("name") == Some("ip")
                        && v.attribute("value") == Some(ip)
                })
            })
            .filter_map(|p| p.ancestors().find(|a| a.has_tag_name("group")))
            .filter_map(|g| g.attribute("id").map(str::to_owned))
            .collect();
        groups.dedup();
        Ok(groups)
    }

    /// Runs a rendered pcs script (idempotent by construction: it pushes only the
    /// difference to the live CIB) on the first node. The script goes as `sh -c`'s
    /// argument (it holds no secrets), so no file is left in the node's `/tmp`.
    ///
    /// # Errors
    /// The script fails; the message has pcs's stderr.
    pub fn push(&self, script: &Artifact, what: &str) -> Result<()> {
        let ssh = self.first().ssh.as_ref();
        let out = ssh.run(
            &CommandSpec::new("sh", ["-c", script.content.as_str(), "sh"])
                .timeout(Duration::from_mins(2)),
        )?;
        if !out.success() {
            bail!(
                "pushing resource group `{what}` ({}) on {} (target `{}`) failed: {}",
                script.path,
                ssh.host(),
                self.target,
                out.stderr.trim()
            );
        }
        Ok(())
    }

    /// Where each member of `groups` runs.
    ///
    /// # Errors
    /// SSH failures, or `crm_mon` failing.
    pub fn view(&self, groups: &[String]) -> Result<ClusterView> {
        let ssh = self.first().ssh.as_ref();
        let out = ssh.run(&CommandSpec::new(
            "crm_mon",
            ["--one-shot", "--inactive", "--output-as=xml"],
        ))?;
        if !out.success() && out.stdout.trim().is_empty() {
            bail!("`crm_mon` failed on {}: {}", ssh.host(), out.stderr.trim());
        }
        ClusterView::parse(&out.stdout, groups)
    }

    /// Waits until every enabled member of `groups` runs, all on one node.
    ///
    /// # Errors
    /// The timeout passed (the members' states in the message), SSH failures.
    pub fn wait_started(&self, groups: &[String]) -> Result<ClusterView> {
        let timeout = self.timeout.unwrap_or(GROUP_TIMEOUT);
        let polled = Policy::until(Some(timeout), Duration::from_millis(500)).poll(
            &format!("resource groups {}", groups.join(", ")),
            || -> Result<_> {
                let view = self.view(groups)?;
                Ok(if view.active_node.is_some() {
                    Check::Ready(view)
                } else {
                    Check::Pending(view)
                })
            },
        )?;
        match polled {
            Polled::Ready(view) => Ok(view),
            Polled::TimedOut(view) => {
                let states: Vec<_> = view
                    .resources
                    .iter()
                    .map(|(id, m)| format!("{id}: {}", m.role))
                    .collect();
                bail!(
                    "resource groups {} did not start on one node within {} s on target `{}`: {}; `--timeout SECONDS` waits longer",
                    groups.join(", "),
                    timeout.as_secs(),
                    self.target,
                    states.join(", ")
                );
            }
        }
    }

    /// Runs `pcs` with `args` on the first node.
    ///
    /// # Errors
    /// pcs fails; the message has its stderr.
    pub fn pcs(&self, args: &[&str]) -> Result<()> {
        let ssh = self.first().ssh.as_ref();
        let out = ssh.run(
            &CommandSpec::new("pcs", args.iter().copied()).timeout(Duration::from_secs(150)),
        )?;
        if !out.success() {
            bail!(
                "`pcs {}` on {} (target `{}`) failed: {}",
                args.join(" "),
                ssh.host(),
                self.target,
                out.stderr.trim()
            );
        }
        Ok(())
    }

    /// Stops and removes `groups` (those that exist), last first.
    ///
    /// # Errors
    /// pcs fails.
    pub fn remove_groups(&self, groups: &[String]) -> Result<()> {
        for group in groups.iter().rev() {
            if self.group_exists(group)? {
                self.pcs(&["resource", "disable", group, "--wait=120"])?;
                self.pcs(&["resource", "delete", group])?;
            }
        }
        Ok(())
    }
}

/// How one database sits on a cluster: its groups, paths, client address, the pcs
/// script that creates its groups and the playbooks that prepare and bootstrap it.
/// Written as JSON (without the script) into the repo a group's scheduled backups run
/// in ([`layout_path`]), where a `node_local` target reads it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Layout {
    /// Its pacemaker groups, in start order.
    pub groups: Vec<String>,
    /// The engine's resource id (`db-<name>-engine`).
    pub engine_resource: String,
    /// The mounted directory holding everything of the database.
    pub dir: PathBuf,
    /// The engine's data directory.
    pub data_dir: PathBuf,
    /// The engine's log directory.
    pub log_dir: PathBuf,
    /// Node-local directory of the engine's socket and pid file.
    pub run_dir: PathBuf,
    /// The address clients use (the VIP, or the floating IP).
    pub host: String,
    /// The address the engine listens on: the target's `listen`, else every address
    /// (`*`), since the VIP moves between nodes.
    pub listen: String,
    /// The rendered pcs script (not in the JSON).
    #[serde(skip)]
    pub script: Artifact,
    /// Playbook run on the first node before the groups exist (e.g. formatting a shared
    /// disk image and initialising the data directory in it).
    pub prepare_before_push: Option<String>,
    /// Playbook run on the active node when `size_gb` grows: the storage and its
    /// filesystem grow (online where the node allows it, else with the group's
    /// filesystem stopped). `None`: the platform cannot grow storage.
    pub grow: Option<String>,
    /// Playbook run on the active node when the script left the engine disabled: the
    /// storage is mounted there, the engine starts once it has run.
    pub prepare_mounted: Option<String>,
    /// Playbook run on the active node once the engine runs (users, databases).
    pub bootstrap: String,
    /// Extra template variables of the playbooks (`mountpoint`, `device`, …).
    pub vars: BTreeMap<String, String>,
}

/// Where a `node_local` target's repo holds the layout of database `name`:
/// `etc/groups/<name>.json`.
pub fn layout_path(name: &str) -> String {
    format!("etc/groups/{name}.json")
}

/// The prefix of a group's rendered pcs script among a database's artifact digests
/// (`group/db-<name>` → its sha256).
pub const GROUP_ARTIFACT: &str = "group/";

impl Layout {
    /// Artifact → sha256 for what the groups are built from: the rendered pcs script
    /// (`group/<first group>`: its templates, the target's settings) and every template
    /// the `prepare_mounted` and `bootstrap` playbooks write on the node (by template
    /// name, as hosts record theirs). A changed one is planned as
    /// `~ artifact.<name>`; template names in playbooks are plain paths.
    ///
    /// # Errors
    /// A playbook or template that cannot be read.
    pub fn digests(
        &self,
        assets: &crate::assets::Assets,
        renderer: &Renderer,
    ) -> Result<BTreeMap<String, String>> {
        let mut texts = vec![(
            format!("{GROUP_ARTIFACT}{}", self.groups[0]),
            self.script.content.clone(),
        )];
        for path in self.prepare_mounted.iter().chain([&self.bootstrap]) {
            for (template, _) in Playbook::load(assets, path)?.templates() {
                texts.push((template.to_owned(), renderer.source(template)?));
            }
        }
        Ok(crate::change::digests(
            texts.iter().map(|(n, t)| (n.as_str(), t.as_str())),
        ))
    }
}

/// What a playbook run on a node reports to and streams.
struct Io<'x> {
    progress: Progress<'x>,
    output: Option<OutputSink<'x>>,
    /// Where a `send` step's stream goes (a backup).
    send: Option<&'x mut dyn std::io::Write>,
    /// What `receive` steps read (a restore: the full backup, then incremental ones).
    receive: Vec<super::BackupFeed<'x>>,
    /// Template variables beside the layout's (`incremental`).
    vars: BTreeMap<String, String>,
    /// Further template variables (a point-in-time recovery's `recovery`).
    extra: Option<Value>,
}

impl<'x> Io<'x> {
    /// No progress, no streams; command output to `output` (`--verbose`).
    fn quiet(output: Option<OutputSink<'x>>) -> Self {
        Self {
            progress: &no_progress,
            output,
            send: None,
            receive: Vec::new(),
            vars: BTreeMap::new(),
            extra: None,
        }
    }
}

fn no_progress(_: usize, _: usize, _: &str) {}

/// Where a cluster's nodes keep leases: `<state_dir>/.leases` (default
/// `/srv/dbctl/.leases`), on the node a platform chooses for every runner alike.
pub fn lease_dir(target: &Target) -> PathBuf {
    state_dir(target).join(".leases")
}

/// A cluster target's `state_dir` on its nodes (default `/srv/dbctl`): leases, and
/// the dbctl copy PostgreSQL's WAL archiving runs.
pub fn state_dir(target: &Target) -> PathBuf {
    target
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/srv/dbctl"))
}

/// What `req`'s changes need of the engine: a grown `size_gb` is done by
/// [`Deployment::grow`] (which stops what it must itself), so it is left out.
fn engine_disruption(req: &Request<'_>) -> Disruption {
    req.changes
        .iter()
        .filter(|c| c.attribute != "size_gb")
        .map(|c| c.disruption)
        .max()
        .unwrap_or(Disruption::None)
}

/// Deploys one database's groups on a cluster: shared by the `pacemaker` platform and
/// the `openstack` platform's pacemaker step.
pub struct Deployment<'a> {
    /// The target.
    pub target: &'a Target,
    /// The repo's root (repo-relative files of the target: an openrc).
    pub root: &'a Path,
    /// The repo's configuration (backup stores and recipients, for WAL archiving).
    pub config: &'a crate::spec::Config,
    /// The catalog.
    pub catalog: &'a Catalog,
    /// Templates and playbooks.
    pub assets: &'a crate::assets::Assets,
    /// The renderer of `assets`.
    pub renderer: &'a Renderer,
    /// The cluster.
    pub cluster: Cluster,
    /// Where the database sits.
    pub layout: Layout,
}

impl<'a> Deployment<'a> {
    fn instance(&self, spec: &Spec, engine: &dyn Engine, t: &dyn Transport) -> Instance {
        let l = &self.layout;
        let port = self.catalog.engine(spec.engine).map_or(5432, |e| e.port);
        Instance {
            name: spec.name.clone(),
            engine: spec.engine,
            version: spec.version.clone(),
            host: l.host.clone(),
            listen: l.listen.clone(),
            port,
            data_dir: l.data_dir.clone(),
            conf_dir: l.dir.clone(),
            run_dir: l.run_dir.clone(),
            log_dir: l.log_dir.clone(),
            dir: l.dir.clone(),
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

    fn run_playbook(
        &self,
        node: &Node,
        spec: &Spec,
        engine: &dyn Engine,
        path: &str,
        secrets: &BTreeMap<&str, String>,
        io: Io<'_>,
    ) -> Result<()> {
        let located = locate(self.catalog, node.ssh.as_ref(), spec, engine)?;
        let instance = self.instance(spec, engine, node.ssh.as_ref());
        let plan = self
            .catalog
            .plan(&spec.plan)
            .with_context(|| format!("plan `{}` is not in the catalog", spec.plan))?;
        // Settings the engine changes at run time, for `reload` playbooks.
        let dynamic = crate::engine::parameter::reloadable(spec.engine, &spec.parameters);
        let removed: Vec<String> = Vec::new();
        let mut vars = self.layout.vars.clone();
        vars.extend(io.vars);
        // PostgreSQL with a backup store archives WAL through the dbctl copy on the
        // node, with `wal-push.json` beside the data ([`Self::prepare_archiving`]).
        let wal_archive = super::agent::archives(self.config, spec)
            .then(|| super::agent::path(&state_dir(self.target), false).ok())
            .flatten()
            .map(|agent| super::agent::archive_context(&agent, &instance.conf_dir));
        let ctx = minijinja::context! {
            wal_archive => wal_archive,
            dynamic => Value::from(Serde(&dynamic)),
            removed => Value::from(Serde(&removed)),
            spec => Value::from(Serde(spec)),
            plan => Value::from(Serde(plan)),
            target => Value::from(Serde(self.target)),
            instance => Value::from(Serde(&instance)),
            bin => Value::from(Serde(&located.bin)),
            secrets => Value::from(Serde(&secrets)),
            // The engine's resource: playbooks shared with host platforms stop the
            // engine through pacemaker when it is defined (`restore.yml`).
            pacemaker_resource => self.layout.engine_resource.clone(),
            // The backups a restore's `receive` steps read (full, then incremental).
            parts => io.receive.len(),
            ..Value::from(Serde(&vars))
        };
        let ctx = match io.extra {
            Some(extra) => minijinja::context! { ..extra, ..ctx },
            None => ctx,
        };
        let playbook = Playbook::load(self.assets, path)?;
        let runner = Runner {
            transport: node.ssh.as_ref(),
            renderer: self.renderer,
            engine,
            instance: &instance,
            bin: &located.bin,
            ctx,
            secrets: secrets
                .values()
                .map(|v| secrecy::SecretString::from(v.clone()))
                .collect(),
            progress: io.progress,
            output: io.output,
            wait_timeout: self.cluster.timeout,
            // Reborrowed, so the stream's lifetime shrinks to the run's.
            send: match io.send {
                Some(w) => Some(std::cell::RefCell::new(&mut *w as &mut dyn std::io::Write)),
                None => None,
            },
            receive: io.receive,
        };
        runner
            .run(&playbook)
            .map_err(|e| anyhow::anyhow!("on {} (node {}): {e}", node.ssh.host(), node.name))?;
        Ok(())
    }

    /// PostgreSQL with a backup store archives its WAL from the groups: this dbctl is
    /// put on every node (the engine may run on any), `wal-push.json` and its secret
    /// on the group's filesystem beside the data (they move with it), and the node
    /// running the groups checks it reaches the store. Nothing for other databases.
    ///
    /// # Errors
    /// Another architecture on a node, the store's secret unreadable, the store not
    /// reachable from `active`.
    fn prepare_archiving(&self, active: &Node, spec: &Spec) -> Result<()> {
        let owner = self
            .catalog
            .engine(spec.engine)
            .map(|e| e.service_user.clone());
        let Some((config_path, store)) = super::agent::write_wal_push(
            active.ssh.as_ref(),
            (self.config, self.root),
            spec,
            &self.layout.dir,
            owner.as_deref(),
        )?
        else {
            return Ok(());
        };
        let agent = self.install_agent(super::agent::Purpose::WalArchiving(&spec.name))?;
        super::agent::check_wal_push(
            active.ssh.as_ref(),
            &agent,
            &config_path,
            owner.as_deref(),
            &spec.name,
            &store,
        )
    }

    /// Puts this dbctl on every node (the groups may run on any) at
    /// [`super::agent::path`] in the target's state directory; returns that path.
    ///
    /// # Errors
    /// Another architecture on a node, or the copy fails.
    fn install_agent(&self, purpose: super::agent::Purpose<'_>) -> Result<PathBuf> {
        let agent = super::agent::path(&state_dir(self.target), false)?;
        for node in self.cluster.nodes() {
            super::agent::install(node.ssh.as_ref(), &agent, purpose)?;
        }
        Ok(agent)
    }

    /// The systemd units of `name`'s scheduled backups on every node
    /// (`<state_dir>/.dbctl/systemd/<stem>.{service,timer}`, node-local).
    fn schedule_units(&self, name: &str) -> super::agent::Units {
        let dir = state_dir(self.target).join(".dbctl/systemd");
        let stem = super::agent::unit_stem(self.config, name);
        super::agent::Units {
            service: dir.join(format!("{stem}.service")),
            timer: dir.join(format!("{stem}.timer")),
        }
    }

    /// Makes the groups' scheduled backups what `backup.schedule` says: dbctl's copy
    /// on every node with a timer there, and on the group's filesystem (so it moves
    /// with the data) the repo they run `dbctl backup` in (`<dir>/agent`, the store's
    /// secret in `<dir>/agent.secret`): the target as a `node_local` pacemaker one on
    /// the same state directory, this layout in [`layout_path`]. The service runs only
    /// where that repo is mounted (`ConditionPathExists=`), the node running the
    /// groups; after a failover the timer of the new one runs it. Without a schedule
    /// the units and the repo go.
    ///
    /// # Errors
    /// No `repo_id` or store ([`super::agent::schedule_store`]), another architecture
    /// on a node, files or `systemctl` failing on a node.
    fn sync_schedule(&self, active: &Node, spec: &Spec) -> Result<()> {
        let root = self.layout.dir.join("agent");
        let secret = self.layout.dir.join("agent.secret");
        let Some(text) = spec.backup.as_ref().and_then(|b| b.schedule.as_deref()) else {
            self.stop_schedule(spec)?;
            active.ssh.remove_all(&root)?;
            active.ssh.remove_all(&secret)?;
            return Ok(());
        };
        let state_dir = state_dir(self.target);
        let agent = self.install_agent(super::agent::Purpose::ScheduledBackups(&spec.name))?;
        let repo = super::agent::ScheduleRepo {
            root: root.clone(),
            secret,
            target: serde_json::json!({
                "platform": "pacemaker",
                "node_local": true,
                "state_dir": state_dir,
                "description": format!(
                    "the node running {} as its scheduled backups see it",
                    self.layout.groups.join(", ")
                ),
            }),
            files: vec![(
                layout_path(&spec.name),
                serde_json::to_string_pretty(&self.layout)?,
            )],
        };
        super::agent::write_schedule_repo(
            active.ssh.as_ref(),
            self.assets,
            (self.config, self.root),
            spec,
            &repo,
        )?;
        let condition = root.join("etc/dbctl.yml");
        let (service, timer) = super::agent::render_units(
            self.renderer,
            spec,
            &super::agent::UnitsContext {
                schedule: text,
                dbctl: &agent,
                repo: &root,
                state_dir: &state_dir,
                condition: Some(&condition),
            },
        )?;
        let units = self.schedule_units(&spec.name);
        for node in self.cluster.nodes() {
            super::agent::sync_units(node.ssh.as_ref(), &units, Some((&service, &timer)))?;
        }
        Ok(())
    }

    /// Disables and removes the units of `spec`'s scheduled backups on every node.
    ///
    /// # Errors
    /// Files or `systemctl` failing on a node.
    pub fn stop_schedule(&self, spec: &Spec) -> Result<()> {
        let units = self.schedule_units(&spec.name);
        for node in self.cluster.nodes() {
            super::agent::sync_units(node.ssh.as_ref(), &units, None)?;
        }
        Ok(())
    }

    /// The engine's admin password, in `admin.secret` beside the data (so it moves with
    /// the group), generated on first use.
    fn admin_secret(&self, node: &Node) -> Result<String> {
        let path = self.layout.dir.join("admin.secret");
        if let Some(bytes) = node.ssh.read_file(&path)? {
            return Ok(String::from_utf8_lossy(&bytes).trim().to_owned());
        }
        let secret = crate::secret::generate_password();
        node.ssh
            .write_file(&path, secret.expose_secret().as_bytes(), 0o600, None)?;
        Ok(secret.expose_secret().to_owned())
    }

    /// The secret template variables of `req`'s playbooks on `node`: the password's
    /// forms ([`super::secret_vars`]), the administrator's secret where the engine
    /// needs one, and for Redis the other login's ACL line kept from the group's
    /// `users.acl` ([`super::kept_acl`]), so a rotation leaves it working.
    ///
    /// # Errors
    /// No password in the request; the node's files cannot be read or written.
    fn secrets(
        &self,
        node: &Node,
        req: &Request<'_>,
        engine: &dyn Engine,
    ) -> Result<BTreeMap<&'static str, String>> {
        let mut secrets = super::secret_vars(Some(req.password()?), req.login);
        if engine.needs_admin_secret() {
            secrets.insert("admin_password", self.admin_secret(node)?);
        }
        if req.spec.engine == EngineKind::Redis
            && let Some(acl) = node.ssh.read_file(&self.layout.dir.join("users.acl"))?
            && let Some(line) = super::kept_acl(req.spec, req.login, &acl)
        {
            secrets.insert("kept_acl", line);
        }
        Ok(secrets)
    }

    fn active<'c>(&'c self, view: &ClusterView) -> Result<&'c Node> {
        view.active_node
            .as_deref()
            .and_then(|n| self.cluster.node(n))
            .with_context(|| {
                format!(
                    "the node running {} is not one dbctl reaches (target `{}`)",
                    view.groups.join(", "),
                    self.target.name
                )
            })
    }

    /// Creates or converges the groups and the database in them; idempotent.
    ///
    /// # Errors
    /// The failing step, naming host and command.
    pub fn create(
        &self,
        req: &Request<'_>,
        engine: &dyn Engine,
        first_step: usize,
        steps: usize,
    ) -> Result<Response> {
        let spec = req.spec;
        req.password()?; // before anything changes
        let l = &self.layout;
        let progress = req.progress;
        let exists = self.cluster.group_exists(&l.groups[0])?;
        if let Some(prepare) = &l.prepare_before_push
            && !exists
        {
            let secrets = super::secret_vars(None, None);
            self.run_playbook(
                self.cluster.first(),
                spec,
                engine,
                prepare,
                &secrets,
                Io::quiet(req.output),
            )?;
        }
        for node in self.cluster.nodes() {
            node.ssh.make_dir(&l.dir, 0o755, None)?;
        }
        let groups = l.groups.join(", ");
        progress(first_step, steps, &format!("Push resource groups {groups}"));
        self.cluster.push(&l.script, &l.groups[0])?;
        progress(
            first_step + 1,
            steps,
            &format!("Wait until {groups} run on one node"),
        );
        let mut view = self.cluster.wait_started(&l.groups)?;
        self.prepare_archiving(self.active(&view)?, spec)?;
        let secrets = |node: &Node| self.secrets(node, req, engine);
        if let Some(prepare) = &l.prepare_mounted
            && view
                .resources
                .get(&l.engine_resource)
                .is_some_and(|m| m.disabled)
        {
            let active = self.active(&view)?;
            let secrets = secrets(active)?;
            self.run_playbook(
                active,
                spec,
                engine,
                prepare,
                &secrets,
                Io::quiet(req.output),
            )?;
            self.cluster
                .pcs(&["resource", "enable", &l.engine_resource])?;
            view = self.cluster.wait_started(&l.groups)?;
        }
        let active = self.active(&view)?;
        progress(
            first_step + 2,
            steps,
            &format!("Create the application role on {}", active.name),
        );
        let secrets = secrets(active)?;
        self.run_playbook(
            active,
            spec,
            engine,
            &l.bootstrap,
            &secrets,
            Io::quiet(req.output),
        )?;
        let located = locate(self.catalog, active.ssh.as_ref(), spec, engine)?;
        let instance = self.instance(spec, engine, active.ssh.as_ref());
        let probe = engine.probe(active.ssh.as_ref(), &instance, &located.bin)?;
        // What was applied lives with the data, on the group's filesystem.
        let applied = self.applied(spec)?;
        active.ssh.write_file(
            &l.dir.join(APPLIED_FILE),
            &serde_json::to_vec_pretty(&applied)?,
            0o644,
            None,
        )?;
        self.sync_schedule(active, spec)?;
        Ok(response(req, engine, &instance, probe.version))
    }

    /// Changes a running database's configuration in its groups: the node running
    /// them writes the configuration again (`prepare` playbook; the data directory is
    /// initialised once), the bootstrap runs (users, networks), then the engine reloads
    /// (`local/<engine>/reload.yml` on that node) or pacemaker restarts the engine
    /// member (`pcs resource restart`, waited for), as the strongest change needs.
    ///
    /// # Errors
    /// The failing step, naming host and command.
    pub fn update(&self, req: &Request<'_>, engine: &dyn Engine) -> Result<Response> {
        let spec = req.spec;
        let l = &self.layout;
        req.password()?; // before anything changes
        let view = self.cluster.view(&l.groups)?;
        let active = self.active(&view)?;
        let secrets = self.secrets(active, req, engine)?;
        (req.progress)(1, 3, &format!("Write the configuration on {}", active.name));
        self.prepare_archiving(active, spec)?;
        if let Some(prepare) = &l.prepare_mounted {
            self.run_playbook(
                active,
                spec,
                engine,
                prepare,
                &secrets,
                Io::quiet(req.output),
            )?;
        }
        self.run_playbook(
            active,
            spec,
            engine,
            &l.bootstrap,
            &secrets,
            Io::quiet(req.output),
        )?;
        let whole = match engine_disruption(req) {
            Disruption::None => false,
            Disruption::Reload => {
                (req.progress)(2, 3, "Reload the engine");
                self.run_playbook(
                    active,
                    spec,
                    engine,
                    &format!("local/{}/reload.yml", spec.engine),
                    &BTreeMap::new(),
                    Io::quiet(req.output),
                )?;
                false
            }
            Disruption::Restart | Disruption::DataMovement => {
                (req.progress)(2, 3, &format!("Restart {}", l.engine_resource));
                // The groups' resources get the rendered parameters again first (a
                // minor upgrade's binaries, a changed template): pacemaker restarts a
                // member whose parameters changed; the restart covers the rest.
                self.cluster.push(&l.script, &l.groups[0])?;
                self.cluster
                    .pcs(&["resource", "restart", &l.engine_resource, "--wait=180"])?;
                self.cluster.wait_started(&l.groups)?;
                true
            }
        };
        let view = self.cluster.view(&l.groups)?;
        let active = self.active(&view)?;
        (req.progress)(3, 3, &format!("Check the engine on {}", active.name));
        let path = l.dir.join(APPLIED_FILE);
        let previous = active
            .ssh
            .read_file(&path)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let applied = Applied::after(previous, self.applied(spec)?, req.changes, whole);
        active
            .ssh
            .write_file(&path, &serde_json::to_vec_pretty(&applied)?, 0o644, None)?;
        self.sync_schedule(active, spec)?;
        let located = locate(self.catalog, active.ssh.as_ref(), spec, engine)?;
        let instance = self.instance(spec, engine, active.ssh.as_ref());
        let probe = engine.probe(active.ssh.as_ref(), &instance, &located.bin)?;
        Ok(response(req, engine, &instance, probe.version))
    }

    /// Grows the running database's storage to `size_gb` on the node running its
    /// groups (the layout's `grow` playbook: online where the node may, else with the
    /// filesystem member stopped and started again); then waits until the groups run
    /// again. What was applied is recorded by the update or converge that follows.
    ///
    /// # Errors
    /// The layout cannot grow storage; the groups run nowhere; the failing step.
    pub fn grow(&self, req: &Request<'_>, engine: &dyn Engine) -> Result<()> {
        let spec = req.spec;
        let grow = self.layout.grow.as_deref().with_context(|| {
            format!(
                "target `{}` cannot grow the storage of `{}` in place",
                self.target.name, spec.name
            )
        })?;
        let node = &self.cluster.nodes()[self.active_index()?];
        (req.progress)(
            1,
            1,
            &format!("Grow the storage to {} GB on {}", spec.size_gb, node.name),
        );
        self.run_playbook(
            node,
            spec,
            engine,
            grow,
            &BTreeMap::new(),
            Io::quiet(req.output),
        )?;
        self.cluster.wait_started(&self.layout.groups).map(|_| ())
    }

    /// What applying `spec` records: its values, the templates' digests, and where
    /// PostgreSQL archives WAL.
    fn applied(&self, spec: &Spec) -> Result<Applied> {
        let mut applied = Applied::of(spec, self.layout.digests(self.assets, self.renderer)?);
        applied.wal_archive = super::agent::wal_archive(self.config, spec);
        Ok(applied)
    }

    /// The node running the groups, by its index in the cluster's nodes.
    ///
    /// # Errors
    /// The groups do not run on one node dbctl reaches; the cluster cannot be queried.
    fn active_index(&self) -> Result<usize> {
        let view = self.cluster.view(&self.layout.groups)?;
        let active = self.active(&view)?;
        Ok(self
            .cluster
            .nodes()
            .iter()
            .position(|n| n.name == active.name)
            .unwrap_or_default())
    }

    /// The admin channel of `spec`'s database: the engine's client and backup
    /// playbook on the node running its groups (found when the channel opens: after a
    /// failover, open it again).
    ///
    /// # Errors
    /// The groups do not run on one node, or the engine's binaries are missing there.
    pub fn admin(self, spec: &Spec, engine: Box<dyn Engine>) -> Result<GroupAdmin<'a>> {
        if self.target.cloud.node_local {
            // This node alone is reached: it must be the one running the groups.
            let view = self.cluster.view(&self.layout.groups)?;
            let here = &self.cluster.first().name;
            if view.active_node.as_deref() != Some(here.as_str()) {
                bail!(
                    "`{}` runs on {}, not on this node ({here}): its scheduled backups run on the node running {}",
                    spec.name,
                    view.active_node
                        .as_deref()
                        .map_or_else(|| "no node".to_owned(), |n| format!("node {n}")),
                    self.layout.groups.join(", ")
                );
            }
        }
        let node = self.active_index()?;
        let ssh = self.cluster.nodes()[node].ssh.as_ref();
        let located = locate(self.catalog, ssh, spec, engine.as_ref())?;
        let instance = self.instance(spec, engine.as_ref(), ssh);
        Ok(GroupAdmin {
            deployment: self,
            spec: spec.clone(),
            engine,
            node,
            instance,
            bin: located.bin,
            full_version: located.full_version,
        })
    }

    /// Restores a backup in place (a new database's groups are created first), as on
    /// a host and with the same playbook (`local/<engine>/restore.yml`) on the node
    /// running the groups: the stream is unpacked beside the running engine on the
    /// group's filesystem, then the engine resource is disabled through pacemaker (so
    /// nothing fails over) and the data directories are swapped. [`Self::create`] then
    /// writes the configuration into the restored data, enables the engine and sets the
    /// application password; `restore-finish.yml` removes the replaced data. Restored
    /// data that does not start is kept as `data-restore-failed` and the replaced data
    /// runs again.
    ///
    /// `--to-time` replays the WAL the groups archived, fetched beside the data.
    ///
    /// # Errors
    /// A missing backup program, WAL that cannot be fetched, a failed step (the
    /// database runs on its data as before).
    pub fn restore(
        &self,
        req: &Request<'_>,
        engine: &dyn Engine,
        source: &super::Restore<'_>,
    ) -> Result<Response> {
        let spec = req.spec;
        if req.creates() {
            self.create(req, engine, 1, 3)?;
        }
        let l = &self.layout;
        let node = &self.cluster.nodes()[self.active_index()?];
        let located = locate(self.catalog, node.ssh.as_ref(), spec, engine)?;
        super::check_backup_binaries(engine, &located.bin, node.ssh.host())?;
        let replaced = l.dir.join("data-replaced");
        let restore = format!("local/{}/restore.yml", spec.engine);
        // `--to-time`: the archived WAL goes beside the data on the group's
        // filesystem, where the restored server's `restore_command` reads it.
        let extra = match &source.recovery {
            Some(recovery) => Some(super::agent::fetch_wal(
                node.ssh.as_ref(),
                &l.dir.join("restore-wal"),
                self.catalog
                    .engine(spec.engine)
                    .map(|e| e.service_user.as_str()),
                recovery,
                req.progress,
            )?),
            None => None,
        };
        let io = Io {
            receive: source.backups.clone(),
            progress: req.progress,
            extra,
            ..Io::quiet(req.output)
        };
        if let Err(err) = self.run_playbook(node, spec, engine, &restore, &BTreeMap::new(), io) {
            // Stopped before the swap (or between its two moves): put the data back;
            // after it (the restored data did not recover), keep the restored data
            // apart and put the replaced data back. Create enables the engine again.
            if node.ssh.exists(&replaced) {
                if node.ssh.exists(&l.data_dir) {
                    let failed = l.dir.join("data-restore-failed");
                    node.ssh.remove_all(&failed)?;
                    self.move_path(node, spec, &l.data_dir, &failed)?;
                }
                self.move_path(node, spec, &replaced, &l.data_dir)?;
            }
            let _ = self.create(req, engine, 1, 3);
            return Err(err.context(format!(
                "restoring `{}` failed; the database runs on its data as before",
                spec.name
            )));
        }
        let finish = format!("local/{}/restore-finish.yml", spec.engine);
        match self.create(req, engine, 1, 3) {
            Ok(response) => {
                self.run_playbook(
                    node,
                    spec,
                    engine,
                    &finish,
                    &BTreeMap::new(),
                    Io::quiet(None),
                )?;
                Ok(response)
            }
            Err(err) => {
                let failed = l.dir.join("data-restore-failed");
                self.cluster
                    .pcs(&["resource", "disable", &l.engine_resource, "--wait=120"])?;
                node.ssh.remove_all(&failed)?;
                self.move_path(node, spec, &l.data_dir, &failed)?;
                self.move_path(node, spec, &replaced, &l.data_dir)?;
                self.create(req, engine, 1, 3)?;
                Err(err.context(format!(
                    "the restored data of `{}` did not start; the data it replaced runs again and the restored data is kept in `{}` on {}",
                    spec.name,
                    failed.display(),
                    node.name
                )))
            }
        }
    }

    /// `mv from to` on `node` as the engine's service user.
    fn move_path(&self, node: &Node, spec: &Spec, from: &Path, to: &Path) -> Result<()> {
        let user = self
            .catalog
            .engine(spec.engine)
            .map(|e| e.service_user.clone());
        let cmd = CommandSpec::new(
            "mv",
            [
                from.to_string_lossy().into_owned(),
                to.to_string_lossy().into_owned(),
            ],
        )
        .run_as(user.as_deref());
        let out = node.ssh.run(&cmd)?;
        if !out.success() {
            bail!(
                "on {} (node {}): cannot move `{}` to `{}`: {}",
                node.ssh.host(),
                node.name,
                from.display(),
                to.display(),
                out.stderr.trim()
            );
        }
        Ok(())
    }

    /// The cluster view and the engine's state on the active node.
    ///
    /// # Errors
    /// Only when the cluster cannot be queried.
    pub fn observe(&self, spec: &Spec, engine: &dyn Engine) -> Result<Observed> {
        let l = &self.layout;
        let view = self.cluster.view(&l.groups)?;
        let mut status = Observed::absent();
        status
            .details
            .insert("cluster".into(), serde_json::to_value(&view)?);
        if view.resources.is_empty() && !self.cluster.group_exists(&l.groups[0])? {
            return Ok(status);
        }
        status.state = State::Down;
        let Some(active) = view
            .active_node
            .as_deref()
            .and_then(|n| self.cluster.node(n))
        else {
            status.detail = Some(format!("{} not running on one node", l.groups.join(", ")));
            return Ok(status);
        };
        let instance = self.instance(spec, engine, active.ssh.as_ref());
        status.endpoint = Some(Endpoint {
            host: l.host.clone(),
            port: instance.port,
        });
        status.used_bytes = active.ssh.used_bytes(&instance.dir);
        status.applied = active
            .ssh
            .read_file(&l.dir.join(APPLIED_FILE))
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let located = locate(self.catalog, active.ssh.as_ref(), spec, engine);
        if let Ok(l) = &located {
            // Newer than what runs: a minor upgrade is pending (a restart runs them).
            status.installed_version = Some(l.full_version.clone());
        }
        let probe = located.and_then(|l| {
            let probe = engine.probe(active.ssh.as_ref(), &instance, &l.bin)?;
            // What the server runs for the spec's settings: drift is planned.
            let keys: Vec<&str> = spec.parameters.keys().map(String::as_str).collect();
            status.running_parameters = engine
                .running_settings(active.ssh.as_ref(), &instance, &l.bin, &keys)
                .unwrap_or_default();
            Ok(probe)
        });
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
}

/// The admin channel of a database in resource groups ([`Deployment::admin`]): the
/// engine's client and `local/<engine>/backup.yml` on the node that ran the groups
/// when the channel opened.
pub struct GroupAdmin<'a> {
    deployment: Deployment<'a>,
    spec: Spec,
    engine: Box<dyn Engine>,
    /// Index of the node in the cluster's nodes.
    node: usize,
    instance: Instance,
    bin: BTreeMap<String, String>,
    full_version: String,
}

impl GroupAdmin<'_> {
    fn node(&self) -> &Node {
        &self.deployment.cluster.nodes()[self.node]
    }
}

impl Admin for GroupAdmin<'_> {
    fn run(
        &self,
        input: &mut (dyn std::io::Read + Send),
        output: &mut dyn std::io::Write,
        role: super::Role<'_>,
    ) -> Result<(i32, String)> {
        super::run_client(
            self.node().ssh.as_ref(),
            self.engine.as_ref(),
            &self.instance,
            &self.bin,
            (input, output),
            &role,
        )
    }

    fn backup(
        &self,
        output: &mut dyn std::io::Write,
        progress: Progress<'_>,
        incremental: Option<super::IncrementalBase<'_>>,
    ) -> Result<super::BackupTaken> {
        let node = self.node();
        super::check_backup_binaries(self.engine.as_ref(), &self.bin, node.ssh.host())?;
        let (vars, scratch) = super::incremental_vars(
            node.ssh.as_ref(),
            self.spec.engine,
            &self.full_version,
            &self.instance,
            incremental,
        )?;
        let log = std::sync::Mutex::new(String::new());
        let keep = |line: &str| {
            if let Ok(mut log) = log.lock() {
                log.push_str(line);
                log.push('\n');
            }
        };
        let io = Io {
            progress,
            send: Some(output),
            vars,
            ..Io::quiet(Some(&keep))
        };
        let ran = self.deployment.run_playbook(
            node,
            &self.spec,
            self.engine.as_ref(),
            &format!("local/{}/backup.yml", self.spec.engine),
            &BTreeMap::new(),
            io,
        );
        if let Some(path) = &scratch {
            let _ = node.ssh.remove_all(path);
        }
        ran?;
        let log = log.into_inner().unwrap_or_default();
        Ok(super::BackupTaken {
            format: self.engine.backup_format().to_owned(),
            server_version: self.full_version.clone(),
            position: self.engine.backup_position(&log),
            checkpoint_lsn: self.engine.backup_checkpoint(&log),
        })
    }
}

/// How clients reach `instance` (the login of `req`), running `server_version`.
fn response(
    req: &Request<'_>,
    engine: &dyn Engine,
    instance: &crate::engine::Instance,
    server_version: String,
) -> Response {
    let spec = req.spec;
    Response {
        endpoint: Some(Endpoint {
            host: instance.host.clone(),
            port: instance.port,
        }),
        uri: Some(
            engine
                .uri(
                    req.login.unwrap_or(&spec.user),
                    &instance.host,
                    instance.port,
                    &spec.database,
                )
                .to_string(),
        ),
        server_version: Some(server_version),
    }
}

/// Where a deployment records what was applied: on the group's filesystem, so it
/// moves with the data.
const APPLIED_FILE: &str = "dbctl-applied.json";

/// The pacemaker platform bound to one target.
pub struct Pacemaker {
    target: Target,
    catalog: Catalog,
    assets: crate::assets::Assets,
    renderer: Renderer,
    cloud: Cloud,
    root: PathBuf,
    config: crate::spec::Config,
    options: Options,
    cluster: std::sync::OnceLock<Cluster>,
}

impl Pacemaker {
    /// Binds `target`; the nodes are connected on first use, so rendering works
    /// without reaching them.
    ///
    /// # Errors
    /// None today; kept for drivers that validate on construction.
    pub fn new(repo: &Repo, target: &Target, options: &Options) -> Result<Self> {
        Ok(Self {
            target: target.clone(),
            catalog: repo.catalog.clone(),
            assets: repo.assets.clone(),
            renderer: Renderer::new(&repo.assets),
            cloud: Cloud::new(repo, target),
            root: repo.root().to_owned(),
            config: repo.config.clone(),
            options: options.clone(),
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// The cluster: every node in the target's `hosts`, connected once.
    ///
    /// # Errors
    /// A failed SSH connection, or a host that is not a pacemaker node.
    fn cluster(&self) -> Result<&Cluster> {
        if let Some(cluster) = self.cluster.get() {
            return Ok(cluster);
        }
        if self.target.cloud.node_local {
            let cluster = Cluster::this_node(&self.target.name, self.options.timeout)?;
            return Ok(self.cluster.get_or_init(|| cluster));
        }
        let cluster = Cluster::connect(
            &self.root,
            &self.target,
            &self.target.ssh.hosts,
            &self.options,
        )?;
        Ok(self.cluster.get_or_init(|| cluster))
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
        check_engine(spec, "pacemaker")
    }

    /// How `spec` sits on the cluster: rendered from the target's settings, or on a
    /// `node_local` target read from [`layout_path`] in the repo.
    ///
    /// # Errors
    /// The pcs script does not render; a `node_local` repo without the layout.
    fn layout(&self, spec: &Spec) -> Result<Layout> {
        if self.target.cloud.node_local {
            let rel = layout_path(&spec.name);
            let path = self.root.join(&rel);
            // As every repo file is read: without following links.
            let bytes = crate::safefs::Anchor::new(&self.root)
                .read(Path::new(&rel))
                .map_err(anyhow::Error::from)
                .and_then(|bytes| bytes.context("it does not exist"))
                .with_context(|| {
                format!(
                    "target `{}` is `node_local`: it backs up and reports on databases whose groups dbctl made, reading each one's layout from `{}`, which cannot be read; create, change and delete `{}` from the repo whose target reaches every node",
                    self.target.name,
                    path.display(),
                    spec.name
                )
            })?;
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("`{}` is not a layout dbctl wrote", path.display()));
        }
        let dir = self.mountpoint(spec);
        let script = self
            .cloud
            .render_operation(spec, "create")?
            .into_iter()
            .find(|a| a.path.ends_with(".pcs.sh"))
            .context("playbooks/pacemaker/create.yml renders no `.pcs.sh` artifact")?;
        let (data_dir, run_dir) = engine_dirs(spec, &dir);
        Ok(Layout {
            groups: vec![format!("db-{}", spec.name)],
            engine_resource: format!("db-{}-engine", spec.name),
            data_dir,
            run_dir,
            log_dir: dir.join("log"),
            host: self.target.cloud.vip.clone().unwrap_or_default(),
            listen: self.target.ssh.listen.clone().unwrap_or_else(|| "*".into()),
            script,
            prepare_before_push: Some("pacemaker/image.yml".into()),
            grow: Some("pacemaker/grow.yml".into()),
            prepare_mounted: Some(format!("pacemaker/{}/prepare.yml", spec.engine)),
            bootstrap: format!("pacemaker/{}/bootstrap.yml", spec.engine),
            vars: BTreeMap::from([
                ("daemonize".to_owned(), "no".to_owned()),
                ("mountpoint".to_owned(), dir.to_string_lossy().into_owned()),
                ("fs_resource".to_owned(), format!("db-{}-fs", spec.name)),
                (
                    "device".to_owned(),
                    self.device(spec).to_string_lossy().into_owned(),
                ),
            ]),
            dir,
        })
    }

    /// A `node_local` target only backs up and reports: what creates, changes or
    /// deletes groups runs where every node is reached.
    ///
    /// # Errors
    /// Always on a `node_local` target, naming what is allowed.
    fn refuse_node_local(&self, spec: &Spec) -> Result<()> {
        if self.target.cloud.node_local {
            bail!(
                "target `{}` is `node_local` (dbctl on one cluster node, as `{}`'s scheduled backups run): it backs up and reports status only; create, change, restore and delete `{}` from the repo whose target reaches every node",
                self.target.name,
                spec.name,
                spec.name
            );
        }
        Ok(())
    }

    fn deployment(&self, layout: Layout) -> Result<Deployment<'_>> {
        Ok(Deployment {
            target: &self.target,
            root: &self.root,
            config: &self.config,
            catalog: &self.catalog,
            assets: &self.assets,
            renderer: &self.renderer,
            cluster: self.cluster()?.clone(),
            layout,
        })
    }
}

/// Engines dbctl has pacemaker templates and playbooks for.
pub const ENGINES: [EngineKind; 3] = [
    EngineKind::Postgresql,
    EngineKind::Mariadb,
    EngineKind::Redis,
];

/// The engine driver for a database run by pacemaker, when dbctl has its templates.
///
/// # Errors
/// Engines without pacemaker templates.
pub fn check_engine(spec: &Spec, platform: &str) -> Result<Box<dyn Engine>> {
    if !ENGINES.contains(&spec.engine) {
        bail!(
            "engine `{}` cannot run on platform `{platform}` with pacemaker yet: dbctl has pacemaker templates for {}",
            spec.engine,
            ENGINES.map(EngineKind::as_str).join(", ")
        );
    }
    Ok(engine::for_host(spec.engine, "pacemaker")?)
}

/// The engine's data directory inside the group's filesystem mounted at `dir`, and its
/// node-local run directory (socket, pid file), as `pacemaker/<engine>/engine.j2` and
/// `openstack/pacemaker/engine.j2` configure them.
pub fn engine_dirs(spec: &Spec, dir: &Path) -> (PathBuf, PathBuf) {
    match spec.engine {
        EngineKind::Mariadb => (
            dir.join("mysql"),
            PathBuf::from(format!("/run/mysqld-{}", spec.name)),
        ),
        // The socket moves with the filesystem: redis-server exits when it cannot
        // create it.
        EngineKind::Redis => (dir.join("data"), dir.join("run")),
        _ => (dir.join("pgdata"), PathBuf::from("/run/postgresql")),
    }
}

impl Pacemaker {
    /// Stops and removes the groups, the disk image and the mountpoints.
    fn remove(&self, spec: &Spec, progress: Progress<'_>) -> Result<()> {
        let layout = self.layout(spec)?;
        progress(
            1,
            2,
            &format!(
                "Stop and remove resource group {}",
                layout.groups.join(", ")
            ),
        );
        let deployment = self.deployment(layout)?;
        // Its scheduled backups stop first.
        deployment.stop_schedule(spec)?;
        let cluster = &deployment.cluster;
        let layout = &deployment.layout;
        cluster.remove_groups(&layout.groups)?;
        progress(2, 2, "Remove the disk image and mountpoints");
        cluster.first().ssh.remove_all(&self.device(spec))?;
        for node in cluster.nodes() {
            node.ssh.remove_all(&layout.dir)?;
        }
        Ok(())
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
            .locate(self.cluster().ok()?.first().ssh.as_ref(), None, &known)
            .ok()
            .map(|l| l.version)
    }

    fn capabilities(&self, _spec: &Spec) -> Capabilities {
        // Parameters, plan and networks change in the running group, its disk image
        // grows (online where the node may resize a mounted ext4, else with the
        // group's filesystem stopped: planned as the worse), and backups stream from
        // the node running it; a minor upgrade restarts the engine member on the newer
        // binaries. Major upgrades are not built for groups.
        // Scheduled backups are a timer on every node running dbctl's copy where the
        // groups run.
        Capabilities {
            configure: true,
            backup: true,
            schedule_backups: true,
            minor_upgrade: true,
            grow: Some(Disruption::Restart),
            ..Capabilities::default()
        }
    }

    fn artifact_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>> {
        self.layout(spec)?.digests(&self.assets, &self.renderer)
    }

    fn wal_archive(&self, spec: &Spec) -> Option<String> {
        super::agent::wal_archive(&self.config, spec)
    }

    fn observe(&self, spec: &Spec) -> Result<Observed> {
        let engine = self.check_engine(spec)?;
        let layout = self.layout(spec)?;
        self.deployment(layout)?.observe(spec, engine.as_ref())
    }

    fn preflight(&self, req: &Request<'_>) -> Result<()> {
        self.refuse_node_local(req.spec)?;
        if req.deletes() {
            return Ok(());
        }
        let engine = self.check_engine(req.spec)?;
        let cluster = self.cluster()?;
        check_nodes(cluster, &self.catalog, engine.as_ref(), req.spec)?;
        // The store PostgreSQL archives WAL into takes it from the server's user.
        super::agent::check_store(
            cluster.first().ssh.as_ref(),
            (&self.config, &self.root),
            req.spec,
            self.catalog
                .engine(req.spec.engine)
                .map(|e| e.service_user.as_str()),
        )?;
        super::agent::check_schedule(
            &self.config,
            &self.root,
            req.spec,
            &format!("the nodes of target `{}`", self.target.name),
        )?;
        let layout = self.layout(req.spec)?;
        // One VIP a target: a second database's group would bring the same address up
        // on whichever node runs it, and stopping either group would take it from the
        // other.
        if let Some(vip) = &self.target.cloud.vip
            && !cluster.group_exists(&layout.groups[0])?
            && let Some(other) = cluster.groups_with_ip(vip)?.first()
        {
            bail!(
                "target `{}` cannot run `{}` too: its VIP {vip} belongs to resource group `{other}` (another database), and a pacemaker target runs one database behind its `vip`; add a target with its own `vip` to etc/dbctl.yml (a restore drill can run elsewhere with `--target`)",
                self.target.name,
                req.spec.name
            );
        }
        Ok(())
    }

    fn apply(&self, req: &Request<'_>) -> Result<Response> {
        self.refuse_node_local(req.spec)?;
        if req.deletes() {
            self.remove(req.spec, req.progress)?;
            return Ok(Response::default());
        }
        let engine = self.check_engine(req.spec)?;
        let deployment = self.deployment(self.layout(req.spec)?)?;
        if let Some(source) = req.restore {
            return deployment.restore(req, engine.as_ref(), source);
        }
        if !req.creates() && req.change("size_gb").is_some() {
            deployment.grow(req, engine.as_ref())?;
        }
        // A running group whose configuration changes is updated in place; anything
        // else (new, down, groups gone) goes through create, which converges.
        if !req.creates()
            && req.change("state").is_none()
            && engine_disruption(req) > Disruption::None
        {
            return deployment.update(req, engine.as_ref());
        }
        deployment.create(req, engine.as_ref(), 1, 3)
    }

    fn lease(
        &self,
        spec: &Spec,
        holder: &super::LeaseHolder,
        wait: std::time::Duration,
    ) -> Result<Option<super::Lease<'_>>> {
        // On the cluster's first node, beside the mountpoints: every runner reaches it.
        super::lease::take(
            self.cluster()?.clone().into_first(),
            &lease_dir(&self.target),
            &spec.name,
            holder,
            wait,
        )
        .map(Some)
    }

    fn admin(&self, spec: &Spec) -> Result<Box<dyn Admin + '_>> {
        let engine = self.check_engine(spec)?;
        let deployment = self.deployment(self.layout(spec)?)?;
        Ok(Box::new(deployment.admin(spec, engine)?))
    }

    fn render(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        self.check_engine(spec)?;
        self.cloud.render_operation(spec, "create")
    }

    fn describe(&self, spec: &Spec) -> Result<serde_json::Value> {
        self.cloud.describe(spec)
    }
}

/// The engine's binaries for `spec`'s version on a node: the catalog's `bin_dirs`
/// directory when it names one (as the group's engine template does), else the
/// distro's paths.
///
/// # Errors
/// The binaries are not installed there, naming what is missing.
pub fn locate(
    catalog: &Catalog,
    t: &dyn Transport,
    spec: &Spec,
    engine: &dyn Engine,
) -> Result<crate::engine::Located> {
    Ok(match catalog.bin_dir(spec.engine, &spec.version) {
        Some(dir) => engine.locate_in(t, &spec.version, dir)?,
        None => engine.locate(t, Some(&spec.version), &[])?,
    })
}

/// Checks every node has the engine's binaries and `pcs`.
///
/// # Errors
/// What is missing, naming the host and node.
pub fn check_nodes(
    cluster: &Cluster,
    catalog: &Catalog,
    engine: &dyn Engine,
    spec: &Spec,
) -> Result<()> {
    for node in cluster.nodes() {
        locate(catalog, node.ssh.as_ref(), spec, engine)?;
        if node.ssh.find_program(&["pcs".into()]).is_none() {
            bail!(
                "`pcs` is not installed on {} (node {})",
                node.ssh.host(),
                node.name
            );
        }
    }
    Ok(())
}

/// Cluster logic against the recording transport double: no cluster, no root.
#[cfg(test)]
mod double_tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::transport::recording::Recording;

    /// `crm_mon --output-as=xml` (pacemaker 2.1) with the group `db-a` whose two members
    /// run where `placement` says (`None`: stopped).
    fn crm_mon(placement: [Option<&str>; 2]) -> String {
        let member = |id: &str, node: Option<&str>| match node {
            Some(n) => format!(
                r#"<resource id="{id}" resource_agent="ocf:heartbeat:X" role="Started" active="true" orphaned="false" blocked="false" managed="true" failed="false" failure_ignored="false" nodes_running_on="1"><node name="{n}" id="1" cached="true"/></resource>"#
            ),
            None => format!(
                r#"<resource id="{id}" resource_agent="ocf:heartbeat:X" role="Stopped" active="false" orphaned="false" blocked="false" managed="true" failed="false" failure_ignored="false" nodes_running_on="0"/>"#
            ),
        };
        format!(
            r#"<pacemaker-result api-version="2.30" request="crm_mon --output-as=xml"><nodes><node name="n1" id="1" online="true"/><node name="n2" id="2" online="true"/><node name="n3" id="3" online="false"/></nodes><resources><group id="db-a" number_resources="2">{}{}</group><group id="db-other" number_resources="1">{}</group></resources><status code="0" message="OK"/></pacemaker-result>"#,
            member("db-a-fs", placement[0]),
            member("db-a-pg", placement[1]),
            member("db-other-pg", Some("n1")),
        )
    }

    fn cluster(timeout: Duration) -> (Cluster, Arc<Recording>) {
        let double = Arc::new(Recording::new());
        let node = Node {
            name: "n1".into(),
            ssh: double.clone(),
        };
        (Cluster::of_nodes("ha", vec![node], Some(timeout)), double)
    }

    #[test]
    fn the_view_reads_crm_mon_for_the_databases_groups_only() {
        let view =
            ClusterView::parse(&crm_mon([Some("n2"), Some("n2")]), &["db-a".into()]).unwrap();
        assert_eq!(view.active_node.as_deref(), Some("n2"));
        assert_eq!(view.online_nodes, ["n1", "n2"]);
        assert_eq!(
            view.resources.keys().collect::<Vec<_>>(),
            ["db-a-fs", "db-a-pg"],
            "another database's group is not ours"
        );
        // Split over two nodes (a failover half done): no active node.
        let split =
            ClusterView::parse(&crm_mon([Some("n1"), Some("n2")]), &["db-a".into()]).unwrap();
        assert_eq!(split.active_node, None);
        assert!(ClusterView::parse("not xml", &[]).is_err());
    }

    #[test]
    fn wait_started_polls_until_the_group_runs_on_one_node() {
        let (cluster, double) = cluster(Duration::from_secs(20));
        double.answer("crm_mon", 0, &crm_mon([None, None]));
        let later = Arc::clone(&double);
        let starter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            later.answer("crm_mon", 0, &crm_mon([Some("n2"), Some("n2")]));
        });
        let view = cluster.wait_started(&["db-a".into()]).unwrap();
        starter.join().unwrap();
        assert_eq!(view.active_node.as_deref(), Some("n2"));
        let polls = double
            .commands()
            .iter()
            .filter(|c| c.contains("crm_mon"))
            .count();
        assert!(polls >= 2, "polled {polls} times");
    }

    #[test]
    fn wait_started_gives_up_at_the_timeout_naming_each_members_state() {
        let (cluster, double) = cluster(Duration::from_secs(1));
        double.answer("crm_mon", 0, &crm_mon([Some("n1"), None]));
        let started = Instant::now();
        let err = cluster
            .wait_started(&["db-a".into()])
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            err.contains("within 1 s")
                && err.contains("target `ha`")
                && err.contains("db-a-fs: Started")
                && err.contains("db-a-pg: Stopped")
                && err.contains("--timeout"),
            "{err}"
        );
    }

    #[test]
    fn the_vip_is_found_in_every_group_that_carries_it() {
        let (cluster, double) = cluster(Duration::from_secs(1));
        let ip = |group: &str, ip: &str| {
            format!(
                r#"<group id="{group}"><primitive id="{group}-ip" class="ocf" provider="heartbeat" type="IPaddr2"><instance_attributes id="{group}-ip-ia"><nvpair id="{group}-ip-ip" name="ip" value="{ip}"/></instance_attributes></primitive></group>"#
            )
        };
        double.answer(
            "cibadmin",
            0,
            &format!(
                "<resources>{}{}{}</resources>",
                ip("db-a", "10.0.0.5"),
                ip("db-b", "10.0.0.6"),
                ip("db-c", "10.0.0.5")
            ),
        );
        assert_eq!(
            cluster.groups_with_ip("10.0.0.5").unwrap(),
            ["db-a", "db-c"]
        );
        assert!(cluster.groups_with_ip("10.0.0.9").unwrap().is_empty());
        double.answer("cibadmin", 1, "");
        let err = cluster.groups_with_ip("10.0.0.5").unwrap_err().to_string();
        assert!(err.contains("target `ha`"), "{err}");
    }
}
