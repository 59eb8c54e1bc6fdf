//! The consumer actor: takes its subscription's events (`StreamHandler`, one chunk at a time, on
//! the consumer's own delivery path) and hands the messages to processing ([`Processing`]):
//! inline to a synchronous handler in batches of at most [`MAX_BATCH`], or to the parallel stage
//! (`crate::processing`) as far as its window has room.
//!
//! - Reports go through the tracker's client ([`TrackerClient`]): never waiting for the tracker,
//!   coalescing what its bounded mailbox cannot take.
//! - Crash bound: with the count trigger on, processing never runs more than
//!   `store_every_messages + MAX_BATCH` processed messages ahead of the tracker's last store (the
//!   parallel stage: plus its window); if it would, it waits for the store. While it waits — or
//!   while the stage's window is full — the actor takes no chunk, so no credit goes back to the
//!   broker.
//! - When the subscription ends without the marker — the broker moved or deleted the stream (a
//!   metadata update, acted on at once), closed the connection, or the connection was lost — it
//!   subscribes again right after the last offset handed to processing, on a node that holds the stream
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
use delivery::{Chunk, CloseReason, Closer, DeliveryError, Event};
use futures::StreamExt;
use shared::config::Endpoint;
use shared::connection::CLOSE_TIMEOUT;
use shared::error::{Error, Result};
use shared::metrics::ConsumerMetrics;
use shared::progress::{self, Reporter};
use shared::retry::Backoff;
use shared::OffsetSpec;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracker::{Activate, Deactivate, Flusher, StoredProgress, TrackerClient};

use super::health::LAG_PROBE_EVERY;
use super::subscription::{subscribe_error, Subscribed, Subscription};
use crate::handler::{Delivery, Handler};
use crate::processing::{Stage, StageEvent};

/// Most deliveries handled as one batch (and reported with one [`Processed`]).
pub(crate) const MAX_BATCH: usize = 512;

/// How long after losing a subscription a stream without a leader is taken for an election
/// under way, asked again every [`ELECTION_POLL`] rather than with growing pauses.
const ELECTION_WINDOW: Duration = Duration::from_secs(5);

/// How often a stream is asked for its new leader during [`ELECTION_WINDOW`].
const ELECTION_POLL: Duration = Duration::from_millis(100);

/// How long the end of a run waits for the broker to confirm the unsubscribe and the close of
/// the subscription's connection before dropping it. The connection holds nothing to lose (the
/// offset is stored and confirmed on the tracker's), and the broker answers only once it has
/// looked for the next chunk the subscription has credit for: past the end of a stream with a
/// long run of offset-tracking entries that took 3.4 s (measured after a few runs storing every
/// 10 messages), every second of it spent before the process could exit.
const FINAL_CLOSE_PATIENCE: Duration = Duration::from_millis(500);

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
    /// How far behind the stream's end it was in time, as last sampled (every 5 s; `None`
    /// before the first sample).
    pub lag: Option<Duration>,
    /// The most it was behind in time, over the samples.
    pub max_lag: Option<Duration>,
}

/// How a stream's deliveries are processed.
pub(crate) enum Processing {
    /// A synchronous [`Handler`] on the actor, a batch at a time, reporting through `tracker`.
    Inline {
        handler: Box<dyn Handler>,
        tracker: TrackerClient,
    },
    /// The parallel stage running an async handler (it reports to the tracker itself).
    Parallel(Stage),
}

/// The tracker, as the consumer actor sees it besides what processing reports.
#[derive(Clone)]
pub(crate) struct TrackerLink {
    /// Flushes the tracker.
    pub(crate) flusher: Flusher,
    /// What the tracker has stored.
    pub(crate) stored: watch::Receiver<StoredProgress>,
    /// In a consumer group: "active again, from the group's stored offset".
    pub(crate) activate: Recipient<Activate>,
    /// In a consumer group: "another member is active: store nothing".
    pub(crate) deactivate: Recipient<Deactivate>,
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
pub(crate) struct ConsumerActor {
    pub(super) processing: Processing,
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
    /// The last offset handed to processing: where a new subscription resumes after.
    pub(super) last_taken: Option<u64>,
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
    /// The last offset processed (handed to the parallel stage) in the current activation.
    pub(super) activation_last: Option<u64>,
    /// Shared with the process's progress display when several partitions are consumed.
    pub(super) shared_count: Option<Arc<AtomicU64>>,
    /// The last stream check found the stream without a leader.
    pub(super) unavailable: bool,
    /// When the stream was last checked (at most once per `IDLE_CHECK`).
    pub(super) last_check_at: Instant,
}

impl ConsumerActor {
    /// An actor handing `initial`'s messages (it is attached as `subscription` says) to
    /// `processing`, flushing `tracker`, stopping when `shutdown` is cancelled, and answering on
    /// `done` when it stops. In a consumer group it starts inactive.
    pub(crate) fn new(
        processing: Processing,
        subscription: Subscription,
        initial: Subscribed,
        tracker: TrackerLink,
        shutdown: CancellationToken,
        done: oneshot::Sender<Result<Outcome>>,
    ) -> Self {
        let metrics = ConsumerMetrics::new(&subscription.stream);
        Self {
            processing,
            active: subscription.group.is_none(),
            subscription,
            initial: Some(initial),
            epoch: 0,
            closer: None,
            node: None,
            tracker,
            shutdown,
            outcome: Outcome::default(),
            last_taken: None,
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

    /// Where to attach again: right after the last message handed to processing (what the
    /// parallel stage holds, it finishes), or where we first did.
    pub(super) fn resume_position(&self) -> OffsetSpec {
        match self.last_taken {
            Some(offset) => OffsetSpec::Offset(offset + 1),
            None => self.subscription.start,
        }
    }

    /// The newest offset processed (for the parallel stage: its finished prefix).
    pub(super) fn last_processed(&self) -> Option<u64> {
        match &self.processing {
            Processing::Inline { .. } => self.outcome.last_offset,
            Processing::Parallel(stage) => stage.progress().last_offset,
        }
    }

    /// Messages processed so far.
    fn messages(&self) -> u64 {
        match &self.processing {
            Processing::Inline { .. } => self.outcome.messages,
            Processing::Parallel(stage) => stage.progress().messages,
        }
    }

    /// The outcome so far, with the parallel stage's counts.
    fn outcome_now(&self) -> Outcome {
        let mut outcome = self.outcome.clone();
        if let Processing::Parallel(stage) = &self.processing {
            let progress = stage.progress();
            outcome.messages = progress.messages;
            outcome.first_offset = progress.first_offset;
            outcome.last_offset = progress.last_offset;
            if let (Some(first), Some(last)) =
                (progress.first_admitted_at, progress.last_finished_at)
            {
                outcome.elapsed = last.saturating_duration_since(first);
            }
        }
        outcome
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

    /// Hands the queued messages on: to the handler a batch at a time, unless the crash bound
    /// says to wait for the tracker first; or to the parallel stage as far as its window has
    /// room, waiting (taking no chunk, so giving the broker no credit) for room otherwise.
    pub(super) fn drain(&mut self, ctx: &mut Context<Self>) {
        while !self.queued.is_empty() && self.phase == Phase::Consuming && self.active {
            match &mut self.processing {
                Processing::Inline { tracker, .. } => {
                    let size = self.queued.len().min(MAX_BATCH) as u64;
                    if !tracker.has_room_for(size) {
                        let room = tracker.room_for(size, self.shutdown.clone());
                        ctx.wait(room.into_actor(self).map(|fits, actor, ctx| {
                            if fits {
                                actor.drain(ctx);
                            } else {
                                actor.finish(None, ctx);
                            }
                        }));
                        return;
                    }
                    let batch: Vec<Delivery> = self.queued.drain(..size as usize).collect();
                    self.process_batch(batch, ctx);
                }
                Processing::Parallel(stage) => {
                    if stage.halted() {
                        // The stage's event ends the run; nothing more is taken.
                        self.queued.clear();
                        return;
                    }
                    let room = stage.room();
                    let wanted = stage.refill().min(self.queued.len());
                    if room < wanted.max(1) {
                        let wait = stage.wait_for_room(wanted, self.shutdown.clone());
                        ctx.wait(wait.into_actor(self).map(|(), actor, ctx| {
                            if actor.shutdown.is_cancelled() {
                                actor.finish(None, ctx);
                            } else {
                                actor.drain(ctx);
                            }
                        }));
                        return;
                    }
                    let size = room.min(self.queued.len());
                    let batch: Vec<Delivery> = self.queued.drain(..size).collect();
                    let last = batch.last().map(Delivery::offset);
                    if stage.admit(batch).is_err() {
                        let err = Error::Internal("the processing stage stopped".into());
                        return self.finish(Some(err), ctx);
                    }
                    if last.is_some() {
                        self.last_taken = last;
                        self.activation_last = last;
                    }
                    self.last_delivery_at = Instant::now();
                }
            }
        }
    }

    fn process_batch(&mut self, deliveries: Vec<Delivery>, ctx: &mut Context<Self>) {
        let Processing::Inline { handler, .. } = &mut self.processing else {
            return;
        };
        let handled = match handler.handle(&deliveries) {
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
            self.last_taken = Some(last);
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
            if let Processing::Inline { tracker, .. } = &mut self.processing {
                if let Err(err) = tracker.report(last, count) {
                    return self.finish(Some(err), ctx);
                }
                self.metrics.unstored.set(tracker.ahead_of_store() as f64);
            }
        }
        if handled.stop {
            // The bar goes before the handler's last words, so that nothing is left drawn.
            self.progress.finish();
            if let Processing::Inline { handler, .. } = &mut self.processing {
                handler.stopped();
            }
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
        // In a group, the broker hands the partition to another member as soon as this
        // subscription is gone: store what was processed first, so that member starts after it.
        let settled = self.subscription.group.is_some().then(|| {
            // The new subscription is active only once the broker says so again.
            self.active = false;
            let processed = self.activation_last.take().is_some();
            let settle = self.settle(processed);
            let deactivate = self.tracker.deactivate.clone();
            async move {
                let settled = settle.await;
                // Whatever happened, the next member's stores must not be overwritten.
                let _ = deactivate.send(Deactivate).await;
                settled
            }
        });
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
            if let Some(settled) = settled {
                if let Err(err) = settled.await {
                    tracing::warn!("{label}storing the processed offset: {err}");
                }
            }
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
            self.metrics.failovers.increment(1);
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

    /// Settles what processing holds: the parallel stage finishes what runs (within
    /// `processing.drain_timeout`) and reports its finished prefix; then, with `flush`, the
    /// tracker stores and confirms the newest processed offset (answered; `None`: nothing).
    pub(super) fn settle(
        &mut self,
        flush: bool,
    ) -> impl std::future::Future<Output = Result<Option<u64>>> + 'static {
        let flusher = self.tracker.flusher.clone();
        let (pending, drain) = match &mut self.processing {
            Processing::Inline { tracker, .. } => (Some(tracker.deliver_pending()), None),
            Processing::Parallel(stage) => (None, Some(stage.drain())),
        };
        async move {
            if let Some(pending) = pending {
                pending.await?;
            }
            if let Some(drain) = drain {
                let drained = drain.await;
                if drained.abandoned > 0 {
                    tracing::info!(
                        "{} admitted messages left unprocessed (not stored): processed on the \
                         next run or by the next member",
                        drained.abandoned
                    );
                }
            }
            if flush {
                flusher.flush().await
            } else {
                Ok(None)
            }
        }
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
        let closer = self.closer.take();
        let stream_gone = matches!(
            failure,
            Some(Error::StreamNotFound { .. } | Error::StreamDeleted { .. })
        );
        let settled = self.settle(!stream_gone);
        let work = async move {
            let stored = settled.await;
            if let Some(closer) = closer {
                // A dead or busy connection cannot be closed cleanly; that does not undo the
                // flush.
                if let Err(err) = closer.close(FINAL_CLOSE_PATIENCE).await {
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
                    Ok(actor.outcome_now())
                }
            };
            if let Some(done) = actor.done.take() {
                let _ = done.send(result);
            }
            ctx.stop();
        }));
    }
}

/// Why the broker ended a subscription, in words.
fn closed_why(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Broker { code, text } => {
            format!("it closed the connection (code {code}, \"{text}\")")
        }
        CloseReason::MetadataUpdate { code } => {
            format!("the stream moved or was deleted (metadata update, code {code})")
        }
        other => format!("{other:?}"),
    }
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(subscribed) = self.initial.take() {
            self.attach(subscribed, ctx);
        }
        if let Processing::Parallel(stage) = &mut self.processing {
            if let Some(events) = stage.events() {
                ctx.add_stream(events);
            }
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
            let last = actor.last_processed();
            let behind =
                crate::backlog::behind(actor.stream_end, last, stored, actor.subscription.start);
            let details = crate::backlog::details(last, stored, behind);
            actor
                .progress
                .tick_behind(actor.messages(), behind, &details);
        });
        // The first sample now, so that the backlog shows from the first second.
        self.probe_stream_end(ctx);
        ctx.run_interval(LAG_PROBE_EVERY, |actor, ctx| actor.probe_stream_end(ctx));
    }
}

impl StreamHandler<Item> for ConsumerActor {
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
                format!("the broker ended the subscription: {}", closed_why(&reason)),
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

impl StreamHandler<StageEvent> for ConsumerActor {
    fn handle(&mut self, event: StageEvent, ctx: &mut Self::Context) {
        match event {
            StageEvent::Stopped { offset } => {
                tracing::info!(
                    "{}the handler asked to stop at offset {offset}",
                    self.subscription.label()
                );
                self.progress.finish();
                self.outcome.reached_marker = true;
                self.finish(None, ctx);
            }
            StageEvent::Failed(err) => self.finish(Some(err), ctx),
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The stage ends with the actor.
    }
}
