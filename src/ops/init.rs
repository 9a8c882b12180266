//! `dbctl init`: scaffold a GitOps repo and the user's age identity.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::gitops::{self, CONFIG_PATH, CONNECTIONS_DIR, SPECS_DIR, WORK_DIR, git};
use crate::output::Report;
use crate::secret;

/// What `init` did.
#[derive(Debug, Serialize)]
pub struct InitReport {
    /// The repo root.
    pub repo: PathBuf,
    /// True when `git init` ran.
    pub git_initialised: bool,
    /// Files created (repo-relative).
    pub created: Vec<String>,
    /// The identity file.
    pub identity: PathBuf,
    /// True when the identity was created.
    pub identity_created: bool,
    /// The identity's recipient (`age1…`).
    pub recipient: String,
    /// The commit, when one was made.
    pub commit: Option<String>,
    /// Things the user should do by hand.
    pub notes: Vec<String>,
}

impl Report for InitReport {
    fn human(&self) -> String {
        let mut text = format!("GitOps repo ready at {}\n", self.repo.display());
        if self.git_initialised {
            text.push_str("  ran git init\n");
        }
        for file in &self.created {
            text.push_str(&format!("  created {file}\n"));
        }
        if self.identity_created {
            text.push_str(&format!(
                "  created age identity {} (keep it safe: it decrypts connection files)\n",
                self.identity.display()
            ));
        } else {
            text.push_str(&format!(
                "  using age identity {}\n",
                self.identity.display()
            ));
        }
        text.push_str(&format!("  recipient {}\n", self.recipient));
        for note in &self.notes {
            text.push_str(&format!("  note: {note}\n"));
        }
        if self.created.is_empty() {
            text.push_str("  nothing to create: already initialised\n");
        }
        text.push_str("next: dbctl create --type postgresql --size 10 my-first-db\n");
        text
    }
}

fn config_text(recipient: &str, identity: &Path) -> String {
    format!(
        "# dbctl configuration: targets, secret recipients and defaults.\n\
         # Shared by every clone of this repo; instances record it (see docs/architecture.md).\n\
         repo_id: {:016x}\n\
         default_target: local\n\
         targets:\n  \
           local:\n    \
             platform: local\n    \
             description: this machine, from the distro's database packages\n\
         secrets:\n  \
           # age recipients that can decrypt connection-file passwords.\n  \
           recipients:\n    \
             - {recipient} # {}\n\
         defaults:\n  \
           plan: small\n",
        rand::random::<u64>(),
        identity.display()
    )
}

/// Scaffolds `root` (created if missing): git repo, `etc/dbctl.yml` with a `local`
/// default target and the identity's recipient, `etc/databases/`, `connections/`, a
/// `.gitignore`; creates the age identity at `identity` if missing (0600). Existing
/// files are left alone. Commits what it created.
///
/// # Errors
/// I/O and git failures, naming the path.
pub fn init(root: &Path, identity: &Path) -> Result<InitReport> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create `{}`", root.display()))?;
    let root = root.canonicalize()?;
    let (_, git_initialised) = git::open_or_init(&root)?;
    let (recipient, identity_created) = secret::ensure_identity(identity)?;
    let mut created = Vec::new();
    let config = root.join(CONFIG_PATH);
    let mut notes = Vec::new();
    if config.exists() {
        // An existing configuration (e.g. copied from `example/`) keeps its text; a
        // `secrets` block with this identity's recipient is appended when it has none.
        let text = std::fs::read_to_string(&config)
            .with_context(|| format!("cannot read `{CONFIG_PATH}`"))?;
        if !text.contains(&recipient) {
            if text.lines().any(|l| l.starts_with("secrets:")) {
                notes.push(format!(
                    "`{CONFIG_PATH}` has a `secrets` block without this identity's recipient; add `{recipient}` to `secrets.recipients` to read new connection files"
                ));
            } else {
                let mut text = text;
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "secrets:\n  # age recipients that can decrypt connection-file passwords.\n  recipients:\n    - {recipient} # {}\n",
                    identity.display()
                ));
                gitops::write_atomic(&root, Path::new(CONFIG_PATH), text.as_bytes(), 0o644)?;
                created.push(format!("{CONFIG_PATH} (secrets.recipients)"));
            }
        }
    } else {
        gitops::write_atomic(
            &root,
            Path::new(CONFIG_PATH),
            config_text(&recipient, identity).as_bytes(),
            0o644,
        )?;
        created.push(CONFIG_PATH.to_owned());
    }
    for dir in [SPECS_DIR, CONNECTIONS_DIR] {
        if !root.join(dir).exists() {
            gitops::write_atomic(&root, &Path::new(dir).join(".gitkeep"), b"", 0o644)?;
            created.push(format!("{dir}/.gitkeep"));
        }
    }
    let ignore = root.join(".gitignore");
    let current = std::fs::read_to_string(&ignore).unwrap_or_default();
    let line = format!("/{WORK_DIR}/");
    if !current.lines().any(|l| l.trim() == line) {
        let mut text = current.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("# dbctl's locks and scratch files\n{line}\n"));
        gitops::write_atomic(&root, Path::new(".gitignore"), text.as_bytes(), 0o644)?;
        if current.is_empty() {
            created.push(".gitignore".into());
        }
    }
    let mut paths = vec![
        PathBuf::from(CONFIG_PATH),
        PathBuf::from(".gitignore"),
        Path::new(SPECS_DIR).join(".gitkeep"),
        Path::new(CONNECTIONS_DIR).join(".gitkeep"),
    ];
    paths.retain(|p| root.join(p).exists());
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let commit = git::commit_paths(
        &root,
        &refs,
        "dbctl init: GitOps repo for databases",
        git::Removals::Refused,
    )?;
    Ok(InitReport {
        repo: root,
        git_initialised,
        created,
        identity: identity.to_path_buf(),
        identity_created,
        recipient,
        commit: commit.map(|c| c.to_string()),
        notes,
    })
}
