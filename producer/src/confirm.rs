//! Confirmation tracking: how many messages the broker confirmed or rejected on one connection,
//! written by the client's confirm callbacks (on the client's tasks) and read by the publishing
//! loop, which waits on them without polling.
//!
//! The raw-client rows of the benchmark count with the same type, so both sides pay the same
//! per-message cost.

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rabbitmq_stream_client::error::ProducerPublishError;
use rabbitmq_stream_client::types::Message as StreamMessage;
use rabbitmq_stream_client::{ConfirmationStatus, OnClosed};
use tokio::sync::Notify;

/// What the client hands a confirm callback: the message's status, or why publishing failed.
pub type ConfirmResult = Result<ConfirmationStatus, ProducerPublishError>;

/// Confirmation counts of one connection's messages, shared (in an [`Arc`]) with the client's
/// confirm callbacks; see [`Confirmations::callback`] and [`Confirmations::wait_until`].
#[derive(Debug, Default)]
pub struct Confirmations {
    confirmed: AtomicU64,
    rejected: AtomicU64,
    lost: AtomicBool,
    changed: Notify,
}

/// How [`Confirmations::wait_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// At least as many messages as asked for are confirmed or rejected.
    Enough,
    /// The connection was lost (the producer's `OnClosed` hook ran, or the producer says it is
    /// closed) before that.
    Lost,
    /// No confirmation or rejection arrived for the whole stall timeout.
    Stalled,
}

impl Confirmations {
    /// Fresh counts, to share with the callbacks of one connection.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Messages the broker confirmed.
    pub fn confirmed(&self) -> u64 {
        self.confirmed.load(Ordering::Acquire)
    }

    /// Messages the broker rejected, or whose publishing failed.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Acquire)
    }

    /// Messages confirmed or rejected: the ones no longer in flight.
    pub fn settled(&self) -> u64 {
        self.confirmed() + self.rejected()
    }

    /// Whether the connection was reported lost ([`Confirmations::connection_lost`]).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Counts one message's status (a rejection or failure is logged at `warn`) and wakes the
    /// waiter.
    pub fn record(&self, status: ConfirmResult) {
        match status {
            Ok(status) if status.confirmed() => {
                self.confirmed.fetch_add(1, Ordering::AcqRel);
            }
            Ok(status) => {
                tracing::warn!(
                    publishing_id = status.publishing_id(),
                    "the broker rejected a message: {:?}",
                    status.status()
                );
                self.rejected.fetch_add(1, Ordering::AcqRel);
                shared::metrics::record_nacks(1);
            }
            Err(err) => {
                tracing::warn!("publishing failed: {err}");
                self.rejected.fetch_add(1, Ordering::AcqRel);
                shared::metrics::record_nacks(1);
            }
        }
        self.changed.notify_one();
    }

    /// Marks the connection lost and wakes the waiter.
    pub fn connection_lost(&self) {
        self.lost.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// A confirm callback for `Producer::send` that counts the message here.
    pub fn callback(
        self: &Arc<Self>,
    ) -> impl FnOnce(ConfirmResult) -> Ready<()> + Send + Sync + 'static {
        let confirmations = Arc::clone(self);
        move |status| {
            confirmations.record(status);
            ready(())
        }
    }

    /// Waits until at least `settled` messages are confirmed or rejected. Ends early with
    /// [`Settled::Lost`] when the connection is lost (reported here, or `is_closed()` says so),
    /// and with [`Settled::Stalled`] when nothing settled for `stall`.
    pub async fn wait_until(
        &self,
        settled: u64,
        stall: Duration,
        is_closed: impl Fn() -> bool,
    ) -> Settled {
        let lost = || self.is_lost() || is_closed();
        while self.settled() < settled {
            if lost() {
                return Settled::Lost;
            }
            let before = self.settled();
            let waited = tokio::time::timeout(stall, self.changed.notified()).await;
            if waited.is_err() && self.settled() == before {
                return Settled::Stalled;
            }
        }
        if lost() {
            return Settled::Lost;
        }
        Settled::Enough
    }
}

/// The producer's `OnClosed` hook: marks its connection's [`Confirmations`] lost.
pub(crate) struct ConnectionLost(pub(crate) Arc<Confirmations>);

#[async_trait::async_trait]
impl OnClosed for ConnectionLost {
    async fn on_closed(&self, unconfirmed: Vec<StreamMessage>) {
        if !unconfirmed.is_empty() {
            tracing::warn!(
                "the producer's connection closed with {} messages unconfirmed",
                unconfirmed.len()
            );
        }
        self.0.connection_lost();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_ends_when_enough_settled_or_nothing_moves() {
        let confirmations = Confirmations::new();
        let never_closed = || false;
        assert_eq!(
            confirmations
                .wait_until(0, Duration::from_millis(10), never_closed)
                .await,
            Settled::Enough
        );
        assert_eq!(
            confirmations
                .wait_until(1, Duration::from_millis(10), never_closed)
                .await,
            Settled::Stalled
        );
        confirmations.record(Err(ProducerPublishError::Timeout));
        assert_eq!(
            (confirmations.confirmed(), confirmations.rejected()),
            (0, 1)
        );
        assert_eq!(
            confirmations
                .wait_until(1, Duration::from_millis(10), never_closed)
                .await,
            Settled::Enough
        );
        assert_eq!(
            confirmations
                .wait_until(2, Duration::from_secs(10), || true)
                .await,
            Settled::Lost
        );
        confirmations.connection_lost();
        assert_eq!(
            confirmations
                .wait_until(1, Duration::from_secs(10), never_closed)
                .await,
            Settled::Lost
        );
    }
}
