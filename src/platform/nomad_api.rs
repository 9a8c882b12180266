//! Typed Nomad job specification in its JSON API form, as documented in Nomad's
//! `website/content/api-docs/json-jobs.mdx` and the job examples of `api-docs/jobs.mdx`
//! (see `../shared/reference/nomad`). Field names are Nomad's (PascalCase); unknown
//! fields are rejected, so a rendered job with a misspelt key fails to parse.
//! Durations are nanoseconds, as in the API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of `PUT /v1/jobs` and `POST /v1/job/:id/plan`: `{"Job": {…}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct JobRegistration {
    /// The job.
    pub job: Job,
}

/// A job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Job {
    /// Job ID, unique per namespace.
    #[serde(rename = "ID")]
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// `service`, `batch`, `system` or `sysbatch`.
    #[serde(rename = "Type")]
    pub job_type: String,
    /// Namespace (default `default`).
    pub namespace: Option<String>,
    /// Region (default `global`).
    pub region: Option<String>,
    /// Eligible datacenters.
    pub datacenters: Option<Vec<String>>,
    /// Node pool.
    pub node_pool: Option<String>,
    /// Priority 1-100.
    pub priority: Option<u8>,
    /// Partial placements allowed?
    pub all_at_once: Option<bool>,
    /// Opaque metadata.
    pub meta: Option<BTreeMap<String, String>>,
    /// Placement constraints.
    pub constraints: Option<Vec<Constraint>>,
    /// Placement preferences.
    pub affinities: Option<Vec<Affinity>>,
    /// Spreads (free-form here).
    pub spreads: Option<Vec<Value>>,
    /// Task groups.
    pub task_groups: Vec<TaskGroup>,
    /// Update strategy.
    pub update: Option<Update>,
    /// Reschedule policy for all groups.
    pub reschedule_policy: Option<ReschedulePolicy>,
    /// Parameterized (dispatch) job settings.
    pub parameterized_job: Option<ParameterizedJob>,
    /// Periodic schedule.
    pub periodic: Option<Periodic>,
    /// Consul token.
    pub consul_token: Option<String>,
    /// Vault token.
    pub vault_token: Option<String>,
}

/// A placement constraint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Constraint {
    /// Attribute examined, e.g. `${meta.dbctl_database}`.
    #[serde(rename = "LTarget")]
    pub l_target: String,
    /// Value compared.
    #[serde(rename = "RTarget")]
    pub r_target: String,
    /// `=`, `!=`, `regexp`, `distinct_hosts`, …
    pub operand: String,
}

/// A placement preference.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Affinity {
    /// Attribute examined.
    #[serde(rename = "LTarget")]
    pub l_target: String,
    /// Value compared.
    #[serde(rename = "RTarget")]
    pub r_target: String,
    /// Operator.
    pub operand: String,
    /// -100..=100.
    pub weight: i8,
}

/// Update strategy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Update {
    /// Allocations updated at once.
    pub max_parallel: Option<u32>,
    /// `checks`, `task_states` or `manual`.
    pub health_check: Option<String>,
    /// ns.
    pub min_healthy_time: Option<i64>,
    /// ns.
    pub healthy_deadline: Option<i64>,
    /// ns.
    pub progress_deadline: Option<i64>,
    /// Revert to the last stable version on failure.
    pub auto_revert: Option<bool>,
    /// Canaries.
    pub canary: Option<u32>,
    /// Promote canaries automatically.
    pub auto_promote: Option<bool>,
    /// ns.
    pub stagger: Option<i64>,
}

/// Reschedule policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ReschedulePolicy {
    /// Attempts per interval.
    pub attempts: Option<u32>,
    /// ns.
    pub interval: Option<i64>,
    /// ns.
    pub delay: Option<i64>,
    /// `constant`, `exponential` or `fibonacci`.
    pub delay_function: Option<String>,
    /// ns.
    pub max_delay: Option<i64>,
    /// Unlimited attempts.
    pub unlimited: Option<bool>,
}

/// Restart policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RestartPolicy {
    /// Restarts per interval.
    pub attempts: u32,
    /// ns.
    pub interval: i64,
    /// ns.
    pub delay: i64,
    /// `delay` or `fail`.
    pub mode: String,
}

/// Parameterized job settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ParameterizedJob {
    /// `optional`, `required` or `forbidden`.
    pub payload: Option<String>,
    /// Metadata keys a dispatch must give.
    pub meta_required: Option<Vec<String>>,
    /// Metadata keys a dispatch may give.
    pub meta_optional: Option<Vec<String>>,
}

/// A task group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TaskGroup {
    /// Group name.
    pub name: String,
    /// Instances.
    pub count: Option<u32>,
    /// Constraints.
    pub constraints: Option<Vec<Constraint>>,
    /// Affinities.
    pub affinities: Option<Vec<Affinity>>,
    /// Opaque metadata.
    pub meta: Option<BTreeMap<String, String>>,
    /// Volumes requested by the group, by name.
    pub volumes: Option<BTreeMap<String, VolumeRequest>>,
    /// Group networks.
    pub networks: Option<Vec<Network>>,
    /// Services registered for the group.
    pub services: Option<Vec<Service>>,
    /// Restart policy.
    pub restart_policy: Option<RestartPolicy>,
    /// Reschedule policy.
    pub reschedule_policy: Option<ReschedulePolicy>,
    /// Update strategy.
    pub update: Option<Update>,
    /// Ephemeral disk (free-form here).
    pub ephemeral_disk: Option<Value>,
    /// Tasks.
    pub tasks: Vec<Task>,
}

/// A volume request of a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VolumeRequest {
    /// Name.
    pub name: String,
    /// `host` or `csi`.
    #[serde(rename = "Type")]
    pub volume_type: String,
    /// Host volume or CSI volume ID.
    pub source: String,
    /// Read only.
    pub read_only: Option<bool>,
    /// CSI access mode.
    pub access_mode: Option<String>,
    /// CSI attachment mode.
    pub attachment_mode: Option<String>,
}

/// A network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Network {
    /// `host`, `bridge`, …
    pub mode: Option<String>,
    /// Static ports.
    pub reserved_ports: Option<Vec<Port>>,
    /// Dynamic ports.
    pub dynamic_ports: Option<Vec<Port>>,
    /// Bandwidth.
    #[serde(rename = "MBits")]
    pub mbits: Option<u32>,
}

/// A port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Port {
    /// Label referenced by services and drivers.
    pub label: String,
    /// Static port (0 for dynamic).
    pub value: Option<u16>,
    /// Port inside the task.
    pub to: Option<u16>,
    /// Host network.
    pub host_network: Option<String>,
}

/// A service registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Service {
    /// Service name.
    pub name: String,
    /// Port label.
    pub port_label: Option<String>,
    /// `nomad` or `consul`.
    pub provider: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Health checks.
    pub checks: Option<Vec<Check>>,
    /// Task the service belongs to.
    pub task_name: Option<String>,
}

/// A health check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Check {
    /// Name.
    pub name: Option<String>,
    /// `tcp`, `http`, `script`, `grpc`.
    #[serde(rename = "Type")]
    pub check_type: String,
    /// Script command.
    pub command: Option<String>,
    /// Script arguments.
    pub args: Option<Vec<String>>,
    /// Port label.
    pub port_label: Option<String>,
    /// Task running script checks.
    pub task_name: Option<String>,
    /// HTTP path.
    pub path: Option<String>,
    /// ns.
    pub interval: i64,
    /// ns.
    pub timeout: i64,
}

/// A task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Task {
    /// Name.
    pub name: String,
    /// Driver (`docker`, `exec`, …).
    pub driver: String,
    /// Driver configuration (driver-specific keys).
    pub config: BTreeMap<String, Value>,
    /// Environment.
    pub env: Option<BTreeMap<String, String>>,
    /// User.
    pub user: Option<String>,
    /// Templates rendered into the task.
    pub templates: Option<Vec<Template>>,
    /// Volume mounts.
    pub volume_mounts: Option<Vec<VolumeMount>>,
    /// Resources.
    pub resources: Option<Resources>,
    /// Services.
    pub services: Option<Vec<Service>>,
    /// Where a dispatch payload is written.
    pub dispatch_payload: Option<DispatchPayload>,
    /// Signal sent on kill.
    pub kill_signal: Option<String>,
    /// ns.
    pub kill_timeout: Option<i64>,
    /// ns.
    pub shutdown_delay: Option<i64>,
    /// Leader task.
    pub leader: Option<bool>,
    /// Restart policy.
    pub restart_policy: Option<RestartPolicy>,
    /// Constraints.
    pub constraints: Option<Vec<Constraint>>,
    /// Opaque metadata.
    pub meta: Option<BTreeMap<String, String>>,
    /// Log rotation (free-form here).
    pub log_config: Option<Value>,
    /// Artifacts (free-form here).
    pub artifacts: Option<Vec<Value>>,
    /// Workload identity (free-form here).
    pub identity: Option<Value>,
    /// When the task runs relative to the group's main tasks.
    pub lifecycle: Option<Lifecycle>,
}

/// `Task.Lifecycle`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Lifecycle {
    /// `prestart`, `poststart` or `poststop`.
    pub hook: String,
    /// Keeps running beside the main tasks (not for `prestart` runs to completion).
    pub sidecar: Option<bool>,
}

/// `Job.Periodic` (`api-docs/json-jobs.mdx`): child jobs launched on a cron spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Periodic {
    /// Whether it launches child jobs.
    pub enabled: Option<bool>,
    /// The cron expression (five fields, or `@daily`…).
    pub spec: Option<String>,
    /// Several cron expressions (conflicts with `Spec`).
    pub specs: Option<Vec<String>>,
    /// `cron`, the only one.
    pub spec_type: Option<String>,
    /// IANA zone the spec is evaluated in (default UTC).
    pub time_zone: Option<String>,
    /// No new child while one runs.
    pub prohibit_overlap: Option<bool>,
}

/// A template.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Template {
    /// Inline template text (Go template syntax).
    pub embedded_tmpl: Option<String>,
    /// Source path.
    pub source_path: Option<String>,
    /// Destination, relative to the task dir.
    pub dest_path: String,
    /// Load the output as environment variables.
    pub envvars: Option<bool>,
    /// `noop`, `restart`, `signal`, `script`.
    pub change_mode: Option<String>,
    /// Signal for `signal` mode.
    pub change_signal: Option<String>,
    /// Octal mode of the file.
    pub perms: Option<String>,
}

/// A volume mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// Volume name from the group.
    pub volume: String,
    /// Path in the task.
    pub destination: String,
    /// Read only.
    pub read_only: Option<bool>,
}

/// Task resources.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Resources {
    /// MHz.
    #[serde(rename = "CPU")]
    pub cpu: Option<u64>,
    /// Reserved cores.
    pub cores: Option<u32>,
    /// MB.
    #[serde(rename = "MemoryMB")]
    pub memory_mb: Option<u64>,
    /// MB, burst.
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: Option<u64>,
}

/// Dispatch payload destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DispatchPayload {
    /// File name in the task's `local/` dir.
    pub file: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_job_parses_and_typos_do_not() {
        let doc = r#"{"Job": {"ID": "example", "Name": "example", "Type": "service",
          "Datacenters": ["dc1"], "TaskGroups": [{"Name": "cache", "Count": 1,
          "Tasks": [{"Name": "redis", "Driver": "docker", "Config": {"image": "redis:7"},
          "Resources": {"CPU": 500, "MemoryMB": 256}}],
          "RestartPolicy": {"Interval": 1800000000000, "Attempts": 2, "Delay": 15000000000, "Mode": "fail"}}]}}"#;
        let job: JobRegistration = serde_json::from_str(doc).unwrap();
        assert_eq!(
            job.job.task_groups[0].tasks[0]
                .resources
                .as_ref()
                .unwrap()
                .cpu,
            Some(500)
        );
        let typo = doc.replace("\"Count\"", "\"Cuont\"");
        let err = serde_json::from_str::<JobRegistration>(&typo).unwrap_err();
        assert!(err.to_string().contains("unknown field `Cuont`"), "{err}");
    }
}
