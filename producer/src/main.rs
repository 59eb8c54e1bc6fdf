//! `producer`: makes sure the stream exists, publishes a wave of messages ending with a marker,
//! and exits 0 only when the broker has confirmed every one of them.

mod publisher;

use std::process::ExitCode;

use actix::Actor;
use clap::Parser;
use shared::config::Settings;
use shared::error::{Error, Result};
use shared::{connection, runtime};

use crate::publisher::{PublishWave, Publisher, Target};

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
    let environment = connection::environment(&settings.broker, "producer").await?;
    connection::ensure_stream(&environment, &settings.broker, &settings.stream).await?;
    let count = settings.producer.message_count;
    let publisher = Publisher::new(Target {
        environment,
        broker: settings.broker.clone(),
        stream: settings.stream.name.clone(),
        settings: settings.producer.clone(),
    })
    .start();
    println!("Publishing {count} messages");
    let report = publisher
        .send(PublishWave { count })
        .await
        .map_err(|_| Error::Internal("the publisher stopped".into()))??;
    println!("Messages confirmed: True");
    let seconds = report.elapsed.as_secs_f64();
    tracing::info!(
        "summary: messages={} seconds={seconds:.3} msg_per_s={:.0} confirmed={} reconnects={}",
        report.confirmed,
        report.confirmed as f64 / seconds.max(1e-9),
        report.confirmed,
        report.reconnects,
    );
    Ok(())
}
