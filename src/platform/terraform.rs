//! The `terraform` platform: a managed database of another cloud, made, observed,
//! changed and destroyed by running `terraform` (or `tofu`) on the files dbctl renders
//! (`playbooks/terraform/create.yml`: backend, provider resources, outputs).
//!
//! Each database has a working directory `<state_dir>/terraform/<target>/<name>` that
//! holds only the rendered files and Terraform's provider cache: the state lives in the
//! target's remote backend, so any runner (any clone) sees the same database. The
//! application password reaches Terraform as `TF_VAR_password` in the environment —
//! never an argument or a file — and what dbctl applied (spec values and the rendered
//! files' digest, [`Applied`]) goes in as `TF_VAR_dbctl_applied` and is kept in the
//! state as the `dbctl_applied` output, where `observe` reads it back.
//!
//! Commands: `init -input=false -reconfigure`, `apply -auto-approve -input=false`,
//! `output -json`, `destroy -auto-approve -input=false` (Terraform's CLI docs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use secrecy::{ExposeSecret, SecretString};

use super::cloud::Cloud;
use super::{Admin, Artifact, Capabilities, Observed, Options, Request, Response, State};
use crate::catalog::EngineKind;
use crate::change::{Applied, Disruption, Endpoint};
use crate::gitops::Repo;
use crate::spec::{PlatformKind, Spec, Target};
use crate::transport::{CommandSpec, Local, Transport};

/// The artifact key of a database's rendered Terraform files among its digests.
pub const TERRAFORM_ARTIFACT: &str = "terraform/";

/// The file dbctl adds beside the rendered ones: the `dbctl_applied` variable and the
/// output that keeps it in the state.
const DBCTL_FILE: &str = "dbctl.tf.json";

/// A `terraform` target's driver.
pub struct Terraform {
    target: Target,
    cloud: Cloud,
    /// `<state_dir>/terraform/<target>`: the databases' working directories.
    work_root: PathBuf,
}

impl Terraform {
    /// Binds `target`; working directories go under this machine's state directory
    /// ([`super::host::local_state_dir`], as the `local` platform's).
    ///
    /// # Errors
    /// No home directory for the default state directory.
    pub fn new(repo: &Repo, target: &Target, options: &Options) -> Result<Self> {
        let state_dir = super::host::local_state_dir(repo, target, options)?;
        Ok(Self {
            target: target.clone(),
            cloud: Cloud::new(repo, target),
            work_root: state_dir.join("terraform").join(&target.name),
        })
    }

    /// The binary: the target's `terraform_bin`, else `terraform`, else `tofu` on PATH.
    ///
    /// # Errors
    /// None of them is found, naming the key.
    fn binary(&self) -> Result<PathBuf> {
        let candidates: Vec<String> = match &self.target.cloud.terraform_bin {
            Some(bin) => vec![bin.clone()],
            None => vec!["terraform".into(), "tofu".into()],
        };
        if let Some(found) = Local::new().find_program(&candidates) {
            return Ok(found);
        }
        bail!(
            "target `{}` runs Terraform, but {} is not installed (looked for {}); install Terraform or OpenTofu, or set `targets.{}.terraform_bin` in etc/dbctl.yml",
            self.target.name,
            candidates.join(" or "),
            candidates.join(", "),
            self.target.name
        )
    }

    fn workdir(&self, spec: &Spec) -> PathBuf {
        self.work_root.join(&spec.name)
    }

    /// Renders `spec`'s files into its working directory (0700: Terraform's cache
    /// there may hold provider credentials in plans), plus [`DBCTL_FILE`].
    fn write(&self, spec: &Spec) -> Result<PathBuf> {
        let dir = self.workdir(spec);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        for artifact in self.artifacts(spec)? {
            let name = Path::new(&artifact.path)
                .file_name()
                .context("a rendered Terraform file has no name")?;
            std::fs::write(dir.join(name), &artifact.content)?;
        }
        let dbctl = serde_json::json!({
            "variable": {"dbctl_applied": {
                "type": "string", "default": "",
                "description": "What dbctl applied (JSON), kept in the state for `dbctl plan`."
            }},
            "output": {"dbctl_applied": {"value": "${var.dbctl_applied}"}},
        });
        let mut text = serde_json::to_vec_pretty(&dbctl)?;
        text.push(b'\n');
        std::fs::write(dir.join(DBCTL_FILE), text)?;
        Ok(dir)
    }

    fn artifacts(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        self.cloud.render(spec)
    }

    /// Runs the binary in `dir` with `args`, `TF_IN_AUTOMATION` and `vars` as
    /// `TF_VAR_<name>` environment variables; its standard output.
    ///
    /// # Errors
    /// The binary fails; the message names the target, the command and its errors
    /// (Terraform never echoes sensitive variables).
    fn run(&self, dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Result<String> {
        let bin = self.binary()?;
        // Not through `transport::Local`, which clears the environment: Terraform's
        // providers and backend read the operator's cloud credentials from it.
        let started = std::time::Instant::now();
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("-chdir={}", dir.display()))
            .args(args)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .stdin(std::process::Stdio::null());
        for (name, value) in vars {
            cmd.env(format!("TF_VAR_{name}"), value);
        }
        let out = cmd
            .output()
            .with_context(|| format!("cannot run `{}`", bin.display()))?;
        crate::transport::trace_run(
            "localhost",
            &CommandSpec::new(bin.to_string_lossy(), args.iter().copied()),
            started,
            out.status.code().unwrap_or(-1),
        );
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            bail!(
                "`{} {}` for target `{}` failed: {}",
                bin.file_name().map_or_else(
                    || bin.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                ),
                args.join(" "),
                self.target.name,
                stderr.trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Renders, then `init` against the remote backend.
    fn init(&self, spec: &Spec) -> Result<PathBuf> {
        let dir = self.write(spec)?;
        self.run(
            &dir,
            &["init", "-input=false", "-reconfigure", "-no-color"],
            &[],
        )?;
        Ok(dir)
    }

    /// The state's outputs (`terraform output -json`): name → value.
    fn outputs(&self, dir: &Path) -> Result<BTreeMap<String, serde_json::Value>> {
        let text = self.run(dir, &["output", "-json", "-no-color"], &[])?;
        let all: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "`terraform output -json` for target `{}` is not JSON",
                    self.target.name
                )
            })?;
        Ok(all
            .into_iter()
            .map(|(name, o)| (name, o.get("value").cloned().unwrap_or_default()))
            .collect())
    }

    /// The endpoint in the outputs `host` and `port`.
    fn endpoint(outputs: &BTreeMap<String, serde_json::Value>) -> Option<Endpoint> {
        let host = outputs.get("host")?.as_str()?.to_owned();
        let port = match outputs.get("port")? {
            serde_json::Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
            serde_json::Value::String(s) => s.parse().ok()?,
            _ => return None,
        };
        Some(Endpoint { host, port })
    }
}

impl super::Platform for Terraform {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Terraform
    }

    fn preferred_version(&self, _engine: EngineKind) -> Option<String> {
        None
    }

    fn capabilities(&self, _spec: &Spec) -> Capabilities {
        // Every change is a new rendering Terraform applies; what a cloud does with it
        // (in place, a restart, a replacement) is the provider's, so a size, a
        // parameter or a plan counts as a restart and waits for the window.
        Capabilities {
            configure: true,
            grow: Some(Disruption::Restart),
            ..Capabilities::default()
        }
    }

    fn artifact_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>> {
        let files: String = self
            .artifacts(spec)?
            .iter()
            .map(|a| format!("--- {}\n{}", a.path, a.content))
            .collect();
        Ok(crate::change::digests([(
            format!("{TERRAFORM_ARTIFACT}{}", spec.name).as_str(),
            files.as_str(),
        )]))
    }

    fn preview(&self, spec: &Spec, password: Option<&SecretString>) -> Result<Vec<String>> {
        let Some(password) = password else {
            return Ok(vec![format!(
                "terraform: no plan here: it needs the password, and this runner's identity cannot decrypt connections/{}.yml",
                spec.name
            )]);
        };
        let dir = self.init(spec)?;
        let applied = Applied::of(spec, super::Platform::artifact_digests(self, spec)?);
        let out = self.run(
            &dir,
            &["plan", "-json", "-input=false", "-lock=false", "-no-color"],
            &[
                ("password", password.expose_secret()),
                ("dbctl_applied", &serde_json::to_string(&applied)?),
            ],
        )?;
        Ok(plan_lines(&out))
    }

    fn observe(&self, spec: &Spec) -> Result<Observed> {
        let dir = self.init(spec)?;
        let outputs = self.outputs(&dir)?;
        let Some(endpoint) = Self::endpoint(&outputs) else {
            return Ok(Observed::absent());
        };
        let applied: Option<Applied> = outputs
            .get("dbctl_applied")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| serde_json::from_str(text).ok());
        let shown: BTreeMap<&String, &serde_json::Value> = outputs
            .iter()
            .filter(|(name, _)| !["password", "dbctl_applied"].contains(&name.as_str()))
            .collect();
        let mut observed = Observed {
            state: State::Up,
            endpoint: Some(endpoint),
            applied,
            ..Observed::absent()
        };
        observed
            .details
            .insert("terraform".into(), serde_json::json!({ "outputs": shown }));
        Ok(observed)
    }

    fn preflight(&self, req: &Request<'_>) -> Result<()> {
        self.binary()?;
        if !req.deletes() {
            self.artifacts(req.spec)?;
        }
        Ok(())
    }

    fn apply(&self, req: &Request<'_>) -> Result<Response> {
        let spec = req.spec;
        if req.deletes() {
            (req.progress)(1, 2, "terraform destroy");
            let dir = self.init(spec)?;
            self.run(
                &dir,
                &["destroy", "-auto-approve", "-input=false", "-no-color"],
                &[("password", "")],
            )?;
            (req.progress)(2, 2, "Remove the working directory");
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove `{}`", dir.display()))?;
            return Ok(Response::default());
        }
        let password = req.password()?;
        (req.progress)(1, 3, "terraform init");
        let dir = self.init(spec)?;
        let applied = Applied::of(spec, self.artifact_digests(spec)?);
        (req.progress)(2, 3, "terraform apply");
        let out = self.run(
            &dir,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
            &[
                ("password", password.expose_secret()),
                ("dbctl_applied", &serde_json::to_string(&applied)?),
            ],
        )?;
        if let Some(output) = req.output {
            for line in out.lines() {
                output(line);
            }
        }
        (req.progress)(3, 3, "Read the outputs");
        let outputs = self.outputs(&dir)?;
        let endpoint = Self::endpoint(&outputs).with_context(|| {
            format!(
                "the Terraform files of `{}` have no `host` and `port` outputs (terraform/outputs.tf.json.j2)",
                spec.name
            )
        })?;
        Ok(super::endpoint_response(
            spec,
            endpoint,
            PlatformKind::Terraform,
        ))
    }

    fn admin(&self, spec: &Spec) -> Result<Box<dyn Admin + '_>> {
        bail!(
            "`{}` is a managed database on target `{}` (terraform): dbctl has no admin channel there; use the cloud's own tools",
            spec.name,
            self.target.name
        )
    }

    fn render(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        self.artifacts(spec)
    }

    fn describe(&self, spec: &Spec) -> Result<serde_json::Value> {
        self.cloud.describe(spec)
    }
}

/// `terraform plan -json`'s machine-readable UI (one JSON object a line; Terraform's
/// "JSON Output Format" docs) as plan lines: each `planned_change` as `terraform:
/// <action> <resource address>`, then the `change_summary`'s text; dbctl's own
/// `dbctl_applied` output is left out.
fn plan_lines(json_lines: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut summary = None;
    for event in json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        match event["type"].as_str() {
            Some("planned_change") => {
                let change = &event["change"];
                lines.push(format!(
                    "terraform: {} {}",
                    change["action"].as_str().unwrap_or("?"),
                    change["resource"]["addr"].as_str().unwrap_or("?")
                ));
            }
            Some("change_summary") => {
                summary = event["@message"]
                    .as_str()
                    .map(|m| format!("terraform: {m}"));
            }
            _ => {}
        }
    }
    lines.extend(summary);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraforms_json_plan_becomes_a_line_a_resource_and_its_summary() {
        let out = r#"{"@level":"info","@message":"Terraform 1.11.4","type":"version","terraform":"1.11.4","ui":"1.2"}
{"@level":"info","@message":"terraform_data.db: Plan to replace","type":"planned_change","change":{"resource":{"addr":"terraform_data.db","resource_type":"terraform_data"},"action":"replace","reason":"cannot_update"}}
{"@level":"info","@message":"Plan: 1 to add, 0 to change, 1 to destroy.","type":"change_summary","changes":{"add":1,"change":0,"remove":1,"operation":"plan"}}
"#;
        assert_eq!(
            plan_lines(out),
            [
                "terraform: replace terraform_data.db",
                "terraform: Plan: 1 to add, 0 to change, 1 to destroy."
            ]
        );
        assert!(plan_lines("not json\n").is_empty());
    }
}
