//! A recording [`Transport`] double for unit tests (the idea of Terraform's
//! communicator test double): files live in memory, commands answer from scripted
//! rules matched on their command line, and every command is recorded, so host,
//! lease and engine logic is tested without root, servers or SSH. Only for tests;
//! the live tiers use [`super::Local`] and [`super::Ssh`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{CommandSpec, Output, Stream, Transport, TransportError};

/// A scripted answer: commands whose displayed line contains `needle` get `output`.
struct Rule {
    needle: String,
    output: Output,
}

/// The double. Commands no rule matches fail with exit code 127 (`not scripted`), so a
/// test sees the command it forgot to script.
#[derive(Default)]
pub struct Recording {
    files: Mutex<BTreeMap<PathBuf, Vec<u8>>>,
    rules: Mutex<Vec<Rule>>,
    commands: Mutex<Vec<String>>,
}

impl Recording {
    /// An empty machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commands whose line contains `needle` print `stdout` and exit `code`; later
    /// rules win over earlier ones.
    pub fn answer(&self, needle: &str, code: i32, stdout: &str) -> &Self {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push(Rule {
                needle: needle.to_owned(),
                output: Output {
                    code,
                    stdout: stdout.to_owned(),
                    stderr: if code == 0 {
                        String::new()
                    } else {
                        "scripted failure".into()
                    },
                },
            });
        }
        self
    }

    /// A file at `path` with `contents`.
    pub fn put(&self, path: &Path, contents: &[u8]) {
        if let Ok(mut files) = self.files.lock() {
            files.insert(path.to_owned(), contents.to_vec());
        }
    }

    /// The file at `path`, if any.
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        self.files.lock().ok()?.get(path).cloned()
    }

    /// Every command run so far, as displayed (no secrets: they go by stdin and env).
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn answer_for(&self, cmd: &CommandSpec) -> Output {
        let line = cmd.display();
        if let Ok(mut commands) = self.commands.lock() {
            commands.push(line.clone());
        }
        self.rules
            .lock()
            .ok()
            .and_then(|rules| {
                rules
                    .iter()
                    .rev()
                    .find(|r| line.contains(&r.needle))
                    .map(|r| r.output.clone())
            })
            .unwrap_or(Output {
                code: 127,
                stdout: String::new(),
                stderr: format!("not scripted: {line}"),
            })
    }
}

impl Transport for Recording {
    fn host(&self) -> &'static str {
        "double"
    }

    fn is_root(&self) -> bool {
        false
    }

    fn user(&self) -> &'static str {
        "tester"
    }

    fn run_streaming(
        &self,
        cmd: &CommandSpec,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<Output, TransportError> {
        let out = self.answer_for(cmd);
        for line in out.stdout.lines() {
            on_line(Stream::Stdout, line);
        }
        for line in out.stderr.lines() {
            on_line(Stream::Stderr, line);
        }
        Ok(out)
    }

    fn run_piped(
        &self,
        cmd: &CommandSpec,
        _input: &mut (dyn std::io::Read + Send),
        output: &mut dyn std::io::Write,
    ) -> Result<(i32, String), TransportError> {
        let out = self.answer_for(cmd);
        output
            .write_all(out.stdout.as_bytes())
            .map_err(|source| TransportError::Spawn {
                host: self.host().into(),
                command: cmd.display(),
                source,
            })?;
        Ok((out.code, out.stderr))
    }

    fn spawn_detached(&self, cmd: &CommandSpec, _log: &Path) -> Result<u32, TransportError> {
        self.answer_for(cmd);
        Ok(4242)
    }

    fn write_file(
        &self,
        path: &Path,
        contents: &[u8],
        _mode: u32,
        _owner: Option<&str>,
    ) -> Result<(), TransportError> {
        self.put(path, contents);
        Ok(())
    }

    fn create_new(&self, path: &Path, contents: &[u8]) -> Result<bool, TransportError> {
        let mut files = self.files.lock().map_err(|_| TransportError::File {
            host: "double".into(),
            action: "create",
            path: path.to_owned(),
            source: std::io::Error::other("poisoned"),
        })?;
        if files.contains_key(path) {
            return Ok(false);
        }
        files.insert(path.to_owned(), contents.to_vec());
        Ok(true)
    }

    fn make_dir(
        &self,
        _path: &Path,
        _mode: u32,
        _owner: Option<&str>,
    ) -> Result<(), TransportError> {
        Ok(())
    }

    fn remove_all(&self, path: &Path) -> Result<(), TransportError> {
        if let Ok(mut files) = self.files.lock() {
            files.retain(|p, _| !p.starts_with(path));
        }
        Ok(())
    }

    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        Ok(self.file(path))
    }

    fn exists(&self, path: &Path) -> bool {
        self.files
            .lock()
            .is_ok_and(|files| files.keys().any(|p| p.starts_with(path)))
    }

    fn free_bytes(&self, _path: &Path) -> Result<u64, TransportError> {
        Ok(100 << 30)
    }

    fn used_bytes(&self, _path: &Path) -> u64 {
        0
    }

    fn process_alive(&self, _pid: u32) -> bool {
        false
    }

    fn process_matches(&self, _pid: u32, _exe: Option<&Path>, _cwd: &Path) -> bool {
        false
    }

    fn signal(&self, _pid: u32, _signal: &str) -> Result<(), TransportError> {
        Ok(())
    }

    fn find_program(&self, candidates: &[String]) -> Option<PathBuf> {
        candidates.first().map(PathBuf::from)
    }

    fn user_exists(&self, _user: &str) -> bool {
        true
    }

    fn path_traversable_by(&self, _path: &Path, _user: &str) -> bool {
        true
    }

    fn list_dir(&self, path: &Path) -> Vec<String> {
        self.files
            .lock()
            .map(|files| {
                files
                    .keys()
                    .filter_map(|p| p.strip_prefix(path).ok())
                    .filter_map(|rest| rest.components().next())
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn port_in_use(&self, _port: u16) -> bool {
        false
    }
}
