//! The consumer as a library: [`run`] consumes a stream with a [`Handler`] of yours, the tracker
//! storing what the handler reports processed. The `consumer` binary is [`run`] with the
//! tutorial's [`TutorialHandler`]; `examples/custom_handler.rs` shows a handler of one's own.

pub mod consumer_actor;
pub mod handler;
pub mod sqlite_sink;

use actix::{Actor, Recipient};
use shared::config::{OffsetStoreKind, Settings, SinkKind, TrackerSettings};
use shared::error::{Error, Result};
use shared::messages::{GetStats, TrackerStats};
use shared::{connection, OffsetSpec};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracker::sqlite::{Database, SqliteThenBroker};
use tracker::{BrokerStore, Close, OffsetStore, Tracker};

pub use consumer_actor::{ConsumerActor, Outcome, Subscription, TrackerLink};
pub use handler::{Handled, Handler, TutorialHandler};
pub use sqlite_sink::SqliteSink;

/// Where to attach: right after the stored offset if there is one (it takes precedence over the
/// configured specification), else the configured specification.
fn start_position(stored: Option<u64>, configured: OffsetSpec) -> OffsetSpec {
    match stored {
        Some(offset) => OffsetSpec::Offset(offset.saturating_add(1)),
        None => configured,
    }
}

/// A started tracker, as its users see it.
struct TrackerHandles {
    link: TrackerLink,
    stats: Recipient<GetStats>,
    close: Recipient<Close>,
}

fn start_tracker<S: OffsetStore>(
    store: S,
    settings: &TrackerSettings,
    already_stored: Option<u64>,
) -> TrackerHandles {
    let tracker = Tracker::new(store, settings, already_stored);
    let stored = tracker.stored_progress();
    let tracker = tracker.start();
    TrackerHandles {
        link: TrackerLink {
            processed: tracker.clone().recipient(),
            flush: tracker.clone().recipient(),
            stored,
        },
        stats: tracker.clone().recipient(),
        close: tracker.recipient(),
    }
}

/// What a run did: the consumer's [`Outcome`] and the tracker's [`TrackerStats`].
#[derive(Debug, Clone)]
pub struct Report {
    /// What the consumer processed and where it stopped.
    pub outcome: Outcome,
    /// What the tracker stored.
    pub tracker: TrackerStats,
}

/// Consumes `settings.stream` as the named consumer `settings.consumer.name`, handing deliveries
/// to `handler`, until the handler stops or `shutdown` is cancelled; the tracker stores progress
/// as `settings.tracker` says and flushes at the end.
///
/// Resume rule: an offset stored for the name resumes right after it (unless `replay`, which
/// ignores it once); with none stored, `settings.consumer.offset` applies. Prints
/// `Started consuming` once subscribed (the tutorial's line).
///
/// Call it inside an actix system on a tokio runtime, e.g. from [`shared::runtime::run`].
pub async fn run<H: Handler>(
    settings: &Settings,
    handler: H,
    replay: bool,
    shutdown: CancellationToken,
) -> Result<Report> {
    let name = settings.consumer.name.as_str();
    let stream = settings.stream.name.as_str();
    if let Some(listen) = settings.metrics.listen {
        shared::metrics::serve(listen)?;
    }
    let environment =
        connection::environment(&settings.broker, &format!("consumer {name}")).await?;
    connection::ensure_stream(&environment, &settings.broker, &settings.stream).await?;

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
            "--replay: ignoring the stored offset {stored:?} this once"
        );
        stored = None;
    }
    let position = start_position(stored, settings.consumer.offset);
    match stored {
        Some(offset) => tracing::info!(consumer = name, "resuming after stored offset {offset}"),
        None => tracing::info!(consumer = name, "no stored offset; attaching at {position}"),
    }

    let subscription = Subscription {
        environment,
        broker: settings.broker.clone(),
        name: name.to_owned(),
        stream: stream.to_owned(),
        start: position,
        reconnect_timeout: settings.consumer.reconnect_timeout,
        store_every_messages: settings.tracker.store_every_messages,
    };
    let initial = subscription.subscribe(position).await?;
    println!("Started consuming");

    let broker_store = BrokerStore::new(store_client, settings.broker.clone(), name, stream);
    let forward_of = |stored_there: Option<u64>| if replay { None } else { stored_there };
    let tracker = match sqlite {
        // The SQLite sink writes SQLite offsets itself, in its transactions; the tracker keeps
        // the broker's offset up to date for admin tools.
        Some(_) if settings.consumer.sink == SinkKind::Sqlite => {
            start_tracker(broker_store, &settings.tracker, forward_of(broker_stored))
        }
        Some(database) => start_tracker(
            SqliteThenBroker::new(database, broker_store),
            &settings.tracker,
            stored,
        ),
        None => start_tracker(broker_store, &settings.tracker, stored),
    };
    let (done_tx, done_rx) = oneshot::channel();
    ConsumerActor::new(
        handler,
        subscription,
        initial,
        tracker.link,
        shutdown,
        done_tx,
    )
    .start();
    let outcome = done_rx
        .await
        .unwrap_or_else(|_| Err(Error::Internal("the consumer actor stopped".into())));
    let stats = tracker.stats.send(GetStats).await.unwrap_or_default();
    let _ = tracker.close.send(Close).await;
    Ok(Report {
        outcome: outcome?,
        tracker: stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_offset_wins_and_resumes_right_after_it() {
        assert_eq!(
            start_position(Some(0), OffsetSpec::First),
            OffsetSpec::Offset(1)
        );
        assert_eq!(
            start_position(Some(99), OffsetSpec::Next),
            OffsetSpec::Offset(100)
        );
        assert_eq!(start_position(None, OffsetSpec::Last), OffsetSpec::Last);
        assert_eq!(
            start_position(None, OffsetSpec::Offset(42)),
            OffsetSpec::Offset(42)
        );
    }
}
