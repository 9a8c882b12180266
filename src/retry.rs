//! One policy for waiting, built on `backon`'s exponential backoff.
//!
//! Two shapes of waiting run through here, and nowhere else in dbctl:
//! - **retries** of an operation that fails for a while and then works (a git index lock,
//!   an SSH connection, an admin batch racing a server start): [`Policy::retry`], a bounded
//!   number of attempts;
//! - **polls** of a state that takes a while to arrive (a Heat stack, a resource group,
//!   a server accepting connections, a lock another run holds): [`Policy::poll`], bounded
//!   by a deadline of wall time, so the time the checks themselves take counts too.
//!
//! Every pause is logged as a `tracing` debug event (seen with `--verbose`), naming
//! what is waited for.

use std::time::{Duration, Instant};

use backon::{BlockingRetryable, ExponentialBuilder};

/// How long to pause between attempts, and when to give up.
///
/// Pauses start at `first` and grow by `factor` up to `max`. A retry gives up after
/// `attempts` tries in all; a poll gives up when `within` has passed since it started
/// (`None`: never).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    first: Duration,
    max: Duration,
    factor: f32,
    attempts: usize,
    within: Option<Duration>,
}

/// What one check of a [`Policy::poll`] found.
#[derive(Debug)]
pub enum Check<T, P> {
    /// The state arrived: the poll returns it.
    Ready(T),
    /// Not yet; `P` is what was seen, for the message when the poll times out.
    Pending(P),
}

/// How a [`Policy::poll`] ended without an error of its own check.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled<T, P> {
    /// The state arrived in time.
    Ready(T),
    /// The deadline passed; the last state seen.
    TimedOut(P),
}

/// A poll step: still waiting, or a check that failed (which ends the poll at once).
enum Step<P, E> {
    Pending(P),
    Failed(E),
}

impl Policy {
    /// Retries with pauses of `first`, then doubling up to 8 × `first`, for `attempts`
    /// tries in all (at least one).
    #[must_use]
    pub const fn attempts(attempts: usize, first: Duration) -> Self {
        Self {
            first,
            max: first.saturating_mul(8),
            factor: 2.0,
            attempts: if attempts == 0 { 1 } else { attempts },
            within: None,
        }
    }

    /// Retries with the same pause `every` time, for `attempts` tries in all.
    #[must_use]
    pub const fn steady(attempts: usize, every: Duration) -> Self {
        Self {
            factor: 1.0,
            max: every,
            ..Self::attempts(attempts, every)
        }
    }

    /// Polls every `every` until `within` has passed (`None`: until the state arrives).
    #[must_use]
    pub const fn until(within: Option<Duration>, every: Duration) -> Self {
        Self {
            first: every,
            max: every,
            factor: 1.0,
            attempts: usize::MAX,
            within,
        }
    }

    /// The same policy with pauses that grow by half each time, up to `max`.
    #[must_use]
    pub const fn growing_to(self, max: Duration) -> Self {
        Self {
            max,
            factor: 1.5,
            ..self
        }
    }

    /// The same policy with another deadline (`--timeout`).
    #[must_use]
    pub const fn within(self, within: Option<Duration>) -> Self {
        Self { within, ..self }
    }

    /// The deadline of a poll, as seconds for messages (0 when there is none).
    #[must_use]
    pub fn within_secs(&self) -> u64 {
        self.within.map_or(0, |w| w.as_secs())
    }

    fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::new()
            .with_min_delay(self.first)
            .with_max_delay(self.max)
            .with_factor(self.factor);
        if self.attempts == usize::MAX {
            builder.without_max_times()
        } else {
            builder.with_max_times(self.attempts - 1)
        }
    }

    /// Runs `op` until it succeeds, it fails with an error `transient` rejects, or the
    /// attempts are used up; returns the last result. `what` names the operation in the
    /// debug log.
    ///
    /// # Errors
    /// `op`'s last error.
    pub fn retry<T, E>(
        &self,
        what: &str,
        op: impl FnMut() -> Result<T, E>,
        transient: impl FnMut(&E) -> bool,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
    {
        op.retry(self.backoff())
            .when(transient)
            .notify(|err: &E, pause: Duration| {
                tracing::debug!("{what}: {err}; trying again in {} ms", pause.as_millis());
            })
            .call()
    }

    /// Checks until `check` says [`Check::Ready`] or the deadline passes; a check that
    /// fails ends the poll with its error. `what` names the awaited state in the debug log.
    ///
    /// # Errors
    /// `check`'s error.
    pub fn poll<T, P, E>(
        &self,
        what: &str,
        mut check: impl FnMut() -> Result<Check<T, P>, E>,
    ) -> Result<Polled<T, P>, E> {
        // A deadline too far to add to now is as good as none.
        let deadline = self.within.and_then(|w| Instant::now().checked_add(w));
        let outcome = (|| match check() {
            Ok(Check::Ready(value)) => Ok(value),
            Ok(Check::Pending(seen)) => Err(Step::Pending(seen)),
            Err(err) => Err(Step::Failed(err)),
        })
        .retry(self.backoff())
        .when(|step: &Step<P, E>| {
            matches!(step, Step::Pending(_)) && deadline.is_none_or(|d| Instant::now() < d)
        })
        .notify(|_: &Step<P, E>, pause: Duration| {
            tracing::debug!("waiting for {what}; next check in {} ms", pause.as_millis());
        })
        .call();
        match outcome {
            Ok(value) => Ok(Polled::Ready(value)),
            Err(Step::Pending(seen)) => Ok(Polled::TimedOut(seen)),
            Err(Step::Failed(err)) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_stops_at_success_and_after_its_attempts() {
        let fast = Policy::attempts(3, Duration::from_millis(1));
        let mut calls = 0;
        let ok: Result<u32, String> = fast.retry(
            "test",
            || {
                calls += 1;
                if calls < 2 {
                    Err("busy".into())
                } else {
                    Ok(calls)
                }
            },
            |_| true,
        );
        assert_eq!(ok, Ok(2));

        let mut calls = 0;
        let failed: Result<(), String> = fast.retry(
            "test",
            || {
                calls += 1;
                Err(format!("busy {calls}"))
            },
            |_| true,
        );
        assert_eq!(
            failed,
            Err("busy 3".into()),
            "three attempts, the last error"
        );

        let mut calls = 0;
        let permanent: Result<(), String> = fast.retry(
            "test",
            || {
                calls += 1;
                Err("host key mismatch".into())
            },
            |e: &String| !e.contains("host key"),
        );
        assert!(permanent.is_err());
        assert_eq!(calls, 1, "an error that retrying cannot fix is not retried");
    }

    #[test]
    fn a_poll_ends_ready_at_its_deadline_or_at_a_failed_check() {
        let every = Duration::from_millis(5);
        let mut seen = 0;
        let ready: Result<_, String> =
            Policy::until(Some(Duration::from_secs(5)), every).poll("test", || {
                seen += 1;
                Ok(if seen == 3 {
                    Check::Ready("up")
                } else {
                    Check::Pending(seen)
                })
            });
        assert_eq!(ready, Ok(Polled::Ready("up")));

        let started = Instant::now();
        let timed_out: Result<Polled<(), &str>, String> =
            Policy::until(Some(Duration::from_millis(60)), every)
                .poll("test", || Ok(Check::Pending("starting")));
        assert_eq!(timed_out, Ok(Polled::TimedOut("starting")));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(60) && took < Duration::from_secs(2),
            "{took:?}"
        );

        let mut checks = 0;
        let failed: Result<Polled<(), ()>, String> =
            Policy::until(None, every).poll("test", || {
                checks += 1;
                if checks == 2 {
                    Err("gone".into())
                } else {
                    Ok(Check::Pending(()))
                }
            });
        assert_eq!(failed, Err("gone".into()));
    }
}
