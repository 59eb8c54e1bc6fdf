//! `producer`: makes sure the stream exists, publishes a wave of messages ending with a marker,
//! and exits 0 only when the broker has confirmed every one of them. The work is the library's
//! ([`producer::publish_wave`]); this is the command line and the output.

use std::process::ExitCode;

use clap::Parser;
use shared::cli::{push, CommonArgs};
use shared::config::Settings;
use shared::error::Result;
use shared::runtime;

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
    runtime::exit_on_panic(|| false);
    let cli: Cli = shared::cli::parse();
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(err) => return runtime::fail(&err),
    };
    runtime::run(produce(settings, cli.common.summary_json))
}

async fn produce(settings: Settings, summary_json: bool) -> Result<()> {
    let target = producer::Target::connect(&settings).await?;
    let count = settings.producer.message_count;
    println!("Publishing {count} messages");
    let report = producer::publish_wave(&target, count).await?;
    println!("Messages confirmed: True");
    tracing::info!(
        "summary: messages={} seconds={:.3} msg_per_s={:.0} confirmed={} reconnects={}",
        report.confirmed,
        report.elapsed.as_secs_f64(),
        report.msg_per_s(),
        report.confirmed,
        report.reconnects,
    );
    if summary_json {
        report.summary().print_json();
    }
    Ok(())
}
