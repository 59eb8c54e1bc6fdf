//! The consumer actor: takes its subscription's events (`StreamHandler`, one chunk at a time, on
//! the consumer's own delivery path), hands the messages to the handler in batches of at most
//! [`MAX_BATCH`], and reports each processed batch to the tracker with one message.
//!
//! - Reports go out with `try_send`: when the tracker's bounded mailbox is full, the report is
//!   kept and merged into the next one, so the tracker neither slows consumption nor grows memory.
//! - Crash bound: with the count trigger on, the actor never runs more than
//!   `store_every_messages + MAX_BATCH` processed messages ahead of the tracker's last store; if it
//!   would, it waits for the store (this only happens when stores fall behind). While it waits, it
//!   takes no chunk, so no credit goes back to the broker.
//! - When the subscription ends without the marker — the broker moved or deleted the stream (a
//!   metadata update, acted on at once), closed the connection, or the connection was lost — it
//!   subscribes again right after the last *processed* offset, on a node that holds the stream
//!   now, with back-off until `consumer.reconnect_timeout`, and logs how long consumption was
//!   interrupted. A stream that is gone ends the run with a clear error.
//! - A chunk that cannot be decoded ends the run (exit 1) naming the stream, the chunk and what
//!   was found; what was processed before it is stored, nothing after.
//! - In a consumer group (`consumer.single_active`) it processes only while the broker says it is
//!   the active member (see `group.rs`).
//!
//! Over 500 lines: the actor's states (consuming, resubscribing, finishing) share its fields and
//! each transition is short; group and health behaviour live in `group.rs` and `health.rs`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use delivery::{Chunk, Closer, DeliveryError, Event};
use futures::StreamExt;
use shared::config::Endpoint;
use shared::connection::CLOSE_TIMEOUT;
use shared::error::{Error, Result};
use shared::metrics::ConsumerMetrics;
use shared::offset_spec::show_offset;
use shared::progress::{self, Reporter};
use shared::retry::Backoff;
use shared::OffsetSpec;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracker::{Flush, Processed, StoredProgress};

use super::health::LAG_PROBE_EVERY;
use super::subscription::{subscribe_error, Subscribed, Subscription};
use crate::handler::{Delivery, Handler};

/// Most deliveries handled as one batch (and reported with one [`Processed`]).
pub(crate) const MAX_BATCH: usize = 512;

/// How long after losing a subscription a stream without a leader is taken for an election
/// under way, asked again every [`ELECTION_POLL`] rather than with growing pauses.
const ELECTION_WINDOW: Duration = Duration::from_secs(5);

/// How often a stream is asked for its new leader during [`ELECTION_WINDOW`].
const ELECTION_POLL: Duration = Duration::from_millis(100);

/// What a run did, sent once when the actor stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Offset of the first message processed.
    pub first_offset: Option<u64>,
    /// Offset of the last message processed (the marker's, if it arrived).
    pub last_offset: Option<u64>,
    /// Messages processed.
    pub messages: u64,
    /// Whether the handler ended the run (the tutorial's: on the marker), rather than a shutdown.
    pub reached_marker: bool,
    /// The offset the broker holds for this consumer after the final flush.
    pub stored_offset: Option<u64>,
    /// From the first message received to the last one processed.
    pub elapsed: Duration,
    /// Times the subscription was lost and made again.
    pub reconnects: u64,
    /// Of those, the times it was made again on another node (the stream moved, a node died).
    pub failovers: u64,
    /// The longest time between losing the subscription and having it again.
    pub max_interruption: Duration,
}

/// The tracker, as the consumer sees it: recipients and a progress signal, no concrete type.
#[derive(Clone)]
pub(crate) struct TrackerLink {
    /// Where processed batches go.
    pub(crate) processed: Recipient<Processed>,
    /// Where flush requests go.
    pub(crate) flush: Recipient<Flush>,
    /// What the tracker has stored.
    pub(crate) stored: watch::Receiver<StoredProgress>,
}

/// An event of subscription number `.0`; `None` when that subscription ended.
type Item = (u64, Option<std::result::Result<Event, DeliveryError>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Consuming,
    Reconnecting,
    Finishing,
}

/// See the module documentation.
pub(crate) struct ConsumerActor<H: Handler> {
    pub(super) handler: H,
    pub(super) subscription: Subscription,
    pub(super) initial: Option<Subscribed>,
    pub(super) epoch: u64,
    /// Closes the current subscription.
    pub(super) closer: Option<Closer>,
    /// The node the current subscription reads from.
    pub(super) node: Option<Endpoint>,
    pub(super) tracker: TrackerLink,
    pub(super) shutdown: CancellationToken,
    pub(super) outcome: Outcome,
    pub(super) unreported: Option<Processed>,
    pub(super) phase: Phase,
    /// Messages of the current chunk not handed to the handler yet (at most one chunk).
    pub(super) queued: VecDeque<Delivery>,
    pub(super) first_received_at: Option<Instant>,
    pub(super) last_delivery_at: Instant,
    pub(super) progress: Reporter,
    pub(super) stream_end: Option<u64>,
    pub(super) probing_end: bool,
    pub(super) metrics: ConsumerMetrics,
    pub(super) done: Option<oneshot::Sender<Result<Outcome>>>,
    /// Whether deliveries are processed: always outside a group; in one, while active.
    pub(super) active: bool,
    /// Deliveries below this offset are leftovers of an earlier activation: never processed.
    pub(super) min_offset: Option<u64>,
    /// The last offset processed in the current activation.
    pub(super) activation_last: Option<u64>,
    /// Shared with the process's progress display when several partitions are consumed.
    pub(super) shared_count: Option<Arc<AtomicU64>>,
    /// The last stream check found the stream without a leader.
    pub(super) unavailable: bool,
    /// When the stream was last checked (at most once per `IDLE_CHECK`).
    pub(super) last_check_at: Instant,
}

impl<H: Handler> ConsumerActor<H> {
    /// An actor handing `initial`'s messages (it is attached as `subscription` says) to
    /// `handler`, reporting to `tracker`, stopping when `shutdown` is cancelled, and answering on
    /// `done` when it stops. In a consumer group it starts inactive.
    pub(crate) fn new(
        handler: H,
        subscription: Subscription,
        initial: Subscribed,
        tracker: TrackerLink,
        shutdown: CancellationToken,
        done: oneshot::Sender<Result<Outcome>>,
    ) -> Self {
        let metrics = ConsumerMetrics::new(&subscription.stream);
        Self {
            handler,
            active: subscription.group.is_none(),
            subscription,
            initial: Some(initial),
            epoch: 0,
            closer: None,
            node: None,
            tracker,
            shutdown,
            outcome: Outcome::default(),
            unreported: None,
            phase: Phase::Consuming,
            queued: VecDeque::new(),
            first_received_at: None,
            last_delivery_at: Instant::now(),
            progress: Reporter::new("processed", None),
            stream_end: None,
            probing_end: false,
            metrics,
            done: Some(done),
            min_offset: None,
            activation_last: None,
            shared_count: None,
            unavailable: false,
            last_check_at: Instant::now(),
        }
    }

    /// Counts processed messages into `count` for a display shared with other partitions,
    /// instead of showing progress of its own.
    pub(crate) fn counting_into(mut self, count: Arc<AtomicU64>) -> Self {
        self.shared_count = Some(count);
        self
    }

    /// Feeds the subscription's events into this actor, tagged so that a stale subscription's
    /// leftovers are recognised after a reconnect.
    fn attach(&mut self, subscribed: Subscribed, ctx: &mut Context<Self>) {
        let Subscribed { events, node } = subscribed;
        if self.subscription.group.is_some() {
            // Active only once the broker says so.
            self.active = false;
        }
        self.closer = Some(events.closer());
        self.node = Some(node);
        self.epoch += 1;
        self.phase = Phase::Consuming;
        self.last_delivery_at = Instant::now();
        let epoch = self.epoch;
        let events = events
            .map(move |event| (epoch, Some(event)))
            .chain(futures::stream::once(async move { (epoch, None) }));
        ctx.add_stream(events);
    }

    /// Where to attach again: right after the last processed message, or where we first did.
    pub(super) fn resume_position(&self) -> OffsetSpec {
        match self.outcome.last_offset {
            Some(offset) => OffsetSpec::Offset(offset + 1),
            None => self.subscription.start,
        }
    }

    /// Processed messages not yet covered by a store the tracker made.
    pub(super) fn ahead_of_store(&self) -> u64 {
        self.outcome
            .messages
            .saturating_sub(self.tracker.stored.borrow().processed)
    }

    /// Queues a chunk's messages (those this activation may process) and hands them on.
    fn take_chunk(&mut self, chunk: Chunk, ctx: &mut Context<Self>) {
        if !self.active {
            // Not the group's active member (any more): another member processes these.
            return;
        }
        let timestamp = chunk.timestamp_ms;
        let min = self.min_offset.unwrap_or(0);
        self.queued.extend(
            chunk
                .records
                .into_iter()
                .filter(|record| record.offset >= min)
                .map(|record| Delivery::new(record.offset, timestamp, record.message)),
        );
        self.drain(ctx);
    }

    /// Hands the queued messages to the handler, a batch at a time, unless the crash bound says
    /// to wait for the tracker first (then it goes on once the tracker caught up).
    fn drain(&mut self, ctx: &mut Context<Self>) {
        while !self.queued.is_empty() && self.phase == Phase::Consuming && self.active {
            let size = self.queued.len().min(MAX_BATCH) as u64;
            let every = self.subscription.store_every_messages;
            let limit = every.saturating_add(MAX_BATCH as u64);
            if every != 0 && self.ahead_of_store().saturating_add(size) > limit {
                self.wait_for_store(size, limit, ctx);
                return;
            }
            let batch: Vec<Delivery> = self.queued.drain(..size as usize).collect();
            self.process_batch(batch, ctx);
        }
    }

    /// Stores fell behind: hands over what is unreported and waits (taking no event) until the
    /// tracker has stored enough for `size` more messages to stay within `limit`.
    fn wait_for_store(&mut self, size: u64, limit: u64, ctx: &mut Context<Self>) {
        let pending = self.unreported.take();
        let tracker = self.tracker.clone();
        let processed = self.outcome.messages;
        let shutdown = self.shutdown.clone();
        let caught_up = async move {
            if let Some(report) = pending {
                let _ = tracker.processed.send(report).await;
            }
            let mut stored = tracker.stored.clone();
            tokio::select! {
                _ = stored.wait_for(|s| processed.saturating_sub(s.processed) + size <= limit) => true,
                _ = shutdown.cancelled() => false,
            }
        };
        ctx.wait(
            caught_up
                .into_actor(self)
                .map(move |caught_up, actor, ctx| {
                    if caught_up {
                        actor.drain(ctx);
                    } else {
                        actor.finish(None, ctx);
                    }
                }),
        );
    }

    fn process_batch(&mut self, deliveries: Vec<Delivery>, ctx: &mut Context<Self>) {
        let handled = match self.handler.handle(&deliveries) {
            Ok(handled) => handled,
            Err(err) => return self.finish(Some(err), ctx),
        };
        let processed = &deliveries[..handled.processed.min(deliveries.len())];
        if let (Some(first), Some(last)) = (processed.first(), processed.last()) {
            let now = Instant::now();
            if self.outcome.first_offset.is_none() {
                self.outcome.first_offset = Some(first.offset());
                self.first_received_at = Some(now);
            }
            let count = processed.len() as u64;
            let timestamp = last.chunk_timestamp_ms();
            let last = last.offset();
            self.outcome.last_offset = Some(last);
            self.activation_last = Some(last);
            self.outcome.messages += count;
            if let Some(shared) = &self.shared_count {
                shared.fetch_add(count, Ordering::Relaxed);
            }
            self.last_delivery_at = now;
            if let Some(started) = self.first_received_at {
                self.outcome.elapsed = started.elapsed();
            }
            tracing::debug!(
                target: "consumer::processed",
                stream = %self.subscription.stream,
                last,
                count,
                "processed"
            );
            self.metrics.processed.increment(count);
            self.metrics.last_processed.set(last as f64);
            self.metrics
                .last_processed_timestamp
                .set(timestamp as f64 / 1000.0);
            self.metrics.unstored.set(self.ahead_of_store() as f64);
            if let Err(err) = self.report(last, count) {
                return self.finish(Some(err), ctx);
            }
        }
        if handled.stop {
            // The bar goes before the handler's last words, so that nothing is left drawn.
            self.progress.finish();
            self.handler.stopped();
            self.outcome.reached_marker = true;
            self.finish(None, ctx);
        } else if processed.len() < deliveries.len() {
            let err = Error::Internal(format!(
                "the handler processed {} of {} deliveries without stopping",
                processed.len(),
                deliveries.len()
            ));
            self.finish(Some(err), ctx);
        }
    }

    /// Hands the processed batch to the tracker without ever waiting for it.
    fn report(&mut self, offset: u64, count: u64) -> Result<()> {
        let count = count + self.unreported.take().map_or(0, |earlier| earlier.count);
        match self.tracker.processed.try_send(Processed { offset, count }) {
            Ok(()) => Ok(()),
            Err(SendError::Full(report)) => {
                self.unreported = Some(report);
                Ok(())
            }
            Err(SendError::Closed(_)) => Err(Error::Internal("the tracker stopped".into())),
        }
    }

    /// The subscription is gone without the marker: subscribe again after the last processed
    /// message, on a node that holds the stream now, with back-off until the deadline.
    pub(super) fn reconnect(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.phase != Phase::Consuming {
            return;
        }
        self.phase = Phase::Reconnecting;
        let lost_at = Instant::now();
        // Not processed, so not stored: the new subscription delivers them again.
        self.queued.clear();
        if self.subscription.group.is_some() {
            // The new subscription is active only once the broker says so again.
            self.active = false;
        }
        self.outcome.reconnects += 1;
        self.metrics.resubscribes.increment(1);
        if let Some(old) = self.closer.take() {
            // The old subscription may be half-alive: close it, never wait for it.
            actix::spawn(async move {
                if let Err(err) = old.close(CLOSE_TIMEOUT).await {
                    tracing::debug!("closing a lost subscription: {err}");
                }
            });
        }
        let position = self.resume_position();
        let label = self.subscription.label();
        tracing::warn!("{label}subscription lost ({reason}); subscribing again at {position}");
        let subscription = self.subscription.clone();
        let shutdown = self.shutdown.clone();
        let retry = async move {
            let mut backoff = Backoff::for_(subscription.reconnect_timeout);
            loop {
                let attempt = tokio::select! {
                    attempt = subscription.subscribe(position) => attempt,
                    _ = shutdown.cancelled() => return Ok(None),
                };
                let err = match attempt {
                    Ok(subscribed) => return Ok(Some(subscribed)),
                    Err(Error::StreamNotFound { stream }) => {
                        return Err(Error::StreamDeleted { stream })
                    }
                    Err(err @ Error::Config(_)) => return Err(err),
                    Err(err) => err,
                };
                // Right after a failover the stream has no leader until the election ends
                // (0.5 – 0.8 s measured): ask again soon rather than back off.
                let electing = matches!(err, Error::Unavailable { .. })
                    && lost_at.elapsed() < ELECTION_WINDOW
                    && tokio::time::Instant::now() + ELECTION_POLL < backoff.deadline();
                let pause = if electing {
                    Some(ELECTION_POLL)
                } else {
                    backoff.next_pause()
                };
                let Some(pause) = pause else {
                    return Err(Error::ConsumeStopped {
                        stream: subscription.stream.clone(),
                        reason: format!(
                            "gave up subscribing again after {} (consumer.reconnect_timeout): {err}",
                            humantime::format_duration(subscription.reconnect_timeout)
                        ),
                    });
                };
                tracing::info!(
                    "{label}{err}; trying again in {}",
                    humantime::format_duration(pause)
                );
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
            }
        };
        ctx.wait(
            retry
                .into_actor(self)
                .map(move |result, actor, ctx| match result {
                    Ok(Some(subscribed)) => {
                        actor.resumed(&subscribed.node, lost_at.elapsed(), position, &reason);
                        actor.attach(subscribed, ctx);
                    }
                    Ok(None) => {
                        actor.phase = Phase::Consuming;
                        actor.finish(None, ctx);
                    }
                    Err(err) => {
                        actor.phase = Phase::Consuming;
                        actor.finish(Some(err), ctx);
                    }
                }),
        );
    }

    /// Counts and logs a recovery: one line saying what happened and for how long consumption
    /// was interrupted.
    fn resumed(
        &mut self,
        node: &Endpoint,
        interruption: Duration,
        position: OffsetSpec,
        why: &str,
    ) {
        let moved = self.node.as_ref().is_some_and(|before| before != node);
        if moved {
            self.outcome.failovers += 1;
        }
        self.outcome.max_interruption = self.outcome.max_interruption.max(interruption);
        let from = match (&self.node, moved) {
            (Some(before), true) => format!(" (was {before})"),
            _ => String::new(),
        };
        tracing::info!(
            "{}subscribed again at {position} on {node}{from}, {} ms after: {why}",
            self.subscription.label(),
            interruption.as_millis()
        );
    }

    /// Stops consuming: flushes the tracker (which confirms the store), closes the subscription,
    /// and answers `done` with `failure` or the outcome.
    pub(super) fn finish(&mut self, failure: Option<Error>, ctx: &mut Context<Self>) {
        if self.phase == Phase::Finishing {
            return;
        }
        self.phase = Phase::Finishing;
        self.queued.clear();
        self.progress.finish();
        let pending = self.unreported.take();
        let tracker = self.tracker.clone();
        let closer = self.closer.take();
        let stream_gone = matches!(
            failure,
            Some(Error::StreamNotFound { .. } | Error::StreamDeleted { .. })
        );
        let work = async move {
            // The last report may still sit here if the mailbox was full: deliver it first.
            if let Some(report) = pending {
                tracker
                    .processed
                    .send(report)
                    .await
                    .map_err(|_| Error::Internal("the tracker stopped".into()))?;
            }
            let stored = if stream_gone {
                Ok(None)
            } else {
                tracker
                    .flush
                    .send(Flush)
                    .await
                    .map_err(|_| Error::Internal("the tracker stopped".into()))?
            };
            if let Some(closer) = closer {
                // A dead connection cannot be closed cleanly; that does not undo the flush.
                if let Err(err) = closer.close(CLOSE_TIMEOUT).await {
                    tracing::debug!("closing the subscription: {err}");
                }
            }
            stored
        };
        ctx.wait(work.into_actor(self).map(move |stored, actor, ctx| {
            let result = match (failure, stored) {
                (Some(err), _) | (None, Err(err)) => Err(err),
                (None, Ok(stored)) => {
                    actor.outcome.stored_offset = stored;
                    Ok(actor.outcome.clone())
                }
            };
            if let Some(done) = actor.done.take() {
                let _ = done.send(result);
            }
            ctx.stop();
        }));
    }
}

impl<H: Handler> Actor for ConsumerActor<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(subscribed) = self.initial.take() {
            self.attach(subscribed, ctx);
        }
        let shutdown = self.shutdown.clone();
        ctx.spawn(
            async move { shutdown.cancelled().await }
                .into_actor(self)
                .map(|(), actor, ctx| {
                    tracing::info!("shutting down: storing the last processed offset");
                    actor.finish(None, ctx);
                }),
        );
        // Ticks often; `check_stream` itself waits for IDLE_CHECK of silence and between checks.
        ctx.run_interval(Duration::from_secs(1), |actor, ctx| actor.check_stream(ctx));
        ctx.run_interval(progress::TICK, |actor, _| {
            if actor.phase == Phase::Finishing || actor.shared_count.is_some() {
                return;
            }
            let stored = actor.tracker.stored.borrow().offset;
            let details = format!(
                "last processed {}, last stored {}, lag {}",
                show_offset(actor.outcome.last_offset),
                show_offset(stored),
                actor
                    .lag()
                    .map_or_else(|| "?".into(), |lag| lag.to_string())
            );
            actor.progress.tick(actor.outcome.messages, &details);
        });
        ctx.run_interval(LAG_PROBE_EVERY, |actor, ctx| actor.probe_stream_end(ctx));
    }
}

impl<H: Handler> StreamHandler<Item> for ConsumerActor<H> {
    fn handle(&mut self, (epoch, event): Item, ctx: &mut Self::Context) {
        // Leftovers of an earlier subscription, or anything after the marker or a shutdown, are
        // not processed, so not stored. (A consumer update left unanswered answers "next", which
        // a subscription being closed does not use.)
        if epoch != self.epoch || self.phase != Phase::Consuming {
            return;
        }
        match event {
            Some(Ok(Event::Chunk(chunk))) => self.take_chunk(chunk, ctx),
            Some(Ok(Event::ConsumerUpdate {
                active: true,
                reply,
            })) => self.become_active(reply, ctx),
            Some(Ok(Event::ConsumerUpdate {
                active: false,
                reply,
            })) => self.become_inactive(reply, ctx),
            Some(Ok(Event::MetadataUpdate { code, .. })) => self.reconnect(
                format!("the broker moved or deleted the stream: metadata update, code {code}"),
                ctx,
            ),
            Some(Ok(Event::Closed { reason })) => self.reconnect(
                format!("the broker ended the subscription: {reason:?}"),
                ctx,
            ),
            Some(Err(err)) => match subscribe_error(&self.subscription.stream, err) {
                // An undecodable chunk will not decode better on another subscription.
                err @ Error::ConsumeStopped { .. } => self.finish(Some(err), ctx),
                err => self.reconnect(err.to_string(), ctx),
            },
            None => self.reconnect("the subscription ended".into(), ctx),
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // Each subscription's end arrives as an item (see `attach`); the actor outlives them.
    }
}
