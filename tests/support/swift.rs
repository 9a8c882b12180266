//! One real OpenStack Swift (tempauth + s3api: both APIs from one server) per test
//! binary, started on first use by `tests/swift/start` and stopped by PID by that
//! script's reaper once the test binary exits.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The running Swift.
pub struct Swift {
    /// The proxy's port (Swift and S3 APIs).
    pub port: u16,
    /// A 0600 file holding the key (`testing`): both stores read it.
    pub key_file: PathBuf,
}

static SWIFT: OnceLock<Swift> = OnceLock::new();

/// The shared Swift; the first caller starts it (about 10 s).
pub fn shared() -> &'static Swift {
    SWIFT.get_or_init(start)
}

fn free_block() -> u16 {
    let base = 18_100 + (std::process::id() % 80) as u16 * 10;
    (0..40)
        .map(|i| base + i * 5)
        .find(|p| (*p..p + 5).all(|q| TcpListener::bind(("127.0.0.1", q)).is_ok()))
        .expect("no free block of 5 ports for Swift")
}

fn start() -> Swift {
    let dir = tempfile::Builder::new()
        .prefix("dbctl-swift")
        .tempdir()
        .unwrap()
        .keep();
    let port = free_block();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/swift/start");
    let out = Command::new(&script)
        .arg(dir.join("swift"))
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Swift did not start: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let key_file = dir.join("key");
    std::fs::write(&key_file, "testing\n").unwrap();
    std::fs::set_permissions(
        &key_file,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    Swift { port, key_file }
}

impl Swift {
    /// `backup_stores:` YAML with a `swift` and an `s3` store on `container`, and a
    /// `dir` store at `dir`.
    pub fn stores_yaml(&self, container: &str, dir: &std::path::Path) -> String {
        format!(
            "backup_stores:\n  swift:\n    kind: swift\n    url: http://127.0.0.1:{port}/auth/v1.0\n    user: test:tester\n    container: {container}\n    secret_file: {key}\n  s3:\n    kind: s3\n    url: http://127.0.0.1:{port}\n    container: {container}\n    user: test:tester\n    secret_file: {key}\n  here:\n    kind: dir\n    path: {dir}\n",
            port = self.port,
            key = self.key_file.display(),
            dir = dir.display()
        )
    }
}

impl Swift {
    /// The object names in `container` under `prefix`.
    pub fn list(&self, container: &str, prefix: &str) -> Vec<String> {
        let (url, token) = self.auth();
        let out = Command::new("curl")
            .args(["-sf", "-H"])
            .arg(format!("X-Auth-Token: {token}"))
            .arg(format!("{url}/{container}?prefix={prefix}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn auth(&self) -> (String, String) {
        let auth = Command::new("curl")
            .args([
                "-sfi",
                "-H",
                "X-Auth-User: test:tester",
                "-H",
                "X-Auth-Key: testing",
            ])
            .arg(format!("http://127.0.0.1:{}/auth/v1.0", self.port))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&auth.stdout).into_owned();
        let header = |name: &str| {
            text.lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        (header("X-Storage-Url"), header("X-Auth-Token"))
    }

    /// Creates `container` (an S3 bucket too) through the Swift API; a freshly started
    /// Swift may answer 5xx for a moment, so a few tries.
    pub fn container(&self, container: &str) {
        let mut last = None;
        for _ in 0..10 {
            let (url, token) = self.auth();
            let out = Command::new("curl")
                .args(["-sf", "-X", "PUT", "-H"])
                .arg(format!("X-Auth-Token: {token}"))
                .arg(format!("{url}/{container}"))
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            last = Some(out);
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("creating container {container} failed: {last:?}");
    }
}
