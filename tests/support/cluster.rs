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
        // The target's state directory on the nodes (this machine's filesystem): its
        // lease directory and the dbctl copy WAL archiving runs outlive the databases,
        // which took their mountpoints along.
        let state = PathBuf::from(format!("/srv/dbctl-{}", self.id));
        let _ = std::fs::remove_dir(state.join(".leases"));
        let _ = std::fs::remove_dir_all(state.join(".dbctl"));
        let _ = std::fs::remove_dir(state);
    }
}

/// dbctl inside the cluster's network, with the world's environment.
pub fn dbctl(world: &World, cluster: &Cluster, args: &[&str]) -> Run {
    dbctl_in(world, &cluster.bridge(), args)
}

/// [`dbctl`] with `env` added to the world's environment.
pub fn dbctl_with(world: &World, cluster: &Cluster, args: &[&str], env: &[(&str, &str)]) -> Run {
    dbctl_in_with(world, &cluster.bridge(), args, env)
}

/// `dbctl connection NAME --reveal -o json` inside network namespace `namespace`.
pub fn reveal_in(world: &World, namespace: &str, name: &str) -> serde_json::Value {
    dbctl_in(
        world,
        namespace,
        &["connection", name, "--reveal", "-o", "json"],
    )
    .ok()
    .json()
}

/// dbctl inside network namespace `namespace`, with the world's environment.
pub fn dbctl_in(world: &World, namespace: &str, args: &[&str]) -> Run {
    dbctl_in_with(world, namespace, args, &[])
}

/// [`dbctl_in`] with `env` added to the world's environment.
pub fn dbctl_in_with(world: &World, namespace: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
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
    cmd.envs(env.iter().copied());
    cmd.current_dir(&world.repo);
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The node running a database's groups per `dbctl status -o json`, its address, and
/// the other node.
pub fn placement(status: &serde_json::Value) -> (String, &'static str, &'static str) {
    let active = status["status"]["details"]["cluster"]["active_node"]
        .as_str()
        .unwrap_or_else(|| panic!("no active node: {status}"))
        .to_owned();
    let (ip, other) = if active == "node1" {
        ("10.203.0.11", "node2")
    } else {
        ("10.203.0.12", "node1")
    };
    (active, ip, other)
}

/// A SQL client reaching a database through the VIP 10.203.0.100 from the cluster's
/// network, as the application user (`user` is also the database's name).
#[derive(Clone, Copy)]
pub enum Client {
    /// `psql`.
    Psql,
    /// `mariadb`.
    Mariadb,
    /// `redis-cli` (the "SQL" is a command, split at spaces).
    Redis,
}

impl Client {
    /// Runs `sql` as `user` in the database named like the user; the trimmed output,
    /// or the client's error.
    pub fn query(
        self,
        cluster: &Cluster,
        user: &str,
        password: &str,
        sql: &str,
    ) -> Result<String, String> {
        self.query_as(cluster, (user, user), password, sql)
    }

    /// Runs `sql` as `user` in `database` (ignored by Redis); the trimmed output, or
    /// the client's error.
    pub fn query_as(
        self,
        cluster: &Cluster,
        (user, database): (&str, &str),
        password: &str,
        sql: &str,
    ) -> Result<String, String> {
        let out = match self {
            Self::Psql => cluster.exec(
                &[
                    "psql",
                    "-h",
                    "10.203.0.100",
                    "-U",
                    user,
                    "-d",
                    database,
                    "-Atc",
                    sql,
                ],
                &[("PGPASSWORD", password), ("PGCONNECT_TIMEOUT", "2")],
            ),
            Self::Mariadb => cluster.exec(
                &[
                    "mariadb",
                    "--no-defaults",
                    "--connect-timeout=2",
                    "-h",
                    "10.203.0.100",
                    "-u",
                    user,
                    "-D",
                    database,
                    "-N",
                    "-e",
                    sql,
                ],
                &[("MYSQL_PWD", password)],
            ),
            Self::Redis => {
                let mut args = vec![
                    "redis-cli",
                    "-h",
                    "10.203.0.100",
                    "--user",
                    user,
                    "--no-auth-warning",
                    "-e",
                ];
                args.extend(sql.split(' '));
                cluster.exec(&args, &[("REDISCLI_AUTH", password)])
            }
        };
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Retries `sql` until it answers (a failover in progress), for at most 120 s.
    pub fn query_until_up(
        self,
        cluster: &Cluster,
        user: &str,
        password: &str,
        sql: &str,
    ) -> String {
        let started = std::time::Instant::now();
        loop {
            match self.query(cluster, user, password, sql) {
                Ok(out) => return out,
                Err(err) => {
                    assert!(
                        started.elapsed() < std::time::Duration::from_mins(2),
                        "no failover: {err}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        }
    }
}
