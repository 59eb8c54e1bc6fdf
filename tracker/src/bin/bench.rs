//! `bench`: issue #5's benchmark. Measures, in one run against the configured broker, what our
//! producer and our consumer + tracker cost against the raw `rabbitmq-stream-client`:
//!
//! 1. **Publish** `--messages` messages (`hello0` … `marker{n-1}`, ~12 bytes) with the raw client
//!    (`send` + a confirm callback, timed from the first `send` to the last confirm), with our
//!    `producer` binary, and with the raw client again (the reference is the mean of the two raw
//!    rounds), each onto a fresh stream.
//! 2. **Consume** the stream our producer wrote: raw without stores, our `consumer` at
//!    `store_every_messages` = 10, the tutorial's pattern (raw, `store_offset(..).await` in the
//!    loop every 10 messages) on a bounded prefix only (it runs near 13 k msg/s), our consumer at
//!    `store_every_messages` = 10 000, and raw without stores again. Raw rates are timed from the
//!    first delivery to the marker, like our consumer's `summary:` line.
//! 3. **Peak RSS** of our producer and consumer on a `--rss-messages` wave (10 M by default,
//!    0 skips it), under `/usr/bin/time -f %M` (or, without GNU time, by polling `VmHWM`).
//!
//! The broker shares the machine's cores with everything, so references and ours run interleaved
//! in one run. Our binaries are driven through `OFFSET_TRACKING__…` environment variables and
//! report through the `summary:` line they print on stderr. Every stream the run creates has a
//! unique name and is deleted at the end, also after a failure or Ctrl-C.
//!
//! The last line printed is one `bench summary:` line of the ratios, stores and peak RSS figures.
//!
//! ```text
//! cargo run --release -p tracker --bin bench -- --messages 1000000 --rss-messages 10000000
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;
use futures::StreamExt;
use rabbitmq_stream_client::types::{ByteCapacity, Message, OffsetSpecification};
use rabbitmq_stream_client::Environment;
use shared::config::{BrokerSettings, Settings, StreamSettings};
use shared::connection;
use shared::offset_spec::show_offset as show;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::Notify;

/// GNU time, for exact peak RSS figures (`%M`, in KiB).
const GNU_TIME: &str = "/usr/bin/time";

/// The log filter given to our binaries: their `summary:` line is an `info` line.
const CHILD_LOG_FILTER: &str = "info,rabbitmq_stream_client=error";

/// How often a child's `VmHWM` is sampled when GNU time is missing.
const RSS_POLL: Duration = Duration::from_millis(10);

/// Give up on a raw publish when no confirmation arrived for this long.
const CONFIRM_STALL: Duration = Duration::from_secs(30);

/// How long closing a raw producer or consumer may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `store_every_messages` of the tutorial's pattern and of our first consumer row.
const EVERY_10: u64 = 10;

/// `store_every_messages` of our second consumer row.
const EVERY_10000: u64 = 10_000;

/// The targets of issue #5.
const TARGET_PRODUCER_RATIO: f64 = 0.9;
const TARGET_CONSUMER_RATIO: f64 = 0.8;
const TARGET_TUTORIAL_RATIO: f64 = 50.0;
/// Issue #9: the SQLite sink against raw consuming with no stores.
const TARGET_SINK_RATIO: f64 = 0.5;
const TARGET_PEAK_RSS_MIB: f64 = 64.0;

/// Issue #5's benchmark: our producer and consumer + tracker against the raw client.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Messages per wave: each publisher publishes this many, each consumer row consumes them.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,

    /// Messages of the wave on which the peak RSS of our producer and consumer is measured
    /// (0 skips it).
    #[arg(long, default_value_t = 10_000_000)]
    rss_messages: u64,

    /// Most messages the tutorial-pattern row consumes (it is ~100 × slower than the others).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    tutorial_messages: u64,

    /// Most seconds the tutorial-pattern row consumes.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    tutorial_seconds: u64,

    /// Directory of the `producer` and `consumer` binaries (default: the bench's own directory,
    /// e.g. target/release).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,

    /// How peak RSS is measured: GNU time when it is installed, else polling /proc/PID/status.
    #[arg(long, value_enum, default_value_t = RssProbe::Auto)]
    rss_probe: RssProbe,

    #[command(flatten)]
    config: shared::cli::ConfigArgs,
}

/// How peak RSS is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RssProbe {
    /// `time` if `/usr/bin/time` exists, else `proc`.
    Auto,
    /// `/usr/bin/time -f %M`: the kernel's maximum resident set size of the process.
    Time,
    /// `VmHWM` from `/proc/PID/status`, sampled every 10 ms while the process runs.
    Proc,
}

fn main() -> ExitCode {
    shared::telemetry::init();
    let cli = Cli::parse();
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
async fn bench(cli: Cli) -> Result<BenchSummary> {
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

/// One run's connections, names and settings.
struct Bench {
    broker: BrokerSettings,
    environment: Environment,
    /// Unique per run: part of every stream and consumer name.
    run_id: String,
    /// Streams created so far, deleted at the end.
    streams: Mutex<Vec<String>>,
    bin_dir: PathBuf,
    config_file: Option<PathBuf>,
    rss_probe: RssProbe,
}

impl Bench {
    /// Reads the configuration (`--config`, `config.toml`, `OFFSET_TRACKING__…`) for the broker's
    /// address and connects; fails with the reason when the broker cannot be reached.
    async fn new(cli: &Cli) -> Result<Self> {
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
        let rss_probe = match cli.rss_probe {
            RssProbe::Auto if Path::new(GNU_TIME).is_file() => RssProbe::Time,
            RssProbe::Auto => RssProbe::Proc,
            RssProbe::Time if !Path::new(GNU_TIME).is_file() => {
                bail!("{GNU_TIME} is missing (apt-get install time)")
            }
            probe => probe,
        };
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        Ok(Self {
            broker,
            environment,
            run_id: format!("{}-{millis}", std::process::id()),
            streams: Mutex::new(Vec::new()),
            bin_dir,
            config_file: cli.config.config.clone(),
            rss_probe,
        })
    }

    /// Every row, in the interleaved order of the module documentation.
    async fn run(&self, cli: &Cli) -> Result<BenchSummary> {
        let n = cli.messages;
        println!(
            "bench: {n} messages of ~12 bytes per row; broker {}; run {}; peak RSS via {}",
            self.broker.endpoint(),
            self.run_id,
            match self.rss_probe {
                RssProbe::Time => "/usr/bin/time -f %M",
                _ => "VmHWM polling",
            }
        );

        // 1. Publishing: raw, ours, raw.
        let stream = self.create_stream("raw1").await?;
        let raw_publish_1 = raw_publish(&self.environment, &stream, n).await?;
        report("publish", "raw #1: send + confirm callback", &raw_publish_1);
        let main_stream = self.create_stream("ours").await?;
        let ours_publish = self.run_producer(&main_stream, n).await?;
        report("publish", "ours: producer binary", &ours_publish);
        let stream = self.create_stream("raw2").await?;
        let raw_publish_2 = raw_publish(&self.environment, &stream, n).await?;
        report("publish", "raw #2: send + confirm callback", &raw_publish_2);

        // 2. Consuming the stream our producer wrote: raw, ours@10, tutorial, ours@10000, raw.
        let raw_consume_1 = raw_consume(&self.environment, &main_stream, n, None).await?;
        report("consume", "raw #1: no stores", &raw_consume_1);
        let ours_10 = self.run_consumer(&main_stream, n, EVERY_10, false).await?;
        report("consume", "ours: store_every_messages=10", &ours_10);
        let tutorial = Tutorial {
            name: format!("bench-{}-tutorial", self.run_id),
            every: EVERY_10,
            max_messages: cli.tutorial_messages.min(n),
            max_time: Duration::from_secs(cli.tutorial_seconds),
        };
        let tutorial_run = raw_consume(&self.environment, &main_stream, n, Some(&tutorial)).await?;
        let label = format!(
            "raw: tutorial, store_offset().await every 10 (prefix: first {} msgs or {} s)",
            tutorial.max_messages, cli.tutorial_seconds
        );
        report("consume", &label, &tutorial_run);
        let ours_10000 = self
            .run_consumer(&main_stream, n, EVERY_10000, false)
            .await?;
        report("consume", "ours: store_every_messages=10000", &ours_10000);
        let ours_sink = self
            .run_consumer(&main_stream, n, EVERY_10000, true)
            .await?;
        report(
            "consume",
            "ours: SQLite sink (a transaction per batch)",
            &ours_sink,
        );
        let raw_consume_2 = raw_consume(&self.environment, &main_stream, n, None).await?;
        report("consume", "raw #2: no stores", &raw_consume_2);

        // 3. Peak RSS on a large wave.
        let wave = if cli.rss_messages > 0 {
            let stream = self.create_stream("rss").await?;
            let producer = self.run_producer(&stream, cli.rss_messages).await?;
            report("rss wave", "ours: producer binary", &producer);
            let consumer = self
                .run_consumer(&stream, cli.rss_messages, EVERY_10, false)
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

        let raw_publish_rate = mean(raw_publish_1.rate, raw_publish_2.rate);
        let raw_consume_rate = mean(raw_consume_1.rate, raw_consume_2.rate);
        let summary = BenchSummary {
            rss_messages: cli.rss_messages,
            producer_vs_raw: ours_publish.rate / raw_publish_rate,
            consumer10_vs_raw: ours_10.rate / raw_consume_rate,
            consumer10_vs_tutorial: ours_10.rate / tutorial_run.rate,
            consumer10000_vs_raw: ours_10000.rate / raw_consume_rate,
            sqlite_sink_vs_raw: ours_sink.rate / raw_consume_rate,
            stores_10: ours_10.stores.unwrap_or_default(),
            stores_10000: ours_10000.stores.unwrap_or_default(),
            peak_rss_producer_kib: wave.as_ref().and_then(|(p, _)| p.peak_rss_kib),
            peak_rss_consumer_kib: wave.as_ref().and_then(|(_, c)| c.peak_rss_kib),
        };

        println!();
        println!(
            "reference publish rate (mean of raw #1, #2): {raw_publish_rate:.0} msg/s; \
             reference consume rate (mean of raw #1, #2): {raw_consume_rate:.0} msg/s"
        );
        for (every, run) in [(EVERY_10, &ours_10), (EVERY_10000, &ours_10000)] {
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
        println!(
            "stores in the tutorial row: {} for {} messages",
            tutorial_run.stores.unwrap_or_default(),
            tutorial_run.messages
        );
        summary.print_targets();
        Ok(summary)
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

    /// Deletes every stream the run created; a failure is reported, not fatal.
    async fn delete_streams(&self) {
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

    /// Runs our producer binary on `stream` for `count` messages.
    async fn run_producer(&self, stream: &str, count: u64) -> Result<Measured> {
        let env = [
            ("OFFSET_TRACKING__STREAM__NAME", stream.to_owned()),
            (
                "OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT",
                count.to_string(),
            ),
        ];
        let child = self.run_child("producer", &env, count).await?;
        let confirmed: u64 = child.summary.get("confirmed")?;
        if confirmed != count {
            bail!("the producer confirmed {confirmed} of {count} messages");
        }
        Ok(Measured {
            rate: child.summary.get("msg_per_s")?,
            seconds: child.summary.get("seconds")?,
            messages: confirmed,
            peak_rss_kib: child.peak_rss_kib,
            ..Measured::default()
        })
    }

    /// Runs our consumer binary on `stream` from its first message to the marker, under a fresh
    /// consumer name, with the tracker storing every `every` messages; then asks the broker which
    /// offset it holds for that name.
    async fn run_consumer(
        &self,
        stream: &str,
        count: u64,
        every: u64,
        sqlite_sink: bool,
    ) -> Result<Measured> {
        let name = format!(
            "bench-{}-consumer-{every}-{count}-{sqlite_sink}",
            self.run_id
        );
        let mut env = vec![
            ("OFFSET_TRACKING__STREAM__NAME", stream.to_owned()),
            ("OFFSET_TRACKING__CONSUMER__NAME", name.clone()),
            ("OFFSET_TRACKING__CONSUMER__OFFSET", "first".to_owned()),
            (
                "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES",
                every.to_string(),
            ),
        ];
        let database = std::env::temp_dir().join(format!("bench-{}-sink.sqlite", self.run_id));
        if sqlite_sink {
            env.push(("OFFSET_TRACKING__TRACKER__STORE", "sqlite".to_owned()));
            env.push(("OFFSET_TRACKING__CONSUMER__SINK", "sqlite".to_owned()));
            env.push((
                "OFFSET_TRACKING__TRACKER__SQLITE_PATH",
                database.display().to_string(),
            ));
        }
        let child = self.run_child("consumer", &env, count).await;
        if sqlite_sink {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
            }
        }
        let child = child?;
        let messages: u64 = child.summary.get("messages")?;
        let marker: bool = child.summary.get("marker")?;
        if !marker || messages != count {
            bail!("the consumer processed {messages} of {count} messages (marker={marker})");
        }
        let client = connection::client(&self.broker, "bench offset query").await?;
        let broker_offset = connection::stored_offset(&client, &name, stream).await?;
        if let Err(err) = client.close().await {
            tracing::debug!("closing the offset query client: {err}");
        }
        Ok(Measured {
            rate: child.summary.get("msg_per_s")?,
            seconds: child.summary.get("seconds")?,
            messages,
            stores: Some(child.summary.get("stores")?),
            store_errors: Some(child.summary.get("store_errors")?),
            last_offset: child.summary.get("last_offset").ok(),
            broker_offset,
            peak_rss_kib: child.peak_rss_kib,
        })
    }

    /// Runs one of our binaries with `env` on top of ours, measures its peak RSS, and reads its
    /// `summary:` line. It must finish within a deadline that grows with `count`.
    async fn run_child(
        &self,
        binary: &str,
        env: &[(&str, String)],
        count: u64,
    ) -> Result<ChildRun> {
        let program = self.bin_dir.join(binary);
        let rss_file = std::env::temp_dir().join(format!("bench-{}-{binary}.rss", self.run_id));
        let mut command = match self.rss_probe {
            RssProbe::Time => {
                let mut command = Command::new(GNU_TIME);
                command
                    .arg("-f")
                    .arg("%M")
                    .arg("-o")
                    .arg(&rss_file)
                    .arg(&program);
                command
            }
            _ => Command::new(&program),
        };
        if let Some(config) = &self.config_file {
            command.arg("--config").arg(config);
        }
        command
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .env("RUST_LOG", CHILD_LOG_FILTER)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id();
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe to {binary}"))?;
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });

        let deadline = Instant::now() + child_deadline(count);
        let mut peak_kib = 0;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status.with_context(|| format!("waiting for {binary}"))?,
                () = tokio::time::sleep(RSS_POLL) => {
                    if let (RssProbe::Proc, Some(pid)) = (self.rss_probe, pid) {
                        peak_kib = peak_kib.max(vm_hwm_kib(pid).unwrap_or_default());
                    }
                    if Instant::now() > deadline {
                        if let Some(pid) = pid {
                            terminate_children_of(pid).await;
                        }
                        let _ = child.kill().await;
                        bail!("{binary} did not finish within {:?}", child_deadline(count));
                    }
                }
            }
        };
        let stderr = reader.await.unwrap_or_default();
        let peak_rss_kib = match self.rss_probe {
            RssProbe::Time => {
                let text = tokio::fs::read_to_string(&rss_file)
                    .await
                    .unwrap_or_default();
                let _ = tokio::fs::remove_file(&rss_file).await;
                text.lines()
                    .last()
                    .and_then(|line| line.trim().parse().ok())
            }
            _ => (peak_kib > 0).then_some(peak_kib),
        };
        if !status.success() {
            bail!(
                "{binary} failed ({status}); its stderr ends:\n{}",
                tail(&stderr, 10)
            );
        }
        let summary = Summary::parse(&stderr).ok_or_else(|| {
            anyhow!(
                "{binary} printed no summary line; its stderr ends:\n{}",
                tail(&stderr, 10)
            )
        })?;
        Ok(ChildRun {
            summary,
            peak_rss_kib,
        })
    }
}

/// How long a child may take for a wave of `count` messages: a minute, plus a second per 100 k.
fn child_deadline(count: u64) -> Duration {
    Duration::from_secs(60 + count / 100_000)
}

/// Peak resident set size of a running process, from `/proc/PID/status`.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Sends SIGTERM to the children of `pid` (the program GNU time runs), which killing `time`
/// itself would leave behind.
async fn terminate_children_of(pid: u32) {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace() {
        let _ = Command::new("kill").arg("-TERM").arg(child).status().await;
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What one of our binaries reported.
struct ChildRun {
    summary: Summary,
    peak_rss_kib: Option<u64>,
}

/// The `key=value` fields of the last `summary:` line a binary printed.
#[derive(Debug, Default, PartialEq)]
struct Summary(HashMap<String, String>);

impl Summary {
    /// Finds the last line containing `summary: ` and reads its fields.
    fn parse(stderr: &str) -> Option<Self> {
        let line = stderr
            .lines()
            .rev()
            .find(|line| line.contains("summary: "))?;
        let (_, fields) = line.split_once("summary: ")?;
        Some(Self(
            fields
                .split_whitespace()
                .filter_map(|field| field.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        ))
    }

    /// The field `key`, parsed.
    fn get<T: FromStr>(&self, key: &str) -> Result<T> {
        let value = self
            .0
            .get(key)
            .ok_or_else(|| anyhow!("the summary line has no {key}="))?;
        value
            .parse()
            .map_err(|_| anyhow!("the summary line's {key}={value} is not a valid value"))
    }
}

/// One row's measurement.
#[derive(Debug, Clone, Default)]
struct Measured {
    /// Messages per second.
    rate: f64,
    /// Seconds timed.
    seconds: f64,
    /// Messages timed.
    messages: u64,
    /// Offset stores sent (consumer rows).
    stores: Option<u64>,
    /// Offset stores that failed (our consumer).
    store_errors: Option<u64>,
    /// Offset of the last message processed (our consumer).
    last_offset: Option<u64>,
    /// Offset the broker holds for the consumer's name after the run (our consumer).
    broker_offset: Option<u64>,
    /// Peak RSS of the process (our binaries).
    peak_rss_kib: Option<u64>,
}

/// Prints one row of results: what was measured, its rate, and what else is known.
fn report(what: &str, label: &str, m: &Measured) {
    let mut line = format!(
        "{what:<8} {label:<76} {:>9.0} msg/s  {:>9} msgs in {:>7.3} s",
        m.rate, m.messages, m.seconds
    );
    if let Some(stores) = m.stores {
        line.push_str(&format!("  stores={stores}"));
    }
    if let Some(kib) = m.peak_rss_kib {
        line.push_str(&format!("  peak RSS {:.1} MiB", mib(kib)));
    }
    println!("{line}");
}

/// The ratios and figures of the last line.
struct BenchSummary {
    rss_messages: u64,
    producer_vs_raw: f64,
    consumer10_vs_raw: f64,
    consumer10_vs_tutorial: f64,
    consumer10000_vs_raw: f64,
    sqlite_sink_vs_raw: f64,
    stores_10: u64,
    stores_10000: u64,
    peak_rss_producer_kib: Option<u64>,
    peak_rss_consumer_kib: Option<u64>,
}

impl BenchSummary {
    /// One line per target of issue #5: met or missed.
    fn print_targets(&self) {
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        println!(
            "target producer/raw >= {TARGET_PRODUCER_RATIO}: {:.2} {}",
            self.producer_vs_raw,
            verdict(self.producer_vs_raw >= TARGET_PRODUCER_RATIO)
        );
        println!(
            "target consumer@10/raw >= {TARGET_CONSUMER_RATIO}: {:.2} {}",
            self.consumer10_vs_raw,
            verdict(self.consumer10_vs_raw >= TARGET_CONSUMER_RATIO)
        );
        println!(
            "target sqlite sink/raw >= {TARGET_SINK_RATIO}: {:.2} {}",
            self.sqlite_sink_vs_raw,
            verdict(self.sqlite_sink_vs_raw >= TARGET_SINK_RATIO)
        );
        println!(
            "target consumer@10/tutorial >= {TARGET_TUTORIAL_RATIO}: {:.0} {}",
            self.consumer10_vs_tutorial,
            verdict(self.consumer10_vs_tutorial >= TARGET_TUTORIAL_RATIO)
        );
        for (who, kib) in [
            ("producer", self.peak_rss_producer_kib),
            ("consumer", self.peak_rss_consumer_kib),
        ] {
            match kib {
                Some(kib) => println!(
                    "target peak RSS of the {who} on {} messages <= {TARGET_PEAK_RSS_MIB} MiB: \
                     {:.1} MiB {}",
                    self.rss_messages,
                    mib(kib),
                    verdict(mib(kib) <= TARGET_PEAK_RSS_MIB)
                ),
                None => println!("target peak RSS of the {who}: not measured"),
            }
        }
    }
}

impl fmt::Display for BenchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rss = |kib: Option<u64>| {
            kib.map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}MiB", mib(k)))
        };
        write!(
            f,
            "bench summary: producer/raw={:.2} consumer@10/raw={:.2} consumer@10/tutorial={:.0} \
             consumer@10000/raw={:.2} sqlite_sink/raw={:.2} stores@10={} stores@10000={} \
             peak_rss_producer={} peak_rss_consumer={} rss_messages={}",
            self.producer_vs_raw,
            self.consumer10_vs_raw,
            self.consumer10_vs_tutorial,
            self.consumer10000_vs_raw,
            self.sqlite_sink_vs_raw,
            self.stores_10,
            self.stores_10000,
            rss(self.peak_rss_producer_kib),
            rss(self.peak_rss_consumer_kib),
            self.rss_messages,
        )
    }
}

/// KiB to MiB.
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The mean of two rates.
fn mean(a: f64, b: f64) -> f64 {
    (a + b) / 2.0
}

/// The body of message `index` of a wave of `count`, as our producer writes it.
fn body(index: u64, count: u64) -> String {
    if index + 1 == count {
        format!("marker{index}")
    } else {
        format!("hello{index}")
    }
}

/// Confirmation counts, shared with the raw producer's callbacks.
#[derive(Default)]
struct Confirms {
    confirmed: AtomicU64,
    failed: AtomicU64,
    changed: Notify,
}

impl Confirms {
    fn settled(&self) -> u64 {
        self.confirmed.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire)
    }
}

/// The reference publish: the raw client's `send` with a confirm callback for each message, then
/// wait for every confirmation; timed from the first `send` to the last confirmation.
async fn raw_publish(environment: &Environment, stream: &str, count: u64) -> Result<Measured> {
    let producer = environment
        .producer()
        .client_provided_name("bench raw producer")
        .build(stream)
        .await
        .with_context(|| format!("cannot create a raw producer on '{stream}'"))?;
    let confirms = Arc::new(Confirms::default());
    let started = Instant::now();
    for index in 0..count {
        let message = Message::builder().body(body(index, count)).build();
        let confirms = confirms.clone();
        producer
            .send(message, move |status| async move {
                match status {
                    Ok(status) if status.confirmed() => {
                        confirms.confirmed.fetch_add(1, Ordering::AcqRel);
                    }
                    _ => {
                        confirms.failed.fetch_add(1, Ordering::AcqRel);
                    }
                }
                confirms.changed.notify_one();
            })
            .await
            .with_context(|| format!("raw publish to '{stream}' failed"))?;
    }
    while confirms.settled() < count {
        let before = confirms.settled();
        let waited = tokio::time::timeout(CONFIRM_STALL, confirms.changed.notified()).await;
        if waited.is_err() && confirms.settled() == before {
            bail!(
                "raw publish: no confirmation for {CONFIRM_STALL:?}; {} of {count} confirmed",
                confirms.confirmed.load(Ordering::Acquire)
            );
        }
    }
    let elapsed = started.elapsed();
    let failed = confirms.failed.load(Ordering::Acquire);
    if failed > 0 {
        bail!("raw publish: the broker did not confirm {failed} of {count} messages");
    }
    match tokio::time::timeout(CLOSE_TIMEOUT, producer.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!("closing the raw producer: {err}"),
        Err(_) => tracing::warn!("the raw producer did not close within {CLOSE_TIMEOUT:?}"),
    }
    Ok(Measured {
        rate: count as f64 / elapsed.as_secs_f64().max(1e-9),
        seconds: elapsed.as_secs_f64(),
        messages: count,
        ..Measured::default()
    })
}

/// The tutorial's pattern: a named consumer that awaits `store_offset` in its delivery loop every
/// `every` messages, run on a bounded prefix of the stream.
struct Tutorial {
    name: String,
    every: u64,
    max_messages: u64,
    max_time: Duration,
}

/// A raw consumer from the first message: without stores up to the marker (`tutorial` = `None`),
/// or the tutorial's pattern on a prefix. Timed from the first delivery to the last one processed.
async fn raw_consume(
    environment: &Environment,
    stream: &str,
    count: u64,
    tutorial: Option<&Tutorial>,
) -> Result<Measured> {
    let mut builder = environment
        .consumer()
        .offset(OffsetSpecification::First)
        .client_provided_name("bench raw consumer");
    if let Some(tutorial) = tutorial {
        builder = builder.name(&tutorial.name);
    }
    let mut consumer = builder
        .build(stream)
        .await
        .with_context(|| format!("cannot create a raw consumer on '{stream}'"))?;
    let handle = consumer.handle();
    let mut first_at = None;
    let mut last_at = Instant::now();
    let mut messages = 0u64;
    let mut stores = 0u64;
    let mut marker = false;
    let consumed = tokio::time::timeout(child_deadline(count), async {
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery.with_context(|| format!("consuming '{stream}' failed"))?;
            let started = *first_at.get_or_insert_with(Instant::now);
            messages += 1;
            marker = delivery
                .message()
                .data()
                .is_some_and(|body| body.starts_with(b"marker"));
            if let Some(tutorial) = tutorial {
                if messages.is_multiple_of(tutorial.every) || marker {
                    consumer
                        .store_offset(delivery.offset())
                        .await
                        .with_context(|| format!("store_offset on '{stream}' failed"))?;
                    stores += 1;
                }
                last_at = Instant::now();
                if messages >= tutorial.max_messages || last_at - started >= tutorial.max_time {
                    break;
                }
            }
            if marker {
                last_at = Instant::now();
                break;
            }
        }
        anyhow::Ok(())
    })
    .await;
    match tokio::time::timeout(CLOSE_TIMEOUT, handle.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!("closing the raw consumer: {err}"),
        Err(_) => tracing::warn!("the raw consumer did not close within {CLOSE_TIMEOUT:?}"),
    }
    consumed.map_err(|_| {
        anyhow!(
            "raw consume of '{stream}' took longer than {:?}",
            child_deadline(count)
        )
    })??;
    if tutorial.is_none() && (!marker || messages != count) {
        bail!("raw consume of '{stream}' got {messages} of {count} messages (marker={marker})");
    }
    let seconds = first_at.map_or(0.0, |first| (last_at - first).as_secs_f64());
    Ok(Measured {
        rate: messages as f64 / seconds.max(1e-9),
        seconds,
        messages,
        stores: tutorial.map(|_| stores),
        ..Measured::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_consumer_summary_line() {
        let stderr = "2026-01-01T00:00:00Z  INFO no stored offset; attaching at first\n\
            2026-01-01T00:00:01Z  INFO summary: messages=100 seconds=0.010 msg_per_s=10000 \
            first_offset=0 last_offset=99 stored_offset=99 stores=10 store_errors=0 marker=true\n";
        let summary = Summary::parse(stderr);
        assert!(summary.is_some());
        let summary = summary.unwrap_or_default();
        assert_eq!(summary.get::<u64>("messages").ok(), Some(100));
        assert_eq!(summary.get::<f64>("msg_per_s").ok(), Some(10_000.0));
        assert_eq!(summary.get::<u64>("stores").ok(), Some(10));
        assert_eq!(summary.get::<bool>("marker").ok(), Some(true));
        assert!(summary.get::<u64>("missing").is_err());
        assert!(summary.get::<u64>("marker").is_err());
    }

    #[test]
    fn no_summary_line_is_none() {
        assert_eq!(Summary::parse("ERROR cannot connect\n"), None);
    }

    #[test]
    fn bodies_match_the_producer() {
        assert_eq!(body(0, 3), "hello0");
        assert_eq!(body(2, 3), "marker2");
    }

    #[test]
    fn the_summary_line_names_every_figure() {
        let summary = BenchSummary {
            rss_messages: 10_000_000,
            producer_vs_raw: 0.951,
            consumer10_vs_raw: 0.81,
            consumer10_vs_tutorial: 62.3,
            consumer10000_vs_raw: 0.97,
            sqlite_sink_vs_raw: 0.55,
            stores_10: 9500,
            stores_10000: 101,
            peak_rss_producer_kib: Some(16 * 1024),
            peak_rss_consumer_kib: None,
        };
        assert_eq!(
            summary.to_string(),
            "bench summary: producer/raw=0.95 consumer@10/raw=0.81 consumer@10/tutorial=62 \
             consumer@10000/raw=0.97 sqlite_sink/raw=0.55 stores@10=9500 stores@10000=101 \
             peak_rss_producer=16.0MiB peak_rss_consumer=n/a rss_messages=10000000"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
