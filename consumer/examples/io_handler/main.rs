//! An I/O-bound handler processed in parallel: each message goes through a call that waits — a
//! database write, an HTTP request — many of them at once (`[processing]` in `config.toml`), and
//! the tracker stores only offsets below which every call has finished.
//!
//! The call here is a STAND-IN: a call to a pretend remote service ([`remote`]) that answers
//! `--work-ms` later, in place of the round trip. It is precise to tens of microseconds, unlike
//! `tokio::time::sleep`, whose millisecond wheel rounds every deadline up to the next tick and
//! sleeps 2.2 ms when asked for 1 ms (measured here): `--tokio-sleep` shows that.
//! After it "succeeds", with `--print-handled`, the handler prints `handled <stream> <offset>` on
//! stdout: the effect a real handler would have made (the tests count these lines to check that
//! nothing is lost and how much a crash repeats). It stops at the tutorial's marker (a consumer
//! group member goes on), or on SIGINT/SIGTERM.
//!
//! ```sh
//! cargo run -p producer
//! OFFSET_TRACKING__PROCESSING__MAX_IN_FLIGHT=64 OFFSET_TRACKING__PROCESSING__ORDERING=unordered \
//!   cargo run -p consumer --example io_handler -- --work-ms 1
//! ```

mod remote;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use consumer::{AsyncHandler, Delivery, Flow};
use remote::Remote;
use shared::cli::CommonArgs;
use shared::runtime;
use tokio_util::sync::CancellationToken;

/// Consume with an I/O-bound handler (a sleep standing in for the I/O), many messages at once.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// How long the stand-in I/O call of each message takes, in milliseconds (fractions too)
    #[arg(long, default_value_t = 1.0, value_parser = parse_work_ms)]
    work_ms: f64,

    /// Wait with `tokio::time::sleep` (millisecond ticks, rounded up) instead of the stand-in
    /// remote service
    #[arg(long)]
    tokio_sleep: bool,

    /// Fail on the message at this offset (to see that nothing from it on is stored)
    #[arg(long, value_name = "OFFSET")]
    fail_at: Option<u64>,

    /// Print `handled <stream> <offset>` on stdout after each message's stand-in call: the
    /// effects, for counting what was lost or repeated
    #[arg(long)]
    print_handled: bool,
}

/// Waits `work` per message (the stand-in I/O call), then records the effect.
struct SlowWrite {
    stream: String,
    work: Duration,
    /// The stand-in service (`None`: `--tokio-sleep`, or no work).
    remote: Option<Remote>,
    fail_at: Option<u64>,
    print_handled: bool,
    /// A consumer-group member runs until stopped rather than ending at the marker.
    service: bool,
}

impl AsyncHandler for SlowWrite {
    async fn handle(&self, delivery: Delivery) -> shared::Result<Flow> {
        // STAND-IN for the I/O call: a database write or an HTTP request would go here.
        match &self.remote {
            Some(remote) => remote.call().await.map_err(shared::Error::Local)?,
            None if !self.work.is_zero() => tokio::time::sleep(self.work).await,
            None => {}
        }
        if self.fail_at == Some(delivery.offset()) {
            return Err(shared::Error::Local(format!(
                "the write of offset {} failed (--fail-at)",
                delivery.offset()
            )));
        }
        if self.print_handled {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "handled {} {}", self.stream, delivery.offset());
        }
        let marker = !self.service
            && delivery
                .message()
                .data()
                .is_some_and(shared::marker::is_marker);
        Ok(if marker { Flow::Stop } else { Flow::Continue })
    }
}

/// A duration in milliseconds: finite, 0 to one hour.
fn parse_work_ms(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(ms) if (0.0..=3_600_000.0).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "{value:?} is not a number of milliseconds from 0 to 3600000"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::telemetry::init();
    runtime::exit_on_panic(consumer::panic_is_contained);
    let settings = match cli.common.load(vec![]) {
        Ok(settings) => settings,
        Err(err) => return runtime::fail(&err),
    };
    runtime::run(async move {
        // SIGINT/SIGTERM: finish what runs, store what finished; a second one exits at once.
        let shutdown = CancellationToken::new();
        let deadline = consumer::shutdown_deadline(&settings);
        let stream = settings.stream.name.clone();
        let work = Duration::from_secs_f64(cli.work_ms / 1000.0);
        let remote = if cli.tokio_sleep || work.is_zero() {
            None
        } else {
            let remote = Remote::start(work).map_err(|err| {
                shared::Error::Local(format!("cannot start the stand-in remote service: {err}"))
            })?;
            Some(remote)
        };
        let handlers = |partition: Option<&str>| {
            Ok(SlowWrite {
                stream: partition.unwrap_or(&stream).to_owned(),
                work,
                remote: remote.clone(),
                fail_at: cli.fail_at,
                print_handled: cli.print_handled,
                service: settings.consumer.single_active,
            })
        };
        let run = consumer::run_async(&settings, handlers, false, shutdown.clone());
        let report = runtime::until_stopped(run, &shutdown, deadline).await?;
        if cli.common.summary_json {
            report.summary().print_json();
        }
        for partition in &report.partitions {
            println!(
                "{}: {} messages, stored offset {}",
                partition.stream,
                partition.outcome.messages,
                shared::offset_spec::show_offset(partition.outcome.stored_offset)
            );
        }
        Ok(())
    })
}
