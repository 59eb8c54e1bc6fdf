//! One run: connects, creates fresh streams, runs every row in the interleaved order of the
//! crate documentation, prints the figures that follow the rows, and deletes its streams.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use rabbitmq_stream_client::types::ByteCapacity;
use rabbitmq_stream_client::Environment;
use shared::config::{BrokerSettings, Settings, StreamSettings};
use shared::connection;
use shared::offset_spec::show_offset as show;

use crate::cli::Cli;
use crate::io_rows::{self, IoSettings, IoStreams};
use crate::latency::{self, Latencies, Runner, Side};
use crate::ours::{ConsumerRow, Ours};
use crate::raw::{self, Tutorial};
use crate::row::{median, report, Measured};
use crate::rss::Probe;
use crate::sub_entries::{self, PER_BATCH};
use crate::summary::{BenchSummary, CREDITS};
use testkit::peer::sub_entries::Compression;

/// `store_every_messages` of the tutorial's pattern and of our first consumer row.
const EVERY_10: u64 = 10;

/// `store_every_messages` of our second consumer row.
const EVERY_10000: u64 = 10_000;

/// How many times the rows of issue #19's targets run — raw publishing, our producer, raw
/// consuming, our consumer at store_every_messages = 10 000 — interleaved; their medians are
/// compared, which a single noisy row on a shared machine cannot swing.
const REPEATS: usize = 3;

/// The `producer.batch_size` values of the batch-size rows (issue #19).
const BATCH_SIZES: [u32; 4] = [10, 100, 1_000, 5_000];

/// One run's connections, names and settings.
pub(crate) struct Bench {
    broker: BrokerSettings,
    environment: Environment,
    /// Unique per run: part of every stream and consumer name.
    run_id: String,
    /// Streams created so far, deleted at the end.
    streams: Mutex<Vec<String>>,
    ours: Ours,
    latency: Runner,
}

impl Bench {
    /// Reads the configuration (`--config`, `config.toml`, `OFFSET_TRACKING__…`) for the broker's
    /// address and connects; fails with the reason when the broker cannot be reached.
    pub(crate) async fn new(cli: &Cli) -> Result<Self> {
        let settings = Settings::load(cli.config.config.as_deref())?;
        let broker = settings.broker;
        let environment = connection::environment(&broker, "bench")
            .await
            .context("no broker to benchmark against")?;
        let bin_dir = match &cli.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .context("cannot locate the bench binary")?
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| anyhow!("the bench binary has no parent directory"))?,
        };
        for binary in ["producer", "consumer"] {
            let path = bin_dir.join(binary);
            if !path.is_file() {
                bail!(
                    "{} is missing: build it with `cargo build --release -p producer -p consumer` \
                     or point --bin-dir at it",
                    path.display()
                );
            }
        }
        let example = bin_dir.join("examples").join(io_rows::EXAMPLE);
        if !cli.no_io_rows && !example.is_file() {
            bail!(
                "{} is missing: build it with `cargo build --release -p consumer --examples`, \
                 point --bin-dir at it, or skip its rows with --no-io-rows",
                example.display()
            );
        }
        let rss_probe = Probe::resolve(cli.rss_probe)?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let run_id = format!("{}-{millis}", std::process::id());
        let exe = std::env::current_exe().context("cannot locate the bench binary")?;
        Ok(Self {
            latency: Runner {
                exe,
                config_file: cli.config.config.clone(),
                run_id: run_id.clone(),
            },
            ours: Ours {
                bin_dir,
                config_file: cli.config.config.clone(),
                rss_probe,
                broker: broker.clone(),
                run_id: run_id.clone(),
            },
            broker,
            environment,
            run_id,
            streams: Mutex::new(Vec::new()),
        })
    }

    /// Every row, in the interleaved order of the crate documentation.
    pub(crate) async fn run(&self, cli: &Cli) -> Result<BenchSummary> {
        let n = cli.messages;
        println!(
            "bench: {n} messages of ~12 bytes per row; broker {}; run {}; peak RSS via {}",
            self.broker.endpoint(),
            self.run_id,
            self.ours.rss_probe.describe(),
        );

        // 1. Publishing: raw, ours, three times over; the first of our waves is the one the
        // consumer rows read, the others are deleted once written.
        let mut raw_publish = Vec::new();
        let mut ours_publish = Vec::new();
        let mut main_stream = None;
        for round in 1..=REPEATS {
            let stream = self.create_stream(&format!("raw{round}")).await?;
            let raw_run = raw::publish(&self.environment, &stream, n).await?;
            report(
                "publish",
                &format!("raw #{round}: send + confirm callback"),
                &raw_run,
            );
            self.delete_stream(&stream).await;
            raw_publish.push(raw_run.rate);
            let stream = self.create_stream(&format!("ours{round}")).await?;
            let ours_run = self.ours.producer(&stream, n, None).await?;
            report(
                "publish",
                &format!("ours #{round}: producer binary"),
                &ours_run,
            );
            ours_publish.push(ours_run.rate);
            if main_stream.is_none() {
                main_stream = Some(stream);
            } else {
                self.delete_stream(&stream).await;
            }
        }
        let main_stream = main_stream.ok_or_else(|| anyhow!("no publishing round ran"))?;
        let raw_publish_rate = median(&raw_publish);
        // Our producer at each batch size, each onto a fresh stream deleted once written.
        let mut batch_rows = Vec::new();
        if !cli.no_batch_rows {
            for batch_size in BATCH_SIZES {
                let stream = self.create_stream(&format!("batch{batch_size}")).await?;
                let run = self.ours.producer(&stream, n, Some(batch_size)).await?;
                self.delete_stream(&stream).await;
                report(
                    "publish",
                    &format!("ours: producer binary, producer.batch_size={batch_size}"),
                    &run,
                );
                batch_rows.push((batch_size, run.rate / raw_publish_rate));
            }
        }

        // 2. Consuming the stream our producer wrote: raw, ours@10, tutorial, ours@10000,
        // ours with the SQLite sink, the credit rows, then raw and ours@10000 twice more.
        let mut raw_consume = Vec::new();
        let mut ours_10000_rates = Vec::new();
        let raw_consume_1 = raw::consume(&self.environment, &main_stream, n, None).await?;
        report("consume", "raw #1: no stores", &raw_consume_1);
        raw_consume.push(raw_consume_1.rate);
        let ours_10 = self
            .ours
            .consumer(&main_stream, n, &ConsumerRow::every("every", EVERY_10))
            .await?;
        report("consume", "ours: store_every_messages=10", &ours_10);
        let tutorial = Tutorial {
            name: format!("bench-{}-tutorial", self.run_id),
            every: EVERY_10,
            max_messages: cli.tutorial_messages.min(n),
            max_time: Duration::from_secs(cli.tutorial_seconds),
        };
        let tutorial_run =
            raw::consume(&self.environment, &main_stream, n, Some(&tutorial)).await?;
        let label = format!(
            "raw: tutorial, store_offset().await every 10 (prefix: first {} msgs or {} s)",
            tutorial.max_messages, cli.tutorial_seconds
        );
        report("consume", &label, &tutorial_run);
        let ours_10000 = self
            .ours
            .consumer(&main_stream, n, &ConsumerRow::every("every", EVERY_10000))
            .await?;
        report(
            "consume",
            "ours #1: store_every_messages=10000",
            &ours_10000,
        );
        ours_10000_rates.push(ours_10000.rate);
        let sink_row = ConsumerRow {
            sqlite_sink: true,
            ..ConsumerRow::every("sink", EVERY_10000)
        };
        let ours_sink = self.ours.consumer(&main_stream, n, &sink_row).await?;
        report(
            "consume",
            "ours: SQLite sink (a transaction per delivered batch or queued run of them)",
            &ours_sink,
        );
        // Flow control: our consumer at each number of initial credits, between the raw rows.
        let mut credit_rows = Vec::new();
        if !cli.no_credit_rows {
            for credits in CREDITS {
                let row = ConsumerRow {
                    initial_credits: Some(credits),
                    ..ConsumerRow::every("credits", EVERY_10000)
                };
                let run = self.ours.consumer(&main_stream, n, &row).await?;
                let label =
                    format!("ours: initial_credits={credits}, store_every_messages={EVERY_10000}");
                report("consume", &label, &run);
                credit_rows.push((credits, run));
            }
        }
        for (round, label) in (2..=REPEATS).zip(["every2", "every3"]) {
            let raw_run = raw::consume(&self.environment, &main_stream, n, None).await?;
            report("consume", &format!("raw #{round}: no stores"), &raw_run);
            raw_consume.push(raw_run.rate);
            let ours_run = self
                .ours
                .consumer(&main_stream, n, &ConsumerRow::every(label, EVERY_10000))
                .await?;
            let what = format!("ours #{round}: store_every_messages={EVERY_10000}");
            report("consume", &what, &ours_run);
            ours_10000_rates.push(ours_run.rate);
        }

        // 3. Sub-entries: the same wave written as sub-entry batches, consumed by our consumer
        // between two runs of it on the plain wave.
        let sub_entry_rows = if cli.no_sub_entry_rows {
            None
        } else {
            Some(self.sub_entry_rows(&main_stream, n).await?)
        };

        let raw_consume_rate = median(&raw_consume);

        // 4. The async handler on keyed waves: in parallel, then one message at a time.
        let io = if cli.no_io_rows {
            None
        } else {
            let streams = IoStreams {
                parallel: self.create_stream("io-keyed").await?,
                serial: self.create_stream("io-serial").await?,
            };
            let settings = IoSettings::row_1(cli);
            let figures = io_rows::rows(
                &self.environment,
                &self.ours,
                &streams,
                settings,
                n,
                raw_consume_rate,
            )
            .await?;
            Some(figures)
        };

        // 5. End-to-end latency at fixed offered rates, tailing fresh streams.
        let latencies = if cli.no_latency_rows {
            None
        } else {
            Some(self.latency_rows(cli.latency_seconds()).await?)
        };

        // 6. Peak RSS on a large wave.
        let wave = if cli.rss_messages > 0 {
            let stream = self.create_stream("rss").await?;
            let producer = self.ours.producer(&stream, cli.rss_messages, None).await?;
            report("rss wave", "ours: producer binary", &producer);
            let consumer = self
                .ours
                .consumer(
                    &stream,
                    cli.rss_messages,
                    &ConsumerRow::every("rss", EVERY_10),
                )
                .await?;
            report(
                "rss wave",
                "ours: consumer, store_every_messages=10",
                &consumer,
            );
            Some((producer, consumer))
        } else {
            None
        };

        let credit_ratios = credit_rows
            .iter()
            .map(|(credits, run)| (*credits, run.rate / raw_consume_rate))
            .collect();
        let summary = BenchSummary {
            credits_vs_raw: credit_ratios,
            batch_sizes_vs_raw: batch_rows,
            subentry_none_vs_plain: sub_entry_rows.map(|r| r.none_vs_plain),
            subentry_zstd_vs_plain: sub_entry_rows.map(|r| r.zstd_vs_plain),
            io_handler_vs_limit: io.map(|figures| figures.vs_limit),
            latencies,
            rss_messages: cli.rss_messages,
            producer_vs_raw: median(&ours_publish) / raw_publish_rate,
            consumer10_vs_raw: ours_10.rate / raw_consume_rate,
            consumer10_vs_tutorial: ours_10.rate / tutorial_run.rate,
            consumer10000_vs_raw: median(&ours_10000_rates) / raw_consume_rate,
            sqlite_sink_vs_raw: ours_sink.rate / raw_consume_rate,
            stores_10: ours_10.stores.unwrap_or_default(),
            stores_10000: ours_10000.stores.unwrap_or_default(),
            peak_rss_producer_kib: wave.as_ref().and_then(|(p, _)| p.peak_rss_kib),
            peak_rss_consumer_kib: wave.as_ref().and_then(|(_, c)| c.peak_rss_kib),
        };

        println!();
        println!(
            "reference publish rate (median of raw #1-#{REPEATS}): {raw_publish_rate:.0} msg/s; \
             reference consume rate (median of raw #1-#{REPEATS}): {raw_consume_rate:.0} msg/s"
        );
        println!(
            "ours, medians of {REPEATS}: producer {:.0} msg/s, consumer at \
             store_every_messages={EVERY_10000} {:.0} msg/s",
            median(&ours_publish),
            median(&ours_10000_rates)
        );
        for (every, run) in [(EVERY_10, &ours_10), (EVERY_10000, &ours_10000)] {
            print_stores(n, every, run);
        }
        println!(
            "stores in the tutorial row: {} for {} messages",
            tutorial_run.stores.unwrap_or_default(),
            tutorial_run.messages
        );
        summary.print_targets();
        Ok(summary)
    }

    /// The sub-entry rows: publishes `n` messages as sub-entry batches (uncompressed, then zstd)
    /// on fresh streams, then runs our consumer on the plain stream `plain`, on each sub-entry
    /// stream, and on the plain stream again; the ratios are to the mean of the two plain runs.
    async fn sub_entry_rows(&self, plain: &str, n: u64) -> Result<SubEntryRatios> {
        let mut streams = Vec::new();
        for (label, codec) in [
            ("sub-none", Compression::None),
            ("sub-zstd", Compression::Zstd),
        ] {
            let stream = self.create_stream(label).await?;
            let published = sub_entries::publish(&self.broker, &stream, n, codec).await?;
            let what = format!("testkit writer: sub-entries of {PER_BATCH}, {codec}");
            report("publish", &what, &published);
            streams.push(stream);
        }
        let row = |label| ConsumerRow::every(label, EVERY_10000);
        let plain_1 = self.ours.consumer(plain, n, &row("plain1")).await?;
        report(
            "consume",
            &format!("ours: plain wave #1, store_every_messages={EVERY_10000}"),
            &plain_1,
        );
        let mut rates = Vec::new();
        for (stream, codec) in streams.iter().zip([Compression::None, Compression::Zstd]) {
            let run = self.ours.consumer(stream, n, &row("sub")).await?;
            let what = format!(
                "ours: sub-entries of {PER_BATCH}, {codec}, store_every_messages={EVERY_10000}"
            );
            report("consume", &what, &run);
            rates.push(run.rate);
        }
        let plain_2 = self.ours.consumer(plain, n, &row("plain2")).await?;
        report(
            "consume",
            &format!("ours: plain wave #2, store_every_messages={EVERY_10000}"),
            &plain_2,
        );
        let plain_rate = mean(plain_1.rate, plain_2.rate);
        println!(
            "sub-entry rows: our consumer on the plain wave (mean of #1, #2) {plain_rate:.0} msg/s"
        );
        Ok(SubEntryRatios {
            none_vs_plain: rates[0] / plain_rate,
            zstd_vs_plain: rates[1] / plain_rate,
        })
    }

    /// The latency rows: at each rate, the raw reference then ours at each store setting, each
    /// on a fresh stream deleted after it.
    async fn latency_rows(&self, seconds: u64) -> Result<Latencies> {
        let mut latencies = Latencies::default();
        for rate in latency::RATES {
            for side in Side::all() {
                let stream = self
                    .create_stream(&format!("latency-{}-{rate}", side.tag()))
                    .await?;
                let row = self
                    .latency
                    .row(&self.environment, &stream, rate, seconds, side)
                    .await;
                self.delete_stream(&stream).await;
                let row = row?;
                latency::report(&row);
                latencies.rows.push(row);
            }
        }
        Ok(latencies)
    }

    /// Creates a fresh stream named after the run and `label`, and remembers it for deletion.
    async fn create_stream(&self, label: &str) -> Result<String> {
        let name = format!("bench-{}-{label}", self.run_id);
        // Created here rather than through `connection::ensure_stream`: the name is new, and an
        // existing stream would be an error (it could hold another run's messages).
        let retention = StreamSettings::default().max_length_bytes;
        self.environment
            .stream_creator()
            .max_length(ByteCapacity::B(retention))
            .create(&name)
            .await
            .with_context(|| format!("cannot create stream '{name}'"))?;
        if let Ok(mut streams) = self.streams.lock() {
            streams.push(name.clone());
        }
        Ok(name)
    }

    /// Deletes `stream` now (it was created by [`Bench::create_stream`]); a failure is reported,
    /// not fatal, and the stream is tried again at the end.
    async fn delete_stream(&self, stream: &str) {
        match self.environment.delete_stream(stream).await {
            Ok(()) => {
                if let Ok(mut streams) = self.streams.lock() {
                    streams.retain(|name| name != stream);
                }
            }
            Err(err) => eprintln!("bench: warning: cannot delete stream '{stream}': {err}"),
        }
    }

    /// Deletes every stream the run created; a failure is reported, not fatal.
    pub(crate) async fn delete_streams(&self) {
        let streams = match self.streams.lock() {
            Ok(mut streams) => std::mem::take(&mut *streams),
            Err(_) => return,
        };
        for stream in streams {
            if let Err(err) = self.environment.delete_stream(&stream).await {
                eprintln!("bench: warning: cannot delete stream '{stream}': {err}");
            }
        }
    }
}

/// Our consumer's rate on a sub-entry wave against its rate on the plain wave of the same size.
#[derive(Debug, Clone, Copy)]
struct SubEntryRatios {
    none_vs_plain: f64,
    zstd_vs_plain: f64,
}

/// The stores line of our consumer's row at `store_every_messages = every` on `n` messages:
/// how many, whether the promise "at most one per `every`" was kept, and where the broker is.
fn print_stores(n: u64, every: u64, run: &Measured) {
    let stores = run.stores.unwrap_or_default();
    let allowed = n.div_ceil(every) + 1;
    println!(
        "stores at store_every_messages={every}: {stores} for {n} messages \
         (at most one per {every}: {}), store_errors={}, broker holds offset {} \
         (last processed {})",
        if stores <= allowed {
            "kept"
        } else {
            "EXCEEDED"
        },
        run.store_errors.unwrap_or_default(),
        show(run.broker_offset),
        show(run.last_offset),
    );
}

/// The mean of two rates.
fn mean(a: f64, b: f64) -> f64 {
    (a + b) / 2.0
}
