//! `producer`: makes sure the stream exists, publishes a wave of messages ending with a marker,
//! and exits 0 only when the broker has confirmed every one of them.

mod publisher;

use std::process::ExitCode;

use actix::Actor;
use clap::Parser;
use shared::config::Settings;
use shared::error::{describe_client_error, Error, Result};
use shared::{connection, runtime};

use crate::publisher::{PublishWave, Publisher};

/// Publish a wave of messages, the last one a marker, and wait for every confirmation.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: shared::cli::ConfigArgs,
}

fn main() -> ExitCode {
    shared::telemetry::init();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => return runtime::fail(&err),
    };
    runtime::run(produce(settings))
}

async fn produce(settings: Settings) -> Result<()> {
    let stream = settings.stream.name.as_str();
    let environment = connection::environment(&settings.broker, "producer").await?;
    connection::ensure_stream(&environment, &settings.broker, &settings.stream).await?;
    let producer = environment
        .producer()
        .client_provided_name("producer")
        .build(stream)
        .await
        .map_err(|err| producer_error(stream, err))?;

    let count = settings.producer.message_count;
    let publisher = Publisher::new(
        producer.clone(),
        stream,
        settings.producer.max_unconfirmed,
        settings.producer.confirm_timeout,
    )
    .start();
    println!("Publishing {count} messages");
    let report = publisher
        .send(PublishWave { count })
        .await
        .map_err(|_| Error::Internal("the publisher stopped".into()))?;
    // Close before reporting either way: dropping a producer blocks a runtime thread.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), producer.close()).await;
    let report = report?;
    println!("Messages confirmed: True");
    if !matches!(closed, Ok(Ok(()))) {
        tracing::debug!("the producer did not close cleanly");
    }
    let seconds = report.elapsed.as_secs_f64();
    tracing::info!(
        "summary: messages={} seconds={seconds:.3} msg_per_s={:.0} confirmed={}",
        report.confirmed,
        report.confirmed as f64 / seconds.max(1e-9),
        report.confirmed,
    );
    Ok(())
}

fn producer_error(stream: &str, err: rabbitmq_stream_client::error::ProducerCreateError) -> Error {
    use rabbitmq_stream_client::error::ProducerCreateError as E;
    match err {
        E::StreamDoesNotExist { stream } => Error::StreamNotFound { stream },
        E::Create { status, .. } => Error::Broker {
            what: "cannot create a producer",
            stream: stream.to_owned(),
            reason: shared::error::describe_code(&status),
        },
        E::Client(err) => Error::Broker {
            what: "cannot create a producer",
            stream: stream.to_owned(),
            reason: describe_client_error(&err),
        },
        other => Error::Broker {
            what: "cannot create a producer",
            stream: stream.to_owned(),
            reason: other.to_string(),
        },
    }
}
