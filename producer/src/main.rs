//! `producer`: makes sure the stream exists, publishes a wave of messages ending with a marker,
//! and exits 0 only when the broker has confirmed every one of them.

mod publisher;

use std::process::ExitCode;

use actix::Actor;
use clap::Parser;
use shared::cli::{push, CommonArgs};
use shared::config::Settings;
use shared::error::{Error, Result};
use shared::{connection, runtime};

use crate::publisher::{PublishWave, Publisher, Target};

/// Publish a wave of messages to a stream — hello0, hello1, …, the last one marker{n-1} — and
/// wait until the broker has confirmed every one of them.
#[derive(Debug, Parser)]
#[command(version, after_help = shared::cli::EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Messages in the wave, the marker included (producer.message_count) [default: 100]
    #[arg(
        long,
        value_name = "N",
        env = "OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT"
    )]
    count: Option<u64>,

    /// Producer name: turns on deduplication, so a lost connection is survived without writing
    /// a message twice (producer.name) [default: none]
    #[arg(long, value_name = "NAME", env = "OFFSET_TRACKING__PRODUCER__NAME")]
    name: Option<String>,
}

impl Cli {
    fn settings(&self) -> shared::Result<Settings> {
        let mut own = vec![];
        push(&mut own, "producer.message_count", &self.count);
        push(&mut own, "producer.name", &self.name);
        self.common.load(own)
    }
}

fn main() -> ExitCode {
    shared::telemetry::init();
    let cli = Cli::parse();
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(err) => return runtime::fail(&err),
    };
    runtime::run(produce(settings))
}

async fn produce(settings: Settings) -> Result<()> {
    let environment = connection::environment(&settings.broker, "producer").await?;
    let streams =
        connection::ensure_stream(&environment, &settings.broker, &settings.stream).await?;
    let count = settings.producer.message_count;
    let publisher = Publisher::new(Target {
        environment,
        broker: settings.broker.clone(),
        streams,
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
