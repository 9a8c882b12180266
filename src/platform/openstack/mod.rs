//! The `openstack` platform, the ancestor's design: three Heat stacks per database
//! (floating IP; data volume and backup container; nodes) through the Heat API with a
//! Keystone v3 token from the target's openrc file, then the database's pacemaker
//! resource groups pushed to the nodes the cluster stack reports (over SSH, as the
//! `pacemaker` platform does), with Heat's outputs (VIP, volume and floating IP ids)
//! in the rendered groups.
//!
//! `runtime: pacemaker` runs the engine as a member of the group: dbctl creates it
//! disabled, prepares its data directory on the node that mounted the storage,
//! enables it and bootstraps users. `runtime: nomad` (the default, the ancestor's
//! design) puts docker and the Nomad agent in the group instead, and the engine runs
//! as the database's Nomad jobs, registered through the control plane's Nomad API
//! ([`super::nomad::Nomad`], reached as the Nomad CLI is: `NOMAD_ADDR`, `NOMAD_TOKEN`,
//! …). The nodes' agents carry the database's name as client meta and its data
//! directory as a host volume (the cluster stack's cloud-config), so the service job
//! runs where the group mounted the storage; clients reach it at the VIP (or floating
//! IP) that moves with the group.

pub mod heat;
pub mod keystone;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use self::heat::{Heat, Stack, StackRequest};
use self::keystone::{Credentials, Session};
use super::cloud::{Cloud, Names};
use super::nomad::Nomad;
use super::pacemaker::{self, Cluster, Deployment, Layout};
use super::{
    Admin, Artifact, Capabilities, Disruption, Observed, Options, Progress, Request, Response,
    State,
};
use crate::assets::Assets;
use crate::catalog::{Catalog, EngineKind};
use crate::gitops::Repo;
use crate::render::Renderer;
use crate::spec::{PlatformKind, Spec, Target};

/// Prefix of the Heat stacks among a database's artifact digests (`heat/db-<name>-ip`):
/// planned as `~ artifact.heat/<stack>` when what dbctl would send differs from the
/// digest the stack is tagged with.
const HEAT_ARTIFACT: &str = "heat/";

/// `runtime: nomad`: the key of the groups' pcs script among the digests recorded in
/// the service job's `Meta`.
const GROUPS_ARTIFACT: &str = "pacemaker/resource-group";

/// Errors of the OpenStack APIs. Messages name the service, the URL and what the API
/// said; never a password or token.
#[derive(Debug, thiserror::Error)]
pub enum OpenstackError {
    /// The openrc file is unreadable or incomplete.
    #[error("openrc file `{path}`: {message}")]
    Openrc {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The service could not be reached.
    #[error("{service} at {url} is unreachable: {message}")]
    Unreachable {
        /// `Keystone` or `Heat`.
        service: &'static str,
        /// The URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The API answered with an error status.
    #[error("{service} refused {method} {url} ({status}): {message}")]
    Api {
        /// `Keystone` or `Heat`.
        service: &'static str,
        /// HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The API's error message.
        message: String,
    },
    /// The API answered with something unexpected.
    #[error("{service}: {message}")]
    Protocol {
        /// `Keystone` or `Heat`.
        service: &'static str,
        /// What was unexpected.
        message: String,
    },
    /// Another operation runs on the stack.
    #[error("Heat stack `{stack}` is busy ({status}); wait for it to finish and re-run")]
    Busy {
        /// The stack.
        stack: String,
        /// Its status.
        status: String,
    },
    /// A stack operation failed.
    #[error("Heat stack `{stack}` is {status}: {reason}")]
    StackFailed {
        /// The stack.
        stack: String,
        /// Its status (`CREATE_FAILED`, …).
        status: String,
        /// Heat's reason.
        reason: String,
    },
    /// A stack operation did not finish in time.
    #[error("Heat stack `{stack}` is still {status} after {seconds} s")]
    StackTimeout {
        /// The stack.
        stack: String,
        /// Its status.
        status: String,
        /// How long dbctl waited.
        seconds: u64,
    },
}

impl OpenstackError {
    fn http(service: &'static str, url: &str, err: &reqwest::Error) -> Self {
        Self::Unreachable {
            service,
            url: url.to_owned(),
            message: std::iter::successors(Some(err as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": "),
        }
    }
}

/// The message of an OpenStack error body (`{"error": {"message": …}}`, Heat's
/// `{"error": {"message", "type"}, "explanation"}`), else the body's first line.
fn api_message(body: &str) -> String {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let from_json = json.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.pointer("/explanation"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    });
    from_json.unwrap_or_else(|| body.lines().next().unwrap_or_default().trim().to_owned())
}

/// What the three stacks report, once complete.
#[derive(Debug, Clone, Default)]
struct Outputs {
    /// Private addresses of the nodes.
    node_ips: Vec<String>,
    /// The VIP pacemaker moves.
    vip: Option<String>,
    /// The public address, when the cloud gave one.
    floating_ip: Option<String>,
    /// Template variables: `vip`, `volume_id`, `floating_ip_id`.
    vars: BTreeMap<String, String>,
}

impl Outputs {
    /// Where clients connect: the floating IP when the cloud gave one, else the VIP.
    fn client_address(&self) -> Option<String> {
        self.floating_ip.clone().or_else(|| self.vip.clone())
    }

    fn read(names: &Names, stacks: &BTreeMap<String, Stack>) -> Self {
        let text = |stack: &str, key: &str| {
            stacks
                .get(stack)
                .and_then(|s| s.output(key))
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
        };
        let node_ips = stacks
            .get(&names.cluster_stack)
            .and_then(|s| s.output("node_ips"))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut vars = BTreeMap::new();
        for (key, stack, output) in [
            ("vip", &names.cluster_stack, "vip"),
            ("volume_id", &names.data_stack, "volume_id"),
            ("floating_ip_id", &names.ip_stack, "floating_ip_id"),
        ] {
            if let Some(value) = text(stack, output) {
                vars.insert(key.to_owned(), value);
            }
        }
        Self {
            node_ips,
            vip: text(&names.cluster_stack, "vip"),
            floating_ip: text(&names.ip_stack, "floating_ip").filter(|s| !s.is_empty()),
            vars,
        }
    }
}

/// What [`Openstack::apply_control_plane`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControlPlaneApplied {
    /// Stack name → `created`, `updated` or `unchanged`.
    pub stacks: BTreeMap<String, String>,
    /// `hosts.ini` with the stacks' addresses.
    pub inventory: String,
}

/// `line` with each `stack-output:<stack>/<output>[/<index>]` replaced by the output's
/// value (an index picks from a list); `None` when a stack named does not exist.
///
/// # Errors
/// A stack without the output, or an index past its end.
fn resolve_outputs(
    line: &str,
    stack: &mut dyn FnMut(&str) -> Result<Option<Stack>>,
) -> Result<Option<String>> {
    const MARK: &str = "stack-output:";
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + MARK.len()..];
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let reference = &tail[..end];
        let mut parts = reference.splitn(3, '/');
        let (Some(name), Some(key)) = (parts.next(), parts.next()) else {
            bail!("`{MARK}{reference}` names no stack and output");
        };
        let Some(found) = stack(name)? else {
            return Ok(None);
        };
        let value = found.output(key).with_context(|| {
            format!("Heat stack `{name}` has no output `{key}` (the inventory names it)")
        })?;
        let value = match parts.next() {
            Some(index) => {
                let i: usize = index
                    .parse()
                    .with_context(|| format!("`{MARK}{reference}`: `{index}` is not an index"))?;
                value.get(i).cloned().with_context(|| {
                    format!("Heat stack `{name}` output `{key}` has no item {i}")
                })?
            }
            None => value.clone(),
        };
        match value {
            serde_json::Value::String(text) => out.push_str(&text),
            other => out.push_str(&other.to_string()),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// The openstack platform bound to one target.
pub struct Openstack {
    root: PathBuf,
    target: Target,
    catalog: Catalog,
    assets: Assets,
    renderer: Renderer,
    cloud: Cloud,
    config: crate::spec::Config,
    options: Options,
    session: std::sync::OnceLock<Session>,
    /// `runtime: nomad`: the Nomad API the jobs go to, or why the environment does
    /// not say how to reach it (reported when first needed); `None` for
    /// `runtime: pacemaker`.
    nomad: Option<std::result::Result<Nomad, String>>,
}

impl Openstack {
    /// Binds `target` of `repo`; connects to nothing yet.
    pub fn new(repo: &Repo, target: &Target, options: &Options) -> Self {
        Self {
            root: repo.root().to_owned(),
            target: target.clone(),
            catalog: repo.catalog.clone(),
            assets: repo.assets.clone(),
            renderer: Renderer::new(&repo.assets),
            cloud: Cloud::new(repo, target),
            config: repo.config.clone(),
            options: options.clone(),
            session: std::sync::OnceLock::new(),
            nomad: (target.cloud.runtime == "nomad")
                .then(|| Nomad::new(repo, target, options).map_err(|e| format!("{e:#}"))),
        }
    }

    /// The Nomad API of a `runtime: nomad` target; `None` for `runtime: pacemaker`.
    ///
    /// # Errors
    /// `NOMAD_ADDR` or `NOMAD_CACERT` are not usable.
    fn nomad(&self) -> Result<Option<&Nomad>> {
        match &self.nomad {
            None => Ok(None),
            Some(Ok(nomad)) => Ok(Some(nomad)),
            Some(Err(message)) => bail!(
                "target `{}` (`runtime: nomad`) registers its jobs with Nomad: {message}",
                self.target.name
            ),
        }
    }

    fn repo_path(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// Creates or updates the target's control plane — the network and masters Heat
    /// stacks that `playbooks/openstack/control-plane.yml` renders, with the target's
    /// Heat environment — waits for each (`--timeout`), and returns the inventory
    /// (`hosts.ini`) with every `stack-output:<stack>/<output>/<index>` placeholder
    /// replaced by that stack's output: the masters' addresses, and the nodes of each
    /// database in `specs` whose cluster stack exists (a database not created yet
    /// keeps its placeholder, commented).
    ///
    /// # Errors
    /// Keystone or Heat refusing, a stack failing (Heat's reason), or an output the
    /// inventory names that the stack lacks.
    pub fn apply_control_plane(
        &self,
        specs: &[Spec],
        progress: super::Progress<'_>,
    ) -> Result<ControlPlaneApplied> {
        let artifacts = self.cloud.render_control_plane(specs)?;
        let (environment, files) = self.environment()?;
        let heat = Heat::new(self.session()?, self.options.timeout);
        let stacks: Vec<_> = artifacts
            .iter()
            .filter(|a| a.path.contains("/heat/"))
            .collect();
        let total = stacks.len() + 1;
        let mut applied = BTreeMap::new();
        let mut outputs: BTreeMap<String, Stack> = BTreeMap::new();
        for (i, artifact) in stacks.iter().enumerate() {
            let name = Path::new(&artifact.path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            progress(i + 1, total, &format!("Heat stack `{name}`"));
            let request = StackRequest {
                name: name.clone(),
                template: artifact.content.clone(),
                environment: environment.clone(),
                files: files.clone(),
            };
            let how = heat.apply(&request)?;
            let stack = heat.wait(&name)?.with_context(|| {
                format!("Heat stack `{name}` vanished while dbctl waited for it")
            })?;
            applied.insert(name.clone(), format!("{how:?}").to_lowercase());
            outputs.insert(name, stack);
        }
        progress(total, total, "Write the inventory");
        let template = artifacts
            .iter()
            .find(|a| a.path.ends_with("hosts.ini"))
            .context("playbooks/openstack/control-plane.yml renders no hosts.ini")?;
        let mut inventory = String::new();
        for line in template.content.lines() {
            let resolved = resolve_outputs(line, &mut |stack| {
                if !outputs.contains_key(stack)
                    && let Some(found) = heat.get(stack)?
                {
                    outputs.insert(stack.to_owned(), found);
                }
                Ok(outputs.get(stack).cloned())
            })?;
            if let Some(resolved) = resolved {
                inventory.push_str(&resolved);
            } else {
                inventory.push_str("# not created yet: ");
                inventory.push_str(line);
            }
            inventory.push('\n');
        }
        Ok(ControlPlaneApplied {
            stacks: applied,
            inventory,
        })
    }

    fn read_repo_text(&self, path: &Path) -> Result<String> {
        read_repo_text(&self.root, path)
    }

    /// `targets.<name>.<key>` in etc/dbctl.yml, for messages.
    fn key(&self, key: &str) -> String {
        format!("`targets.{}.{key}` in etc/dbctl.yml", self.target.name)
    }

    fn credentials(&self) -> Result<Credentials> {
        credentials(&self.root, &self.target)
    }

    /// The Keystone session, authenticated once per run (preflight, then create).
    fn session(&self) -> Result<&Session> {
        if let Some(session) = self.session.get() {
            return Ok(session);
        }
        let creds = self.credentials()?;
        let session = Session::authenticate(&creds)
            .with_context(|| format!("authenticating with `{}`", creds.source.display()))?;
        Ok(self.session.get_or_init(|| session))
    }

    /// The environment's text and the provider templates it names (read relative to
    /// it), as Heat's `environment` and `files`.
    fn environment(&self) -> Result<(String, BTreeMap<String, String>)> {
        let Some(rel) = &self.target.cloud.heat_environment else {
            return Ok((String::new(), BTreeMap::new()));
        };
        let path = self.repo_path(rel);
        let text = self.read_repo_text(&path).with_context(|| {
            format!(
                "{}: cannot read `{}`",
                self.key("heat_environment"),
                path.display()
            )
        })?;
        let doc: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: `{}` is not valid YAML: {}",
                self.key("heat_environment"),
                path.display(),
                crate::spec::parse_message(&e)
            )
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut files = BTreeMap::new();
        let mut pending = vec![doc.get("resource_registry").cloned().unwrap_or_default()];
        while let Some(node) = pending.pop() {
            let Some(map) = node.as_object() else {
                continue;
            };
            for value in map.values() {
                match value {
                    serde_json::Value::String(s)
                        if !s.starts_with("OS::")
                            && [".yaml", ".yml", ".template"]
                                .iter()
                                .any(|e| s.ends_with(e)) =>
                    {
                        let file = dir.join(s);
                        let content = self.read_repo_text(&file).with_context(|| {
                            format!(
                                "{}: `{}` maps a type to `{s}`, which cannot be read at `{}`",
                                self.key("heat_environment"),
                                path.display(),
                                file.display()
                            )
                        })?;
                        files.insert(s.clone(), content);
                    }
                    serde_json::Value::Object(_) => pending.push(value.clone()),
                    _ => {}
                }
            }
        }
        Ok((text, files))
    }

    /// The three stacks of `spec`, in creation order.
    fn stack_requests(&self, spec: &Spec) -> Result<Vec<StackRequest>> {
        let names = Names::new(&spec.name);
        let (environment, files) = self.environment()?;
        let artifacts = self.cloud.render_operation(spec, "create")?;
        [&names.ip_stack, &names.data_stack, &names.cluster_stack]
            .into_iter()
            .map(|stack| {
                let artifact = artifacts
                    .iter()
                    .find(|a| {
                        Path::new(&a.path)
                            .file_stem()
                            .is_some_and(|s| s == stack.as_str())
                    })
                    .with_context(|| {
                        format!("playbooks/openstack/create.yml renders no Heat stack `{stack}`")
                    })?;
                Ok(StackRequest {
                    name: stack.clone(),
                    template: artifact.content.clone(),
                    environment: environment.clone(),
                    files: files.clone(),
                })
            })
            .collect()
    }

    fn read_stacks(&self, heat: &Heat<'_>, spec: &Spec) -> Result<BTreeMap<String, Stack>> {
        let names = Names::new(&spec.name);
        let mut stacks = BTreeMap::new();
        for name in [&names.ip_stack, &names.data_stack, &names.cluster_stack] {
            if let Some(stack) = heat.get(name)? {
                stacks.insert(name.clone(), stack);
            }
        }
        Ok(stacks)
    }

    /// The rendered pcs script `file` (`engine-group.pcs.sh`, `resource-group.pcs.sh`)
    /// with Heat's `outputs` in place of their placeholders.
    fn group_script(&self, spec: &Spec, outputs: &Outputs, file: &str) -> Result<Artifact> {
        let vars: BTreeMap<&str, String> = outputs
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        self.cloud
            .render_operation_with(spec, "create", &vars)?
            .into_iter()
            .find(|a| a.path.ends_with(&format!("/{file}")))
            .with_context(|| format!("playbooks/openstack/create.yml renders no `{file}` artifact"))
    }

    /// A database's groups: `db-<name>-storage`, then `db-<name>-service`.
    fn groups(names: &Names) -> Vec<String> {
        vec![
            format!("{}-storage", names.resource_group),
            format!("{}-service", names.resource_group),
        ]
    }

    fn layout(&self, spec: &Spec, outputs: &Outputs) -> Result<Layout> {
        let names = Names::new(&spec.name);
        let script = self.group_script(spec, outputs, "engine-group.pcs.sh")?;
        let dir = PathBuf::from(&names.mountpoint).join("data");
        let (data_dir, run_dir) = pacemaker::engine_dirs(spec, &dir);
        let (data_pct, wal_pct) = crate::platform::cloud::volume_shares(spec.engine);
        Ok(Layout {
            groups: Self::groups(&names),
            engine_resource: format!("{}-engine", names.resource_group),
            data_dir,
            run_dir,
            log_dir: dir.join("log"),
            listen: self.target.ssh.listen.clone().unwrap_or_else(|| "*".into()),
            host: outputs.client_address().unwrap_or_default(),
            script,
            prepare_before_push: None,
            // Heat has extended the Cinder volume by then (the data stack's size);
            // this grows what `storage.j2` keeps on it (an override of one goes with
            // an override of the other).
            grow: Some("openstack/pacemaker/grow.yml".into()),
            prepare_mounted: Some(format!("pacemaker/{}/prepare.yml", spec.engine)),
            bootstrap: format!("pacemaker/{}/bootstrap.yml", spec.engine),
            vars: BTreeMap::from([
                ("daemonize".to_owned(), "no".to_owned()),
                ("mountpoint".to_owned(), names.mountpoint.clone()),
                ("volume_group".to_owned(), names.volume_group.clone()),
                ("data_pct".to_owned(), data_pct.to_string()),
                ("wal_pct".to_owned(), wal_pct.to_string()),
                (
                    "fs_resource".to_owned(),
                    format!("{}-fs-data", names.resource_group),
                ),
            ]),
            dir,
        })
    }

    /// `runtime: nomad`: the pcs script of the groups that run docker and the Nomad
    /// agent beside the storage and addresses (`resource-group.pcs.sh`), with Heat's
    /// `outputs`, and the groups' names.
    fn nomad_groups(&self, spec: &Spec, outputs: &Outputs) -> Result<(Artifact, Vec<String>)> {
        Ok((
            self.group_script(spec, outputs, "resource-group.pcs.sh")?,
            Self::groups(&Names::new(&spec.name)),
        ))
    }

    fn cluster(&self, outputs: &Outputs, cluster_stack: &str) -> Result<Cluster> {
        if outputs.node_ips.is_empty() {
            bail!(
                "Heat stack `{cluster_stack}` reports no `node_ips`: dbctl reaches the nodes at those addresses"
            );
        }
        Cluster::connect(&self.root, &self.target, &outputs.node_ips, &self.options)
    }

    /// The deployment of `spec`'s running groups: its stacks' outputs name the nodes
    /// and addresses.
    ///
    /// # Errors
    /// Keystone or Heat fail, the nodes cannot be reached.
    fn running(&self, spec: &Spec) -> Result<Deployment<'_>> {
        let (names, outputs) = self.outputs(spec)?;
        let cluster = self.cluster(&outputs, &names.cluster_stack)?;
        let layout = self.layout(spec, &outputs)?;
        Ok(self.deployment(cluster, layout))
    }

    /// What Heat reports of `spec`'s stacks (nodes, addresses), with their names.
    ///
    /// # Errors
    /// Keystone or Heat fail.
    fn outputs(&self, spec: &Spec) -> Result<(Names, Outputs)> {
        let names = Names::new(&spec.name);
        let stacks = self.read_stacks(&Heat::new(self.session()?, self.options.timeout), spec)?;
        let outputs = Outputs::read(&names, &stacks);
        Ok((names, outputs))
    }

    fn deployment(&self, cluster: Cluster, layout: Layout) -> Deployment<'_> {
        Deployment {
            target: &self.target,
            root: &self.root,
            config: &self.config,
            catalog: &self.catalog,
            assets: &self.assets,
            renderer: &self.renderer,
            cluster,
            layout,
        }
    }
}

/// Reads a file of the repo at `root` (an openrc, a Heat environment, a provider
/// template) without following links (see [`crate::safefs`]); `..` is resolved by
/// name, and a path that then leaves the repo is refused.
///
/// # Errors
/// A path outside the repo, a link on the way, a missing file, text that is not UTF-8.
fn read_repo_text(root: &Path, path: &Path) -> Result<String> {
    let mut rel = PathBuf::new();
    let inside = path
        .strip_prefix(root)
        .with_context(|| format!("`{}` is outside the GitOps repo", path.display()))?;
    for part in inside.components() {
        match part {
            std::path::Component::ParentDir if !rel.pop() => {
                anyhow::bail!("`{}` is outside the GitOps repo", path.display());
            }
            std::path::Component::Normal(p) => rel.push(p),
            _ => {}
        }
    }
    let bytes = crate::safefs::Anchor::new(root)
        .read(&rel)?
        .with_context(|| format!("`{}` does not exist", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("`{}` is not UTF-8 text", path.display()))
}

/// Keystone v3 credentials of an openstack `target` of the repo at `root`: its
/// `openrc` file (repo-relative, read without following links and never executed),
/// with what it leaves unset from the environment.
///
/// # Errors
/// No `openrc` on the target, an unreadable file, missing credentials; each names
/// `targets.<t>.openrc`.
pub fn credentials(root: &Path, target: &Target) -> Result<Credentials> {
    let key = format!("`targets.{}.openrc` in etc/dbctl.yml", target.name);
    let openrc = target.cloud.openrc.as_deref().with_context(|| {
        format!(
            "{key} is missing: an openstack target needs the repo-relative path of an openrc file with Keystone v3 credentials (e.g. files/openrc.sh)"
        )
    })?;
    let path = root.join(openrc);
    let text = read_repo_text(root, &path).with_context(|| key.clone())?;
    Credentials::from_openrc_text(&text, &path).with_context(|| key)
}

impl super::Platform for Openstack {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Openstack
    }

    fn preferred_version(&self, _engine: EngineKind) -> Option<String> {
        None
    }

    fn preflight(&self, req: &Request<'_>) -> Result<()> {
        let spec = req.spec;
        if req.deletes() {
            self.session()?;
            if let Some(nomad) = self.nomad()? {
                nomad.check(spec, true)?;
            }
            return Ok(());
        }
        self.stack_requests(spec)?;
        if let Some(nomad) = self.nomad()? {
            self.nomad_groups(spec, &Outputs::default())?;
            nomad.check(spec, false)?;
        } else {
            pacemaker::check_engine(spec, "openstack")?;
            self.layout(spec, &Outputs::default())?;
            super::agent::check_schedule(
                &self.config,
                &self.root,
                spec,
                &format!("the nodes of `{}`", spec.name),
            )?;
        }
        self.session()?;
        Ok(())
    }

    fn capabilities(&self, _spec: &Spec) -> Capabilities {
        // Stacks and groups are made and converged (changed stacks are updated then);
        // a running group's engine is reconfigured in place, backed up, restored and
        // restarted on newer binaries (a minor upgrade) and backed up on a schedule (a
        // timer on the nodes) as on `pacemaker`; a larger
        // `size_gb` extends the Cinder volume through the data stack, then its volume
        // group and filesystems on the node (restart-class, as the stack update is).
        // Major upgrades are not built for groups.
        // With `runtime: nomad` a changed job is a new job version (Nomad replaces the
        // allocation, a restart); backups and growth are the engine-in-group's.
        let groups = self.target.cloud.runtime == "pacemaker";
        if !groups {
            return Capabilities {
                configure: true,
                minor_upgrade: true,
                ..Capabilities::default()
            };
        }
        Capabilities {
            configure: true,
            backup: groups,
            schedule_backups: groups,
            minor_upgrade: groups,
            grow: groups.then_some(Disruption::Restart),
            ..Capabilities::default()
        }
    }

    fn artifact_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>> {
        // The Heat stacks, by the digest each is tagged with when applied: a changed
        // template, environment or provider file is planned as `~ artifact.heat/…`.
        // With `runtime: nomad`, the jobs (`nomad/<job>`) and the groups' pcs script
        // too, as the service job's `Meta` records them.
        let mut digests: BTreeMap<String, String> = self
            .stack_requests(spec)?
            .iter()
            .map(|r| (format!("{HEAT_ARTIFACT}{}", r.name), r.digest()))
            .collect();
        if let Some(nomad) = self.nomad()? {
            digests.extend(nomad.job_digests(spec)?);
            let (script, _) = self.nomad_groups(spec, &Outputs::default())?;
            digests.extend(crate::change::digests([(
                GROUPS_ARTIFACT,
                script.content.as_str(),
            )]));
        }
        Ok(digests)
    }

    fn preview(
        &self,
        spec: &Spec,
        _password: Option<&secrecy::SecretString>,
    ) -> Result<Vec<String>> {
        match self.nomad()? {
            Some(nomad) => nomad.job_diffs(spec, &self.artifact_digests(spec)?),
            None => Ok(Vec::new()),
        }
    }

    fn observe(&self, spec: &Spec) -> Result<Observed> {
        self.look(spec)
    }

    fn wal_archive(&self, spec: &Spec) -> Option<String> {
        // The engine in the groups archives as on `pacemaker`; Nomad's jobs do not.
        (self.target.cloud.runtime == "pacemaker")
            .then(|| super::agent::wal_archive(&self.config, spec))
            .flatten()
    }

    fn apply(&self, req: &Request<'_>) -> Result<Response> {
        if req.deletes() {
            self.remove(req.spec, req.progress)?;
            return Ok(Response::default());
        }
        if let Some(nomad) = self.nomad()? {
            // Stacks, groups and jobs are each applied idempotently: what did not
            // change is left as it is (Heat's unchanged stacks, pcs's empty CIB
            // diff, Nomad's same job version).
            if req.restore.is_some() {
                bail!(
                    "restores of `{}` are not built for `runtime: nomad` (target `{}`): its engine runs as a Nomad job",
                    req.spec.name,
                    self.target.name
                );
            }
            return self.converge_jobs(req, nomad);
        }
        let reconfigure = !req.creates()
            && req.change("state").is_none()
            && req
                .changes
                .iter()
                .any(|c| c.action == super::Action::Update);
        if let Some(source) = req.restore {
            // Stacks and groups first (a new database; the restore converges the
            // groups again, which changes nothing), then the data in the group.
            if req.creates() {
                self.converge(req)?;
            }
            let engine = pacemaker::check_engine(req.spec, "openstack")?;
            return self
                .running(req.spec)?
                .restore(req, engine.as_ref(), source);
        }
        if reconfigure {
            // The stacks exist and the groups run: Heat updates the changed stacks
            // (the groups converge on the nodes it reports), then the engine changes in
            // its group.
            if req.changes.iter().any(|c| {
                c.attribute
                    .starts_with(&format!("artifact.{HEAT_ARTIFACT}"))
            }) {
                self.converge(req)?;
            }
            let engine = pacemaker::check_engine(req.spec, "openstack")?;
            let deployment = self.running(req.spec)?;
            if req.change("size_gb").is_some() {
                // The data stack's volume is larger now (its size is in the template,
                // so its digest changed and Heat updated it above).
                deployment.grow(req, engine.as_ref())?;
            }
            return deployment.update(req, engine.as_ref());
        }
        self.converge(req)
    }

    fn lease(
        &self,
        spec: &Spec,
        holder: &super::LeaseHolder,
        wait: std::time::Duration,
    ) -> Result<Option<super::Lease<'_>>> {
        // On the first node of the database's cluster, as on `pacemaker`: every runner
        // finds it through Heat's outputs. Before Heat made the nodes there is no such
        // place; Heat's unique stack names keep a second create from making another
        // cluster. `delete` removes the node holding it, so it waits for any holder
        // and lets go at once (releasing on a deleted server would wait for SSH's
        // keep-alive to give up).
        let (names, outputs) = self.outputs(spec)?;
        if outputs.node_ips.is_empty() {
            return Ok(None);
        }
        let cluster = self.cluster(&outputs, &names.cluster_stack)?;
        let dir = pacemaker::lease_dir(&self.target);
        let lease = super::lease::take(cluster.into_first(), &dir, &spec.name, holder, wait)?;
        Ok((holder.operation != "delete").then_some(lease))
    }

    fn admin(&self, spec: &Spec) -> Result<Box<dyn Admin + '_>> {
        if let Some(nomad) = self.nomad()? {
            return nomad.sql_admin(spec);
        }
        let engine = pacemaker::check_engine(spec, "openstack")?;
        Ok(Box::new(self.running(spec)?.admin(spec, engine)?))
    }

    fn render(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        self.cloud.render(spec)
    }

    fn describe(&self, spec: &Spec) -> Result<serde_json::Value> {
        self.cloud.describe(spec)
    }
}

impl Openstack {
    /// Applies the Heat stacks, then creates or converges the groups.
    fn converge(&self, req: &Request<'_>) -> Result<Response> {
        let spec = req.spec;
        let engine = pacemaker::check_engine(spec, "openstack")?;
        let (outputs, cluster) = self.apply_stacks(req, 5)?;
        let layout = self.layout(spec, &outputs)?;
        pacemaker::check_nodes(&cluster, &self.catalog, engine.as_ref(), spec)?;
        self.deployment(cluster, layout)
            .create(req, engine.as_ref(), 3, 5)
    }

    /// `runtime: nomad`: applies the Heat stacks, pushes the groups with docker and
    /// the Nomad agent and waits for them to run on one node, then registers the
    /// jobs; clients reach the engine at the floating IP, else the VIP.
    fn converge_jobs(&self, req: &Request<'_>, nomad: &Nomad) -> Result<Response> {
        const STEPS: usize = 9;
        let spec = req.spec;
        req.password()?; // before anything changes
        let (outputs, cluster) = self.apply_stacks(req, STEPS)?;
        let (script, groups) = self.nomad_groups(spec, &outputs)?;
        (req.progress)(
            3,
            STEPS,
            &format!(
                "Push resource groups {} (docker, Nomad agent)",
                groups.join(", ")
            ),
        );
        cluster.push(&script, &groups[0])?;
        (req.progress)(4, STEPS, "Wait for the groups to run on one node");
        let view = cluster.wait_started(&groups)?;
        if let Some(output) = req.output {
            output(&format!(
                "resource groups {} run on {}",
                groups.join(", "),
                view.active_node.as_deref().unwrap_or("?")
            ));
        }
        let mut endpoint = nomad.converge(
            req,
            &super::Platform::artifact_digests(self, spec)?,
            4,
            STEPS,
        )?;
        endpoint.host = outputs.client_address().unwrap_or(endpoint.host);
        Ok(super::endpoint_response(
            spec,
            endpoint,
            PlatformKind::Openstack,
        ))
    }

    /// Steps 1 and 2 of `total`: authenticates, applies the three Heat stacks and
    /// waits for them; returns what they report and the cluster of their nodes.
    fn apply_stacks(&self, req: &Request<'_>, total: usize) -> Result<(Outputs, Cluster)> {
        let spec = req.spec;
        let progress = req.progress;
        let names = Names::new(&spec.name);
        progress(1, total, "Authenticate with Keystone");
        let session = self.session()?;
        let heat = Heat::new(session, self.options.timeout);
        let requests = self.stack_requests(spec)?;
        let stack_names: Vec<_> = requests.iter().map(|r| r.name.as_str()).collect();
        progress(
            2,
            total,
            &format!("Apply Heat stacks {}", stack_names.join(", ")),
        );
        for request in &requests {
            let applied = heat.apply(request)?;
            if let Some(output) = req.output {
                output(&format!("Heat stack {}: {applied}", request.name));
            }
        }
        let mut stacks = BTreeMap::new();
        for request in &requests {
            let stack = heat.wait(&request.name)?.with_context(|| {
                format!(
                    "Heat stack `{}` vanished while dbctl waited for it",
                    request.name
                )
            })?;
            stacks.insert(request.name.clone(), stack);
        }
        let outputs = Outputs::read(&names, &stacks);
        let cluster = self.cluster(&outputs, &names.cluster_stack)?;
        Ok((outputs, cluster))
    }

    /// The stacks, then the groups' view (and the jobs, with `runtime: nomad`).
    fn look(&self, spec: &Spec) -> Result<Observed> {
        let names = Names::new(&spec.name);
        let session = self.session()?;
        let heat = Heat::new(session, self.options.timeout);
        let stacks = self.read_stacks(&heat, spec)?;
        let stack_states: BTreeMap<String, String> = stacks
            .iter()
            .map(|(name, stack)| (name.clone(), stack.stack_status.clone()))
            .collect();
        let mut absent = Observed::absent();
        absent
            .details
            .insert("stacks".into(), serde_json::to_value(&stack_states)?);
        let Some(cluster_stack) = stacks.get(&names.cluster_stack) else {
            return Ok(absent);
        };
        if !cluster_stack.complete() {
            return Ok(Observed {
                state: State::Down,
                detail: Some(format!(
                    "Heat stack `{}` is {}",
                    cluster_stack.stack_name, cluster_stack.stack_status
                )),
                ..absent
            });
        }
        let outputs = Outputs::read(&names, &stacks);
        let cluster = self.cluster(&outputs, &names.cluster_stack)?;
        let mut status = if let Some(nomad) = self.nomad()? {
            self.look_jobs(spec, nomad, &cluster, &outputs)?
        } else {
            let engine = pacemaker::check_engine(spec, "openstack")?;
            let layout = self.layout(spec, &outputs)?;
            self.deployment(cluster, layout)
                .observe(spec, engine.as_ref())?
        };
        status
            .details
            .insert("stacks".into(), serde_json::to_value(&stack_states)?);
        // What Heat was last given is on the stacks (their digest tags), not in the
        // group's record.
        if let Some(applied) = &mut status.applied {
            applied
                .artifact_digests
                .retain(|k, _| !k.starts_with(HEAT_ARTIFACT));
            for (name, stack) in &stacks {
                if let Some(digest) = stack.digest() {
                    applied
                        .artifact_digests
                        .insert(format!("{HEAT_ARTIFACT}{name}"), digest.to_owned());
                }
            }
        }
        Ok(status)
    }

    /// `runtime: nomad`: the jobs as Nomad reports them, with the groups' view under
    /// `cluster`; `Up` only while the groups run on one node, and clients' address
    /// is the floating IP, else the VIP.
    fn look_jobs(
        &self,
        spec: &Spec,
        nomad: &Nomad,
        cluster: &Cluster,
        outputs: &Outputs,
    ) -> Result<Observed> {
        let (_, groups) = self.nomad_groups(spec, outputs)?;
        let view = cluster.view(&groups)?;
        let mut status = nomad.observe_jobs(spec)?;
        if let Some(endpoint) = &mut status.endpoint
            && let Some(address) = outputs.client_address()
        {
            endpoint.host = address;
        }
        if status.state == State::Up && view.active_node.is_none() {
            status.state = State::Down;
            status.detail = Some(format!("{} not running on one node", groups.join(", ")));
        }
        status
            .details
            .insert("cluster".into(), serde_json::to_value(&view)?);
        Ok(status)
    }

    /// Removes the jobs (`runtime: nomad`), the groups, then the stacks.
    fn remove(&self, spec: &Spec, progress: Progress<'_>) -> Result<()> {
        let names = Names::new(&spec.name);
        let nomad = self.nomad()?;
        // The jobs stop before the groups unmount what they run on.
        let (first, total) = if nomad.is_some() { (3, 5) } else { (1, 3) };
        if let Some(nomad) = nomad {
            nomad.purge(spec, progress, 1, total)?;
        }
        progress(first, total, "Authenticate with Keystone");
        let session = self.session()?;
        let heat = Heat::new(session, self.options.timeout);
        let stacks = self.read_stacks(&heat, spec)?;
        let outputs = Outputs::read(&names, &stacks);
        if stacks.contains_key(&names.cluster_stack) && !outputs.node_ips.is_empty() {
            let cluster = self.cluster(&outputs, &names.cluster_stack)?;
            let groups = if nomad.is_some() {
                self.nomad_groups(spec, &outputs)?.1
            } else {
                let deployment = self.deployment(cluster.clone(), self.layout(spec, &outputs)?);
                // Its scheduled backups stop first.
                deployment.stop_schedule(spec)?;
                deployment.layout.groups
            };
            progress(
                first + 1,
                total,
                &format!("Stop and remove resource groups {}", groups.join(", ")),
            );
            cluster.remove_groups(&groups)?;
            for node in cluster.nodes() {
                node.ssh.remove_all(Path::new(&names.mountpoint))?;
            }
        }
        progress(total, total, "Delete the Heat stacks");
        let order = [&names.cluster_stack, &names.data_stack, &names.ip_stack];
        for name in order {
            heat.delete(name)?;
        }
        for name in order {
            heat.wait(name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod control_plane_tests {
    use super::*;

    fn stack(outputs: &serde_json::Value) -> Stack {
        serde_json::from_value(serde_json::json!({
            "id": "1", "stack_name": "s", "stack_status": "CREATE_COMPLETE",
            "outputs": outputs,
        }))
        .unwrap()
    }

    #[test]
    fn inventory_placeholders_take_the_stacks_outputs() {
        let masters = stack(&serde_json::json!([
            {"output_key": "master_ips", "output_value": ["10.0.0.5", "10.0.0.6"]},
            {"output_key": "region", "output_value": "one"}
        ]));
        let mut lookup = |name: &str| -> Result<Option<Stack>> {
            Ok((name == "cp-masters").then(|| masters.clone()))
        };
        assert_eq!(
            resolve_outputs(
                "m-2 ansible_host=stack-output:cp-masters/master_ips/1 r=stack-output:cp-masters/region",
                &mut lookup
            )
            .unwrap()
            .as_deref(),
            Some("m-2 ansible_host=10.0.0.6 r=one")
        );
        // A database whose stack does not exist yet.
        assert_eq!(
            resolve_outputs(
                "n-1 ansible_host=stack-output:db-x-cluster/node_ips/0",
                &mut lookup
            )
            .unwrap(),
            None
        );
        let err = resolve_outputs("x=stack-output:cp-masters/master_ips/7", &mut lookup)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no item 7"), "{err}");
        let err = resolve_outputs("x=stack-output:cp-masters/nope", &mut lookup)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no output `nope`"), "{err}");
        assert_eq!(
            resolve_outputs("[masters]", &mut lookup)
                .unwrap()
                .as_deref(),
            Some("[masters]")
        );
    }
}
