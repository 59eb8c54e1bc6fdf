//! The consumer side of a latency row, run by the bench as a child process of its own
//! (`bench latency-consumer --client ours|raw`, a hidden subcommand), configured like our
//! binaries (`--config`, `OFFSET_TRACKING__…`): it subscribes to `stream.name` at
//! `consumer.offset` (the rows use `next`, the live tail) — with our consumer library
//! (`consumer::run`, its tracker storing as `[tracker]` says), with the raw client's own
//! `Consumer`, or with our delivery path alone (`delivery::Subscription` at
//! `consumer.initial_credits`, no actor, no tracker: to tell the path's share of our latency from
//! the rest) — prints `Started consuming` once subscribed, records each message's latency when
//! the handler processes it (the other two: when the message is yielded), stops at the wave's
//! marker, and prints its figures as one `latency-json: {…}` line on stdout.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use consumer::{Delivery, Handled, Handler};
use delivery::{Event, StartAt, SubscribeOptions, Subscription};
use futures::StreamExt;
use shared::config::Settings;
use shared::error::{Error, Result};
use shared::{connection, runtime, OffsetSpec};
use tokio_util::sync::CancellationToken;

use super::figures::{now_us, Figures, Recorder};

/// What the child prints once subscribed (our consumer library prints it itself).
pub(crate) const READY_LINE: &str = "Started consuming";

/// Which consumer a latency row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Client {
    /// Our consumer library (`consumer::run`) with a recording handler.
    Ours,
    /// The raw client's `Consumer` (rabbitmq-stream-client 0.11), storing nothing.
    Raw,
    /// Our delivery path alone (`delivery::Subscription`), storing nothing.
    Delivery,
}

impl Client {
    /// Its `--client` value.
    pub(crate) fn as_arg(self) -> &'static str {
        match self {
            Client::Ours => "ours",
            Client::Raw => "raw",
            Client::Delivery => "delivery",
        }
    }
}

/// `bench latency-consumer`'s options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChildArgs {
    /// The consumer to measure.
    #[arg(long, value_enum)]
    pub(crate) client: Client,
}

/// Runs the consumer side of a latency row; exit 0 once the marker was processed and the figures
/// printed, 1 on a failure, 2 on a configuration error.
pub(crate) fn main(args: &ChildArgs, config: Option<&Path>) -> ExitCode {
    runtime::exit_on_panic(consumer::panic_is_contained);
    let settings = match Settings::load(config) {
        Ok(settings) => settings,
        Err(err) => return runtime::fail(&err),
    };
    let client = args.client;
    runtime::run(async move {
        let figures = match client {
            Client::Ours => ours(&settings).await?,
            Client::Raw => raw(&settings).await?,
            Client::Delivery => delivery_path(&settings).await?,
        };
        println!("{}", figures.line().map_err(local)?);
        Ok(())
    })
}

/// Our consumer library with [`Recording`] as its handler.
async fn ours(settings: &Settings) -> Result<Figures> {
    let recorder = Arc::new(Mutex::new(Recorder::new().map_err(local)?));
    let shared_recorder = recorder.clone();
    let handlers = move |_partition: Option<&str>| {
        Ok(Recording {
            recorder: shared_recorder.clone(),
        })
    };
    let report = consumer::run(settings, handlers, false, CancellationToken::new()).await?;
    if !report.partitions.iter().all(|p| p.outcome.reached_marker) {
        return Err(Error::Local(
            "the consumer stopped before the wave's marker".into(),
        ));
    }
    let figures = recorder
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .figures();
    Ok(figures)
}

/// Records each delivery's latency as it processes it; stops at the marker.
struct Recording {
    recorder: Arc<Mutex<Recorder>>,
}

impl Handler for Recording {
    fn handle(&mut self, deliveries: &[Delivery]) -> Result<Handled> {
        let mut recorder = self.recorder.lock().unwrap_or_else(PoisonError::into_inner);
        for (index, delivery) in deliveries.iter().enumerate() {
            recorder.record(delivery.message(), now_us());
            if delivery.message().data().is_some_and(producer::is_marker) {
                return Ok(Handled {
                    processed: index + 1,
                    stop: true,
                });
            }
        }
        Ok(Handled::all(deliveries.len()))
    }
}

/// The raw client's `Consumer` at `consumer.offset`, storing nothing, until the marker.
async fn raw(settings: &Settings) -> Result<Figures> {
    let stream = settings.stream.name.as_str();
    let environment =
        connection::environment(&settings.broker, "bench latency raw consumer").await?;
    let mut consumer = environment
        .consumer()
        .offset(settings.consumer.offset.to_client())
        .client_provided_name("bench latency raw consumer")
        .build(stream)
        .await
        .map_err(|err| Error::Local(format!("cannot subscribe to '{stream}': {err}")))?;
    println!("{READY_LINE}");
    let handle = consumer.handle();
    let mut recorder = Recorder::new().map_err(local)?;
    let mut marker = false;
    while let Some(delivery) = consumer.next().await {
        let delivery =
            delivery.map_err(|err| Error::Local(format!("consuming '{stream}' failed: {err}")))?;
        recorder.record(delivery.message(), now_us());
        if delivery.message().data().is_some_and(producer::is_marker) {
            marker = true;
            break;
        }
    }
    connection::close_within("the raw latency consumer", handle.close()).await;
    if !marker {
        return Err(Error::Local(format!(
            "the subscription to '{stream}' ended before the wave's marker"
        )));
    }
    Ok(recorder.figures())
}

/// Our delivery path alone at `consumer.offset` with `consumer.initial_credits`, storing
/// nothing, until the marker.
async fn delivery_path(settings: &Settings) -> Result<Figures> {
    let stream = settings.stream.name.as_str();
    let broker = &settings.broker;
    let node = broker
        .endpoints()
        .into_iter()
        .next()
        .ok_or_else(|| Error::Local("no broker node is configured".to_owned()))?;
    let connect = connection::delivery_options(
        broker,
        connection::rustls_client_config_of(broker)?,
        &node,
        "bench latency delivery path",
    );
    let start = match settings.consumer.offset {
        OffsetSpec::Next => StartAt::Next,
        OffsetSpec::First => StartAt::First,
        other => {
            return Err(Error::Local(format!(
                "the delivery-path latency consumer attaches at next or first, not {other}"
            )))
        }
    };
    let options = SubscribeOptions {
        offset: start,
        initial_credits: settings.consumer.initial_credits,
        ..SubscribeOptions::new(stream)
    };
    let mut subscription = Subscription::open(&connect, options)
        .await
        .map_err(|err| Error::Local(format!("cannot subscribe to '{stream}': {err}")))?;
    println!("{READY_LINE}");
    let mut recorder = Recorder::new().map_err(local)?;
    let mut marker = false;
    'chunks: while let Some(event) = subscription.next().await {
        let event =
            event.map_err(|err| Error::Local(format!("consuming '{stream}' failed: {err}")))?;
        match event {
            Event::Chunk(chunk) => {
                for record in &chunk.records {
                    recorder.record(&record.message, now_us());
                    if record.message.data().is_some_and(producer::is_marker) {
                        marker = true;
                        break 'chunks;
                    }
                }
            }
            Event::ConsumerUpdate { .. } | Event::MetadataUpdate { .. } | Event::Closed { .. } => {}
        }
    }
    if let Err(err) = subscription.close(connection::CLOSE_TIMEOUT).await {
        tracing::debug!("closing the delivery-path subscription: {err}");
    }
    if !marker {
        return Err(Error::Local(format!(
            "the subscription to '{stream}' ended before the wave's marker"
        )));
    }
    Ok(recorder.figures())
}

/// An error of the bench's own as the run's error.
fn local(err: anyhow::Error) -> Error {
    Error::Local(format!("{err:#}"))
}
