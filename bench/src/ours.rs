//! The rows of our binaries: runs `producer`, `consumer` or an example of the consumer crate
//! such as `io_handler` (under peak RSS measurement) with `--summary-json`, driven through
//! `OFFSET_TRACKING__…` environment variables, and reads the results from the JSON summary line
//! it prints on stderr ([`RunSummary::find`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};
use shared::config::BrokerSettings;
use shared::connection;
use shared::summary::RunSummary;
use tokio::io::AsyncReadExt;

use crate::row::{deadline, Measured};
use crate::rss::{self, Meter, Probe};

/// The log filter given to our binaries: enough to see why one failed.
const CHILD_LOG_FILTER: &str = "info,rabbitmq_stream_client=error";

/// How our binaries are run.
pub(crate) struct Ours {
    /// Where the `producer` and `consumer` binaries are.
    pub(crate) bin_dir: PathBuf,
    /// `--config` for them, if the bench was given one.
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) rss_probe: Probe,
    /// For the stored-offset query after a consumer row.
    pub(crate) broker: BrokerSettings,
    /// Part of the names of the run's consumers and temporary files.
    pub(crate) run_id: String,
}

/// How one consumer row runs our consumer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumerRow {
    /// Part of the consumer's name: rows with the same settings on the same stream must not share
    /// a stored offset.
    pub(crate) label: &'static str,
    /// `tracker.store_every_messages`.
    pub(crate) every: u64,
    /// The SQLite sink (and store) instead of the broker's offset store.
    pub(crate) sqlite_sink: bool,
    /// `consumer.initial_credits`; `None` leaves the consumer's default.
    pub(crate) initial_credits: Option<u16>,
}

impl ConsumerRow {
    /// A row storing every `every` messages on the broker, with the default credits.
    pub(crate) fn every(label: &'static str, every: u64) -> Self {
        Self {
            label,
            every,
            sqlite_sink: false,
            initial_credits: None,
        }
    }
}

/// What one of our binaries reported.
struct ChildRun {
    summary: RunSummary,
    peak_rss_kib: Option<u64>,
}

impl Ours {
    /// Runs our producer binary on `stream` for `count` messages, at `producer.batch_size` =
    /// `batch_size` (`None`: the configured one).
    pub(crate) async fn producer(
        &self,
        stream: &str,
        count: u64,
        batch_size: Option<u32>,
    ) -> Result<Measured> {
        let mut env = vec![
            ("OFFSET_TRACKING__STREAM__NAME", stream.to_owned()),
            (
                "OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT",
                count.to_string(),
            ),
        ];
        if let Some(batch_size) = batch_size {
            env.push((
                "OFFSET_TRACKING__PRODUCER__BATCH_SIZE",
                batch_size.to_string(),
            ));
        }
        let child = self.run("producer", &[], &env, count).await?;
        Ok(Measured {
            peak_rss_kib: child.peak_rss_kib,
            ..producer_row(&child.summary, count)?
        })
    }

    /// Runs our consumer binary on `stream` from its first message to the marker, under a consumer
    /// name of its own (the run's, `row`'s label and settings), with `row`'s settings; then asks
    /// the broker which offset it holds for that name.
    pub(crate) async fn consumer(
        &self,
        stream: &str,
        count: u64,
        row: &ConsumerRow,
    ) -> Result<Measured> {
        let ConsumerRow {
            label,
            every,
            sqlite_sink,
            initial_credits,
        } = *row;
        let credits = initial_credits.map_or_else(|| "default".to_owned(), |c| c.to_string());
        let name = format!(
            "bench-{}-consumer-{label}-{every}-{count}-{sqlite_sink}-{credits}",
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
        if let Some(credits) = initial_credits {
            env.push((
                "OFFSET_TRACKING__CONSUMER__INITIAL_CREDITS",
                credits.to_string(),
            ));
        }
        let database = std::env::temp_dir().join(format!("bench-{}-sink.sqlite", self.run_id));
        if sqlite_sink {
            env.push(("OFFSET_TRACKING__TRACKER__STORE", "sqlite".to_owned()));
            env.push(("OFFSET_TRACKING__CONSUMER__SINK", "sqlite".to_owned()));
            env.push((
                "OFFSET_TRACKING__TRACKER__SQLITE_PATH",
                database.display().to_string(),
            ));
        }
        let child = self.run("consumer", &[], &env, count).await;
        if sqlite_sink {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
            }
        }
        self.consumer_measured(child?, stream, count, &name).await
    }

    /// Runs example `example` of the consumer crate (`<bin-dir>/examples/<example>`, which ends
    /// with a consumer's summary) with `args`, on `stream` from its first message to the marker,
    /// under a consumer name of its own (the run's, `example`'s and `label`), with `env` on top
    /// (e.g. `[processing]` settings); then asks the broker which offset it holds for that name.
    pub(crate) async fn consumer_example(
        &self,
        example: &str,
        args: &[String],
        stream: &str,
        count: u64,
        label: &str,
        env: &[(&'static str, String)],
    ) -> Result<Measured> {
        let name = format!("bench-{}-{example}-{label}-{count}", self.run_id);
        let mut all = vec![
            ("OFFSET_TRACKING__STREAM__NAME", stream.to_owned()),
            ("OFFSET_TRACKING__CONSUMER__NAME", name.clone()),
            ("OFFSET_TRACKING__CONSUMER__OFFSET", "first".to_owned()),
        ];
        all.extend_from_slice(env);
        let child = self
            .run(&format!("examples/{example}"), args, &all, count)
            .await?;
        self.consumer_measured(child, stream, count, &name).await
    }

    /// The row of a consumer run `child` on plain stream `stream` under consumer name `name`,
    /// with the offset the broker holds for that name.
    async fn consumer_measured(
        &self,
        child: ChildRun,
        stream: &str,
        count: u64,
        name: &str,
    ) -> Result<Measured> {
        let row = consumer_row(&child.summary, stream, count)?;
        let client = connection::client(&self.broker, "bench offset query").await?;
        let broker_offset = connection::stored_offset(&client, name, stream).await?;
        if let Err(err) = client.close().await {
            tracing::debug!("closing the offset query client: {err}");
        }
        Ok(Measured {
            broker_offset,
            peak_rss_kib: child.peak_rss_kib,
            ..row
        })
    }

    /// Runs `binary` (a path under the binaries' directory) with `args`, `--summary-json`, and
    /// `env` on top of ours, measures its peak RSS, and reads its JSON summary line, which must
    /// be a `producer`'s or a `consumer`'s as its file name says (an example of the consumer
    /// crate ends with a consumer's). It must finish within a deadline that grows with `count`.
    async fn run(
        &self,
        binary: &str,
        args: &[String],
        env: &[(&str, String)],
        count: u64,
    ) -> Result<ChildRun> {
        let program = self.bin_dir.join(binary);
        let (file_name, expected) = match binary.rsplit_once('/') {
            Some((_, example)) => (example, "consumer"),
            None => (binary, binary),
        };
        let rss_file = std::env::temp_dir().join(format!("bench-{}-{file_name}.rss", self.run_id));
        let mut meter = Meter::new(self.rss_probe, rss_file);
        let mut command = meter.command(&program);
        command.args(args).arg("--summary-json");
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

        let limit = deadline(count);
        let deadline = Instant::now() + limit;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status.with_context(|| format!("waiting for {binary}"))?,
                () = tokio::time::sleep(rss::POLL) => {
                    meter.sample(pid);
                    if Instant::now() > deadline {
                        meter.terminate_wrapped(pid).await;
                        let _ = child.kill().await;
                        bail!("{binary} did not finish within {limit:?}");
                    }
                }
            }
        };
        let stderr = reader.await.unwrap_or_default();
        let peak_rss_kib = meter.finish().await;
        if !status.success() {
            bail!(
                "{binary} failed ({status}); its stderr ends:\n{}",
                tail(&stderr, 10)
            );
        }
        let summary = RunSummary::find(&stderr).ok_or_else(|| {
            anyhow!(
                "{binary} printed no JSON summary line; its stderr ends:\n{}",
                tail(&stderr, 10)
            )
        })?;
        if summary.program != expected {
            bail!("{binary} printed the summary of '{}'", summary.program);
        }
        Ok(ChildRun {
            summary,
            peak_rss_kib,
        })
    }
}

/// The producer's row: every message of the wave must be confirmed.
fn producer_row(summary: &RunSummary, count: u64) -> Result<Measured> {
    let confirmed = summary.messages;
    if confirmed != count {
        bail!("the producer confirmed {confirmed} of {count} messages");
    }
    Ok(Measured {
        rate: summary.msg_per_s,
        seconds: summary.seconds,
        messages: confirmed,
        ..Measured::default()
    })
}

/// A consumer row on plain stream `stream`: every message and the marker must be processed.
fn consumer_row(summary: &RunSummary, stream: &str, count: u64) -> Result<Measured> {
    let messages = summary.messages;
    let partition = summary
        .partition(stream)
        .ok_or_else(|| anyhow!("the consumer's summary says nothing of '{stream}'"))?;
    let marker = partition.marker;
    if !marker || messages != count {
        bail!("the consumer processed {messages} of {count} messages (marker={marker})");
    }
    Ok(Measured {
        rate: summary.msg_per_s,
        seconds: summary.seconds,
        messages,
        stores: Some(summary.partitions.iter().map(|p| p.stores).sum()),
        store_errors: Some(summary.partitions.iter().map(|p| p.store_errors).sum()),
        last_offset: partition.last_offset,
        ..Measured::default()
    })
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use shared::summary::PartitionSummary;

    use super::*;

    fn consumer_summary(messages: u64, marker: bool) -> RunSummary {
        RunSummary {
            program: "consumer".into(),
            messages,
            seconds: 0.01,
            msg_per_s: 10_000.0,
            reconnects: 0,
            partitions: vec![PartitionSummary {
                stream: "s".into(),
                messages,
                seconds: 0.01,
                first_offset: Some(0),
                last_offset: Some(99),
                stored_offset: Some(99),
                stores: 10,
                store_errors: 0,
                reconnects: 0,
                marker,
                ..PartitionSummary::default()
            }],
        }
    }

    #[test]
    fn reads_the_consumer_summary() {
        let log = format!(
            "INFO no stored offset; attaching at first\nINFO summary: messages=100\n{}\n",
            consumer_summary(100, true).json_line()
        );
        let summary = RunSummary::find(&log).unwrap();
        let row = consumer_row(&summary, "s", 100).unwrap();
        assert_eq!(
            row,
            Measured {
                rate: 10_000.0,
                seconds: 0.01,
                messages: 100,
                stores: Some(10),
                store_errors: Some(0),
                last_offset: Some(99),
                ..Measured::default()
            }
        );
    }

    #[test]
    fn an_incomplete_consumer_run_is_an_error() {
        assert!(consumer_row(&consumer_summary(99, true), "s", 100).is_err());
        assert!(consumer_row(&consumer_summary(100, false), "s", 100).is_err());
        assert!(consumer_row(&consumer_summary(100, true), "other", 100).is_err());
    }

    #[test]
    fn reads_the_producer_summary() {
        let summary = RunSummary {
            program: "producer".into(),
            messages: 100,
            seconds: 0.5,
            msg_per_s: 200.0,
            ..RunSummary::default()
        };
        let row = producer_row(&summary, 100).unwrap();
        assert_eq!((row.rate, row.seconds, row.messages), (200.0, 0.5, 100));
        assert!(producer_row(&summary, 101).is_err());
    }

    #[test]
    fn no_summary_line_is_none() {
        assert_eq!(RunSummary::find("ERROR cannot connect\n"), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
