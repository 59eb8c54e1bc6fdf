//! The publisher actor: publishes a wave of messages — `hello0`, `hello1`, …, and last
//! `marker{n-1}` — and answers only when the broker has confirmed every one of them, or with an
//! error that says how many it did not confirm.
//!
//! - At most `max_unconfirmed` messages (plus one block of `CHECK_EVERY`) are in flight at once,
//!   so memory stays flat whatever the wave's size.
//! - A named producer (`producer.name`) gives message `i` the publishing id `base + i`, where `base`
//!   follows the broker's last id for that name. If the connection is lost, it reconnects and asks
//!   the broker which id it holds last, then resends from the next one: the broker's deduplication
//!   drops anything it already has, so no message is written twice and none is lost.
//! - An unnamed producer cannot resend safely: a lost connection fails the wave with the count of
//!   unconfirmed messages.
//! - On a super stream, each message goes to the partition its routing key hashes to
//!   ([`shared::routing`]), and each partition is published by a producer of its own (named
//!   `{producer.name}-{partition number}`), so deduplication and resends work per partition. The
//!   last message routed to each partition is that partition's marker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rabbitmq_stream_client::error::{ProducerCreateError, ProducerPublishError};
use rabbitmq_stream_client::types::Message as StreamMessage;
use rabbitmq_stream_client::{Dedup, Environment, NoDedup, OnClosed, Producer};
use shared::config::{BrokerSettings, ProducerSettings};
use shared::connection::BuildFailure;
use shared::error::{describe_client_error, Error, Result};
use shared::progress::{self, Reporter};
use shared::{connection, routing};
use tokio::sync::{oneshot, Notify};

/// The in-flight window and the connection are checked once per this many messages.
const CHECK_EVERY: u64 = 256;

/// First and longest pause between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// Publish a wave of `count` messages and wait for every confirmation.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<WaveReport>")]
pub struct PublishWave {
    /// Messages in the wave, the marker included.
    pub count: u64,
}

/// What a confirmed wave did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveReport {
    /// Messages the broker confirmed.
    pub confirmed: u64,
    /// How long publishing and confirming took.
    pub elapsed: Duration,
    /// Times the connection was lost and made again.
    pub reconnects: u64,
}

/// The body of message `index`; `last` for the last message of its stream (the marker).
pub fn body(index: u64, last: bool) -> String {
    if last {
        format!("marker{index}")
    } else {
        format!("hello{index}")
    }
}

/// What one producer publishes: the whole wave on a plain stream, or the messages routed to one
/// partition of a super stream.
#[derive(Debug, Clone)]
pub struct Lane {
    /// The stream (or partition) written to.
    pub stream: String,
    /// `(partition, partitions)` on a super stream.
    partition: Option<(u32, u32)>,
    /// `producer.routing_key`.
    routing_key: String,
    /// Messages in the whole wave.
    wave: u64,
    /// Messages in this lane.
    len: u64,
}

impl Lane {
    /// The lanes of a wave of `count` messages over `streams` (one: a plain stream; several: the
    /// partitions of a super stream, in the broker's order).
    pub fn plan(streams: &[String], count: u64, routing_key: &str) -> Result<Vec<Lane>> {
        if let [stream] = streams {
            return Ok(vec![Lane {
                stream: stream.clone(),
                partition: None,
                routing_key: routing_key.to_owned(),
                wave: count,
                len: count,
            }]);
        }
        let partitions = u32::try_from(streams.len())
            .map_err(|_| Error::Internal("too many partitions".into()))?;
        let mut lens = vec![0u64; streams.len()];
        for index in 0..count {
            let key = routing::routing_key(routing_key, index);
            lens[routing::partition_of(&key, partitions) as usize] += 1;
        }
        if let Some(empty) = lens.iter().position(|&len| len == 0) {
            return Err(Error::Config(format!(
                "producer.message_count = {count} routes no message to partition {} of {partitions} \
                 ({}), which would get no marker; publish more messages",
                empty, streams[empty]
            )));
        }
        Ok(streams
            .iter()
            .zip(lens)
            .enumerate()
            .map(|(p, (stream, len))| Lane {
                stream: stream.clone(),
                partition: Some((p as u32, partitions)),
                routing_key: routing_key.to_owned(),
                wave: count,
                len,
            })
            .collect())
    }

    /// Messages in this lane (at least 1: the marker).
    fn messages(&self) -> u64 {
        self.len
    }

    /// The wave indices of this lane's messages from position `skip` on.
    fn indices(&self, skip: u64) -> Box<dyn Iterator<Item = u64> + Send + '_> {
        match self.partition {
            None => Box::new(skip..self.wave),
            Some((partition, partitions)) => Box::new(
                routing::indices_of(&self.routing_key, self.wave, partition, partitions)
                    .skip(skip as usize),
            ),
        }
    }

    /// The producer's name for this lane, if publishing is named.
    fn producer_name(&self, name: Option<&str>) -> Option<String> {
        let name = name?;
        Some(match self.partition {
            None => name.to_owned(),
            Some((partition, _)) => format!("{name}-{partition}"),
        })
    }

    /// "partition s-1: " on a super stream, nothing on a plain stream.
    fn label(&self) -> String {
        routing::partition_label(&self.stream, self.partition.is_some())
    }
}

/// How to reach the broker; enough to build a lane's producer again.
#[derive(Clone)]
pub struct Target {
    /// Builds producers (built again after a lost connection: its node may be the one lost).
    pub environment: Environment,
    /// For the publishing-sequence query.
    pub broker: BrokerSettings,
    /// The streams: one plain stream, or a super stream's partitions in order.
    pub streams: Vec<String>,
    /// `[producer]` settings.
    pub settings: ProducerSettings,
}

/// One lane's producer: how to reach it, and under which name.
#[derive(Clone)]
struct LaneTarget {
    environment: Environment,
    broker: BrokerSettings,
    settings: ProducerSettings,
    lane: Lane,
    name: Option<String>,
}

/// A producer with or without deduplication.
enum StreamProducer {
    Plain(Producer<NoDedup>),
    Named(Producer<Dedup>),
}

impl StreamProducer {
    async fn send(
        &mut self,
        message: StreamMessage,
        on_confirm: Confirm,
    ) -> Result<(), ProducerPublishError> {
        let callback = move |status| on_confirm.settle(status);
        match self {
            StreamProducer::Plain(p) => p.send(message, callback).await,
            StreamProducer::Named(p) => p.send(message, callback).await,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            StreamProducer::Plain(p) => p.is_closed(),
            StreamProducer::Named(p) => p.is_closed(),
        }
    }

    async fn close(self) {
        // Dropping a producer blocks a runtime thread on its close: close it here, with a deadline.
        let closing = async {
            let _ = match self {
                StreamProducer::Plain(p) => p.close().await,
                StreamProducer::Named(p) => p.close().await,
            };
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), closing).await;
    }
}

impl LaneTarget {
    /// Builds a producer; for a named one, also the first publishing id to use (the broker's last
    /// plus one; ids start at 1 so that "0" unambiguously means "nothing published yet").
    async fn connect(&self, lost: Arc<Confirmations>) -> Result<(StreamProducer, u64)> {
        let on_closed = Box::new(ConnectionLost(lost));
        let name = format!("producer {}", self.name.as_deref().unwrap_or(""));
        let stream = &self.lane.stream;
        let build = async {
            match &self.name {
                None => self
                    .environment
                    .producer()
                    .client_provided_name(name.trim())
                    .batch_size(self.settings.batch_size as usize)
                    .on_closed(on_closed)
                    .build(stream)
                    .await
                    .map(StreamProducer::Plain),
                Some(producer_name) => self
                    .environment
                    .producer()
                    .name(producer_name)
                    .client_provided_name(&name)
                    .batch_size(self.settings.batch_size as usize)
                    .on_closed(on_closed)
                    .build(stream)
                    .await
                    .map(StreamProducer::Named),
            }
        };
        let what = "cannot create a producer";
        let producer =
            match connection::build_within_deadline(&self.broker, what, stream, build).await? {
                Ok(producer) => producer,
                Err(err) => {
                    let failure = build_failure(err);
                    return Err(connection::build_error(&self.broker, what, stream, failure).await);
                }
            };
        let next_id = match &self.name {
            None => 0,
            Some(producer_name) => self.last_publishing_id(producer_name).await? + 1,
        };
        Ok((producer, next_id))
    }

    async fn last_publishing_id(&self, producer_name: &str) -> Result<u64> {
        let client = connection::client(&self.broker, "producer sequence").await?;
        let sequence = client
            .query_publisher_sequence(producer_name, &self.lane.stream)
            .await
            .map_err(|err| Error::Broker {
                what: "cannot query the producer's last publishing id",
                stream: self.lane.stream.clone(),
                reason: describe_client_error(&err),
            });
        let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
        sequence
    }
}

fn build_failure(err: ProducerCreateError) -> BuildFailure {
    match err {
        ProducerCreateError::StreamDoesNotExist { .. } => BuildFailure::Missing,
        ProducerCreateError::Create { status, .. } => BuildFailure::Refused(status),
        ProducerCreateError::Client(err) => BuildFailure::Client(err),
        other => BuildFailure::Other(other.to_string()),
    }
}

/// Confirmation counts of one connection, shared with the client's callbacks.
#[derive(Default)]
struct Confirmations {
    confirmed: AtomicU64,
    rejected: AtomicU64,
    lost: AtomicBool,
    changed: Notify,
}

impl Confirmations {
    fn settled(&self) -> u64 {
        self.confirmed.load(Ordering::Acquire) + self.rejected.load(Ordering::Acquire)
    }
}

/// The client calls this when the producer's connection closes.
struct ConnectionLost(Arc<Confirmations>);

#[async_trait::async_trait]
impl OnClosed for ConnectionLost {
    async fn on_closed(&self, unconfirmed: Vec<StreamMessage>) {
        if !unconfirmed.is_empty() {
            tracing::warn!(
                "the producer's connection closed with {} messages unconfirmed",
                unconfirmed.len()
            );
        }
        self.0.lost.store(true, Ordering::Release);
        self.0.changed.notify_one();
    }
}

/// One message's confirmation: counts it.
struct Confirm {
    confirmations: Arc<Confirmations>,
}

impl Confirm {
    async fn settle(
        self,
        status: Result<rabbitmq_stream_client::ConfirmationStatus, ProducerPublishError>,
    ) {
        {
            match status {
                Ok(status) if status.confirmed() => {
                    self.confirmations.confirmed.fetch_add(1, Ordering::AcqRel);
                }
                Ok(status) => {
                    tracing::warn!(
                        publishing_id = status.publishing_id(),
                        "the broker rejected a message: {:?}",
                        status.status()
                    );
                    self.confirmations.rejected.fetch_add(1, Ordering::AcqRel);
                }
                Err(err) => {
                    tracing::warn!("publishing failed: {err}");
                    self.confirmations.rejected.fetch_add(1, Ordering::AcqRel);
                }
            }
            self.confirmations.changed.notify_one();
        }
    }
}

/// See the module documentation.
pub struct Publisher {
    target: Target,
}

impl Publisher {
    /// A publisher to `target`.
    pub fn new(target: Target) -> Self {
        Self { target }
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;
}

impl Handler<PublishWave> for Publisher {
    type Result = ResponseFuture<Result<WaveReport>>;

    fn handle(&mut self, wave: PublishWave, _: &mut Self::Context) -> Self::Result {
        // On the runtime's worker threads, beside the client's own tasks, not on the actor thread.
        let publishing = tokio::spawn(publish_wave(self.target.clone(), wave.count));
        Box::pin(async move {
            publishing
                .await
                .map_err(|err| Error::Internal(format!("the publishing task failed: {err}")))?
        })
    }
}

/// How one connection's attempt at a lane ended.
enum Attempt {
    /// Every message from the attempt's start is confirmed.
    Done,
    /// The connection was lost; a named producer may go on.
    Lost(String),
}

/// What one lane did.
struct LaneReport {
    confirmed: u64,
    reconnects: u64,
}

async fn publish_wave(target: Target, count: u64) -> Result<WaveReport> {
    let lanes = Lane::plan(&target.streams, count, &target.settings.routing_key)?;
    if lanes.len() > 1 {
        for lane in &lanes {
            tracing::info!("partition {}: {} messages", lane.stream, lane.messages());
        }
    }
    let progress: Arc<Vec<WaveProgress>> =
        Arc::new(lanes.iter().map(|_| WaveProgress::default()).collect());
    // Dropping `stop` (here, or with this future) ends the reporter, which clears its bar.
    let (stop, stopped) = oneshot::channel::<()>();
    let reporter = tokio::spawn(report_progress(progress.clone(), count, stopped));
    let started = Instant::now();
    let mut publishing = tokio::task::JoinSet::new();
    for (number, lane) in lanes.into_iter().enumerate() {
        let lane_target = LaneTarget {
            environment: target.environment.clone(),
            broker: target.broker.clone(),
            settings: target.settings.clone(),
            name: lane.producer_name(target.settings.name.as_deref()),
            lane,
        };
        let progress = progress.clone();
        publishing.spawn(async move { publish_lane(lane_target, &progress[number]).await });
    }
    let mut report = WaveReport {
        confirmed: 0,
        elapsed: Duration::ZERO,
        reconnects: 0,
    };
    // The first lane to fail fails the wave; dropping the set stops the others.
    while let Some(done) = publishing.join_next().await {
        let lane =
            done.map_err(|err| Error::Internal(format!("a publishing task failed: {err}")))??;
        report.confirmed += lane.confirmed;
        report.reconnects += lane.reconnects;
    }
    report.elapsed = started.elapsed();
    drop(stop);
    let _ = reporter.await;
    Ok(report)
}

async fn publish_lane(mut target: LaneTarget, progress: &WaveProgress) -> Result<LaneReport> {
    let count = target.lane.messages();
    let label = target.lane.label();
    let named = target.name.is_some();
    let mut reconnects = 0;
    let mut failed_attempts = 0;
    let mut base = None;
    let mut deadline = None;
    loop {
        if deadline.is_some() {
            // The node the environment knew may be the one lost: find one that answers.
            match connection::environment(&target.broker, "producer").await {
                Ok(environment) => target.environment = environment,
                Err(err) => tracing::info!("{label}{err}"),
            }
        }
        let confirmations = Arc::new(Confirmations::default());
        let connecting = connection::patiently(target.settings.reconnect_timeout, || {
            target.connect(confirmations.clone())
        });
        let (mut producer, next_id) = match connecting.await {
            Ok(connected) => connected,
            Err(err) => {
                let Some(deadline) = deadline else {
                    return Err(err);
                };
                if Instant::now() > deadline {
                    return Err(not_confirmed(
                        count,
                        progress.confirmed.load(Ordering::Acquire),
                        format!(
                            "{label}gave up reconnecting after {} (producer.reconnect_timeout): {err}",
                            humantime::format_duration(target.settings.reconnect_timeout)
                        ),
                    ));
                }
                tracing::info!("{label}{err}; trying again");
                tokio::time::sleep(backoff(failed_attempts)).await;
                failed_attempts += 1;
                continue;
            }
        };
        failed_attempts = 0;
        if reconnects > 0 {
            tracing::info!(
                "{label}reconnected; the broker holds up to publishing id {}",
                next_id.saturating_sub(1)
            );
        }
        // Message at position i of the lane has id base + i; after a reconnect, resume at the
        // broker's last id + 1.
        let base = *base.get_or_insert(next_id);
        let first = if named {
            next_id.saturating_sub(base).min(count)
        } else {
            0
        };
        progress.confirmed.store(first, Ordering::Release);
        let attempt = publish_range(
            &target,
            &mut producer,
            &confirmations,
            progress,
            base,
            first,
        )
        .await;
        producer.close().await;
        match attempt? {
            Attempt::Done => {
                return Ok(LaneReport {
                    confirmed: count,
                    reconnects,
                })
            }
            Attempt::Lost(reason) if named => {
                tracing::warn!(
                    "{label}{reason}; reconnecting to resend what the broker does not hold"
                );
                deadline.get_or_insert(Instant::now() + target.settings.reconnect_timeout);
                reconnects += 1;
                tokio::time::sleep(backoff(0)).await;
            }
            Attempt::Lost(reason) => {
                return Err(not_confirmed(
                    count,
                    progress.confirmed.load(Ordering::Acquire),
                    format!(
                        "{label}{reason}; set producer.name to let the producer resend without duplicates"
                    ),
                ))
            }
        }
    }
}

fn backoff(attempt: u64) -> Duration {
    BACKOFF.0.saturating_mul(1 << attempt.min(8)).min(BACKOFF.1)
}

fn not_confirmed(total: u64, confirmed: u64, reason: String) -> Error {
    Error::NotConfirmed {
        unconfirmed: total - confirmed.min(total),
        total,
        reason,
    }
}

/// Publishes the lane's messages from position `first` on one connection and waits for their
/// confirmations.
async fn publish_range(
    target: &LaneTarget,
    producer: &mut StreamProducer,
    confirmations: &Arc<Confirmations>,
    progress: &WaveProgress,
    base: u64,
    first: u64,
) -> Result<Attempt> {
    let count = target.lane.messages();
    let window = u64::from(target.settings.max_unconfirmed);
    let named = target.name.is_some();
    let confirmed_now = |c: &Confirmations| first + c.confirmed.load(Ordering::Acquire);
    for (position, index) in (first..count).zip(target.lane.indices(first)) {
        let sent = position - first;
        // Checked once per block, not per message: reading counters the confirmation callbacks
        // write on another thread costs a cache-line transfer each time.
        if sent.is_multiple_of(CHECK_EVERY) {
            let settled = sent.saturating_sub(window);
            if let Some(lost) = settle(target, producer, confirmations, settled).await {
                return Ok(lost);
            }
            progress
                .confirmed
                .store(confirmed_now(confirmations), Ordering::Relaxed);
            progress.published.store(position, Ordering::Relaxed);
        }
        let mut message = StreamMessage::builder().body(body(index, position + 1 == count));
        if named {
            message = message.publishing_id(base + position);
        }
        let confirm = Confirm {
            confirmations: confirmations.clone(),
        };
        if let Err(err) = producer.send(message.build(), confirm).await {
            return Ok(Attempt::Lost(format!("publishing failed: {err}")));
        }
    }
    progress.published.store(count, Ordering::Relaxed);
    if let Some(lost) = settle(target, producer, confirmations, count - first).await {
        return Ok(lost);
    }
    progress
        .confirmed
        .store(confirmed_now(confirmations), Ordering::Relaxed);
    let rejected = confirmations.rejected.load(Ordering::Acquire);
    if rejected > 0 {
        return Err(not_confirmed(
            count,
            confirmed_now(confirmations),
            format!("{}the broker rejected {rejected}", target.lane.label()),
        ));
    }
    Ok(Attempt::Done)
}

/// Waits until at least `settled` messages of this connection are confirmed or rejected; says
/// why not if the connection is lost or no confirmation arrives within `confirm_timeout`.
async fn settle(
    target: &LaneTarget,
    producer: &StreamProducer,
    confirmations: &Confirmations,
    settled: u64,
) -> Option<Attempt> {
    let timeout = target.settings.confirm_timeout;
    while confirmations.settled() < settled {
        if confirmations.lost.load(Ordering::Acquire) || producer.is_closed() {
            return Some(Attempt::Lost("the connection was lost".into()));
        }
        let before = confirmations.settled();
        let waited = tokio::time::timeout(timeout, confirmations.changed.notified()).await;
        if waited.is_err() && confirmations.settled() == before {
            return Some(Attempt::Lost(format!(
                "no confirmation for {} (producer.confirm_timeout): the stream's leader may be \
                 down, or most of its nodes (lost quorum)",
                humantime::format_duration(timeout)
            )));
        }
    }
    if confirmations.lost.load(Ordering::Acquire) || producer.is_closed() {
        return Some(Attempt::Lost("the connection was lost".into()));
    }
    None
}

/// What the wave has done so far, for the progress display (updated once per block).
#[derive(Default)]
struct WaveProgress {
    published: AtomicU64,
    confirmed: AtomicU64,
}

async fn report_progress(
    lanes: Arc<Vec<WaveProgress>>,
    count: u64,
    mut stop: oneshot::Receiver<()>,
) {
    let mut reporter = Reporter::new("confirmed", Some(count));
    let mut ticks = tokio::time::interval(progress::TICK);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let sum = |read: fn(&WaveProgress) -> u64| lanes.iter().map(read).sum::<u64>();
                let published = sum(|lane| lane.published.load(Ordering::Relaxed));
                let details = format!("published {published}");
                reporter.tick(sum(|lane| lane.confirmed.load(Ordering::Relaxed)), &details);
            }
            _ = &mut stop => break,
        }
    }
    reporter.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_message_of_each_lane_is_its_marker() {
        let plain = Lane::plan(&["s".into()], 100, "{index}").unwrap();
        assert_eq!(plain.len(), 1);
        let bodies: Vec<String> = (0..100u64)
            .zip(plain[0].indices(0))
            .map(|(position, index)| body(index, position + 1 == 100))
            .collect();
        assert_eq!(bodies[0], "hello0");
        assert_eq!(bodies[98], "hello98");
        assert_eq!(bodies[99], "marker99");

        let streams: Vec<String> = (0..3).map(|p| format!("s-{p}")).collect();
        let lanes = Lane::plan(&streams, 1000, "{index}").unwrap();
        assert_eq!(lanes.iter().map(Lane::messages).sum::<u64>(), 1000);
        for (p, lane) in lanes.iter().enumerate() {
            let indices: Vec<u64> = lane.indices(0).collect();
            assert_eq!(indices.len() as u64, lane.messages());
            assert!(indices.iter().all(|&i| {
                routing::partition_of(&routing::routing_key("{index}", i), 3) == p as u32
            }));
            // Resuming at a position skips exactly the ones before it.
            assert_eq!(lane.indices(5).next(), Some(indices[5]));
            assert_eq!(lane.producer_name(Some("p")), Some(format!("p-{p}")));
        }
    }

    #[test]
    fn a_partition_left_without_messages_is_refused() {
        let streams: Vec<String> = (0..3).map(|p| format!("s-{p}")).collect();
        let err = Lane::plan(&streams, 1, "{index}").unwrap_err();
        assert!(err.to_string().contains("no marker"), "{err}");
    }

    #[test]
    fn backoff_grows_to_a_ceiling() {
        assert_eq!(backoff(0), Duration::from_millis(200));
        assert_eq!(backoff(1), Duration::from_millis(400));
        assert_eq!(backoff(10), Duration::from_secs(5));
    }
}
