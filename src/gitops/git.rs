//! Git through libgit2 (open, init, commit of exact paths) and the system `git` for
//! `push`, so the user's ssh config, agent and credential helpers apply.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use git2::{Index, IndexEntry, IndexTime, Oid, Repository, Signature};

use crate::retry::Policy;
use crate::safefs::Anchor;

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

/// The first commit of HEAD's history (the oldest root, when several).
///
/// # Errors
/// No git repo at `root`, or no commit yet.
pub fn root_commit(root: &Path) -> Result<Oid> {
    let repo = Repository::open(root)?;
    let mut walk = repo.revwalk()?;
    walk.push_head()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    walk.next()
        .context("the repo has no commit")?
        .context("cannot walk the history")
}

/// Whether [`commit_paths`] may record a path whose file is gone as deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removals {
    /// `delete`, after the database is gone: missing files are committed as removed.
    Allowed,
    /// Every other verb: a missing file is left as HEAD has it, so no run ever stages
    /// the deletion of a live database's spec or connection file.
    Refused,
}

/// How a commit is retried while another git process holds `.git/index.lock` or a ref
/// lock: 8 tries, pauses from 0.2 s doubling to 1.6 s (about 8 s in all).
const LOCK_RETRY: Policy = Policy::attempts(8, Duration::from_millis(200));

/// Commits exactly `paths` (repo-relative) as they are in the working tree on top of
/// `HEAD`, leaving anything else the user staged alone; a path whose file is gone is
/// removed only with [`Removals::Allowed`]. Files are read without following links
/// (a link is refused, so no file outside the repo lands in a commit). The index is
/// updated for those paths first, then the commit is made, so a failure at any point
/// leaves at worst the files staged, never an index that contradicts HEAD; a re-run
/// commits them. Returns `None` when HEAD already has them.
///
/// The author is the repo's `user.name`/`user.email`, else `dbctl <dbctl@localhost>`.
///
/// # Errors
/// A link or unreadable file, naming it; git's lock still held after the retries
/// (naming `.git/index.lock`); other libgit2 failures.
pub fn commit_paths(
    root: &Path,
    paths: &[&Path],
    message: &str,
    removals: Removals,
) -> Result<Option<Oid>> {
    let anchor = Anchor::new(root);
    let mut contents = Vec::new();
    for rel in paths {
        let bytes = anchor
            .read(rel)
            .with_context(|| format!("cannot commit `{}`", rel.display()))?;
        contents.push((*rel, bytes));
    }
    let locked = |err: &git2::Error| err.code() == git2::ErrorCode::Locked;
    match LOCK_RETRY.retry(
        "git commit",
        || try_commit(root, &contents, message, removals),
        locked,
    ) {
        Err(err) if locked(&err) => bail!(
            "cannot commit in `{}`: git is locked by another process (`.git/index.lock` or a ref lock; {}); the files are written, so re-running dbctl once that git process has ended commits them",
            root.display(),
            err.message()
        ),
        Err(err) => {
            Err(anyhow::Error::new(err).context(format!("cannot commit in `{}`", root.display())))
        }
        Ok(oid) => Ok(oid),
    }
}

fn try_commit(
    root: &Path,
    contents: &[(&Path, Option<Vec<u8>>)],
    message: &str,
    removals: Removals,
) -> Result<Option<Oid>, git2::Error> {
    let repo = Repository::open(root)?;
    let head = match repo.head() {
        Ok(head) => Some(head.peel_to_commit()?),
        Err(_) => None,
    };
    let mut index = Index::new()?;
    if let Some(commit) = &head {
        index.read_tree(&commit.tree()?)?;
    }
    let mut real_index = repo.index()?;
    for (rel, bytes) in contents {
        let rel_str = rel.to_string_lossy();
        match bytes {
            Some(bytes) => {
                let blob = repo.blob(bytes)?;
                let entry = entry_for(&rel_str, blob, bytes.len());
                index.add(&entry)?;
                real_index.add_frombuffer(&entry, bytes)?;
            }
            None if removals == Removals::Allowed => {
                let _ = index.remove_path(rel);
                let _ = real_index.remove_path(rel);
            }
            None => {}
        }
    }
    real_index.write()?;
    let tree_id = index.write_tree_to(&repo)?;
    if head.as_ref().is_some_and(|c| c.tree_id() == tree_id) {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id)?;
    let sig = repo
        .signature()
        .or_else(|_| Signature::now("dbctl", "dbctl@localhost"))?;
    let parents: Vec<_> = head.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .map(Some)
}

fn entry_for(path: &str, id: Oid, size: usize) -> IndexEntry {
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

/// How [`push`] is retried: 4 tries, pauses from 2 s doubling.
const PUSH_RETRY: Policy = Policy::attempts(4, Duration::from_secs(2));

/// Pushes the current branch with the system `git push` (the user's ssh config, agent
/// and credential helpers apply). When another clone pushed first (the push is
/// rejected as not a fast-forward), fetches and rebases this clone's unpushed commits —
/// dbctl's own — onto the upstream branch (`git pull --rebase --autostash`), then pushes
/// again; other failures are retried with backoff (2 s, 4 s, 8 s).
///
/// # Errors
/// A rebase conflict (the rebase is aborted, so the clone is as before the pull, the
/// commit kept locally), or the last attempt's stderr when every attempt fails.
pub fn push(root: &Path) -> Result<()> {
    let git = |args: &[&str]| -> Result<std::process::Output> {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .with_context(|| format!("cannot run `git {}`; is git installed?", args.join(" ")))
    };
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_owned()
    };
    // `Again`: this push failed and may work when tried again (after the rebase, when
    // the remote was ahead); `Fatal`: it cannot.
    let attempt = || -> std::result::Result<(), PushFailure> {
        let git = |args: &[&str]| git(args).map_err(PushFailure::Fatal);
        let out = git(&["push", "--porcelain"])?;
        if out.status.success() {
            return Ok(());
        }
        let last = text(&out);
        let behind = ["non-fast-forward", "fetch first", "[rejected]", "rejected"]
            .iter()
            .any(|m| last.contains(m));
        if behind {
            let pull = git(&["pull", "--rebase", "--autostash", "--quiet"])?;
            if !pull.status.success() {
                let detail = text(&pull);
                let conflicted = git(&["diff", "--name-only", "--diff-filter=U"])?;
                let conflicted = String::from_utf8_lossy(&conflicted.stdout).into_owned();
                let _ = git(&["rebase", "--abort"]);
                // The user's own commits conflict, not dbctl's files: a merge of the
                // end states may still be clean, and keeps their history as it is.
                let ours = conflicted.lines().any(|f| {
                    f.starts_with(&format!("{}/", super::SPECS_DIR))
                        || f.starts_with(&format!("{}/", super::CONNECTIONS_DIR))
                });
                let merged = !ours
                    && !conflicted.trim().is_empty()
                    && git(&["pull", "--no-rebase", "--no-edit", "--quiet"])?
                        .status
                        .success();
                if !merged {
                    let _ = git(&["merge", "--abort"]);
                    return Err(PushFailure::Fatal(anyhow::anyhow!(
                        "`git push` was rejected because the remote has new commits, and rebasing this clone's commits onto them conflicts{}: {detail}; the commit is kept locally: resolve with `git pull --rebase`, then `git push`",
                        if conflicted.trim().is_empty() {
                            String::new()
                        } else {
                            format!(" in {}", conflicted.lines().collect::<Vec<_>>().join(", "))
                        }
                    )));
                }
            }
        }
        Err(PushFailure::Again(last))
    };
    match PUSH_RETRY.retry("git push", attempt, |f| matches!(f, PushFailure::Again(_))) {
        Ok(()) => Ok(()),
        Err(PushFailure::Again(last)) => bail!("`git push` failed after 4 attempts: {last}"),
        Err(PushFailure::Fatal(err)) => Err(err),
    }
}

/// Why one `git push` of [`push`] failed.
#[derive(Debug)]
enum PushFailure {
    /// Worth trying again; git's output.
    Again(String),
    /// Not worth trying again (a conflict, git missing).
    Fatal(anyhow::Error),
}

impl std::fmt::Display for PushFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Again(text) => f.write_str(text),
            Self::Fatal(err) => write!(f, "{err:#}"),
        }
    }
}
