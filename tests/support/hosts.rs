//! Namespace hosts from `bench/fanout/hosts.sh`: network namespaces at 10.203.1.11.. on
//! a bridge, each with its own sshd and its own state directory (a private bind
//! mount, as on separate VMs); torn down on drop, which stops what runs there.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct NamespaceHosts {
    pub dir: PathBuf,
    id: String,
    count: usize,
    /// Where each host has its state directory (one path, a private mount per host).
    pub state_dir: PathBuf,
}

impl NamespaceHosts {
    /// `count` hosts; `tag` keeps the namespaces of two tests in one process apart.
    pub fn up(dir: &Path, tag: char, count: usize) -> Self {
        let id = format!("{tag}{}", std::process::id() % 10_000);
        let hosts = Self {
            dir: dir.to_path_buf(),
            state_dir: PathBuf::from(format!("/srv/dbctl-{id}")),
            id,
            count,
        };
        let out = Command::new("bash")
            .arg(Self::script())
            .args(["up", dir.to_str().unwrap(), &hosts.id, &count.to_string()])
            .arg(&hosts.state_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hosts did not come up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hosts
    }

    /// Gives this process's namespace `addr` (CIDR) on the hosts' bridge, so dbctl
    /// and clients run here reach the hosts as well as servers on 127.0.0.1.
    pub fn uplink(&self, addr: &str) {
        let out = Command::new("bash")
            .arg(Self::script())
            .args([
                "uplink",
                self.dir.to_str().unwrap(),
                &self.id,
                &self.count.to_string(),
                addr,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "no uplink: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/fanout/hosts.sh")
    }

    /// The namespace of the hosts' bridge (10.203.1.1), where tools reach every host.
    pub fn bridge(&self) -> String {
        format!("{}b", self.id)
    }

    /// What host `i` (1-based) holds in its state directory.
    pub fn state(&self, i: usize) -> PathBuf {
        self.dir.join(format!("host{i}/private"))
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
}

impl Drop for NamespaceHosts {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .args([
                "down",
                self.dir.to_str().unwrap(),
                &self.id,
                &self.count.to_string(),
            ])
            .status();
        let _ = std::fs::remove_dir(&self.state_dir);
    }
}
