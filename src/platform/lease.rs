//! Leases every runner sees: a file with its holder and expiry in a directory on the
//! database's host (or a cluster's first node), created exclusively (`O_EXCL`, or
//! `set -C` over SSH). Two CI runners with separate clones share nothing but that
//! host, so that is where the lease lives. A holder that crashed frees it when it
//! expires, or at once when it ran on this machine and its process is gone.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use super::{Lease, LeaseHolder};
use crate::retry::{Check, Policy, Polled};
use crate::transport::Transport;

/// Takes the lease of `name` in `dir` on `transport` (a handle owning its connection),
/// waiting up to `wait` for a live holder. While held, a thread renews it every third
/// of its term (`expires_at - since`), so an operation longer than the term keeps it,
/// while a crashed runner's lease still ends one term after its last renewal. Released
/// when the returned [`Lease`] is dropped (only if still ours).
///
/// # Errors
/// Another runner holds an unexpired lease (naming it and when it expires), or the
/// directory cannot be written.
pub fn take<'a, T>(
    transport: T,
    dir: &Path,
    name: &str,
    holder: &LeaseHolder,
    wait: Duration,
) -> Result<Lease<'a>>
where
    T: std::ops::Deref + Send + Sync + 'static,
    T::Target: Transport,
{
    transport.make_dir(dir, 0o700, None)?;
    let path = dir.join(format!("{name}.json"));
    let body = serde_json::to_vec_pretty(holder)?;
    let polled = Policy::until(Some(wait), Duration::from_millis(500)).poll(
        &format!("the lease of `{name}`"),
        || -> Result<Check<(), Option<LeaseHolder>>> {
            if transport.create_new(&path, &body)? {
                return Ok(Check::Ready(()));
            }
            let current: Option<LeaseHolder> = transport
                .read_file(&path)?
                .and_then(|b| serde_json::from_slice(&b).ok());
            let stale = current.as_ref().is_none_or(|c| {
                c.expires_at
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|t| t <= jiff::Timestamp::now())
                    || died_here(c)
            });
            if stale {
                // A crashed holder's lease (or a damaged file): take it over.
                transport.remove_all(&path)?;
                if transport.create_new(&path, &body)? {
                    return Ok(Check::Ready(()));
                }
            }
            Ok(Check::Pending(current))
        },
    )?;
    if let Polled::TimedOut(current) = polled {
        let c = current.unwrap_or_else(|| holder.clone());
        bail!(
            "database `{name}` is being changed by another runner: dbctl {} (pid {}, user {} on {}, from `{}`) since {}; its lease on {} expires at {}; retry then, or pass `--lock-timeout SECONDS` to wait",
            c.operation,
            c.pid,
            c.user,
            c.host,
            c.repo,
            c.since,
            transport.host(),
            c.expires_at
        );
    }
    let transport = std::sync::Arc::new(transport);
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let renewer = {
        let transport = std::sync::Arc::clone(&transport);
        let path = path.clone();
        let mut holder = holder.clone();
        std::thread::spawn(move || {
            let term = term(&holder);
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(term / 3)
            {
                if !renew(&**transport, &path, &mut holder, term) {
                    break;
                }
            }
        })
    };
    let token = holder.token.clone();
    Ok(Lease::new(move || {
        drop(stop);
        let _ = renewer.join();
        // Release only our own lease (it may have expired and been taken over).
        if holder_of(&**transport, &path).is_some_and(|c| c.token == token) {
            let _ = transport.remove_all(&path);
        }
    }))
}

/// The lease's term: from `since` to `expires_at` (at least one second).
fn term(holder: &LeaseHolder) -> Duration {
    let at = |t: &str| t.parse::<jiff::Timestamp>().ok();
    at(&holder.expires_at)
        .zip(at(&holder.since))
        .and_then(|(end, start)| Duration::try_from(end.duration_since(start)).ok())
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1))
}

/// Who holds the lease at `path`, when it can be read.
fn holder_of<X: Transport + ?Sized>(transport: &X, path: &Path) -> Option<LeaseHolder> {
    transport
        .read_file(path)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Moves the lease's expiry one `term` past now if it is still `holder`'s; `false`
/// when it is not ours any more (taken over after expiring) or cannot be written.
fn renew<X: Transport + ?Sized>(
    transport: &X,
    path: &Path,
    holder: &mut LeaseHolder,
    term: Duration,
) -> bool {
    if holder_of(transport, path).is_none_or(|c| c.token != holder.token) {
        return false;
    }
    let now = jiff::Timestamp::now();
    let Ok(span) = jiff::SignedDuration::try_from(term) else {
        return false;
    };
    holder.expires_at = now.checked_add(span).unwrap_or(now).to_string();
    serde_json::to_vec_pretty(holder)
        .is_ok_and(|body| transport.write_file(path, &body, 0o600, None).is_ok())
}

/// Whether the holder ran on this machine and its process is gone (killed, crashed):
/// its lease is stale at once, not only when it expires.
fn died_here(holder: &LeaseHolder) -> bool {
    let here = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Ok(pid) = i32::try_from(holder.pid) else {
        return false;
    };
    holder.host == here
        && pid > 0
        && matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

/// Leases against a recording transport double: no host, no root.
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::transport::recording::Recording;

    fn holder(token: &str, host: &str, expires_in_s: i64) -> LeaseHolder {
        let now = jiff::Timestamp::now();
        LeaseHolder {
            token: token.into(),
            operation: "apply".into(),
            user: "ci".into(),
            host: host.into(),
            pid: 4242,
            repo: "/builds/clone".into(),
            since: now.to_string(),
            expires_at: now
                .checked_add(jiff::SignedDuration::from_secs(expires_in_s))
                .unwrap()
                .to_string(),
        }
    }

    #[test]
    fn a_held_lease_refuses_a_second_runner_naming_the_first_and_frees_on_release() {
        let host = Arc::new(Recording::new());
        let dir = Path::new("/srv/dbctl/.leases");
        let first = take(
            Arc::clone(&host),
            dir,
            "orders",
            &holder("a", "runner-1", 600),
            Duration::ZERO,
        )
        .unwrap();
        let err = take(
            Arc::clone(&host),
            dir,
            "orders",
            &holder("b", "runner-2", 600),
            Duration::ZERO,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("runner-1") && err.contains("being changed"),
            "{err}"
        );
        drop(first);
        assert!(
            host.file(&dir.join("orders.json")).is_none(),
            "the lease outlived its holder"
        );
        let second = take(
            Arc::clone(&host),
            dir,
            "orders",
            &holder("b", "runner-2", 600),
            Duration::ZERO,
        );
        assert!(second.is_ok());
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_not_released_by_its_old_holder() {
        let host = Arc::new(Recording::new());
        let dir = Path::new("/srv/dbctl/.leases");
        let path = dir.join("orders.json");
        let crashed = holder("old", "runner-9", -5);
        host.put(&path, &serde_json::to_vec(&crashed).unwrap());
        let _ours = take(
            Arc::clone(&host),
            dir,
            "orders",
            &holder("new", "runner-1", 600),
            Duration::ZERO,
        )
        .unwrap();
        let now: LeaseHolder = serde_json::from_slice(&host.file(&path).unwrap()).unwrap();
        assert_eq!(now.token, "new");
        // A renewal by the old holder finds the lease is not its own any more.
        let mut old = crashed;
        assert!(!renew(&*host, &path, &mut old, Duration::from_mins(1)));
    }
}
