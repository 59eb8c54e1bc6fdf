//! The consumer actor: takes the client's deliveries a batch at a time (`StreamHandler` over
//! `ready_chunks`), processes them — the tutorial's work: count, first and last offset, stop at
//! the marker — and reports each processed batch to the tracker with one message.
//!
//! - Reports go out with `try_send`: when the tracker's bounded mailbox is full, the report is
//!   kept and merged into the next one, so the tracker neither slows consumption nor grows memory.
//! - Crash bound: with the count trigger on, the actor never runs more than
//!   `store_every_messages + MAX_BATCH` processed messages ahead of the tracker's last store; if it
//!   would, it waits for the store (this only happens when stores fall behind).
//! - When the subscription ends or fails without the marker (connection lost, broker restart), it
//!   subscribes again with backoff, right after the last *processed* offset, until
//!   `consumer.reconnect_timeout` runs out.
//! - When no delivery arrives for a while, it checks that the stream still exists (the client
//!   ignores the broker's "stream deleted" notice and would wait forever).
//! - In a consumer group (`consumer.single_active`) it processes only while the broker says it is
//!   the active member ([`GroupUpdate`]). Becoming active, it resumes right after the offset
//!   stored for the group; becoming inactive, it drops what is still buffered and flushes the
//!   tracker, and the client's callback stores the last processed offset on the subscription's own
//!   connection before answering the broker, so the next member starts right after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use rabbitmq_stream_client::error::{ConsumerCreateError, ConsumerDeliveryError};
use rabbitmq_stream_client::types::{Delivery, MessageContext, OffsetSpecification};
use rabbitmq_stream_client::{Consumer, ConsumerHandle, Environment};
use shared::config::BrokerSettings;
use shared::connection::BuildFailure;
use shared::error::{Error, Result};
use shared::messages::{Flush, Processed, StoredProgress};
use shared::metrics::ConsumerMetrics;

use crate::handler::{Handled, Handler};
use shared::connection::StreamState;
use shared::offset_spec::show_offset;
use shared::progress::{self, Reporter};
use shared::{connection, routing, OffsetSpec};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Most deliveries handled as one batch (and reported with one [`Processed`]).
pub const MAX_BATCH: usize = 512;

/// How long closing a subscription may take before we stop waiting for the broker.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the stream's end is sampled for the lag.
const LAG_PROBE_EVERY: Duration = Duration::from_secs(5);

/// After this long without a delivery, check that the stream still exists.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// First and longest pause between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Where to attach: right after the stored offset if there is one (it takes precedence over the
/// configured specification), else the configured specification.
pub fn start_position(stored: Option<u64>, configured: OffsetSpec) -> OffsetSpec {
    match stored {
        Some(offset) => OffsetSpec::Offset(offset.saturating_add(1)),
        None => configured,
    }
}

/// From the subscription's consumer-update callback: the broker made this subscription its
/// group's active member, or took that away. The callback waits for `reply` before it answers
/// the broker.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum GroupUpdate {
    /// Now active. `stored`: the group's stored offset as the callback read it on the
    /// subscription's connection (`None`: the query failed). Replies where to start.
    Active {
        /// The subscription it is about.
        membership: Membership,
        /// `Some(None)`: nothing stored yet.
        stored: Option<Option<u64>>,
        /// Where the broker is to start delivering.
        reply: oneshot::Sender<OffsetSpec>,
    },
    /// No longer active. Replies the last offset processed while active, flushed by the tracker
    /// (`None`: nothing processed in this activation).
    Inactive {
        /// The subscription it is about.
        membership: Membership,
        /// The offset for the callback to store before it answers.
        reply: oneshot::Sender<Option<u64>>,
    },
}

/// Whether one subscription is its group's active member, as the broker's updates say.
///
/// The client runs each consumer update on a task of its own, so two updates that follow each
/// other closely can reach us in either order. The broker's updates to a subscription alternate,
/// starting with "active": counting them (+1 active, −1 inactive) gives the current state
/// whatever order they are counted in. (RabbitMQ 4.0.5 sends a newcomer that stays inactive no
/// update at all, as seen with `RUST_LOG=consumer::group=debug`; a broker that sent it an
/// "inactive" first would need the count to start at 1.)
#[derive(Debug, Clone, Default)]
pub struct Membership(Arc<AtomicI64>);

impl Membership {
    fn note(&self, active: bool) {
        self.0
            .fetch_add(if active { 1 } else { -1 }, Ordering::AcqRel);
    }

    /// Active now, by every update received so far.
    pub fn is_active(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    fn same(&self, other: &Membership) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A subscription just made: the client's consumer and, in a group, its membership.
pub struct Subscribed {
    /// The client's consumer.
    pub consumer: Consumer,
    /// In a group: whether the broker made this subscription active.
    pub membership: Option<Membership>,
}

/// The client's consumer-update callback type (its own alias is not exported).
type UpdateListener = Arc<
    dyn Fn(u8, MessageContext) -> futures::future::BoxFuture<'static, OffsetSpecification>
        + Send
        + Sync,
>;

/// Membership in a consumer group (`consumer.single_active`).
#[derive(Clone)]
pub struct Group {
    /// The super stream the partition belongs to (`None`: a plain stream).
    pub super_stream: Option<String>,
    /// Where the consumer-update callback sends its news.
    pub updates: mpsc::UnboundedSender<GroupUpdate>,
}

impl Group {
    /// The client's consumer-update callback: tells the actor, and on deactivation stores the
    /// last processed offset on the subscription's own connection before the broker hears back.
    fn listener(&self, membership: Membership) -> UpdateListener {
        let updates = self.updates.clone();
        Arc::new(move |active: u8, context: MessageContext| {
            let updates = updates.clone();
            let membership = membership.clone();
            // Counted at once, in whatever order the client's tasks run (see `Membership`).
            membership.note(active != 0);
            tracing::debug!(
                target: "consumer::group",
                stream = %context.stream(),
                active,
                "consumer update from the broker"
            );
            async move {
                let (name, stream, client) = (context.name(), context.stream(), context.client());
                if active != 0 {
                    let stored = match connection::stored_offset(&client, &name, &stream).await {
                        Ok(stored) => Some(stored),
                        Err(err) => {
                            tracing::warn!("partition {stream}: {err}");
                            None
                        }
                    };
                    let (reply, start) = oneshot::channel();
                    if updates
                        .unbounded_send(GroupUpdate::Active {
                            membership,
                            stored,
                            reply,
                        })
                        .is_err()
                    {
                        return OffsetSpecification::Next;
                    }
                    // The actor opens its gate before the broker sends anything.
                    start
                        .await
                        .map_or(OffsetSpecification::Next, |start| start.to_client())
                } else {
                    let (reply, last) = oneshot::channel();
                    if updates
                        .unbounded_send(GroupUpdate::Inactive { membership, reply })
                        .is_ok()
                    {
                        if let Ok(Some(last)) = last.await {
                            store_before_handover(&client, &name, &stream, last).await;
                        }
                    }
                    // Ignored by the broker for an inactive member.
                    OffsetSpecification::Next
                }
            }
            .boxed()
        })
    }
}

/// Stores `offset` on the subscription's connection and reads it back, so the broker has it
/// before this member answers the deactivation and the next member queries it.
async fn store_before_handover(
    client: &rabbitmq_stream_client::Client,
    name: &str,
    stream: &str,
    offset: u64,
) {
    if let Err(err) = client.store_offset(name, stream, offset).await {
        tracing::warn!("partition {stream}: storing {offset} before the handover: {err}");
        return;
    }
    match connection::stored_offset(client, name, stream).await {
        Ok(Some(stored)) if stored >= offset => {
            tracing::info!("partition {stream}: stored {offset} for the next active member")
        }
        Ok(stored) => tracing::warn!(
            "partition {stream}: stored {offset} before the handover, but the broker holds {}",
            show_offset(stored)
        ),
        Err(err) => tracing::warn!("partition {stream}: reading back the handover store: {err}"),
    }
}

/// What the actor needs to subscribe, and to subscribe again.
#[derive(Clone)]
pub struct Subscription {
    /// Builds consumers.
    pub environment: Environment,
    /// For the stream-existence check.
    pub broker: BrokerSettings,
    /// The consumer's name.
    pub name: String,
    /// The stream.
    pub stream: String,
    /// Where the first subscription attached.
    pub start: OffsetSpec,
    /// How long to keep trying to subscribe again after a loss.
    pub reconnect_timeout: Duration,
    /// The tracker's count trigger (0: off), for the crash bound.
    pub store_every_messages: u64,
    /// Membership in a consumer group, if `consumer.single_active`.
    pub group: Option<Group>,
}

impl Subscription {
    /// Attaches a named consumer at `position` (in a group, where the broker's consumer update
    /// says instead).
    pub async fn subscribe(&self, position: OffsetSpec) -> Result<Subscribed> {
        let membership = self.group.as_ref().map(|_| Membership::default());
        let mut builder = self
            .environment
            .consumer()
            .name(&self.name)
            .offset(position.to_client())
            .client_provided_name(&format!("consumer {}", self.name));
        if let (Some(group), Some(membership)) = (&self.group, &membership) {
            let mut properties = HashMap::new();
            if let Some(super_stream) = &group.super_stream {
                // Makes the broker spread the super stream's partitions over the group.
                properties.insert("super-stream".to_owned(), super_stream.clone());
            }
            builder = builder
                .enable_single_active_consumer(true)
                .properties(properties)
                .consumer_update_arc(Some(group.listener(membership.clone())));
        }
        let what = "cannot subscribe";
        let build = builder.build(&self.stream);
        match connection::build_within_deadline(&self.broker, what, &self.stream, build).await? {
            Ok(consumer) => Ok(Subscribed {
                consumer,
                membership,
            }),
            Err(err) => {
                let failure = build_failure(err);
                Err(connection::build_error(&self.broker, what, &self.stream, failure).await)
            }
        }
    }

    /// The same subscription on a fresh environment: after a lost connection, the node the old
    /// one knew may be the one that is gone.
    async fn renewed(&self) -> Result<Subscription> {
        let environment =
            connection::environment(&self.broker, &format!("consumer {}", self.name)).await?;
        Ok(Subscription {
            environment,
            ..self.clone()
        })
    }

    /// "partition s-0: " on a super stream, nothing on a plain stream.
    fn label(&self) -> String {
        let partitioned = self
            .group
            .as_ref()
            .is_some_and(|g| g.super_stream.is_some());
        routing::partition_label(&self.stream, partitioned)
    }
}

fn build_failure(err: ConsumerCreateError) -> BuildFailure {
    match err {
        ConsumerCreateError::StreamDoesNotExist { .. } => BuildFailure::Missing,
        ConsumerCreateError::Create { status, .. } => BuildFailure::Refused(status),
        ConsumerCreateError::Client(err) => BuildFailure::Client(err),
        other => BuildFailure::Other(other.to_string()),
    }
}

/// The offset of `stream`'s last message, read on a subscription of its own.
async fn stream_end(environment: &Environment, stream: &str) -> Result<Option<u64>> {
    connection::delivered_offset(
        environment,
        stream,
        OffsetSpec::Last,
        true,
        Duration::from_millis(300),
    )
    .await
}

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
}

/// The tracker, as the consumer sees it: recipients and a progress signal, no concrete type.
#[derive(Clone)]
pub struct TrackerLink {
    /// Where processed batches go.
    pub processed: Recipient<Processed>,
    /// Where flush requests go.
    pub flush: Recipient<Flush>,
    /// What the tracker has stored.
    pub stored: watch::Receiver<StoredProgress>,
}

type Delivered = std::result::Result<Delivery, ConsumerDeliveryError>;

/// A batch from subscription number `.0`; `None` when that subscription ended.
type Item = (u64, Option<Vec<Delivered>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Consuming,
    Reconnecting,
    Finishing,
}

/// See the module documentation.
pub struct ConsumerActor<H: Handler> {
    handler: H,
    subscription: Subscription,
    initial: Option<Subscribed>,
    epoch: u64,
    handle: Option<ConsumerHandle>,
    tracker: TrackerLink,
    shutdown: CancellationToken,
    outcome: Outcome,
    unreported: Option<Processed>,
    phase: Phase,
    first_received_at: Option<Instant>,
    last_delivery_at: Instant,
    progress: Reporter,
    stream_end: Option<u64>,
    probing_end: bool,
    metrics: ConsumerMetrics,
    done: Option<oneshot::Sender<Result<Outcome>>>,
    /// Whether deliveries are processed: always outside a group; in one, while active.
    active: bool,
    /// Deliveries below this offset are leftovers of an earlier activation: never processed.
    min_offset: Option<u64>,
    /// The last offset processed in the current activation.
    activation_last: Option<u64>,
    /// In a group: the subscriptions' consumer updates, until `started` feeds them in.
    group_updates: Option<mpsc::UnboundedReceiver<GroupUpdate>>,
    /// The current subscription's group membership.
    membership: Option<Membership>,
    /// Shared with the process's progress display when several partitions are consumed.
    shared_count: Option<Arc<AtomicU64>>,
    /// The last stream check found the stream without a leader.
    unavailable: bool,
    /// When the stream was last checked (at most once per `IDLE_CHECK`).
    last_check_at: Instant,
}

impl<H: Handler> ConsumerActor<H> {
    /// An actor handing `initial`'s deliveries (it is attached as `subscription` says) to
    /// `handler`, reporting to `tracker`, stopping when `shutdown` is cancelled, and answering on
    /// `done` when it stops.
    pub fn new(
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
            subscription,
            initial: Some(initial),
            epoch: 0,
            handle: None,
            tracker,
            shutdown,
            outcome: Outcome::default(),
            unreported: None,
            phase: Phase::Consuming,
            first_received_at: None,
            last_delivery_at: Instant::now(),
            progress: Reporter::new("processed", None),
            stream_end: None,
            probing_end: false,
            metrics,
            done: Some(done),
            active: true,
            min_offset: None,
            activation_last: None,
            group_updates: None,
            membership: None,
            shared_count: None,
            unavailable: false,
            last_check_at: Instant::now(),
        }
    }

    /// In a consumer group: start inactive and follow the broker's `updates` (the receiving end
    /// of the subscription's [`Group::updates`]).
    pub fn in_group(mut self, updates: mpsc::UnboundedReceiver<GroupUpdate>) -> Self {
        self.active = false;
        self.group_updates = Some(updates);
        self
    }

    /// Counts processed messages into `count` for a display shared with other partitions,
    /// instead of showing progress of its own.
    pub fn counting_into(mut self, count: Arc<AtomicU64>) -> Self {
        self.shared_count = Some(count);
        self
    }

    /// Feeds `consumer`'s deliveries into this actor, tagged so that a stale subscription's
    /// leftovers are recognised after a reconnect.
    fn attach(&mut self, subscribed: Subscribed, ctx: &mut Context<Self>) {
        let Subscribed {
            consumer,
            membership,
        } = subscribed;
        if membership.is_some() {
            // Active only once the broker says so (perhaps already: `membership` counts).
            self.active = false;
        }
        self.membership = membership;
        self.epoch += 1;
        self.handle = Some(consumer.handle());
        self.phase = Phase::Consuming;
        self.last_delivery_at = Instant::now();
        let epoch = self.epoch;
        let batches = consumer
            .ready_chunks(MAX_BATCH)
            .map(move |batch| (epoch, Some(batch)))
            .chain(futures::stream::once(async move { (epoch, None) }));
        ctx.add_stream(batches);
    }

    /// Where to attach again: right after the last processed message, or where we first did.
    fn resume_position(&self) -> OffsetSpec {
        match self.outcome.last_offset {
            Some(offset) => OffsetSpec::Offset(offset + 1),
            None => self.subscription.start,
        }
    }

    /// Processed messages not yet covered by a store the tracker made.
    fn ahead_of_store(&self) -> u64 {
        self.outcome
            .messages
            .saturating_sub(self.tracker.stored.borrow().processed)
    }

    /// Handles one batch, unless the crash bound says to wait for the tracker first.
    fn take_batch(&mut self, mut batch: Vec<Delivered>, ctx: &mut Context<Self>) {
        if !self.active {
            // Not the group's active member (any more): another member processes these.
            return;
        }
        if let Some(min) = self.min_offset {
            batch.retain(|item| item.as_ref().map_or(true, |d| d.offset() >= min));
            if batch.is_empty() {
                return;
            }
        }
        let every = self.subscription.store_every_messages;
        let limit = every + MAX_BATCH as u64;
        let size = batch.len() as u64;
        if every == 0 || self.ahead_of_store() + size <= limit {
            self.process_batch(batch, ctx);
            return;
        }
        // Stores fell behind: hand over what is unreported and wait until the tracker catches up.
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
                        actor.process_batch(batch, ctx);
                    } else {
                        actor.finish(None, ctx);
                    }
                }),
        );
    }

    fn process_batch(&mut self, batch: Vec<Delivered>, ctx: &mut Context<Self>) {
        let mut deliveries = Vec::with_capacity(batch.len());
        let mut failure = None;
        for item in batch {
            match item {
                Ok(delivery) => deliveries.push(delivery),
                Err(err) => {
                    failure = Some(err.to_string());
                    break;
                }
            }
        }
        let handled = if deliveries.is_empty() {
            Handled::all(0)
        } else {
            match self.handler.handle(&deliveries) {
                Ok(handled) => handled,
                Err(err) => return self.finish(Some(err), ctx),
            }
        };
        let processed = &deliveries[..handled.processed.min(deliveries.len())];
        if let (Some(first), Some(last)) = (processed.first(), processed.last()) {
            let now = Instant::now();
            if self.outcome.first_offset.is_none() {
                self.outcome.first_offset = Some(first.offset());
                self.first_received_at = Some(now);
            }
            let last = last.offset();
            let count = processed.len() as u64;
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
        } else if let Some(reason) = failure {
            self.reconnect(format!("delivery failed: {reason}"), ctx);
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
    /// message, with backoff, until the deadline.
    fn reconnect(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.phase != Phase::Consuming {
            return;
        }
        self.phase = Phase::Reconnecting;
        if self.subscription.group.is_some() {
            // The new subscription is active only once the broker says so again.
            self.active = false;
        }
        self.outcome.reconnects += 1;
        self.metrics.resubscribes.increment(1);
        if let Some(old) = self.handle.take() {
            // The old subscription may be half-alive: close it, never wait for it.
            actix::spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, old.close()).await;
            });
        }
        let position = self.resume_position();
        let label = self.subscription.label();
        tracing::warn!("{label}subscription lost ({reason}); subscribing again at {position}");
        let subscription = self.subscription.clone();
        let shutdown = self.shutdown.clone();
        let retry = async move {
            let deadline = Instant::now() + subscription.reconnect_timeout;
            let mut pause = BACKOFF.0;
            loop {
                let renewed_then_subscribed = async {
                    let renewed = subscription.renewed().await?;
                    let consumer = renewed.subscribe(position).await?;
                    Ok((renewed, consumer))
                };
                let attempt = tokio::select! {
                    attempt = renewed_then_subscribed => attempt,
                    _ = shutdown.cancelled() => return Ok(None),
                };
                let err = match attempt {
                    Ok(renewed) => return Ok(Some(renewed)),
                    Err(err @ Error::StreamNotFound { .. }) => return Err(err),
                    Err(err) => err,
                };
                if Instant::now() + pause > deadline {
                    return Err(Error::ConsumeStopped {
                        stream: subscription.stream.clone(),
                        reason: format!(
                            "gave up subscribing again after {} (consumer.reconnect_timeout): {err}",
                            humantime::format_duration(subscription.reconnect_timeout)
                        ),
                    });
                }
                tracing::info!(
                    "{label}{err}; trying again in {}",
                    humantime::format_duration(pause)
                );
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
                pause = (pause * 2).min(BACKOFF.1);
            }
        };
        ctx.wait(
            retry
                .into_actor(self)
                .map(move |result, actor, ctx| match result {
                    Ok(Some((renewed, consumer))) => {
                        tracing::info!("{}subscribed again at {position}", renewed.label());
                        actor.subscription = renewed;
                        actor.attach(consumer, ctx);
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

    /// Offsets between the last processed message and the stream's end, as last sampled.
    fn lag(&self) -> Option<u64> {
        let end = self.stream_end?;
        // Before this run processed anything, it is behind from where it resumed.
        let at = self
            .outcome
            .last_offset
            .or(self.tracker.stored.borrow().offset)?;
        Some(end.saturating_sub(at))
    }

    /// Samples the stream's last offset for the lag, on a subscription of its own.
    fn probe_stream_end(&mut self, ctx: &mut Context<Self>) {
        if self.probing_end || self.phase != Phase::Consuming {
            return;
        }
        self.probing_end = true;
        let subscription = self.subscription.clone();
        let probe =
            async move { stream_end(&subscription.environment, &subscription.stream).await };
        ctx.spawn(probe.into_actor(self).map(|end, actor, _| {
            actor.probing_end = false;
            match end {
                Ok(Some(end)) => {
                    actor.stream_end = Some(end);
                    if let Some(lag) = actor.lag() {
                        shared::metrics::record_lag(&actor.subscription.stream, lag);
                    }
                }
                Ok(None) => {}
                Err(err) => tracing::debug!("lag probe: {err}"),
            }
        }));
    }

    /// Idle for a while: is the stream still there, and available?
    fn check_stream(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Consuming
            || self.last_delivery_at.elapsed() < IDLE_CHECK
            || self.last_check_at.elapsed() < IDLE_CHECK
        {
            return;
        }
        self.last_check_at = Instant::now();
        let subscription = self.subscription.clone();
        // Only an active subscription is expected to receive what the stream holds.
        let expecting = self.active;
        let check = async move {
            let client = connection::client(&subscription.broker, "stream check").await?;
            let state = connection::stream_state(&client, &subscription.stream).await;
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await;
            let state = state?;
            let quorum_lost = connection::quorum_lost(&subscription.broker, state).await?;
            let end = match state {
                StreamState::Available { .. } if expecting && quorum_lost.is_none() => {
                    // Through a fresh environment: the subscription's may know a node that is gone.
                    let fresh = connection::environment(&subscription.broker, "stream check").await;
                    match fresh {
                        Ok(environment) => stream_end(&environment, &subscription.stream)
                            .await
                            .unwrap_or_default(),
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            Ok((state, quorum_lost, end))
        };
        ctx.spawn(check.into_actor(self).map(|checked: Result<_>, actor, ctx| {
            let stream = &actor.subscription.stream;
            let checked = checked.map(|(state, quorum_lost, end)| {
                if let Some(end) = end {
                    actor.stream_end = Some(end);
                }
                (state, quorum_lost)
            });
            let behind = actor.active
                && actor.phase == Phase::Consuming
                && actor.last_delivery_at.elapsed() >= IDLE_CHECK
                && matches!(
                    (actor.stream_end, actor.outcome.last_offset.or(actor.min_offset.map(|m| m.saturating_sub(1)))),
                    (Some(end), Some(at)) if end > at
                );
            if matches!(checked, Ok((StreamState::Available { .. }, None))) && behind {
                // The client ignores the broker's notice that the stream moved (a new leader,
                // a replica restarted): the subscription is alive but gets nothing.
                actor.reconnect(
                    "no delivery while the stream holds more; the broker moved the stream".into(),
                    ctx,
                );
                return;
            }
            let unavailable = match checked {
                Ok((StreamState::Missing, _)) => {
                    let err = Error::ConsumeStopped {
                        stream: stream.clone(),
                        reason: "the stream was deleted".into(),
                    };
                    actor.finish(Some(err), ctx);
                    return;
                }
                Ok((StreamState::Unavailable, _)) => Some(connection::NO_LEADER.to_owned()),
                Ok((StreamState::Available { .. }, quorum_lost)) => quorum_lost,
                // A broker we cannot reach now: the subscription's own failure will tell.
                Err(err) => {
                    tracing::debug!("stream check: {err}");
                    return;
                }
            };
            match unavailable {
                Some(why) if !actor.unavailable => {
                    tracing::warn!("stream {stream}: {why}; waiting for it to come back");
                    actor.unavailable = true;
                }
                Some(_) => {}
                None => {
                    if std::mem::take(&mut actor.unavailable) {
                        tracing::info!("stream {stream} is available again");
                    }
                }
            }
        }));
    }

    /// Stops consuming: flushes the tracker (which confirms the store), closes the subscription,
    /// and answers `done` with `failure` or the outcome.
    fn finish(&mut self, failure: Option<Error>, ctx: &mut Context<Self>) {
        if self.phase == Phase::Finishing {
            return;
        }
        self.phase = Phase::Finishing;
        self.progress.finish();
        let pending = self.unreported.take();
        let tracker = self.tracker.clone();
        let handle = self.handle.take();
        let stream_gone = matches!(
            failure,
            Some(Error::ConsumeStopped { .. } | Error::StreamNotFound { .. })
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
            if let Some(handle) = handle {
                // A dead connection cannot be closed cleanly; that does not undo the flush.
                match tokio::time::timeout(CLOSE_TIMEOUT, handle.close()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::debug!("closing the subscription: {err}"),
                    Err(_) => tracing::warn!("the broker did not confirm closing the subscription"),
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
        if let Some(updates) = self.group_updates.take() {
            ctx.add_stream(updates);
        }
        if let Some(consumer) = self.initial.take() {
            self.attach(consumer, ctx);
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

impl<H: Handler> ConsumerActor<H> {
    /// The broker made this member active: resume right after the group's stored offset.
    fn become_active(&mut self, stored: Option<Option<u64>>) -> OffsetSpec {
        let label = self.subscription.label();
        let stored = match stored {
            Some(stored) => stored,
            // The query failed: what this process knows was stored is the best lower bound.
            None => self.tracker.stored.borrow().offset,
        };
        let start = start_position(stored, self.subscription.start);
        self.active = true;
        self.activation_last = None;
        self.min_offset = match start {
            OffsetSpec::Offset(offset) => Some(offset),
            _ => None,
        };
        self.last_delivery_at = Instant::now();
        tracing::info!(
            "{label}active in group '{}': resuming at {start} (stored {})",
            self.subscription.name,
            show_offset(stored)
        );
        start
    }

    /// The broker made another member active: stop, and flush what this one processed.
    fn become_inactive(&mut self, reply: oneshot::Sender<Option<u64>>, ctx: &mut Context<Self>) {
        let label = self.subscription.label();
        self.active = false;
        let last = self.activation_last.take();
        tracing::info!(
            "{label}inactive in group '{}': last processed {}",
            self.subscription.name,
            show_offset(last)
        );
        let pending = self.unreported.take();
        let tracker = self.tracker.clone();
        let flush = async move {
            if let Some(report) = pending {
                let _ = tracker.processed.send(report).await;
            }
            if last.is_some() {
                match tracker.flush.send(Flush).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => tracing::warn!("{label}flush before the handover: {err}"),
                    Err(_) => {
                        tracing::warn!("{label}flush before the handover: the tracker stopped")
                    }
                }
            }
        };
        ctx.wait(flush.into_actor(self).map(move |(), _, _| {
            let _ = reply.send(last);
        }));
    }
}

impl<H: Handler> StreamHandler<GroupUpdate> for ConsumerActor<H> {
    fn handle(&mut self, update: GroupUpdate, ctx: &mut Self::Context) {
        let current = |membership: &Membership, actor: &Self| {
            actor
                .membership
                .as_ref()
                .is_some_and(|m| m.same(membership))
        };
        match update {
            // An update for a subscription this actor has left (after a reconnect): no effect.
            GroupUpdate::Active {
                membership, reply, ..
            } if !current(&membership, self) => {
                let _ = reply.send(self.resume_position());
            }
            GroupUpdate::Inactive { membership, reply } if !current(&membership, self) => {
                let _ = reply.send(None);
            }
            GroupUpdate::Active {
                membership,
                stored,
                reply,
            } => {
                if self.active || !membership.is_active() {
                    // Already active, or the broker has taken this activation back (its
                    // "inactive" was counted first): nothing changes here.
                    let start = start_position(stored.flatten(), self.subscription.start);
                    let _ = reply.send(start);
                } else {
                    let start = self.become_active(stored);
                    let _ = reply.send(start);
                }
            }
            GroupUpdate::Inactive { reply, .. } => {
                if self.active {
                    self.become_inactive(reply, ctx);
                } else {
                    let _ = reply.send(None);
                }
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The senders live in subscriptions; the actor outlives them.
    }
}

impl<H: Handler> StreamHandler<Item> for ConsumerActor<H> {
    fn handle(&mut self, (epoch, batch): Item, ctx: &mut Self::Context) {
        // Leftovers of an earlier subscription, or anything after the marker or a shutdown, are
        // not processed, so not stored.
        if epoch != self.epoch || self.phase != Phase::Consuming {
            return;
        }
        match batch {
            Some(batch) => self.take_batch(batch, ctx),
            None => self.reconnect("the broker connection ended".into(), ctx),
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // Each subscription's end arrives as an item (see `attach`); the actor outlives them.
    }
}
