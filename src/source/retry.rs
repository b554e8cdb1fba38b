//! When to retry a request and how long to wait first.
//!
//! Two kinds of failure are retried. *Transient* ones (a timeout, a dropped connection, 408,
//! 500, 502, 504) get a fixed number of retries ([`RemoteOptions::retries`]). *Throttling*
//! answers (429 Too Many Requests, 503 Slow Down) mean "the store is busy, come back later":
//! they are retried for as long as a time budget allows ([`RemoteOptions::throttle_budget`],
//! 30 s by default), because giving up after a few seconds turns a busy store into failed
//! ingests and queries. Waits grow exponentially from [`RemoteOptions::backoff`] up to
//! [`RemoteOptions::max_backoff`] with *full jitter* (a uniform draw between zero and the
//! current ceiling, as AWS recommends for many clients backing off at once), and are never
//! shorter than a `Retry-After` the server sent.

use super::http::RemoteOptions;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retryable {
    /// A timeout, a dropped connection or a server error: a few retries.
    Transient,
    /// The store asked the client to slow down (429, 503): retried within the time budget.
    Throttled,
}

impl Retryable {
    /// The kind of an HTTP status worth retrying, `None` for the others.
    pub(crate) fn of_status(status: u16) -> Option<Retryable> {
        match status {
            429 | 503 => Some(Retryable::Throttled),
            408 | 500..=599 => Some(Retryable::Transient),
            _ => None,
        }
    }
}

/// The retry schedule of one request.
#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    ceiling: Duration,
    retries_left: u32,
    budget: Duration,
    started: Instant,
    /// Exponent of the current wait ceiling.
    step: u32,
    /// Attempts made so far (the first included).
    attempts: u32,
}

impl Backoff {
    /// A schedule for a request about to be sent for the first time.
    pub(crate) fn new(options: &RemoteOptions) -> Backoff {
        Backoff {
            base: options.backoff,
            ceiling: options.max_backoff,
            retries_left: options.retries,
            budget: options.throttle_budget,
            started: Instant::now(),
            step: 0,
            attempts: 1,
        }
    }

    /// Attempts made so far, the first one included.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How long to wait before the next attempt after a failure of kind `why`, with the
    /// server's `Retry-After` if it sent one; `None` when the request should give up.
    pub(crate) fn next_wait(
        &mut self,
        why: Retryable,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(self.step.min(31)).unwrap_or(u32::MAX))
            .min(self.ceiling);
        let wait = full_jitter(ceiling).max(retry_after.unwrap_or_default());
        match why {
            Retryable::Transient => {
                if self.retries_left == 0 {
                    return None;
                }
                self.retries_left -= 1;
            }
            Retryable::Throttled => {
                if self.started.elapsed() + wait > self.budget {
                    return None;
                }
            }
        }
        self.step = self.step.saturating_add(1);
        self.attempts += 1;
        Some(wait)
    }
}

/// A uniform draw in `[0, ceiling]`.
pub(crate) fn full_jitter(ceiling: Duration) -> Duration {
    ceiling.mul_f64(unit_random())
}

/// A number in `[0, 1)` that differs between calls, threads and processes (not for
/// cryptography: it only keeps clients that back off together from retrying in step).
fn unit_random() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(retries: u32, budget_ms: u64) -> RemoteOptions {
        RemoteOptions {
            retries,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(80),
            throttle_budget: Duration::from_millis(budget_ms),
            ..RemoteOptions::default()
        }
    }

    #[test]
    fn transient_failures_get_a_fixed_number_of_retries() {
        let mut b = Backoff::new(&options(3, 0));
        for _ in 0..3 {
            let wait = b.next_wait(Retryable::Transient, None).unwrap();
            assert!(wait <= Duration::from_millis(80));
        }
        assert_eq!(b.next_wait(Retryable::Transient, None), None);
        assert_eq!(b.attempts(), 4);
    }

    #[test]
    fn throttling_is_retried_within_the_budget_and_honours_retry_after() {
        let mut b = Backoff::new(&options(0, 60_000));
        // Many more attempts than `retries` while the budget lasts.
        for _ in 0..20 {
            assert!(b.next_wait(Retryable::Throttled, None).is_some());
        }
        let asked = Duration::from_secs(2);
        assert!(b.next_wait(Retryable::Throttled, Some(asked)).unwrap() >= asked);
        // A wait that would end past the budget gives up.
        assert_eq!(
            b.next_wait(Retryable::Throttled, Some(Duration::from_secs(120))),
            None
        );
    }

    #[test]
    fn waits_are_jittered_below_a_growing_ceiling() {
        let mut b = Backoff::new(&options(100, 0));
        let waits: Vec<Duration> = (0..40)
            .map(|_| b.next_wait(Retryable::Transient, None).unwrap())
            .collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(80)));
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 30, "full jitter draws differ: {waits:?}");
        assert!(Retryable::of_status(503) == Some(Retryable::Throttled));
        assert!(Retryable::of_status(500) == Some(Retryable::Transient));
        assert!(Retryable::of_status(404).is_none());
    }
}
