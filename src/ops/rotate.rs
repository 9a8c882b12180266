//! `dbctl rotate-credentials`: new credentials without downtime, with two logins per
//! database — the spec's `user` (the owner) and its alternate `<user>_r` (a member that
//! acts as the owner). Each rotation sets a new password on the login the connection
//! file does not use, writes and commits the connection file naming it, and leaves the
//! other login as it was, so clients holding the previous file keep working: until
//! `--grace` seconds have passed (then it is retired: no password, sessions ended), or
//! until the next rotation gives it a new password.

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use super::Session;
use super::create::lease_holder;
use crate::catalog::EngineKind;
use crate::change::{Action, Change, Disruption};
use crate::gitops::connection::ConnectionFile;
use crate::gitops::{Repo, git};
use crate::output::Report;
use crate::platform::{Request, Role};
use crate::secret;

/// Flags of `dbctl rotate-credentials`.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Database name.
    pub name: String,
    /// Seconds to wait before retiring the previous login (`None`: keep it until the
    /// next rotation).
    pub grace_s: Option<u64>,
    /// `--no-commit`.
    pub no_commit: bool,
    /// `--push`.
    pub push: bool,
    /// `--lock-timeout` in seconds.
    pub lock_timeout_s: u64,
    /// `--dry-run`: say which login would get the new password; change nothing.
    pub dry_run: bool,
}

/// What the rotation did.
#[derive(Debug, Serialize)]
pub struct RotateReport {
    /// Database name.
    pub name: String,
    /// The login the new connection file names.
    pub login: String,
    /// The login clients of the previous file use.
    pub previous_login: String,
    /// True when the previous login was retired (after `--grace`).
    pub retired: bool,
    /// The commit.
    pub commit: Option<String>,
    /// True when pushed.
    pub pushed: bool,
    /// True for `--dry-run`: nothing changed.
    pub dry_run: bool,
}

impl Report for RotateReport {
    fn human(&self) -> String {
        if self.dry_run {
            return format!(
                "dry run: `{}` would get a new password on login `{}` (the connection file would name it); login `{}` would keep working {}; nothing changed\n",
                self.name,
                self.login,
                self.previous_login,
                if self.retired {
                    "until `--grace` ends"
                } else {
                    "until the next rotation"
                }
            );
        }
        let mut text = format!(
            "`{}`: new credentials for login `{}` in the connection file\n",
            self.name, self.login
        );
        if self.retired {
            text.push_str(&format!("login `{}` retired\n", self.previous_login));
        } else {
            text.push_str(&format!(
                "login `{}` keeps working until the next rotation (or pass `--grace SECONDS`)\n",
                self.previous_login
            ));
        }
        if let Some(commit) = &self.commit {
            text.push_str(&format!("committed {}\n", &commit[..commit.len().min(12)]));
        }
        text
    }
}

/// The other login of a database whose owner is `user`.
fn alternate(user: &str, current: &str) -> Result<String> {
    if current != user {
        return Ok(user.to_owned());
    }
    let alt = format!("{user}_r");
    if alt.len() > 63 {
        bail!("user `{user}` is too long for an alternate login (`{alt}`, over 63 characters)");
    }
    Ok(alt)
}

/// Runs `dbctl rotate-credentials`.
///
/// # Errors
/// An unknown database, an engine without two-login rotation (MongoDB), a connection
/// file this identity cannot decrypt, a held lock or lease, or a failed step.
pub fn rotate(session: &Session, opts: &RotateOptions) -> Result<RotateReport> {
    let repo = session.repo()?;
    if !opts.no_commit && !opts.dry_run {
        repo.require_git()?;
    }
    let spec = session.existing_spec(&repo, &opts.name)?;
    let platform = session.platform(&repo, &spec)?;
    if spec.engine == EngineKind::Mongodb {
        bail!(
            "`dbctl rotate-credentials` rotates PostgreSQL and MariaDB logins and Redis ACL users; {} (`{}`) is not supported yet",
            spec.engine,
            spec.name
        );
    }
    if opts.dry_run {
        let old = repo.require_connection(&spec.name)?;
        secret::decrypt(
            &old.password,
            &session.identity,
            &format!("{}: password", Repo::connection_rel(&spec.name).display()),
        )?;
        return Ok(RotateReport {
            name: spec.name.clone(),
            login: alternate(&spec.user, &old.username)?,
            previous_login: old.username,
            retired: opts.grace_s.is_some(),
            commit: None,
            pushed: false,
            dry_run: true,
        });
    }
    let _lock = super::lock(&repo, &spec.name, "rotate-credentials", opts.lock_timeout_s)?;
    let _lease = platform.lease(
        &spec,
        &lease_holder(&repo, "rotate-credentials"),
        Duration::from_secs(opts.lock_timeout_s),
    )?;
    let rel = Repo::connection_rel(&spec.name);
    let old = repo.require_connection(&spec.name)?;
    // Proves this runner may read the current credentials before replacing them.
    secret::decrypt(
        &old.password,
        &session.identity,
        &format!("{}: password", rel.display()),
    )?;
    let login = alternate(&spec.user, &old.username)?;
    let password = secret::generate_password();
    let change = Change {
        action: Action::Update,
        attribute: "credentials".into(),
        old: Some(old.username.clone().into()),
        new: Some(login.clone().into()),
        disruption: Disruption::None,
        reason: "rotate-credentials: a new password on the other login".into(),
    };
    let printer = &session.printer;
    let progress = |i: usize, n: usize, name: &str| printer.step(i, n, name);
    let request = Request {
        spec: &spec,
        changes: std::slice::from_ref(&change),
        password: Some(&password),
        login: Some(&login),
        progress: &progress,
        output: None,
        restore: None,
    };
    platform.preflight(&request)?;
    let applied = platform.apply(&request)?;
    let conn = ConnectionFile {
        username: login.clone(),
        password: secret::encrypt(&password, &repo.config.recipients)?,
        uri: applied.uri.clone().unwrap_or_else(|| old.uri.clone()),
        written_at: jiff::Timestamp::now().to_string(),
        ..old.clone()
    };
    repo.write(&rel, conn.to_yaml().as_bytes(), 0o644)?;
    let mut report = RotateReport {
        name: spec.name.clone(),
        login,
        previous_login: old.username.clone(),
        retired: false,
        commit: None,
        pushed: false,
        dry_run: false,
    };
    if !opts.no_commit {
        report.commit = git::commit_paths(
            repo.root(),
            &[&rel],
            &format!("dbctl rotate-credentials {}", spec.name),
            git::Removals::Refused,
        )?
        .map(|o| o.to_string());
        if opts.push && report.commit.is_some() {
            git::push(repo.root())?;
            report.pushed = true;
        }
    }
    if let Some(grace) = opts.grace_s {
        printer.status(&format!(
            "waiting {grace} s before retiring login `{}`",
            old.username
        ));
        std::thread::sleep(Duration::from_secs(grace));
        let renderer = crate::render::Renderer::new(&repo.assets);
        let ctx = minijinja::context! {
            spec => minijinja::Value::from(minijinja::value::Serde(&spec)),
            login => old.username.clone(),
        };
        let script = renderer.render(&format!("local/{}/retire.sql.j2", spec.engine), &ctx)?;
        let admin = platform.admin(&spec)?;
        let mut out = Vec::new();
        let (code, stderr) = admin.run(
            &mut std::io::Cursor::new(script.into_bytes()),
            &mut out,
            Role::Admin,
        )?;
        if code != 0 {
            bail!(
                "retiring login `{}` of `{}` failed (exit {code}): {}",
                old.username,
                spec.name,
                stderr.trim()
            );
        }
        report.retired = true;
    }
    Ok(report)
}
