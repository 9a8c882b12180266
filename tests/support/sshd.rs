//! A real sshd on 127.0.0.1 for one test: its own host key, config, authorized key
//! and `known_hosts`, started with `/usr/sbin/sshd -D` and stopped by PID on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    pub port: u16,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    child: Child,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(status.success());
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    /// A transport to this sshd as root, with its key and known host.
    pub fn transport(&self) -> dbctl::transport::Ssh {
        let mut opts = dbctl::transport::SshOptions::new("127.0.0.1");
        opts.port = Some(self.port);
        opts.user = Some("root".into());
        opts.identity = Some(self.client_key.clone());
        opts.known_hosts = Some(self.known_hosts.clone());
        dbctl::transport::Ssh::connect(&opts).unwrap()
    }

    /// Starts sshd in `dir`, accepting `client_key` for root, and writes a
    /// `known_hosts` with its host key.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 UsePAM no\nStrictModes no\nPasswordAuthentication no\nPermitRootLogin prohibit-password\nMaxStartups 50\n",
                host_key.display(),
                dir.join("sshd.pid").display(),
                dir.join("authorized_keys").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd (openssh-server) is installed");
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            client_key,
            known_hosts,
            child,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
