//! Specs (`etc/databases/<name>.yml`) and the GitOps configuration (`etc/dbctl.yml`):
//! raw serde types in [`raw`], validated models here, errors in [`error`].
//!
//! Both files are parsed strictly: unknown keys and wrong types are errors with line
//! and column (from serde-saphyr); rule violations are errors naming the file, line,
//! key and what is allowed.

pub mod error;
pub mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_saphyr::Spanned;

pub use self::error::{Source, SpecError};
use crate::catalog::{Catalog, EngineKind};

/// Terraform providers dbctl renders managed databases for.
pub const TERRAFORM_PROVIDERS: [&str; 3] = ["aws", "google", "digitalocean"];

/// Largest `size_gb` accepted (64 TiB).
pub const MAX_SIZE_GB: u64 = 65_536;

/// A platform: the kind of driver a target uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// This machine, from the distro's binaries.
    Local,
    /// Plain VMs over SSH.
    Ssh,
    /// OpenStack: Heat stacks, pacemaker, Nomad.
    Openstack,
    /// An existing Nomad cluster.
    Nomad,
    /// Kubernetes with database operators.
    Kubernetes,
    /// Other clouds through Terraform.
    Terraform,
    /// An existing pacemaker/corosync cluster reached over SSH: the engine runs as a
    /// pacemaker resource group (filesystem, virtual IP, engine).
    Pacemaker,
}

impl PlatformKind {
    /// Every platform, in the order of DESIGN.md.
    pub const ALL: [Self; 7] = [
        Self::Local,
        Self::Ssh,
        Self::Openstack,
        Self::Nomad,
        Self::Kubernetes,
        Self::Terraform,
        Self::Pacemaker,
    ];

    /// The name used in `etc/dbctl.yml` and under `templates/` and `playbooks/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Ssh => "ssh",
            Self::Openstack => "openstack",
            Self::Nomad => "nomad",
            Self::Kubernetes => "kubernetes",
            Self::Terraform => "terraform",
            Self::Pacemaker => "pacemaker",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated desired state of one database. Serialises to the spec file's YAML.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    /// Database name (`^[a-z][a-z0-9-]{0,62}$`).
    pub name: String,
    /// Engine.
    pub engine: EngineKind,
    /// Engine version from the catalog.
    pub version: String,
    /// Allotted data size in GB (1..=65536).
    pub size_gb: u32,
    /// Plan name from the catalog.
    pub plan: String,
    /// Target name from `etc/dbctl.yml`.
    pub target: String,
    /// Application database (SQL) or database index (redis).
    pub database: String,
    /// Application user.
    pub user: String,
    /// When true, `delete` is refused.
    pub deletion_protection: bool,
    /// Networks allowed to reach the database (CIDR).
    pub allowed_cidrs: Vec<String>,
    /// Engine parameters for the server configuration: allowed names with canonical
    /// values (see [`crate::engine::parameter`]).
    pub parameters: BTreeMap<String, String>,
    /// The spec's own maintenance window (`Sun 02:00-03:00 Europe/Paris`), validated.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "maintenance_yaml"
    )]
    pub maintenance: Option<String>,
    /// `backup:`: the store (checked against `backup_stores`) and the retention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupPolicy>,
}

/// A spec's `backup:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackupPolicy {
    /// The store, a name in `backup_stores`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Which backups to keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::backup::Retention>,
    /// `false`: no continuous WAL archiving (PostgreSQL on `local` archives by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_wal: Option<bool>,
    /// When scheduled backups run (`daily 01:00 Europe/Paris`), validated
    /// ([`crate::backup::schedule::Schedule`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

#[expect(
    clippy::ref_option,
    reason = "serde's `serialize_with` passes the field by reference"
)]
fn maintenance_yaml<S: serde::Serializer>(
    window: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(1))?;
    map.serialize_entry("window", window.as_deref().unwrap_or_default())?;
    map.end()
}

impl Spec {
    /// The spec file's YAML text, with a header comment.
    pub fn to_yaml(&self) -> String {
        let body = serde_saphyr::to_string(self).unwrap_or_default();
        format!(
            "# dbctl database spec; see `dbctl render {}`\n{body}",
            self.name
        )
    }
}

/// One target of `etc/dbctl.yml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Its name (key under `targets`).
    pub name: String,
    /// Its platform.
    pub platform: PlatformKind,
    /// What it is, for people.
    pub description: Option<String>,
    /// `local`: where instance data lives.
    pub state_dir: Option<PathBuf>,
    /// Maintenance window of its databases (`Sun 02:00-03:00 Europe/Paris`).
    pub maintenance: Option<String>,
    /// Backup store of its databases (a name in `backup_stores`).
    pub backup_store: Option<String>,
    /// `local`: the client address for connection files.
    pub address: Option<String>,
    /// `local`: first port to try when allocating one.
    pub first_port: Option<u16>,
    /// Options of the `ssh` platform.
    #[serde(flatten)]
    pub ssh: SshTarget,
    /// Options of the cloud platforms (see [`raw::RawTarget`] for each key's meaning).
    #[serde(flatten)]
    pub cloud: CloudOptions,
}

/// Target keys of the `ssh` platform (see [`raw::RawTarget`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SshTarget {
    /// Hosts.
    pub hosts: Vec<String>,
    /// Login user.
    pub user: Option<String>,
    /// SSH port.
    pub port: Option<u16>,
    /// Private key file.
    pub identity: Option<PathBuf>,
    /// `known_hosts` file.
    pub known_hosts: Option<PathBuf>,
    /// Trust unknown host keys on first use.
    pub accept_new_host_keys: bool,
    /// Listen address of servers.
    pub listen: Option<String>,
    /// Install missing engine packages with apt-get.
    pub install_packages: bool,
}

/// Target keys of the `openstack`, `nomad`, `kubernetes` and `terraform` platforms,
/// with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudOptions {
    /// openrc file, repo-relative.
    pub openrc: Option<String>,
    /// What runs the engine on openstack nodes: `nomad` or `pacemaker`.
    pub runtime: String,
    /// Heat environment file, repo-relative.
    pub heat_environment: Option<String>,
    /// Private network.
    pub network: String,
    /// Subnet of `network`.
    pub subnet: String,
    /// External network for floating IPs.
    pub public_network: String,
    /// VM image.
    pub image: String,
    /// Nova key pair.
    pub key_name: Option<String>,
    /// Nodes (openstack, default 2) or instances (nomad/kubernetes, default 1).
    pub nodes: u32,
    /// Flavor per plan.
    pub flavors: BTreeMap<String, String>,
    /// Control-plane masters (default 3).
    pub masters: u32,
    /// Control-plane subnet CIDR.
    pub cidr: String,
    /// Nomad datacenters.
    pub datacenters: Vec<String>,
    /// Namespace.
    pub namespace: String,
    /// Region.
    pub region: Option<String>,
    /// `host` or `csi`.
    pub volume: String,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Namespaces allowed to reach databases.
    pub allowed_namespaces: Vec<String>,
    /// Backup destination URL.
    pub backup_destination: Option<String>,
    /// Backup endpoint URL.
    pub backup_endpoint: Option<String>,
    /// Backup credentials Secret.
    pub backup_secret: Option<String>,
    /// Backup schedule.
    pub backup_schedule: String,
    /// Terraform provider.
    pub provider: Option<String>,
    /// Terraform backend settings.
    pub backend: BTreeMap<String, String>,
    /// Terraform: the binary to run (`terraform_bin`), else `terraform`/`tofu` on PATH.
    pub terraform_bin: Option<String>,
    /// Google project.
    pub project: Option<String>,
    /// Pacemaker: the database's virtual IP.
    pub vip: Option<String>,
    /// Pacemaker: prefix length of `vip` (default 24).
    pub vip_netmask: u8,
    /// Pacemaker: directory on shared storage, visible on every node, holding one
    /// loop-mounted disk image per database (`<shared_dir>/<name>.img`).
    pub shared_dir: String,
    /// Pacemaker: dbctl runs on a cluster node and reaches only it, without SSH (the
    /// target a resource group's scheduled backups run with; see
    /// [`raw::RawTarget::node_local`]).
    pub node_local: bool,
}

impl CloudOptions {
    /// The options of a target named only by its platform (`render --platform P`).
    pub fn defaults(platform: PlatformKind) -> Self {
        Self {
            openrc: None,
            runtime: "nomad".into(),
            heat_environment: None,
            network: "db-net".into(),
            subnet: "db-subnet".into(),
            public_network: "public".into(),
            image: "debian-12".into(),
            key_name: None,
            nodes: if platform == PlatformKind::Openstack {
                2
            } else {
                1
            },
            flavors: BTreeMap::new(),
            masters: 3,
            cidr: "10.20.0.0/24".into(),
            datacenters: vec!["dc1".into()],
            namespace: "default".into(),
            region: None,
            volume: "host".into(),
            storage_class: None,
            allowed_namespaces: Vec::new(),
            backup_destination: None,
            backup_endpoint: None,
            backup_secret: None,
            backup_schedule: "0 0 2 * * *".into(),
            provider: None,
            backend: BTreeMap::new(),
            terraform_bin: None,
            project: None,
            vip: None,
            vip_netmask: 24,
            shared_dir: "/srv/dbctl-shared".into(),
            node_local: false,
        }
    }
}

impl Target {
    /// A target for `platform` with default options, named after it.
    pub fn for_platform(platform: PlatformKind) -> Self {
        let mut cloud = CloudOptions::defaults(platform);
        if platform == PlatformKind::Pacemaker {
            // A placeholder from RFC 5737's documentation range: a pacemaker target
            // names its real VIP.
            cloud.vip = Some("192.0.2.10".into());
        }
        Self {
            name: platform.as_str().to_owned(),
            platform,
            description: None,
            state_dir: None,
            maintenance: None,
            backup_store: None,
            address: None,
            first_port: None,
            ssh: SshTarget::default(),
            cloud,
        }
    }
}

/// The validated `etc/dbctl.yml`.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `repo_id`, when the file sets one (`[a-z0-9-]`, 8 to 64 characters).
    pub repo_id: Option<String>,
    /// Target for specs naming none.
    pub default_target: String,
    /// Targets by name.
    pub targets: BTreeMap<String, Target>,
    /// age recipients (`age1…`) for connection-file secrets.
    pub recipients: Vec<String>,
    /// Plan for specs naming none.
    pub default_plan: String,
    /// Backup stores by name.
    pub backup_stores: BTreeMap<String, crate::backup::StoreConfig>,
    /// Store for databases whose spec and target name none.
    pub default_backup_store: Option<String>,
}

impl Config {
    /// Parses and validates `etc/dbctl.yml` text; `path` is used in messages.
    ///
    /// # Errors
    /// [`SpecError::Parse`] for YAML or shape errors, [`SpecError::Invalid`] for an unknown
    /// platform, a `default_target` that is not a target, or a malformed recipient.
    pub fn parse(text: &str, path: &Path, catalog: &Catalog) -> Result<Self, SpecError> {
        let raw: raw::RawConfig = serde_saphyr::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_path_buf(),
            message: parse_message(&e),
        })?;
        let mut targets = BTreeMap::new();
        for (name, target) in raw.targets {
            if let Err(message) = check_name(&name) {
                return Err(invalid(
                    file_source(path, &target.platform),
                    &format!("targets.{name}"),
                    format!("target name {message}"),
                ));
            }
            let platform = PlatformKind::parse(&target.platform.value).ok_or_else(|| {
                invalid(
                    file_source(path, &target.platform),
                    &format!("targets.{name}.platform"),
                    format!(
                        "unknown platform `{}`; allowed: {}",
                        target.platform.value,
                        PlatformKind::ALL.map(PlatformKind::as_str).join(", ")
                    ),
                )
            })?;
            let defaults = CloudOptions::defaults(platform);
            let key = |k: &str| format!("targets.{name}.{k}");
            let source = file_source(path, &target.platform);
            if let Some(volume) = &target.volume
                && volume != "host"
                && volume != "csi"
            {
                return Err(invalid(
                    source,
                    &key("volume"),
                    format!("`{volume}` is not allowed; allowed: host, csi"),
                ));
            }
            if let Some(runtime) = &target.runtime
                && runtime != "nomad"
                && runtime != "pacemaker"
            {
                return Err(invalid(
                    source,
                    &key("runtime"),
                    format!("`{runtime}` is not allowed; allowed: nomad, pacemaker"),
                ));
            }
            if let Some(provider) = &target.provider
                && !TERRAFORM_PROVIDERS.contains(&provider.as_str())
            {
                return Err(invalid(
                    source,
                    &key("provider"),
                    format!(
                        "unknown provider `{provider}`; allowed: {}",
                        TERRAFORM_PROVIDERS.join(", ")
                    ),
                ));
            }
            if target.nodes == Some(0) || target.masters == Some(0) {
                return Err(invalid(
                    source,
                    &key("nodes"),
                    "`nodes` and `masters` must be at least 1".into(),
                ));
            }
            if target.node_local
                && (platform != PlatformKind::Pacemaker || !target.hosts.is_empty())
            {
                return Err(invalid(
                    source.clone(),
                    &key("node_local"),
                    "`node_local: true` is for a `pacemaker` target without `hosts` (dbctl on a cluster node, reaching it alone)".into(),
                ));
            }
            if matches!(platform, PlatformKind::Ssh | PlatformKind::Pacemaker)
                && target.hosts.is_empty()
                && !target.node_local
            {
                return Err(invalid(
                    source.clone(),
                    &key("hosts"),
                    format!(
                        "a `{platform}` target needs `hosts`: a list of host names or addresses"
                    ),
                ));
            }
            if platform == PlatformKind::Pacemaker
                && !target.node_local
                && target
                    .vip
                    .as_deref()
                    .is_none_or(|v| v.parse::<std::net::IpAddr>().is_err())
            {
                return Err(invalid(
                    source.clone(),
                    &key("vip"),
                    "a `pacemaker` target needs `vip`: the IP address clients reach the database at".into(),
                ));
            }
            let maintenance = target
                .maintenance
                .map(|m| check_window(path, &key("maintenance.window"), &m.window))
                .transpose()?;
            let cloud = CloudOptions {
                openrc: target.openrc,
                runtime: target.runtime.unwrap_or(defaults.runtime),
                heat_environment: target.heat_environment,
                network: target.network.unwrap_or(defaults.network),
                subnet: target.subnet.unwrap_or(defaults.subnet),
                public_network: target.public_network.unwrap_or(defaults.public_network),
                image: target.image.unwrap_or(defaults.image),
                key_name: target.key_name,
                nodes: target.nodes.unwrap_or(defaults.nodes),
                flavors: target.flavors,
                masters: target.masters.unwrap_or(defaults.masters),
                cidr: target.cidr.unwrap_or(defaults.cidr),
                datacenters: if target.datacenters.is_empty() {
                    defaults.datacenters
                } else {
                    target.datacenters
                },
                namespace: target.namespace.unwrap_or(defaults.namespace),
                region: target.region,
                volume: target.volume.unwrap_or(defaults.volume),
                storage_class: target.storage_class,
                allowed_namespaces: target.allowed_namespaces,
                backup_destination: target.backup_destination,
                backup_endpoint: target.backup_endpoint,
                backup_secret: target.backup_secret,
                backup_schedule: target.backup_schedule.unwrap_or(defaults.backup_schedule),
                provider: target.provider,
                backend: target.backend,
                terraform_bin: target.terraform_bin,
                project: target.project,
                vip: target.vip,
                vip_netmask: target.vip_netmask.unwrap_or(defaults.vip_netmask),
                shared_dir: target.shared_dir.unwrap_or(defaults.shared_dir),
                node_local: target.node_local,
            };
            targets.insert(
                name.clone(),
                Target {
                    name,
                    platform,
                    description: target.description,
                    state_dir: target.state_dir.map(PathBuf::from),
                    maintenance,
                    backup_store: target.backup_store,
                    address: target.address,
                    first_port: target.first_port,
                    ssh: SshTarget {
                        hosts: target.hosts,
                        user: target.user,
                        port: target.port,
                        identity: target.identity.map(PathBuf::from),
                        known_hosts: target.known_hosts.map(PathBuf::from),
                        accept_new_host_keys: target.accept_new_host_keys,
                        listen: target.listen,
                        install_packages: target.install_packages,
                    },
                    cloud,
                },
            );
        }
        if !targets.contains_key(&raw.default_target.value) {
            return Err(invalid(
                file_source(path, &raw.default_target),
                "default_target",
                format!(
                    "`{}` is not a target; allowed: {}",
                    raw.default_target.value,
                    names(targets.keys())
                ),
            ));
        }
        let mut recipients = Vec::new();
        for recipient in raw.secrets.recipients {
            if recipient.value.parse::<age::x25519::Recipient>().is_err() {
                return Err(invalid(
                    file_source(path, &recipient),
                    "secrets.recipients",
                    "not an age recipient; allowed: X25519 recipients `age1…` (see `age-keygen -y`)"
                        .into(),
                ));
            }
            recipients.push(recipient.value);
        }
        let mut backup_stores = BTreeMap::new();
        for (name, store) in raw.backup_stores {
            let key = format!("backup_stores.{name}");
            if let Err(message) = check_name(&name) {
                return Err(invalid(
                    Source::File {
                        path: path.to_path_buf(),
                        line: 0,
                        column: 0,
                    },
                    &key,
                    format!("store name {message}"),
                ));
            }
            let config = crate::backup::StoreConfig::from_raw(&store, &key).map_err(|m| {
                invalid(
                    Source::File {
                        path: path.to_path_buf(),
                        line: 0,
                        column: 0,
                    },
                    &key,
                    m,
                )
            })?;
            backup_stores.insert(name, config);
        }
        let store_names = backup_stores.keys().cloned().collect::<Vec<_>>();
        let unknown_store = |name: &str| {
            format!(
                "unknown backup store `{name}`; allowed: {}",
                if store_names.is_empty() {
                    "none (add one under `backup_stores`)".to_owned()
                } else {
                    store_names.join(", ")
                }
            )
        };
        for target in targets.values() {
            if let Some(store) = &target.backup_store
                && !backup_stores.contains_key(store)
            {
                return Err(invalid(
                    Source::File {
                        path: path.to_path_buf(),
                        line: 0,
                        column: 0,
                    },
                    &format!("targets.{}.backup_store", target.name),
                    unknown_store(store),
                ));
            }
        }
        let default_backup_store = match raw.defaults.backup_store {
            Some(store) if !backup_stores.contains_key(&store.value) => {
                return Err(invalid(
                    file_source(path, &store),
                    "defaults.backup_store",
                    unknown_store(&store.value),
                ));
            }
            other => other.map(|s| s.value),
        };
        let default_plan = match raw.defaults.plan {
            Some(plan) => {
                if catalog.plan(&plan.value).is_none() {
                    return Err(invalid(
                        file_source(path, &plan),
                        "defaults.plan",
                        format!(
                            "unknown plan `{}`; allowed: {}",
                            plan.value,
                            catalog.plan_names().join(", ")
                        ),
                    ));
                }
                plan.value
            }
            None => "small".to_owned(),
        };
        if let Some(spanned) = &raw.repo_id {
            let id = &spanned.value;
            let ok = (8..=64).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(invalid(
                    file_source(path, spanned),
                    "repo_id",
                    format!(
                        "`{}` is not allowed; allowed: 8 to 64 lowercase letters, digits and `-`",
                        id.escape_debug()
                    ),
                ));
            }
        }
        Ok(Self {
            repo_id: raw.repo_id.map(|s| s.value),
            default_target: raw.default_target.value,
            targets,
            recipients,
            default_plan,
            backup_stores,
            default_backup_store,
        })
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.get(name)
    }
}

/// A value on its way into a [`Spec`], with where it came from.
#[derive(Debug, Clone)]
pub struct Given<T> {
    /// The value as given.
    pub value: T,
    /// Its file position or flag.
    pub source: Source,
}

/// Unvalidated spec fields from a file or from flags; [`Draft::validate`] makes a [`Spec`].
#[derive(Debug, Clone)]
pub struct Draft {
    /// Name.
    pub name: Given<String>,
    /// Engine name or alias.
    pub engine: Given<String>,
    /// Version; `None` lets the platform choose (see [`Draft::validate`]).
    pub version: Option<Given<String>>,
    /// Size in GB; `None` takes the plan's default.
    pub size_gb: Option<Given<u64>>,
    /// Plan name.
    pub plan: Option<Given<String>>,
    /// Target name.
    pub target: Option<Given<String>>,
    /// Database name.
    pub database: Option<Given<String>>,
    /// User name.
    pub user: Option<Given<String>>,
    /// Deletion protection.
    pub deletion_protection: bool,
    /// Allowed networks.
    pub allowed_cidrs: Vec<String>,
    /// Engine parameters.
    pub parameters: BTreeMap<String, String>,
    /// Where the parameters came from, for messages.
    pub parameters_source: Source,
    /// Where `allowed_cidrs` came from, for messages.
    pub allowed_cidrs_source: Source,
    /// `maintenance.window`, when given.
    pub maintenance: Option<Given<String>>,
    /// `backup.store`, when given.
    pub backup_store: Option<Given<String>>,
    /// `backup.retention`, when given.
    pub backup_retention: Option<crate::backup::Retention>,
    /// `backup.archive_wal`, when given.
    pub backup_archive_wal: Option<bool>,
    /// `backup.schedule`, when given.
    pub backup_schedule: Option<Given<String>>,
}

impl Draft {
    /// Parses a spec file's text into a draft; `path` is used in messages and must be
    /// `etc/databases/<name>.yml`, whose stem must equal `name`.
    ///
    /// # Errors
    /// [`SpecError::Parse`] for YAML and shape errors (unknown key, wrong type, missing key),
    /// [`SpecError::Invalid`] when `name` differs from the file name.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SpecError> {
        let mut raw: raw::RawSpec = serde_saphyr::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_path_buf(),
            message: parse_message(&e),
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if raw.name.value != stem {
            return Err(invalid(
                file_source(path, &raw.name),
                "name",
                format!(
                    "`{}` differs from the file name; a spec for `{}` must be `etc/databases/{}.yml`",
                    raw.name.value, raw.name.value, raw.name.value
                ),
            ));
        }
        let given = |s: Spanned<String>| Given {
            source: file_source(path, &s),
            value: s.value,
        };
        Ok(Self {
            name: given(raw.name),
            engine: given(raw.engine),
            version: Some(given(raw.version)),
            size_gb: Some(Given {
                source: file_source(path, &raw.size_gb),
                value: raw.size_gb.value,
            }),
            plan: raw.plan.map(given),
            target: raw.target.map(given),
            database: raw.database.map(given),
            user: raw.user.map(given),
            deletion_protection: raw.deletion_protection,
            allowed_cidrs: raw.allowed_cidrs,
            maintenance: raw.maintenance.map(|m| given(m.window)),
            backup_retention: raw.backup.as_ref().and_then(|b| b.retention.clone()),
            backup_archive_wal: raw.backup.as_ref().and_then(|b| b.archive_wal),
            backup_schedule: raw
                .backup
                .as_mut()
                .and_then(|b| b.schedule.take())
                .map(given),
            backup_store: raw.backup.and_then(|b| b.store).map(given),
            parameters: raw.parameters,
            parameters_source: Source::File {
                path: path.to_path_buf(),
                line: 0,
                column: 0,
            },
            allowed_cidrs_source: Source::File {
                path: path.to_path_buf(),
                line: 0,
                column: 0,
            },
        })
    }

    /// Validates every field against the catalog and configuration. When no version is
    /// given, `preferred_version(engine, target)` chooses one (the `local` platform
    /// prefers the installed major); `None` from it falls back to the catalog default.
    ///
    /// # Errors
    /// [`SpecError::Invalid`] naming the key or flag and what is allowed.
    pub fn validate(
        self,
        catalog: &Catalog,
        config: &Config,
        preferred_version: &dyn Fn(EngineKind, &Target) -> Option<String>,
    ) -> Result<Spec, SpecError> {
        check_name(&self.name.value)
            .map_err(|m| invalid(self.name.source.clone(), "name", format!("name {m}")))?;
        let engine = catalog.resolve_engine(&self.engine.value).ok_or_else(|| {
            invalid(
                self.engine.source.clone(),
                "engine",
                format!(
                    "unknown engine `{}`; allowed: {}",
                    self.engine.value,
                    catalog.engine_names()
                ),
            )
        })?;
        let entry = catalog.engine(engine).ok_or_else(|| {
            invalid(
                self.engine.source.clone(),
                "engine",
                format!("engine `{engine}` is not in the catalog"),
            )
        })?;
        let target_name = self
            .target
            .as_ref()
            .map_or(config.default_target.clone(), |t| t.value.clone());
        let target = config.target(&target_name).ok_or_else(|| {
            invalid(
                self.target
                    .as_ref()
                    .map_or(Source::Flag("--target"), |t| t.source.clone()),
                "target",
                format!(
                    "unknown target `{target_name}`; allowed: {} (from etc/dbctl.yml)",
                    names(config.targets.keys())
                ),
            )
        })?;
        let version = match &self.version {
            Some(v) => {
                if !entry.versions.contains(&v.value) {
                    return Err(invalid(
                        v.source.clone(),
                        "version",
                        format!(
                            "{engine} version `{}` is not in the catalog; allowed: {}",
                            v.value,
                            entry.versions.join(", ")
                        ),
                    ));
                }
                v.value.clone()
            }
            None => preferred_version(engine, target)
                .filter(|v| entry.versions.contains(v))
                .unwrap_or_else(|| entry.default_version.clone()),
        };
        let plan_name = self
            .plan
            .as_ref()
            .map_or(config.default_plan.clone(), |p| p.value.clone());
        let plan = catalog.plan(&plan_name).ok_or_else(|| {
            invalid(
                self.plan
                    .as_ref()
                    .map_or(Source::Flag("--plan"), |p| p.source.clone()),
                "plan",
                format!(
                    "unknown plan `{plan_name}`; allowed: {}",
                    catalog.plan_names().join(", ")
                ),
            )
        })?;
        let size_gb = match &self.size_gb {
            Some(size) => {
                check_size(size.value).map_err(|m| invalid(size.source.clone(), "size_gb", m))?
            }
            None => plan.size_gb,
        };
        let default_ident = self.name.value.replace('-', "_");
        let database = match &self.database {
            Some(db) if engine == EngineKind::Redis => {
                check_redis_database(&db.value)
                    .map_err(|m| invalid(db.source.clone(), "database", m))?;
                db.value.clone()
            }
            Some(db) => {
                check_identifier(&db.value)
                    .and_then(|()| check_not_system_database(&db.value))
                    .map_err(|m| invalid(db.source.clone(), "database", m))?;
                db.value.clone()
            }
            None if engine == EngineKind::Redis => "0".to_owned(),
            None => {
                // The default comes from the name: `postgres` or `mysql` would hand the
                // engine's own database to the application.
                check_not_system_database(&default_ident).map_err(|m| {
                    invalid(
                        self.name.source.clone(),
                        "database",
                        format!(
                            "{m} (the default from the name); pass `--database` or set `database`"
                        ),
                    )
                })?;
                default_ident.clone()
            }
        };
        let user = if let Some(user) = &self.user {
            check_identifier(&user.value)
                .and_then(|()| check_not_reserved(&user.value))
                .map_err(|m| invalid(user.source.clone(), "user", m))?;
            user.value.clone()
        } else {
            check_not_reserved(&default_ident).map_err(|m| {
                invalid(
                    self.name.source.clone(),
                    "user",
                    format!("{m} (the default from the name); pass `--user` or set `user`"),
                )
            })?;
            default_ident
        };
        for cidr in &self.allowed_cidrs {
            check_cidr(cidr)
                .map_err(|m| invalid(self.allowed_cidrs_source.clone(), "allowed_cidrs", m))?;
        }
        let mut parameters = BTreeMap::new();
        for (key, value) in &self.parameters {
            let (key, value) =
                crate::engine::parameter::validate(engine, key, value).map_err(|m| {
                    invalid(
                        self.parameters_source.clone(),
                        &format!("parameters.{}", key.escape_debug()),
                        m,
                    )
                })?;
            parameters.insert(key, value);
        }
        let maintenance = match &self.maintenance {
            Some(w) => {
                crate::change::window::Window::parse(&w.value)
                    .map_err(|m| invalid(w.source.clone(), "maintenance.window", m))?;
                Some(w.value.clone())
            }
            None => None,
        };
        if let Some(store) = &self.backup_store
            && !config.backup_stores.contains_key(&store.value)
        {
            return Err(invalid(
                store.source.clone(),
                "backup.store",
                format!(
                    "unknown backup store `{}`; allowed: {}",
                    store.value,
                    names(config.backup_stores.keys())
                ),
            ));
        }
        if let Some(schedule) = &self.backup_schedule {
            crate::backup::schedule::Schedule::parse(&schedule.value)
                .map_err(|m| invalid(schedule.source.clone(), "backup.schedule", m))?;
        }
        Ok(Spec {
            maintenance,
            backup: (self.backup_store.is_some()
                || self.backup_retention.is_some()
                || self.backup_archive_wal.is_some()
                || self.backup_schedule.is_some())
            .then(|| BackupPolicy {
                store: self.backup_store.map(|s| s.value),
                retention: self.backup_retention,
                archive_wal: self.backup_archive_wal,
                schedule: self.backup_schedule.map(|s| s.value),
            }),
            name: self.name.value,
            engine,
            version,
            size_gb,
            plan: plan_name,
            target: target_name,
            database,
            user,
            deletion_protection: self.deletion_protection,
            allowed_cidrs: self.allowed_cidrs,
            parameters,
        })
    }
}

/// The parser's reason with line and column, without the excerpt of the file it adds
/// (an error message never echoes a file's content; the position says where to look).
pub(crate) fn parse_message(err: &serde_saphyr::Error) -> String {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

fn check_window(path: &Path, key: &str, window: &Spanned<String>) -> Result<String, SpecError> {
    crate::change::window::Window::parse(&window.value)
        .map(|_| window.value.clone())
        .map_err(|m| invalid(file_source(path, window), key, m))
}

fn invalid(source_at: Source, key: &str, message: String) -> SpecError {
    SpecError::Invalid {
        source_at,
        key: key.to_owned(),
        message,
    }
}

fn file_source<T>(path: &Path, spanned: &Spanned<T>) -> Source {
    Source::File {
        path: path.to_path_buf(),
        line: spanned.referenced.line(),
        column: spanned.referenced.column(),
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let all: Vec<_> = keys.map(|k| format!("`{k}`")).collect();
    if all.is_empty() {
        "none defined".to_owned()
    } else {
        all.join(", ")
    }
}

/// Checks a database or target name: `^[a-z][a-z0-9-]{0,62}$`.
///
/// # Errors
/// A message saying what is allowed.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not allowed; allowed: lowercase letters, digits and `-`, starting with a letter, at most 63 characters",
            name.escape_debug()
        ))
    }
}

/// Checks a SQL identifier for a database or user: `^[a-z_][a-z0-9_]{0,62}$`.
///
/// # Errors
/// A message saying what is allowed.
pub fn check_identifier(ident: &str) -> Result<(), String> {
    let mut chars = ident.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && ident.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not allowed; allowed: lowercase letters, digits and `_`, not starting with a digit, at most 63 characters",
            ident.escape_debug()
        ))
    }
}

/// Role names an application user may not take: each engine's administrators and
/// built-in roles, and the words PostgreSQL and MariaDB treat as special in role
/// positions (`PUBLIC`, `CURRENT_USER`, …; PostgreSQL "CREATE ROLE", MariaDB "Account
/// Names"), so that no spec can name, shadow or grant to them.
fn check_not_reserved(user: &str) -> Result<(), String> {
    const RESERVED: [&str; 15] = [
        "postgres",
        "root",
        "mysql",
        "mariadb.sys",
        "default",
        "dbctl_admin",
        "pg_signal_backend",
        "public",
        "none",
        "current_user",
        "session_user",
        "current_role",
        "user",
        "all",
        "replication",
    ];
    if RESERVED.contains(&user) || user.starts_with("pg_") || user.starts_with("dbctl_") {
        Err(format!(
            "`{user}` is reserved for the engine's administrator or built-in roles; choose another application user"
        ))
    } else {
        Ok(())
    }
}

fn check_not_system_database(db: &str) -> Result<(), String> {
    const SYSTEM: [&str; 7] = [
        "postgres",
        "template0",
        "template1",
        "mysql",
        "information_schema",
        "performance_schema",
        "sys",
    ];
    if SYSTEM.contains(&db) {
        Err(format!(
            "`{db}` is the engine's own database; choose another application database"
        ))
    } else {
        Ok(())
    }
}

fn check_redis_database(db: &str) -> Result<(), String> {
    match db.parse::<u8>() {
        Ok(n) if n <= 15 && db == n.to_string() => Ok(()),
        _ => Err(format!(
            "`{}` is not allowed; redis databases are numbers 0 to 15",
            db.escape_debug()
        )),
    }
}

/// Checks `size_gb`: a whole number of GB from 1 to [`MAX_SIZE_GB`].
///
/// # Errors
/// A message saying what is allowed.
pub fn check_size(size: u64) -> Result<u32, String> {
    if (1..=MAX_SIZE_GB).contains(&size) {
        Ok(u32::try_from(size).unwrap_or(u32::MAX))
    } else {
        Err(format!(
            "{size} GB is out of range; allowed: 1 to {MAX_SIZE_GB} GB"
        ))
    }
}

/// Checks that a server itself can enforce `spec.allowed_cidrs` (host platforms:
/// `local`, `ssh`, `pacemaker`, `openstack`, where `pg_hba` or MariaDB accounts do it):
/// MariaDB account hosts take IPv4 networks; Redis cannot tell clients apart by address
/// at all, so a spec must not promise it there. (Kubernetes enforces it with a
/// NetworkPolicy.)
///
/// # Errors
/// A message naming the network and what is allowed.
pub fn check_enforceable_cidrs(spec: &Spec) -> Result<(), String> {
    spec.allowed_cidrs
        .iter()
        .try_for_each(|cidr| check_cidr_for(spec.engine, cidr))
}

fn check_cidr_for(engine: EngineKind, cidr: &str) -> Result<(), String> {
    match engine {
        EngineKind::Mariadb if cidr.contains(':') => Err(format!(
            "`{cidr}`: MariaDB accounts take IPv4 networks only; list IPv4 networks or none"
        )),
        EngineKind::Redis => Err(format!(
            "`{cidr}`: Redis cannot restrict clients by address, so dbctl will not pretend to; leave `allowed_cidrs` empty and limit who reaches the port with the target's `listen` or a firewall"
        )),
        _ => Ok(()),
    }
}

fn check_cidr(cidr: &str) -> Result<(), String> {
    let ok = cidr.split_once('/').is_some_and(|(ip, len)| {
        let max = if ip.contains(':') { 128 } else { 32 };
        ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= max)
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a CIDR like 10.0.0.0/8",
            cidr.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_pattern() {
        assert!(check_name("my-first-db").is_ok());
        assert!(check_name("a").is_ok());
        assert!(check_name(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "1db",
            "My-db",
            "db_1",
            "db;rm",
            &"a".repeat(64),
            "-a",
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(check_size(1), Ok(1));
        assert_eq!(check_size(65_536), Ok(65_536));
        assert!(check_size(0).is_err());
        assert!(check_size(65_537).is_err());
    }

    #[test]
    fn identifiers_reject_quotes_and_capitals() {
        assert!(check_identifier("app_db").is_ok());
        for bad in ["App", "a-b", "a\"b", "a'b", "1a", ""] {
            assert!(check_identifier(bad).is_err(), "{bad:?} accepted");
        }
    }
}
