//! Git through libgit2 (open, init, commit of exact paths) and the system `git` for
//! `push`, so the user's ssh config, agent and credential helpers apply.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use git2::{Index, IndexEntry, IndexTime, Oid, Repository, Signature};

/// Opens the git repository at `root`, running `git init` (libgit2) when there is none.
///
/// # Errors
/// libgit2 failures, naming the directory.
pub fn open_or_init(root: &Path) -> Result<(Repository, bool)> {
    match Repository::open(root) {
        Ok(repo) => Ok((repo, false)),
        Err(err) if err.code() == git2::ErrorCode::NotFound => {
            let repo = Repository::init(root)
                .with_context(|| format!("cannot run git init in `{}`", root.display()))?;
            Ok((repo, true))
        }
        Err(err) => Err(err).with_context(|| format!("cannot open git repo `{}`", root.display())),
    }
}

/// Commits exactly `paths` (repo-relative) as they are in the working tree — a path whose
/// file is gone is removed — on top of `HEAD`, leaving anything else the user staged
/// alone. Updates the index for those paths too. Returns `None` when nothing changed.
///
/// The author is the repo's `user.name`/`user.email`, else `dbctl <dbctl@localhost>`.
///
/// # Errors
/// libgit2 failures, naming the path.
pub fn commit_paths(root: &Path, paths: &[&Path], message: &str) -> Result<Option<Oid>> {
    let repo = Repository::open(root)
        .with_context(|| format!("`{}` is not a git repo", root.display()))?;
    let head = match repo.head() {
        Ok(head) => Some(head.peel_to_commit().context("cannot read HEAD commit")?),
        Err(_) => None,
    };
    let mut index = Index::new().context("cannot create an in-memory index")?;
    if let Some(commit) = &head {
        index
            .read_tree(&commit.tree()?)
            .context("cannot read HEAD tree")?;
    }
    let mut real_index = repo.index().context("cannot open the git index")?;
    for rel in paths {
        let abs = root.join(rel);
        let rel_str = rel.to_string_lossy();
        if abs.exists() {
            let blob = repo
                .blob_path(&abs)
                .with_context(|| format!("cannot hash `{rel_str}` into git"))?;
            let meta = std::fs::metadata(&abs)?;
            index.add(&entry_for(&rel_str, blob, meta.len()))?;
            real_index
                .add_path(rel)
                .with_context(|| format!("cannot stage `{rel_str}`"))?;
        } else {
            let _ = index.remove_path(rel);
            let _ = real_index.remove_path(rel);
        }
    }
    let tree_id = index
        .write_tree_to(&repo)
        .context("cannot write git tree")?;
    if head.as_ref().is_some_and(|c| c.tree_id() == tree_id) {
        real_index.write()?;
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id)?;
    let sig = repo
        .signature()
        .or_else(|_| Signature::now("dbctl", "dbctl@localhost"))?;
    let parents: Vec<_> = head.iter().collect();
    let oid = repo
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .context("cannot create git commit")?;
    real_index.write().context("cannot write the git index")?;
    Ok(Some(oid))
}

fn entry_for(path: &str, id: Oid, size: u64) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: 0o100_644,
        uid: 0,
        gid: 0,
        file_size: u32::try_from(size).unwrap_or(u32::MAX),
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// Pushes the current branch with the system `git push`, retrying up to 3 times with
/// backoff (2 s, 4 s) on failure.
///
/// # Errors
/// The last attempt's stderr when every attempt fails.
pub fn push(root: &Path) -> Result<()> {
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(2 * u64::from(attempt)));
        }
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["push", "--porcelain"])
            .output()
            .context("cannot run `git push`; is git installed?")?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    }
    bail!("`git push` failed after 3 attempts: {last}")
}
