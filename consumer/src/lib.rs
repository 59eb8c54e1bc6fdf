//! The consumer as a library: [`run`] consumes a stream — or every partition of a super stream —
//! with [`Handler`]s of yours, a tracker per partition storing what the handler reports
//! processed. The `consumer` binary is [`run`] with the tutorial's [`TutorialHandler`];
//! `examples/custom_handler.rs` shows a handler of one's own; [`run_async`] runs an
//! [`AsyncHandler`] on many deliveries at once (`examples/io_handler/`).
//!
//! ```no_run
//! use consumer::{Delivery, Handled, Handler};
//! use tokio_util::sync::CancellationToken;
//!
//! struct Count(u64);
//!
//! impl Handler for Count {
//!     fn handle(&mut self, deliveries: &[Delivery]) -> shared::Result<Handled> {
//!         self.0 += deliveries.len() as u64;
//!         Ok(Handled::all(deliveries.len()))
//!     }
//! }
//!
//! # async fn example() -> shared::Result<()> {
//! let settings = shared::Settings::load(None)?;
//! let report = consumer::run(&settings, |_| Ok(Count(0)), false, CancellationToken::new()).await?;
//! println!("{} messages", report.messages());
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! | file | what lives there |
//! |---|---|
//! | `lib.rs` | [`run`], [`run_async`]: per partition, the resume rule, a subscription, a tracker, a consumer actor; the [`Report`] |
//! | `handler.rs` | the [`Handler`] and [`AsyncHandler`] traits, and [`TutorialHandler`] |
//! | `sqlite_sink.rs` | [`SqliteSink`]: messages and their offset in one SQLite transaction |
//! | `sqlite_writer.rs` | the sink's writer thread: transactions off the actor, a bounded queue, what is committed |
//! | `consume/actor.rs` | the consumer actor: batches to the handler, reports to the tracker, the crash bound, resubscribing, the final flush |
//! | `consume/subscription.rs` | where to attach, subscribing a named consumer |
//! | `consume/group.rs` | consumer groups: the broker's updates, handover stores |
//! | `consume/health.rs` | lag sampling and the idle stream check |
//! | `processing/stage.rs` | the parallel stage: an [`AsyncHandler`] on many deliveries at once, reporting only the finished prefix |
//! | `processing/window.rs`, `keys.rs`, `key.rs` | the finished prefix; one delivery per key at a time; where a key comes from |
//! | `processing/contain.rs` | a handler's panic becomes the run's error |
//! | `attach.rs` | the streams to consume exist (created only with `consumer.create_stream`); a line when attaching at the end or to an empty stream |
//! | `backlog.rs` | what the progress display says: the backlog (a bar while catching up, a spinner when tailing) and the offsets |
//! | `print.rs` | [`PrintHandler`] (`consumer --print`: each message through a `--format` template) and [`Limit`] (`--max-messages`) |
//! | `offsets/` | `consumer offsets show/set/export/import`: consumers' stored offsets beside the stream's bounds and lag, moved with a dry run, refused while a consumer of the name is connected |
//! | `main.rs` | the `consumer` binary: flags, signals, the summary |

mod attach;
mod backlog;
mod consume;
mod handler;
pub mod offsets;
mod print;
mod processing;
mod sqlite_sink;
mod sqlite_writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::{Actor, Recipient};
use futures::stream::{FuturesUnordered, StreamExt};
use shared::config::{OffsetStoreKind, Settings, SinkKind, TrackerSettings};
use shared::connection;
use shared::error::{Error, Result};
use shared::progress::{self, Reporter};
use shared::summary::{PartitionSummary, RunSummary};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracker::{BrokerStore, Close, GetStats, OffsetStore, Tracker, TrackerClient, TrackerStats};
use tracker::{CommittedThenBroker, Database, SqliteThenBroker};

use consume::{
    start_position, ConsumerActor, Group, Processing, Subscribed, Subscription, TrackerLink,
    MAX_BATCH,
};
use processing::Stage;

pub use consume::Outcome;
pub use handler::{AsyncHandler, Delivery, Flow, Handled, Handler, Message, TutorialHandler};
pub use print::{escape_body, Format, Limit, PrintArgs, PrintHandler};
pub use processing::panic_is_contained;
pub use sqlite_sink::SqliteSink;

/// A started tracker, as its users see it.
struct TrackerHandles {
    client: TrackerClient,
    link: TrackerLink,
    stats: Recipient<GetStats>,
    close: Recipient<Close>,
}

/// Whether processing waits for the broker's offset stores (the crash bound): not with the SQLite
/// sink, whose offsets commit in its own transactions with the rows, so that a broker store outage
/// cannot stall consumption.
fn waits_for_broker_stores(sink: SinkKind) -> bool {
    sink != SinkKind::Sqlite
}

/// Starts the tracker of `stream`. `bounded`: processing waits for its stores (the crash bound);
/// not when the offsets that resume the consumer are written elsewhere (the SQLite sink's
/// transactions), so that a broker outage does not stall consumption.
fn start_tracker<S: OffsetStore>(
    stream: &str,
    store: S,
    settings: &TrackerSettings,
    already_stored: Option<u64>,
    bounded: bool,
) -> TrackerHandles {
    let tracker = Tracker::new(stream, store, settings, already_stored);
    let stored = tracker.stored_progress();
    let tracker = tracker.start();
    // The crash bound: processed beyond the last store, at most the count trigger plus a batch.
    let bound = (bounded && settings.store_every_messages != 0).then(|| {
        settings
            .store_every_messages
            .saturating_add(MAX_BATCH as u64)
    });
    let client = TrackerClient::new(
        tracker.clone().recipient(),
        tracker.clone().recipient(),
        stored.clone(),
        bound,
    );
    TrackerHandles {
        link: TrackerLink {
            flusher: client.flusher(),
            stored,
            activate: tracker.clone().recipient(),
            deactivate: tracker.clone().recipient(),
        },
        client,
        stats: tracker.clone().recipient(),
        close: tracker.recipient(),
    }
}

/// What a run did on one stream (a plain stream, or one partition of a super stream).
#[derive(Debug, Clone)]
pub struct PartitionReport {
    /// The stream or partition.
    pub stream: String,
    /// What the consumer processed and where it stopped.
    pub outcome: Outcome,
    /// What the tracker stored.
    pub tracker: TrackerStats,
}

/// What a run did: one [`PartitionReport`] per stream consumed, in partition order.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per partition (one in all for a plain stream).
    pub partitions: Vec<PartitionReport>,
}

impl Report {
    /// Messages processed over every partition.
    pub fn messages(&self) -> u64 {
        self.partitions.iter().map(|p| p.outcome.messages).sum()
    }

    /// The run's summary (what `--summary-json` prints).
    pub fn summary(&self) -> RunSummary {
        let seconds = self
            .partitions
            .iter()
            .map(|p| p.outcome.elapsed.as_secs_f64())
            .fold(0.0, f64::max);
        let messages = self.messages();
        RunSummary {
            program: "consumer".into(),
            messages,
            seconds,
            msg_per_s: messages as f64 / seconds.max(1e-9),
            reconnects: self.partitions.iter().map(|p| p.outcome.reconnects).sum(),
            partitions: self
                .partitions
                .iter()
                .map(|p| PartitionSummary {
                    stream: p.stream.clone(),
                    messages: p.outcome.messages,
                    seconds: p.outcome.elapsed.as_secs_f64(),
                    first_offset: p.outcome.first_offset,
                    last_offset: p.outcome.last_offset,
                    stored_offset: p.outcome.stored_offset,
                    stores: p.tracker.stores,
                    store_errors: p.tracker.store_errors,
                    reconnects: p.outcome.reconnects,
                    failovers: p.outcome.failovers,
                    max_interruption_ms: u64::try_from(p.outcome.max_interruption.as_millis())
                        .unwrap_or(u64::MAX),
                    lag_seconds: p.outcome.lag.map(|lag| lag.as_secs_f64()),
                    max_lag_seconds: p.outcome.max_lag.map(|lag| lag.as_secs_f64()),
                    marker: p.outcome.reached_marker,
                })
                .collect(),
        }
    }
}

/// Consumes `settings.stream` (every partition of it, with `stream.partitions`) as the named
/// consumer `settings.consumer.name`, handing each partition's deliveries to the handler
/// `handler_for(partition)` made for it (`None` for a plain stream; an error fails the run),
/// until every handler stopped
/// or `shutdown` is cancelled; a tracker per partition stores progress as `settings.tracker` says
/// and flushes at the end. One partition failing stops the others (each flushes) and fails the run.
///
/// The stream (or super stream) must exist — the producer creates it — unless
/// `consumer.create_stream`: a missing one is [`Error::Usage`] naming it, and nothing is created.
///
/// Resume rule, per partition: an offset stored for the name resumes right after it (unless
/// `replay`, which ignores it once); with none stored, `settings.consumer.offset` applies. In a
/// consumer group (`consumer.single_active`) the broker says which member consumes a partition,
/// and a member that becomes active resumes the same way. Prints `Started consuming` once
/// subscribed (the tutorial's line).
///
/// Call it inside an actix system on a tokio runtime, e.g. from [`shared::runtime::run`].
pub async fn run<H, F>(
    settings: &Settings,
    mut handler_for: F,
    replay: bool,
    shutdown: CancellationToken,
) -> Result<Report>
where
    H: Handler,
    F: FnMut(Option<&str>) -> Result<H>,
{
    if settings.processing.max_in_flight > 1 {
        tracing::warn!(
            "processing.max_in_flight = {}: a synchronous handler processes one batch at a time; \
             only an async handler (consumer::run_async) runs deliveries in parallel",
            settings.processing.max_in_flight
        );
    }
    run_with(settings, replay, shutdown, |partition| {
        let handler: Box<dyn Handler> = Box::new(handler_for(partition)?);
        Ok(
            Box::new(move |tracker: TrackerClient, _: &str| Processing::Inline { handler, tracker })
                as StartProcessing,
        )
    })
    .await
}

/// Like [`run`], with an [`AsyncHandler`] per partition (made by `handler_for`, as in [`run`])
/// run on up to `processing.max_in_flight` deliveries at once, in the order
/// `processing.ordering` asks; the tracker stores only the finished prefix (see [`AsyncHandler`]).
/// A handler asking to stop ([`Flow::Stop`]) ends its partition like the marker: what runs
/// finishes, the finished prefix is stored.
pub async fn run_async<A, F>(
    settings: &Settings,
    mut handler_for: F,
    replay: bool,
    shutdown: CancellationToken,
) -> Result<Report>
where
    A: AsyncHandler,
    F: FnMut(Option<&str>) -> Result<A>,
{
    let processing = settings.processing.clone();
    if processing.ordering == shared::config::Ordering::Partition && processing.max_in_flight > 1 {
        tracing::warn!(
            "processing.max_in_flight = {} with ordering = \"partition\": each partition \
             processes one delivery at a time; \"key\" or \"unordered\" run them in parallel",
            processing.max_in_flight
        );
    }
    run_with(settings, replay, shutdown, |partition| {
        let handler = Arc::new(handler_for(partition)?);
        let processing = processing.clone();
        Ok(Box::new(move |tracker: TrackerClient, stream: &str| {
            Processing::Parallel(Stage::start(
                handler,
                &processing,
                tracker,
                stream,
                shared::metrics::ConsumerMetrics::new(stream),
            ))
        }) as StartProcessing)
    })
    .await
}

/// Starts a partition's processing once its tracker runs: given the tracker's client and the
/// stream's name.
type StartProcessing = Box<dyn FnOnce(TrackerClient, &str) -> Processing>;

/// [`run`] and [`run_async`], whatever processes: `start_for(partition)` says how.
async fn run_with<F>(
    settings: &Settings,
    replay: bool,
    shutdown: CancellationToken,
    mut start_for: F,
) -> Result<Report>
where
    F: FnMut(Option<&str>) -> Result<StartProcessing>,
{
    let name = settings.consumer.name.as_str();
    if let Some(listen) = &settings.metrics.listen {
        shared::metrics::serve(listen, &[(shared::metrics::CONSUMER_LABEL, name)]).await?;
    }
    let environment =
        connection::environment(&settings.broker, &format!("consumer {name}")).await?;
    // Created here only with consumer.create_stream: a mistyped name is an error, not a new
    // stream waited on for ever.
    let streams = attach::streams_to_consume(&environment, settings).await?;
    let partitioned = settings.stream.partitions > 0;
    if settings.consumer.single_active {
        tracing::info!(
            "joining consumer group '{name}' on {} (single active consumer): consuming what the \
             broker assigns here until SIGINT/SIGTERM",
            settings.stream.name
        );
    }

    // Consumers read on connections of their own (the `delivery` crate); the environment only
    // made sure the streams exist.
    let tls = connection::rustls_client_config_of(&settings.broker)?;
    let mut prepared = Vec::with_capacity(streams.len());
    for stream in &streams {
        prepared.push(prepare(settings, tls.clone(), stream, partitioned, replay).await?);
    }
    shared::runtime::stdout::status(format_args!("Started consuming"));

    // One partition failing stops the others, each flushing what it processed.
    let stop = shutdown.child_token();
    let counts: Vec<Arc<AtomicU64>> = prepared.iter().map(|_| Arc::default()).collect();
    let display = (prepared.len() > 1).then(|| {
        let counts = counts.clone();
        let stop = stop.clone();
        tokio::spawn(show_progress(counts, stop))
    });
    let mut handlers = Vec::with_capacity(prepared.len());
    for partition in &prepared {
        handlers.push(start_for(
            partitioned.then_some(partition.subscription.stream.as_str()),
        )?);
    }
    let mut running: FuturesUnordered<_> = prepared
        .into_iter()
        .zip(handlers)
        .zip(&counts)
        .enumerate()
        .map(|(number, ((partition, handler), count))| {
            let count = (streams.len() > 1).then(|| count.clone());
            let stop = stop.clone();
            async move { (number, partition.run(handler, count, stop).await) }
        })
        .collect();
    let mut reports = Vec::with_capacity(streams.len());
    let mut failure = None;
    while let Some((number, result)) = running.next().await {
        match result {
            Ok(report) => reports.push((number, report)),
            Err(err) => {
                stop.cancel();
                failure.get_or_insert(err);
            }
        }
    }
    stop.cancel();
    if let Some(display) = display {
        let _ = display.await;
    }
    if let Some(err) = failure {
        return Err(err);
    }
    reports.sort_by_key(|(number, _)| *number);
    Ok(Report {
        partitions: reports.into_iter().map(|(_, report)| report).collect(),
    })
}

/// How long a shutdown may take before a program stops waiting for it: the processing stage's
/// drain, the final store with its retries, closing the connections.
pub fn shutdown_deadline(settings: &Settings) -> std::time::Duration {
    settings.processing.drain_timeout + tracker::FLUSH_PATIENCE + 2 * connection::CLOSE_TIMEOUT
}

/// One partition, subscribed and ready to run.
struct Prepared {
    subscription: Subscription,
    initial: Subscribed,
    tracker: TrackerHandles,
}

/// Reads the partition's stored offset, subscribes where the resume rule says, and starts its
/// tracker.
async fn prepare(
    settings: &Settings,
    tls: Option<Arc<rustls::ClientConfig>>,
    stream: &str,
    partitioned: bool,
    replay: bool,
) -> Result<Prepared> {
    let name = settings.consumer.name.as_str();
    let label = shared::routing::partition_label(stream, partitioned);
    // The tracker's own connection: stores never travel on the delivery connection.
    let store_client = connection::client(&settings.broker, &format!("tracker {name}")).await?;
    let broker_stored = connection::stored_offset(&store_client, name, stream).await?;
    let sqlite = match settings.tracker.store {
        OffsetStoreKind::Broker => None,
        OffsetStoreKind::Sqlite => {
            Some(Database::open(&settings.tracker.sqlite_path, stream, name)?)
        }
    };
    // Resume from the configured store only: with SQLite, the broker's offset is for show.
    let mut stored = match &sqlite {
        None => broker_stored,
        Some(database) => database.stored_offset()?,
    };
    if replay {
        tracing::info!(
            consumer = name,
            "{label}--replay: ignoring the stored offset ({}) this once",
            shared::offset_spec::show_offset(stored)
        );
        stored = None;
    }
    let position = start_position(stored, settings.consumer.offset);
    if !settings.consumer.single_active {
        match stored {
            Some(offset) => {
                tracing::info!(
                    consumer = name,
                    "{label}resuming after stored offset {offset}"
                )
            }
            None => {
                tracing::info!(
                    consumer = name,
                    "{label}no stored offset; attaching at {position}"
                )
            }
        }
        let queries = consume::Queries {
            broker: &settings.broker,
            tls: tls.clone(),
        };
        attach::say_where(&queries, stream, position, &label).await;
    }

    let group = settings.consumer.single_active.then(|| Group {
        super_stream: partitioned.then(|| settings.stream.name.clone()),
    });
    let subscription = Subscription {
        broker: settings.broker.clone(),
        tls,
        name: name.to_owned(),
        stream: stream.to_owned(),
        // In a group, where a member starts when it becomes active and nothing is stored.
        start: if settings.consumer.single_active {
            settings.consumer.offset
        } else {
            position
        },
        reconnect_timeout: settings.consumer.reconnect_timeout,
        initial_credits: settings.consumer.initial_credits,
        group,
    };
    let initial = shared::retry::patiently(settings.consumer.reconnect_timeout, || {
        subscription.subscribe(position)
    })
    .await?;

    let broker_store = BrokerStore::new(store_client, settings.broker.clone(), name, stream);
    let forward_of = |stored_there: Option<u64>| if replay { None } else { stored_there };
    let tracker = match sqlite {
        // The SQLite sink writes SQLite offsets itself, in its transactions; the tracker keeps
        // the broker's offset up to date for admin tools, never ahead of what SQLite committed.
        Some(database) if !waits_for_broker_stores(settings.consumer.sink) => start_tracker(
            stream,
            CommittedThenBroker::new(database, broker_store),
            &settings.tracker,
            forward_of(broker_stored),
            false,
        ),
        Some(database) => start_tracker(
            stream,
            SqliteThenBroker::new(database, broker_store),
            &settings.tracker,
            stored,
            true,
        ),
        None => start_tracker(stream, broker_store, &settings.tracker, stored, true),
    };
    Ok(Prepared {
        subscription,
        initial,
        tracker,
    })
}

impl Prepared {
    /// Runs the partition's consumer actor until it stops, then closes its tracker.
    async fn run(
        self,
        start: StartProcessing,
        count: Option<Arc<AtomicU64>>,
        shutdown: CancellationToken,
    ) -> Result<PartitionReport> {
        let stream = self.subscription.stream.clone();
        let (done_tx, done_rx) = oneshot::channel();
        let processing = start(self.tracker.client, &stream);
        let actor = ConsumerActor::new(
            processing,
            self.subscription,
            self.initial,
            self.tracker.link,
            shutdown,
            done_tx,
        );
        match count {
            Some(count) => actor.counting_into(count).start(),
            None => actor.start(),
        };
        let outcome = done_rx
            .await
            .unwrap_or_else(|_| Err(Error::Internal("the consumer actor stopped".into())));
        let stats = self.tracker.stats.send(GetStats).await.unwrap_or_default();
        let _ = self.tracker.close.send(Close).await;
        Ok(PartitionReport {
            stream,
            outcome: outcome?,
            tracker: stats,
        })
    }
}

/// One progress display for every partition.
async fn show_progress(counts: Vec<Arc<AtomicU64>>, stop: CancellationToken) {
    let mut reporter = Reporter::new("processed", None);
    let mut ticks = tokio::time::interval(progress::TICK);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
                reporter.tick(total, &format!("over {} partitions", counts.len()));
            }
            _ = stop.cancelled() => break,
        }
    }
    reporter.finish();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::future::LocalBoxFuture;
    use shared::config::{SinkKind, TrackerSettings};
    use tracker::OffsetStore;

    use super::{start_tracker, waits_for_broker_stores};

    /// A broker store in an outage: every store and query waits for ever.
    #[derive(Clone)]
    struct Outage;

    impl OffsetStore for Outage {
        fn store(&self, _offset: u64) -> LocalBoxFuture<'static, shared::Result<()>> {
            Box::pin(futures::future::pending())
        }

        fn query(&self) -> LocalBoxFuture<'static, shared::Result<Option<u64>>> {
            Box::pin(futures::future::pending())
        }

        fn close(&self) -> LocalBoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    /// How many messages the consumer gets to process while no broker store completes.
    async fn processed_during_an_outage(sink: SinkKind) -> u64 {
        let settings = TrackerSettings {
            store_every_messages: 10,
            store_every: Duration::ZERO,
            ..TrackerSettings::default()
        };
        let mut handles = start_tracker(
            "outage",
            Outage,
            &settings,
            None,
            waits_for_broker_stores(sink),
        );
        let mut processed = 0;
        while processed < 100_000 && handles.client.has_room_for(1) {
            handles.client.report(processed, 1).unwrap();
            processed += 1;
            if processed % 1_000 == 0 {
                // Let the tracker take its messages (and start its stores, which never end).
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        processed
    }

    #[actix::test]
    async fn with_the_sqlite_sink_a_broker_store_outage_does_not_stall_consumption() {
        assert_eq!(processed_during_an_outage(SinkKind::Sqlite).await, 100_000);
        // Without the sink, the crash bound holds it: the count trigger plus one batch.
        let held = processed_during_an_outage(SinkKind::None).await;
        assert_eq!(held, 10 + crate::consume::MAX_BATCH as u64);
    }
}
