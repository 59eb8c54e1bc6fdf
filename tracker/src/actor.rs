//! The tracker actor and its protocol: it receives [`Processed`] reports, stores the newest
//! processed offset when the count or the time trigger is due, confirms a store on [`Flush`],
//! answers [`GetStats`], and publishes [`StoredProgress`] on a watch channel. The messages are
//! typed here, beside the actor that receives them: its users know it only as `Recipient`s of
//! them, so either side can be replaced (a test double, another store).
//!
//! Stores run one at a time inside the actor (`ctx.wait`), so they reach the store in order and the
//! policy sees each one acknowledged before the next. A store is one small write; while one is under
//! way, reports wait in the bounded mailbox and the consumer coalesces what does not fit, so the
//! tracker never slows consumption.

use std::num::NonZeroU64;
use std::time::Duration;

use actix::prelude::*;
use shared::config::TrackerSettings;
use shared::error::{Error, Result};
use shared::metrics::TrackerMetrics;
use tokio::sync::watch;

use crate::policy::{Progress, StorePolicy};
use crate::store::OffsetStore;

/// Room in the tracker's mailbox. Reports are tiny and coalescible: a sender that finds it full
/// keeps its newest report and sends it with the next one.
pub const MAILBOX_CAPACITY: usize = 64;

/// "These messages are processed": the newest processed offset and how many messages were
/// processed since the previous report. Sent once per batch, never per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Processed {
    /// The offset of the last message processed.
    pub offset: u64,
    /// How many messages this report covers (at least 1).
    pub count: u64,
}

/// "Store the newest processed offset now and confirm it reached the broker": sent on the marker
/// and on shutdown. Answers the offset now stored, or `None` if nothing was ever processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "Result<Option<u64>>")]
pub struct Flush;

/// A snapshot of the tracker's work, for summaries and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, actix::MessageResponse)]
pub struct TrackerStats {
    /// The newest offset reported processed.
    pub last_processed: Option<u64>,
    /// The newest offset the tracker stored.
    pub last_stored: Option<u64>,
    /// Stores sent to the broker.
    pub stores: u64,
    /// Stores that failed.
    pub store_errors: u64,
}

/// Asks the tracker for its [`TrackerStats`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "TrackerStats")]
pub struct GetStats;

/// What the tracker has stored so far, published on a `tokio::sync::watch` channel: the consumer
/// reads it to keep the messages processed beyond the last store within the crash bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredProgress {
    /// The newest offset stored.
    pub offset: Option<u64>,
    /// How many messages had been reported processed when that offset was stored.
    pub processed: u64,
}

/// Closes the tracker's store connection and stops the actor; send it after the last [`Flush`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Close;

/// The offset tracker. See the module documentation.
pub struct Tracker<S: OffsetStore> {
    store: S,
    progress: Progress,
    store_every: Option<Duration>,
    stores: u64,
    store_errors: u64,
    stored_signal: watch::Sender<StoredProgress>,
    metrics: TrackerMetrics,
}

impl<S: OffsetStore> Tracker<S> {
    /// A tracker of `stream`'s offset (the name labels its metrics) storing through `store`,
    /// with the triggers of `settings`, knowing that the broker already holds `already_stored`
    /// for this consumer (it never stores at or below that).
    pub fn new(
        stream: &str,
        store: S,
        settings: &TrackerSettings,
        already_stored: Option<u64>,
    ) -> Self {
        let policy = StorePolicy {
            every_messages: NonZeroU64::new(settings.store_every_messages),
        };
        Self {
            store,
            progress: Progress::new(policy, already_stored),
            store_every: (!settings.store_every.is_zero()).then_some(settings.store_every),
            stores: 0,
            store_errors: 0,
            stored_signal: watch::Sender::new(StoredProgress {
                offset: already_stored,
                processed: 0,
            }),
            metrics: TrackerMetrics::new(stream),
        }
    }

    /// A receiver of what the tracker has stored, updated after every store.
    pub fn stored_progress(&self) -> watch::Receiver<StoredProgress> {
        self.stored_signal.subscribe()
    }

    fn stats(&self) -> TrackerStats {
        TrackerStats {
            last_processed: self.progress.last_processed(),
            last_stored: self.progress.last_stored(),
            stores: self.stores,
            store_errors: self.store_errors,
        }
    }

    /// Stores `offset`, holding further messages until the write is done.
    fn store(&mut self, offset: u64, ctx: &mut Context<Self>) {
        let processed = self.progress.reported_total();
        let write = self.store.store(offset);
        ctx.wait(write.into_actor(self).map(move |result, tracker, _| {
            tracker.acknowledge(offset, processed, result);
        }));
    }

    fn count_store_error(&mut self) {
        self.store_errors += 1;
        self.metrics.store_errors.increment(1);
    }

    /// Records the outcome of storing `offset`, which covered `processed` reported messages.
    fn acknowledge(&mut self, offset: u64, processed: u64, result: Result<()>) {
        match result {
            Ok(()) => {
                self.progress.stored(offset);
                self.stores += 1;
                self.metrics.stores.increment(1);
                self.metrics.last_stored.set(offset as f64);
                self.stored_signal.send_replace(StoredProgress {
                    offset: Some(offset),
                    processed,
                });
                tracing::debug!(offset, "offset stored");
            }
            Err(err) => {
                // Not fatal: the offset stays due and the next trigger or the flush tries again.
                self.count_store_error();
                tracing::warn!("{err}");
            }
        }
    }
}

impl<S: OffsetStore> Actor for Tracker<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if let Some(every) = self.store_every {
            ctx.run_interval(every, |tracker, ctx| {
                if let Some(offset) = tracker.progress.tick() {
                    tracker.store(offset, ctx);
                }
            });
        }
    }
}

impl<S: OffsetStore> Handler<Processed> for Tracker<S> {
    type Result = ();

    fn handle(&mut self, report: Processed, ctx: &mut Self::Context) {
        if let Some(offset) = self.progress.record(report.offset, report.count) {
            self.store(offset, ctx);
        }
    }
}

impl<S: OffsetStore> Handler<Flush> for Tracker<S> {
    type Result = ResponseActFuture<Self, Result<Option<u64>>>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let due = self.progress.flush();
        let processed = self.progress.reported_total();
        let write = due.map(|offset| self.store.store(offset));
        let read_back = self.store.query();
        let work = async move {
            if let Some(write) = write {
                write.await?;
            }
            // Same connection, so the broker has handled the store before it answers this query.
            read_back.await
        };
        Box::pin(work.into_actor(self).map(move |result, tracker, _| {
            let stored = match result {
                Ok(stored) => stored,
                Err(err) => {
                    tracker.count_store_error();
                    return Err(err);
                }
            };
            if let Some(offset) = due {
                if stored.is_none_or(|s| s < offset) {
                    tracker.count_store_error();
                    return Err(Error::Internal(format!(
                        "stored offset {offset}, but the broker holds {stored:?}"
                    )));
                }
                tracker.acknowledge(offset, processed, Ok(()));
            }
            Ok(tracker.progress.last_stored())
        }))
    }
}

impl<S: OffsetStore> Handler<GetStats> for Tracker<S> {
    type Result = TrackerStats;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> TrackerStats {
        self.stats()
    }
}

impl<S: OffsetStore> Handler<Close> for Tracker<S> {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Close, _: &mut Self::Context) -> Self::Result {
        Box::pin(
            self.store
                .close()
                .into_actor(self)
                .map(|(), _, ctx| ctx.stop()),
        )
    }
}
