//! A two-node corosync/pacemaker cluster in network namespaces (`tests/ha/cluster.sh`)
//! for the pacemaker and openstack tests, and dbctl run inside its network.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use super::{Run, World};

/// The cluster, torn down (every namespace process killed by PID) on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub id: String,
    _serial: MutexGuard<'static, ()>,
}

/// One cluster at a time: two corosync pairs plus their databases overload a 2-core
/// machine into timeouts.
static SERIAL: Mutex<()> = Mutex::new(());

impl Cluster {
    /// Starts the cluster under `dir`; `tag` tells apart the namespaces of tests in
    /// one run.
    pub fn up(dir: &Path, tag: char) -> Self {
        let serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = format!("d{}{tag}", std::process::id() % 10_000);
        let cluster = Self {
            dir: dir.to_path_buf(),
            id,
            _serial: serial,
        };
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ha/cluster.sh"))
            .args(["up", dir.to_str().unwrap(), &cluster.id])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster did not come up:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    pub fn bridge(&self) -> String {
        format!("{}b", self.id)
    }

    /// Runs `args` in the cluster's network (the bridge namespace).
    pub fn exec(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.bridge()]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    pub fn ssh(&self, node_ip: &str, command: &str) -> std::process::Output {
        let key = self.dir.join("client_key");
        let known = self.dir.join("known_hosts");
        self.exec(
            &[
                "ssh",
                "-i",
                key.to_str().unwrap(),
                "-o",
                &format!("UserKnownHostsFile={}", known.display()),
                "-o",
                "StrictHostKeyChecking=yes",
                &format!("root@{node_ip}"),
                command,
            ],
            &[],
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ha/cluster.sh"))
            .args(["down", self.dir.to_str().unwrap(), &self.id])
            .status();
    }
}

/// dbctl inside the cluster's network, with the world's environment.
pub fn dbctl(world: &World, cluster: &Cluster, args: &[&str]) -> Run {
    dbctl_in(world, &cluster.bridge(), args)
}

/// dbctl inside network namespace `namespace`, with the world's environment.
pub fn dbctl_in(world: &World, namespace: &str, args: &[&str]) -> Run {
    let bin = assert_cmd::cargo::cargo_bin("dbctl");
    let template = world.command(args);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", namespace]).arg(&bin).args(args);
    for (key, value) in template.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.current_dir(&world.repo);
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
