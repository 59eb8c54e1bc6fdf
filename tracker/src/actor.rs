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
use shared::offset_spec::show_offset;
use shared::retry::Backoff;
use std::rc::Rc;
use tokio::sync::watch;

use crate::policy::{Progress, StorePolicy};
use crate::store::OffsetStore;

/// How long a [`Flush`] keeps trying to store and confirm before it fails.
pub const FLUSH_PATIENCE: Duration = Duration::from_secs(15);

/// Longest one store-and-confirm attempt of a [`Flush`] may take (the client's query has no
/// deadline of its own).
const FLUSH_ATTEMPT: Duration = Duration::from_secs(5);

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

/// "This consumer is (again) its group's active member, and the group's stored offset is
/// `stored`": the tracker goes on from there — what it stores next is above `stored` — whatever
/// this process processed or stored in an earlier activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Activate {
    /// The group's stored offset, as read when the broker made this member active.
    pub stored: Option<u64>,
}

/// "Another member is active now": nothing is stored until the next [`Activate`] — not even a
/// store that failed earlier and would be tried again — so that this member never overwrites the
/// offset the next one stores. Send it after the handover's [`Flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Deactivate;

/// Closes the tracker's store connection and stops the actor; send it after the last [`Flush`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Close;

/// The offset tracker. See the module documentation.
pub struct Tracker<S: OffsetStore> {
    store: Rc<S>,
    /// The stream (or partition) whose offset this is.
    stream: String,
    progress: Progress,
    store_every: Option<Duration>,
    stores: u64,
    store_errors: u64,
    stored_signal: watch::Sender<StoredProgress>,
    metrics: TrackerMetrics,
    /// Whether stores may be made (see [`Deactivate`]).
    active: bool,
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
            store: Rc::new(store),
            stream: stream.to_owned(),
            progress: Progress::new(policy, already_stored),
            store_every: (!settings.store_every.is_zero()).then_some(settings.store_every),
            stores: 0,
            store_errors: 0,
            stored_signal: watch::Sender::new(StoredProgress {
                offset: already_stored,
                processed: 0,
            }),
            metrics: TrackerMetrics::new(stream),
            active: true,
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

    /// Publishes that everything reported so far is covered by the last store (reports at or
    /// below it), so that a consumer waiting on the crash bound goes on.
    fn all_covered(&mut self) {
        let processed = self.progress.reported_total();
        let offset = self.progress.last_stored();
        self.stored_signal
            .send_replace(StoredProgress { offset, processed });
    }

    /// Stores `offset`, holding further messages until the write is done.
    fn store(&mut self, offset: u64, ctx: &mut Context<Self>) {
        if !self.active {
            return;
        }
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
                if !tracker.active {
                    return;
                }
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
        } else if self
            .progress
            .last_stored()
            .is_some_and(|stored| report.offset <= stored)
        {
            // Already covered by a store (a report below an earlier high-water mark).
            self.all_covered();
        }
    }
}

impl<S: OffsetStore> Handler<Activate> for Tracker<S> {
    type Result = ();

    fn handle(&mut self, Activate { stored }: Activate, _: &mut Self::Context) {
        self.active = true;
        self.progress.resume_from(stored);
        self.all_covered();
    }
}

impl<S: OffsetStore> Handler<Deactivate> for Tracker<S> {
    type Result = ();

    fn handle(&mut self, _: Deactivate, _: &mut Self::Context) {
        self.active = false;
    }
}

impl<S: OffsetStore> Handler<Flush> for Tracker<S> {
    type Result = ResponseActFuture<Self, Result<Option<u64>>>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let due = self.progress.flush().filter(|_| self.active);
        // What the broker must hold once the flush is done: the newest processed offset, even
        // if this tracker believes it stored it already (a store has no reply, and one written
        // just before its connection died never reached the broker).
        let newest = self.progress.last_processed().filter(|_| self.active);
        let processed = self.progress.reported_total();
        let store = self.store.clone();
        let stream = self.stream.clone();
        let work = async move {
            let mut backoff = Backoff::for_(FLUSH_PATIENCE);
            let mut failures = 0u64;
            loop {
                let attempt = async {
                    if let Some(offset) = due {
                        store.store(offset).await?;
                    }
                    // Same connection, so the broker has handled the store before it answers.
                    let mut stored = store.query().await?;
                    let Some(newest) = newest else {
                        return Ok(stored);
                    };
                    if stored.is_none_or(|s| s < newest) && due != Some(newest) {
                        tracing::info!(
                            "the broker holds {} for the last store of {newest}: storing it again",
                            show_offset(stored)
                        );
                        store.store(newest).await?;
                        stored = store.query().await?;
                    }
                    if stored.is_none_or(|s| s < newest) {
                        return Err(Error::Broker {
                            what: "confirming the last store",
                            stream: stream.clone(),
                            reason: format!(
                                "stored offset {newest}, but the broker holds {}",
                                show_offset(stored)
                            ),
                            source: None,
                        });
                    }
                    Ok(stored)
                };
                let err = match tokio::time::timeout(FLUSH_ATTEMPT, attempt).await {
                    Ok(Ok(stored)) => return (Ok(stored), failures),
                    Ok(Err(err)) => err,
                    Err(_) => Error::Broker {
                        what: "storing the last processed offset",
                        stream: stream.clone(),
                        reason: format!(
                            "no answer within {}",
                            humantime::format_duration(FLUSH_ATTEMPT)
                        ),
                        source: None,
                    },
                };
                failures += 1;
                let Some(pause) = backoff.next_pause() else {
                    return (Err(err), failures);
                };
                tracing::warn!(
                    "{err}; trying again in {}",
                    humantime::format_duration(pause)
                );
                tokio::time::sleep(pause).await;
            }
        };
        Box::pin(
            work.into_actor(self)
                .map(move |(result, failures), tracker, _| {
                    for _ in 0..failures {
                        tracker.count_store_error();
                    }
                    let stored = result?;
                    if let Some(offset) = due {
                        tracker.acknowledge(offset, processed, Ok(()));
                    }
                    // What the broker holds, not what this tracker believes.
                    Ok(stored)
                }),
        )
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::cell::{Cell, RefCell};

    use futures::future::LocalBoxFuture;

    use super::*;

    /// A store whose first `lost` stores "succeed" but never reach it, as a store written to a
    /// connection that just died (a store has no reply).
    #[derive(Clone, Default)]
    struct LossyStore {
        held: Rc<RefCell<Option<u64>>>,
        lost: Rc<Cell<u32>>,
    }

    impl OffsetStore for LossyStore {
        fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>> {
            if self.lost.get() > 0 {
                self.lost.set(self.lost.get() - 1);
            } else {
                *self.held.borrow_mut() = Some(offset);
            }
            Box::pin(async { Ok(()) })
        }

        fn query(&self) -> LocalBoxFuture<'static, Result<Option<u64>>> {
            let held = *self.held.borrow();
            Box::pin(async move { Ok(held) })
        }

        fn close(&self) -> LocalBoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    #[actix::test]
    async fn the_final_flush_stores_again_what_a_dying_connection_swallowed() {
        let store = LossyStore::default();
        let settings = TrackerSettings {
            store_every_messages: 10,
            store_every: Duration::ZERO,
            ..TrackerSettings::default()
        };
        let tracker = Tracker::new("s", store.clone(), &settings, None).start();
        for offset in 0..10 {
            tracker.send(Processed { offset, count: 1 }).await.unwrap();
        }
        assert_eq!(*store.held.borrow(), Some(9));
        // The next store is swallowed; the tracker believes it stored 19.
        store.lost.set(1);
        for offset in 10..20 {
            tracker.send(Processed { offset, count: 1 }).await.unwrap();
        }
        assert_eq!(tracker.send(GetStats).await.unwrap().last_stored, Some(19));
        assert_eq!(*store.held.borrow(), Some(9));
        assert_eq!(tracker.send(Flush).await.unwrap().unwrap(), Some(19));
        assert_eq!(*store.held.borrow(), Some(19), "the flush stored it again");
    }
}
