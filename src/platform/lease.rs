//! Leases every runner sees: a file with its holder and expiry in a directory on the
//! database's host (or a cluster's first node), created exclusively (`O_EXCL`, or
//! `set -C` over SSH). Two CI runners with separate clones share nothing but that
//! host, so that is where the lease lives. A holder that crashed frees it when it
//! expires, or at once when it ran on this machine and its process is gone.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Lease, LeaseHolder};
use crate::transport::Transport;

/// Takes the lease of `name` in `dir` on `transport` (a reference, or a handle that
/// owns its connection), waiting up to `wait` for a live holder; released when the
/// returned [`Lease`] is dropped (only if still ours).
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
    T: std::ops::Deref + 'a,
    T::Target: Transport,
{
    transport.make_dir(dir, 0o700, None)?;
    let path = dir.join(format!("{name}.json"));
    let body = serde_json::to_vec_pretty(holder)?;
    let deadline = Instant::now().checked_add(wait);
    loop {
        if transport.create_new(&path, &body)? {
            break;
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
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() < d) {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
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
    let token = holder.token.clone();
    Ok(Lease::new(move || {
        // Release only our own lease (it may have expired and been taken over).
        let ours = transport
            .read_file(&path)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<LeaseHolder>(&b).ok())
            .is_some_and(|c| c.token == token);
        if ours {
            let _ = transport.remove_all(&path);
        }
    }))
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
