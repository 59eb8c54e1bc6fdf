//! Trying again: one jittered exponential back-off for every reconnection and retry loop in the
//! workspace (the `backon` crate's), and [`patiently`], which retries while a stream has no
//! leader.
//!
//! Jitter keeps the members of a consumer group, or the partitions of a super stream, from
//! reconnecting in lock step after the same node failure.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// The first pause before trying again.
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between two tries.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(5);

fn exponential(deadline: Instant) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(FIRST_PAUSE)
        .with_max_delay(LONGEST_PAUSE)
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(deadline.saturating_duration_since(Instant::now())))
}

/// The pauses between tries until `deadline`: doubling from [`FIRST_PAUSE`] up to
/// [`LONGEST_PAUSE`], each with up to as much again of random jitter, and none once the next try
/// would start after `deadline`. For loops that must also watch something else while they wait
/// (a shutdown signal); otherwise use [`patiently`] or `backon` itself.
pub struct Backoff {
    pauses: backon::ExponentialBackoff,
    deadline: Instant,
}

impl Backoff {
    /// Pauses until `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Self {
            pauses: exponential(deadline).build(),
            deadline,
        }
    }

    /// Pauses for `limit` from now.
    pub fn for_(limit: Duration) -> Self {
        Self::until(Instant::now() + limit)
    }

    /// The next pause, or `None` when trying again would start past the deadline.
    pub fn next_pause(&mut self) -> Option<Duration> {
        let pause = self.pauses.next()?;
        (Instant::now() + pause <= self.deadline).then_some(pause)
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Runs `attempt` again while it fails with [`Error::Unavailable`] (a stream without a leader for
/// the moment: just created, or failing over), with [`Backoff`] pauses for up to `limit`; any
/// other outcome is returned at once.
pub async fn patiently<T, F, Fut>(limit: Duration, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    attempt
        .retry(exponential(Instant::now() + limit))
        .sleep(tokio::time::sleep)
        .when(|err| matches!(err, Error::Unavailable { .. }))
        .notify(|err, pause| {
            tracing::info!(
                "{err}; trying again in {}",
                humantime::format_duration(pause)
            )
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_grow_with_jitter_and_stop_at_the_deadline() {
        let mut backoff = Backoff::for_(Duration::from_secs(12));
        let pauses: Vec<Duration> = std::iter::from_fn(|| backoff.next_pause())
            .take(100)
            .collect();
        assert!(!pauses.is_empty());
        assert!(pauses[0] >= FIRST_PAUSE && pauses[0] <= FIRST_PAUSE * 2);
        assert!(pauses.iter().all(|p| *p <= LONGEST_PAUSE * 2));
        // Bounded by the deadline: no more than the 12 s allow in all.
        assert!(pauses.iter().sum::<Duration>() <= Duration::from_secs(13));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_while_unavailable() {
        let mut tries = 0;
        let result: Result<u32> = patiently(Duration::from_secs(30), || {
            tries += 1;
            let outcome = if tries < 3 {
                Err(Error::Unavailable {
                    what: "test",
                    stream: "s".into(),
                })
            } else {
                Ok(7)
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result.ok(), Some(7));
        assert_eq!(tries, 3);

        let mut tries = 0;
        let result: Result<u32> = patiently(Duration::from_secs(30), || {
            tries += 1;
            async { Err(Error::Usage("no".into())) }
        })
        .await;
        assert!(matches!(result, Err(Error::Usage(_))));
        assert_eq!(tries, 1);
    }
}
