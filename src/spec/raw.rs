//! Raw serde types mirroring the YAML files exactly (`deny_unknown_fields`), with source
//! positions kept for validation messages. [`super::model`] holds the validated types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// `etc/databases/<name>.yml`: the desired state of one database.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "dbctl database spec")]
pub struct RawSpec {
    /// The database name; must equal the file name without `.yml`.
    /// Lowercase letters, digits and `-`, starting with a letter, at most 63 characters.
    #[schemars(with = "String", regex(pattern = r"^[a-z][a-z0-9-]{0,62}$"))]
    pub name: Spanned<String>,
    /// The engine: `postgresql`, `mariadb` (alias `mysql`), `redis` or `mongodb`.
    #[schemars(with = "String")]
    pub engine: Spanned<String>,
    /// The engine version from the catalog (`etc/engines.yml`), e.g. `"15"` or `"10.11"`.
    #[schemars(with = "String")]
    pub version: Spanned<String>,
    /// Allotted data size in GB, 1 to 65536.
    #[schemars(with = "u64", range(min = 1, max = 65536))]
    pub size_gb: Spanned<u64>,
    /// Sizing plan from `etc/plans.yml` (cpu, memory); default from `etc/dbctl.yml`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub plan: Option<Spanned<String>>,
    /// Target from `etc/dbctl.yml` `targets`; default is `default_target`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub target: Option<Spanned<String>>,
    /// Application database name (SQL engines) or database index 0-15 (redis);
    /// default: the name with `-` replaced by `_` (redis: `0`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub database: Option<Spanned<String>>,
    /// Application user; default: the name with `-` replaced by `_`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub user: Option<Spanned<String>>,
    /// When true, `dbctl delete` refuses to delete this database.
    #[serde(default)]
    pub deletion_protection: bool,
    /// Networks (CIDR) allowed to reach the database where the platform enforces it
    /// (Kubernetes NetworkPolicy, security groups), e.g. `["10.0.0.0/8"]`.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// Engine parameters written into the server configuration (`max_connections: "200"`),
    /// from the engine's allowlist (see README).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// When disruptive changes (restart or worse) may run; default: the target's.
    #[serde(default)]
    pub maintenance: Option<RawMaintenance>,
    /// Backups of this database.
    #[serde(default)]
    pub backup: Option<RawBackup>,
}

/// `backup:` of a spec.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    /// The store from `backup_stores` in `etc/dbctl.yml`; default: the target's
    /// `backup_store`, else `defaults.backup_store`.
    #[schemars(with = "Option<String>")]
    pub store: Option<Spanned<String>>,
    /// Which backups `backup` and `backups --expire` keep: the newest `full` ones and
    /// every one needed to restore to any time in the last `days` days.
    #[serde(default)]
    pub retention: Option<crate::backup::Retention>,
    /// PostgreSQL on `local`: archive WAL to the store continuously (point-in-time
    /// recovery); default true. `false`: base backups only.
    #[serde(default)]
    pub archive_wal: Option<bool>,
    /// When `apply` schedules backups: `DAY HH:MM ZONE` (`daily 01:00 Europe/Paris`,
    /// `Sun 02:00 UTC`); a systemd timer on `local`, a `ScheduledBackup` on kubernetes.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub schedule: Option<Spanned<String>>,
}

/// `maintenance:` of a spec or target.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// `DAY HH:MM-HH:MM ZONE`: DAY a weekday (`Sun`) or `daily`, ZONE an IANA time zone,
    /// e.g. `Sun 02:00-03:00 Europe/Paris`.
    #[schemars(with = "String")]
    pub window: Spanned<String>,
}

/// `etc/dbctl.yml`: targets, secret recipients and defaults.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "dbctl configuration")]
pub struct RawConfig {
    /// This GitOps repo's identity, shared by every clone: instances record it, so any
    /// clone (a CI checkout at another path) can manage them and a foreign repo cannot.
    /// `dbctl init` writes a random one; without it, the repo's root commit is the id.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub repo_id: Option<Spanned<String>>,
    /// The target used when a spec names none.
    #[schemars(with = "String")]
    pub default_target: Spanned<String>,
    /// Where databases run, by name.
    pub targets: BTreeMap<String, RawTarget>,
    /// Who can read secret fields of connection files.
    #[serde(default)]
    pub secrets: RawSecrets,
    /// Defaults for new specs.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Where backups go, by name (`dir`, `swift`, `s3`); credentials come from the
    /// environment or a 0600 file, never from here.
    #[serde(default)]
    pub backup_stores: BTreeMap<String, crate::backup::RawStore>,
}

/// One target in `etc/dbctl.yml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// The platform: `local`, `ssh`, `openstack`, `nomad`, `kubernetes`, `terraform` or
    /// `pacemaker`.
    #[schemars(with = "String")]
    pub platform: Spanned<String>,
    /// When disruptive changes of this target's databases may run, unless a spec says.
    #[serde(default)]
    pub maintenance: Option<RawMaintenance>,
    /// What this target is, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// `local`: directory for server data, configuration and logs
    /// (default: `--state-dir`, else the user's data dir; `/var/lib/dbctl` for root).
    #[serde(default)]
    pub state_dir: Option<String>,
    /// The backup store of this target's databases (a name in `backup_stores`), unless
    /// a spec names one.
    #[serde(default)]
    pub backup_store: Option<String>,
    /// `local`: the address clients use, written to connection files (default `127.0.0.1`).
    #[serde(default)]
    pub address: Option<String>,
    /// `local`: first TCP port to try when allocating one (default: the engine's
    /// standard port + 10000, e.g. 15432). Ports already recorded or bound are skipped.
    #[serde(default)]
    pub first_port: Option<u16>,
    /// `ssh`: hosts (names or addresses). A new database goes to the host holding the
    /// fewest; it stays there. `pacemaker`: the cluster's nodes.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `ssh`: login user (default: ssh config, else the local user).
    #[serde(default)]
    pub user: Option<String>,
    /// `ssh`: SSH port (default: ssh config, else 22).
    #[serde(default)]
    pub port: Option<u16>,
    /// `ssh`: private key file, relative to the repo or absolute.
    #[serde(default)]
    pub identity: Option<String>,
    /// `ssh`: `known_hosts` file, relative to the repo or absolute (default: the user's).
    #[serde(default)]
    pub known_hosts: Option<String>,
    /// `ssh`: trust unknown host keys on first use (a changed key is still refused).
    #[serde(default)]
    pub accept_new_host_keys: bool,
    /// `local`, `ssh`: install the engine's distro packages (apt-get) when missing.
    #[serde(default)]
    pub install_packages: bool,
    /// `ssh`: address servers listen on (default `0.0.0.0`; `local`: `127.0.0.1`).
    #[serde(default)]
    pub listen: Option<String>,
    /// `pacemaker`: the virtual IP of the database's resource group.
    #[serde(default)]
    pub vip: Option<String>,
    /// `pacemaker`: dbctl runs on a node of the cluster and reaches it there alone,
    /// without SSH (`hosts` and `vip` not needed), reading each database's layout from
    /// `etc/groups/<name>.json`. What a group's scheduled backups run in: such a
    /// target backs up and reports status, and refuses create, change and delete.
    #[serde(default)]
    pub node_local: bool,
    /// `pacemaker`: prefix length of `vip` (default 24).
    #[serde(default)]
    pub vip_netmask: Option<u8>,
    /// `pacemaker`: shared directory, visible on every node, for the databases'
    /// loop-mounted disk images (default `/srv/dbctl-shared`).
    #[serde(default)]
    pub shared_dir: Option<String>,
    /// `openstack`: the openrc file with Keystone v3 credentials, relative to the repo
    /// (e.g. `files/openrc.sh`; never printed).
    #[serde(default)]
    pub openrc: Option<String>,
    /// `openstack`: what runs the engine on the nodes: `nomad` (a Nomad agent in the
    /// resource group runs it as a job, the ancestor's design; default) or `pacemaker`
    /// (the engine is a member of the resource group).
    #[serde(default)]
    pub runtime: Option<String>,
    /// `openstack`: a Heat environment file (repo-relative YAML: `resource_registry`,
    /// `parameter_defaults`) passed with every stack; provider templates it maps types
    /// to are read relative to it and sent along.
    #[serde(default)]
    pub heat_environment: Option<String>,
    /// `openstack`: the private network the database nodes attach to.
    #[serde(default)]
    pub network: Option<String>,
    /// `openstack`: the subnet of `network`.
    #[serde(default)]
    pub subnet: Option<String>,
    /// `openstack`: the external network floating IPs come from.
    #[serde(default)]
    pub public_network: Option<String>,
    /// `openstack`: the VM image of database nodes (Glance name).
    #[serde(default)]
    pub image: Option<String>,
    /// `openstack`: the Nova key pair installed on nodes.
    #[serde(default)]
    pub key_name: Option<String>,
    /// `openstack`: nodes per database cluster (default 2); `nomad`, `kubernetes`:
    /// instances (default 1).
    #[serde(default)]
    pub nodes: Option<u32>,
    /// `openstack`: Nova flavor for each plan (default `db.<plan>`).
    #[serde(default)]
    pub flavors: BTreeMap<String, String>,
    /// `openstack`: CIDR of the control plane's private subnet (default 10.20.0.0/24).
    #[serde(default)]
    pub cidr: Option<String>,
    /// `openstack`: control-plane masters (consul + nomad servers, default 3).
    #[serde(default)]
    pub masters: Option<u32>,
    /// `nomad`: datacenters jobs may run in (default `["dc1"]`).
    #[serde(default)]
    pub datacenters: Vec<String>,
    /// `nomad`, `kubernetes`: the namespace (default `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `nomad`: region; `terraform`: cloud region.
    #[serde(default)]
    pub region: Option<String>,
    /// `nomad`: `host` (host volume named `db-<name>`, default) or `csi`.
    #[serde(default)]
    pub volume: Option<String>,
    /// `kubernetes`: storage class of data volumes (default: the cluster's default).
    #[serde(default)]
    pub storage_class: Option<String>,
    /// `kubernetes`: namespaces (by `kubernetes.io/metadata.name`) allowed to reach
    /// databases, besides the spec's `allowed_cidrs`.
    #[serde(default)]
    pub allowed_namespaces: Vec<String>,
    /// `kubernetes`: object storage for backups, e.g. `s3://bucket/path`.
    #[serde(default)]
    pub backup_destination: Option<String>,
    /// `kubernetes`: S3 endpoint URL of `backup_destination` (default: AWS).
    #[serde(default)]
    pub backup_endpoint: Option<String>,
    /// `kubernetes`: Secret holding `ACCESS_KEY_ID`/`ACCESS_SECRET_KEY` for backups.
    #[serde(default)]
    pub backup_secret: Option<String>,
    /// `kubernetes`: cron schedule of backups (default `0 0 2 * * *`, CNPG's six fields).
    #[serde(default)]
    pub backup_schedule: Option<String>,
    /// `terraform`: `aws`, `google` or `digitalocean`.
    #[serde(default)]
    pub provider: Option<String>,
    /// `terraform`: remote state backend: `type` (`s3`, `gcs`, …) and its settings.
    #[serde(default)]
    pub backend: BTreeMap<String, String>,
    /// `terraform`: `google` project id.
    #[serde(default)]
    pub project: Option<String>,
    /// `terraform`: the `terraform` or `tofu` binary to run (absolute, or a name on
    /// PATH); default: `terraform`, else `tofu`, on PATH.
    #[serde(default)]
    pub terraform_bin: Option<String>,
}

/// `secrets` in `etc/dbctl.yml`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    /// age recipients (`age1…`) that can decrypt connection-file secrets.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub recipients: Vec<Spanned<String>>,
}

/// `defaults` in `etc/dbctl.yml`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Plan for specs that name none (default `small`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub plan: Option<Spanned<String>>,
    /// Backup store for databases whose spec and target name none.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub backup_store: Option<Spanned<String>>,
}
