//! `bench`: issue #5's benchmark. Measures, in one run against the configured broker, what our
//! producer and our consumer + tracker cost against the raw `rabbitmq-stream-client`:
//!
//! 1. **Publish** `--messages` messages (`hello0` … `marker{n-1}`, ~12 bytes) with the raw client
//!    (`send` + a confirm callback, timed from the first `send` to the last confirm), then with
//!    our `producer` binary, three rounds of the two, each onto a fresh stream; the reference is
//!    the median of the raw rounds, ours the median of ours (issue #19: ≥ 0.95).
//! 2. **Consume** the stream our producer wrote: raw without stores, our `consumer` at
//!    `store_every_messages` = 10, the tutorial's pattern (raw, `store_offset(..).await` in the
//!    loop every 10 messages) on a bounded prefix only (it runs near 13 k msg/s), our consumer at
//!    `store_every_messages` = 10 000, with the SQLite sink, at `consumer.initial_credits` = 1, 2,
//!    4 and 10 (issue #15's flow control; `--no-credit-rows` skips them), then raw without stores
//!    and ours at 10 000 twice more: the reference consume rate is the median of the three raw
//!    rows, and ours at 10 000 the median of its three (issue #19: ≥ 0.95). Raw rates are timed
//!    from the first delivery to the marker, like our consumer's summary.
//! 3. **Sub-entries** (issue #15; `--no-sub-entry-rows` skips them): the same wave written as
//!    sub-entry batches of 100 by the test kit's writer, uncompressed and zstd, each consumed by
//!    our consumer, between two runs of it on the plain wave; target ≥ 0.9 of the plain rate.
//! 4. **Async handler** (`--no-io-rows` skips them): the consumer crate's `io_handler` example,
//!    awaiting a 1 ms stand-in I/O call per message, on waves whose messages carry the
//!    application property `key` = `k{index % 1000}` (published by the raw client): at
//!    `processing.max_in_flight` = 256 with `ordering = "key"` on `--messages` (rate, peak RSS,
//!    and the rate against its limit — 256 / 1 ms = 256 000 msg/s, or the raw reference consume
//!    rate if lower — target ≥ 0.8; the tracker storing every 10 000 messages), the same storing
//!    every 10 (no target), then at max_in_flight = 1 on 3 000 messages (~1 000 msg/s) for the
//!    speed-up. `--io-work-ms`, `--io-max-in-flight` and `--io-ordering` change the first
//!    row.
//! 5. **End-to-end latency** (issue #19; `--no-latency-rows` skips them): publish → processed by
//!    the consumer's handler, at a fixed offered rate of 10 000 and 100 000 msg/s for
//!    `--latency-seconds` each (10; `--latency-quick`: 2), on fresh streams tailed from `next`:
//!    the raw client's `Consumer` (the reference), and our consumer library (`consumer::run`)
//!    storing every 10 and every 10 000 messages, in a child process (`bench latency-consumer`,
//!    hidden). Each message carries its send time as the application property **`sent_at_us`**
//!    (microseconds since the Unix epoch, stamped just before `send`); the handler records
//!    `now - sent_at_us` in an HDR histogram: p50 / p99 / p99.9 / max, with the achieved rate
//!    and how far the paced publisher ever fell behind its schedule. One machine, one clock.
//!    Targets: our p99 at 10 000 msg/s (storing every 10 000) ≤ 5 ms; ours ≤ 1.2 × the raw p99.
//! 6. **Peak RSS** of our producer and consumer on a `--rss-messages` wave (10 M by default,
//!    0 skips it), under `/usr/bin/time -f %M` (or, without GNU time, by polling `VmHWM`).
//!
//! The broker shares the machine's cores with everything, so references and ours run interleaved
//! in one run. Our binaries are driven through `OFFSET_TRACKING__…` environment variables and
//! run with `--summary-json`: their results are read from the JSON summary line they print on
//! stderr ([`shared::summary::RunSummary`]). The raw rows publish the producer library's bodies
//! ([`producer::wave_body`]) and count confirmations with its [`producer::Confirmations`]. Every
//! stream the run creates has a unique name and is deleted at the end, also after a failure or
//! Ctrl-C.
//!
//! The last line printed is one `bench summary:` line of the ratios, stores, latencies
//! (`p99_ms@10k=`, `p99_ms@100k=`: ours storing every 10 000; `p99@10k/raw=`, `p99@100k/raw=`:
//! against the raw client's p99) and peak RSS figures.
//!
//! ```text
//! cargo build --release -p producer -p consumer -p bench --bins
//! cargo build --release -p consumer --examples
//! target/release/bench --messages 1000000 --rss-messages 10000000
//! ```
//!
//! Layout: `cli.rs` (options), `run.rs` (the run: streams, the rows in order, the figures after
//! them), `raw.rs` (the raw-client reference rows), `ours.rs` (the rows of our binaries),
//! `sub_entries.rs` (writing the sub-entry waves), `io_rows.rs` (the async-handler rows),
//! `latency/` (the latency rows: the paced publisher, the consumer child, the histogram), `rss.rs`
//! (peak RSS measurement), `row.rs` (one row's figures and its line), `summary.rs` (the targets
//! and the final `bench summary:` line).

mod cli;
mod io_rows;
mod latency;
mod ours;
mod raw;
mod row;
mod rss;
mod run;
mod sub_entries;
mod summary;

use std::process::ExitCode;

use anyhow::anyhow;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::run::Bench;

fn main() -> ExitCode {
    shared::telemetry::init();
    let cli = Cli::parse();
    if let Some(Command::LatencyConsumer(args)) = &cli.command {
        return latency::child_main(args, cli.config.config.as_deref());
    }
    let runtime = match shared::runtime::tokio_runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench: error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(cli)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Connects, runs every row (until done or Ctrl-C), and deletes the run's streams either way.
async fn bench(cli: Cli) -> anyhow::Result<summary::BenchSummary> {
    let bench = Bench::new(&cli).await?;
    let outcome = tokio::select! {
        outcome = bench.run(&cli) => outcome,
        signal = tokio::signal::ctrl_c() => match signal {
            Ok(()) => Err(anyhow!("interrupted")),
            Err(err) => Err(anyhow!("cannot listen for Ctrl-C: {err}")),
        },
    };
    bench.delete_streams().await;
    outcome
}
