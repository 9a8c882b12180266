//! An `ssh` target with several hosts: each database lives on one of them.
//!
//! Placement needs no record of its own: the host whose state directory already holds
//! the database's `instance.json` keeps it; a new database goes to the host holding the
//! fewest instances (ties: the first in `hosts`). The connection file carries the
//! chosen host's address. Hosts are connected concurrently. Choosing a host and
//! reserving the instance (port, `instance.json`) happen under the target's lock.

use anyhow::{Context, Result};

use std::collections::BTreeMap;

use super::{Admin, Artifact, Capabilities, Host, Observed, Options, Request, Response};
use crate::catalog::EngineKind;
use crate::gitops::Repo;
use crate::spec::{PlatformKind, Spec, Target};

/// The `ssh` platform over every host of a target.
pub struct HostSet {
    hosts: Vec<Host>,
}

impl HostSet {
    /// Connects to each of the target's `hosts` at once.
    ///
    /// # Errors
    /// The first failed connection (naming its host), or no hosts.
    pub fn connect(repo: &Repo, target: &Target, options: &Options) -> Result<Self> {
        let hosts = super::par_map(&target.ssh.hosts, |h| Host::ssh(repo, target, h, options))
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        if hosts.is_empty() {
            anyhow::bail!("target `{}` (platform ssh) lists no `hosts`", target.name);
        }
        Ok(Self { hosts })
    }

    /// The host holding `name`, if any.
    fn holder(&self, name: &str) -> Result<Option<&Host>> {
        for host in &self.hosts {
            if host
                .has_instance(name)
                .with_context(|| format!("reading the state directory on {}", host.address()))?
            {
                return Ok(Some(host));
            }
        }
        Ok(None)
    }

    /// Where `name` lives or goes: its holder, else the least-loaded host.
    fn placement(&self, name: &str) -> Result<&Host> {
        if let Some(host) = self.holder(name)? {
            return Ok(host);
        }
        let counts = super::par_map(&self.hosts, Host::instance_count);
        let best = (0..self.hosts.len())
            .min_by_key(|&i| (counts[i], i))
            .unwrap_or(0);
        Ok(&self.hosts[best])
    }
}

impl super::Platform for HostSet {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Ssh
    }

    fn preferred_version(&self, engine: EngineKind) -> Option<String> {
        self.hosts[0].preferred_version(engine)
    }

    fn capabilities(&self, spec: &Spec) -> Capabilities {
        self.hosts[0].capabilities(spec)
    }

    fn artifact_digests(&self, spec: &Spec) -> Result<BTreeMap<String, String>> {
        self.hosts[0].artifact_digests(spec)
    }

    fn wal_archive(&self, spec: &Spec) -> Option<String> {
        self.hosts[0].wal_archive(spec)
    }

    fn observe(&self, spec: &Spec) -> Result<Observed> {
        match self.holder(&spec.name)? {
            Some(host) => host.observe(spec),
            None => Ok(Observed::absent()),
        }
    }

    fn preflight(&self, req: &Request<'_>) -> Result<()> {
        self.placement(&req.spec.name)?.preflight(req)
    }

    fn apply(&self, req: &Request<'_>) -> Result<Response> {
        if req.deletes() {
            return match self.holder(&req.spec.name)? {
                Some(host) => host.apply(req),
                None => Ok(Response::default()),
            };
        }
        // Choose and reserve under the target's lock, so concurrent creates (`apply
        // --parallel`) see each other's instances: balanced hosts, distinct ports.
        let host = {
            let _lock = self.hosts[0].reservation_lock()?;
            let host = self.placement(&req.spec.name)?;
            host.reserve(req.spec)?;
            host
        };
        host.apply(req)
    }

    fn lease(
        &self,
        spec: &Spec,
        holder: &super::LeaseHolder,
        wait: std::time::Duration,
    ) -> Result<Option<super::Lease<'_>>> {
        self.placement(&spec.name)?.lease(spec, holder, wait)
    }

    fn admin(&self, spec: &Spec) -> Result<Box<dyn Admin + '_>> {
        match self.holder(&spec.name)? {
            Some(host) => host.admin(spec),
            None => anyhow::bail!("`{}` is not created on any host of its target", spec.name),
        }
    }

    fn render(&self, spec: &Spec) -> Result<Vec<Artifact>> {
        self.placement(&spec.name)?.render(spec)
    }

    fn describe(&self, spec: &Spec) -> Result<serde_json::Value> {
        self.placement(&spec.name)?.describe(spec)
    }
}
