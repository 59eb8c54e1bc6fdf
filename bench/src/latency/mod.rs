//! The end-to-end latency rows (issue #19): from publish to processed by a consumer's handler,
//! at a fixed offered rate ([`RATES`]: 10 000 and 100 000 msg/s, `--latency-seconds` each, 10 by
//! default), tailing a fresh stream from `next`.
//!
//! Each message carries its send time as the application property `sent_at_us` (microseconds
//! since the Unix epoch, stamped just before the raw client's `send`, see `publisher.rs`); the
//! consumer's handler records `now - sent_at_us` in a histogram (`figures.rs`). Publisher and
//! consumer run on the same machine, so one clock serves both: no clock assumption beyond that.
//!
//! Per rate, four rows, each on a stream of its own deleted after it: the raw client's
//! `Consumer` (the reference); our delivery path alone (`delivery::Subscription`, no actor, no
//! tracker: where our consumer's time goes, not a target); our consumer library
//! (`consumer::run`) with its tracker storing every 10 messages, and every 10 000. The consumer runs in a child process (`child.rs`); the
//! bench publishes once it has subscribed and reports p50 / p99 / p99.9 / max, the achieved
//! rate and how far the publisher ever fell behind its schedule.
//!
//! Layout: `mod.rs` (a row: the child, the publisher, the checks; the rows' figures),
//! `child.rs` (the consumer side), `publisher.rs` (the paced publisher), `figures.rs` (the
//! send-time property, the histogram and its figures).

mod child;
mod figures;
mod publisher;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use rabbitmq_stream_client::Environment;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

pub(crate) use child::{main as child_main, ChildArgs};
use child::{Client, READY_LINE};
pub(crate) use figures::{ms, Figures};
use publisher::publish_paced;
pub(crate) use publisher::Published;

/// The offered rates, in messages per second.
pub(crate) const RATES: [u64; 2] = [10_000, 100_000];

/// The `store_every_messages` of our consumer's rows.
pub(crate) const EVERY: [u64; 2] = [10, 10_000];

/// Seconds per row in the quick mode (`--latency-quick`).
pub(crate) const QUICK_SECONDS: u64 = 2;

/// The log filter given to the consumer child: enough to see why one failed.
const CHILD_LOG_FILTER: &str = "info,rabbitmq_stream_client=error";

/// How long the child may take to subscribe.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(30);

/// How long the child may take, after the last message was confirmed, to process it.
const TAIL_WAIT: Duration = Duration::from_secs(30);

/// Which consumer a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The raw client's `Consumer`: the reference.
    Raw,
    /// Our delivery path alone: a diagnostic.
    DeliveryPath,
    /// Our consumer library, storing every this many messages.
    Ours { every: u64 },
}

impl Side {
    /// The rows of one rate, in the order they run: the reference, then ours at each setting.
    pub(crate) fn all() -> [Side; 4] {
        [
            Side::Raw,
            Side::DeliveryPath,
            Side::Ours { every: EVERY[0] },
            Side::Ours { every: EVERY[1] },
        ]
    }

    /// The row's label.
    pub(crate) fn label(self) -> String {
        match self {
            Side::Raw => "raw: the client's Consumer, no stores".to_owned(),
            Side::DeliveryPath => "ours: delivery path only (no actor, no tracker)".to_owned(),
            Side::Ours { every } => format!("ours: consumer::run, store_every_messages={every}"),
        }
    }

    /// A short name for stream and consumer names.
    pub(crate) fn tag(self) -> String {
        match self {
            Side::Raw => "raw".to_owned(),
            Side::DeliveryPath => "delivery".to_owned(),
            Side::Ours { every } => format!("ours{every}"),
        }
    }

    fn client(self) -> Client {
        match self {
            Side::Raw => Client::Raw,
            Side::DeliveryPath => Client::Delivery,
            Side::Ours { .. } => Client::Ours,
        }
    }
}

/// One row's results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Row {
    /// The offered rate, msg/s.
    pub(crate) rate: u64,
    pub(crate) side: Side,
    pub(crate) published: Published,
    pub(crate) figures: Figures,
}

/// How the consumer child is run.
pub(crate) struct Runner {
    /// The bench binary (the child is its `latency-consumer` subcommand).
    pub(crate) exe: PathBuf,
    /// `--config` for the child, if the bench was given one.
    pub(crate) config_file: Option<PathBuf>,
    /// Part of the consumers' names.
    pub(crate) run_id: String,
}

impl Runner {
    /// One row: starts the consumer child on `stream` (fresh and empty) at `next`, publishes
    /// `rate × seconds` messages at `rate` once it has subscribed, and reads its figures; every
    /// message must have been processed, each with its send time.
    pub(crate) async fn row(
        &self,
        environment: &Environment,
        stream: &str,
        rate: u64,
        seconds: u64,
        side: Side,
    ) -> Result<Row> {
        let count = rate.saturating_mul(seconds).max(1);
        let mut child = self.spawn(stream, rate, side)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe to the latency consumer"))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe to the latency consumer"))?;
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let lines = tokio::spawn(read_stdout(stdout, ready_tx));

        let subscribed = tokio::time::timeout(SUBSCRIBE_WAIT, ready_rx).await;
        if !matches!(subscribed, Ok(Ok(()))) {
            let _ = child.kill().await;
            let stderr = errors.await.unwrap_or_default();
            bail!(
                "the {} latency consumer did not subscribe within {SUBSCRIBE_WAIT:?}; its \
                 stderr ends:\n{}",
                side.tag(),
                tail(&stderr, 10)
            );
        }
        let published = publish_paced(environment, stream, rate, count).await?;
        let status = match tokio::time::timeout(TAIL_WAIT, child.wait()).await {
            Ok(status) => status.context("waiting for the latency consumer")?,
            Err(_) => {
                let _ = child.kill().await;
                let stderr = errors.await.unwrap_or_default();
                bail!(
                    "the {} latency consumer did not reach the marker within {TAIL_WAIT:?} of \
                     the last confirm; its stderr ends:\n{}",
                    side.tag(),
                    tail(&stderr, 10)
                );
            }
        };
        let stderr = errors.await.unwrap_or_default();
        if !status.success() {
            bail!(
                "the {} latency consumer failed ({status}); its stderr ends:\n{}",
                side.tag(),
                tail(&stderr, 10)
            );
        }
        let figures = lines
            .await
            .context("reading the latency consumer's stdout")?
            .ok_or_else(|| anyhow!("the latency consumer printed no figures"))??;
        check(&figures, count)?;
        Ok(Row {
            rate,
            side,
            published,
            figures,
        })
    }

    /// Starts `bench latency-consumer` for `side` on `stream`, at `next`, under a consumer name
    /// of its own.
    fn spawn(&self, stream: &str, rate: u64, side: Side) -> Result<Child> {
        let name = format!("bench-{}-latency-{}-{rate}", self.run_id, side.tag());
        let mut command = Command::new(&self.exe);
        command
            .arg("latency-consumer")
            .arg("--client")
            .arg(side.client().as_arg());
        if let Some(config) = &self.config_file {
            command.arg("--config").arg(config);
        }
        command
            .env("OFFSET_TRACKING__STREAM__NAME", stream)
            .env("OFFSET_TRACKING__CONSUMER__NAME", &name)
            .env("OFFSET_TRACKING__CONSUMER__OFFSET", "next")
            .env("RUST_LOG", CHILD_LOG_FILTER)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Side::Ours { every } = side {
            command.env(
                "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES",
                every.to_string(),
            );
        }
        command
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))
    }
}

/// Reads the child's stdout: signals `ready` at its subscription line, returns its figures.
async fn read_stdout(
    stdout: tokio::process::ChildStdout,
    ready: oneshot::Sender<()>,
) -> Option<Result<Figures>> {
    let mut ready = Some(ready);
    let mut figures = None;
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line == READY_LINE {
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        } else if let Some(read) = Figures::from_line(&line) {
            figures = Some(read);
        }
    }
    figures
}

/// A row's figures must cover every message published, each with its send time.
fn check(figures: &Figures, published: u64) -> Result<()> {
    if figures.messages != published {
        bail!(
            "the latency consumer processed {} of {published} messages",
            figures.messages
        );
    }
    if figures.without_sent_at > 0 {
        bail!(
            "{} messages reached the latency consumer without their send time",
            figures.without_sent_at
        );
    }
    Ok(())
}

/// Prints a row's line.
pub(crate) fn report(row: &Row) {
    println!("{}", line(row));
}

/// A row's line: what ran, the offered and achieved rates, the latencies.
fn line(row: &Row) -> String {
    let f = &row.figures;
    let mut line = format!(
        "latency  {:<52} at {:>6} msg/s (achieved {:>8.0}): p50 {:>7.3} ms  p99 {:>7.3} ms  \
         p99.9 {:>7.3} ms  max {:>8.3} ms  last {:>8.3} ms  {:>7} msgs; publisher at most \
         {:.1} ms behind, send → confirm p50 {:.3} ms p99 {:.3} ms",
        row.side.label(),
        row.rate,
        row.published.achieved_rate,
        ms(f.p50_us),
        ms(f.p99_us),
        ms(f.p999_us),
        ms(f.max_us),
        ms(f.last_us),
        f.messages,
        row.published.max_behind.as_secs_f64() * 1_000.0,
        ms(row.published.confirm.p50_us),
        ms(row.published.confirm.p99_us),
    );
    if f.clock_went_back > 0 {
        line.push_str(&format!(
            "; {} processed 'before they were sent' (the clock stepped back)",
            f.clock_went_back
        ));
    }
    line
}

/// The latency rows' figures for the end of the output.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Latencies {
    pub(crate) rows: Vec<Row>,
}

impl Latencies {
    /// The p99 of `side` at `rate`, in ms.
    pub(crate) fn p99_ms(&self, rate: u64, side: Side) -> Option<f64> {
        self.rows
            .iter()
            .find(|row| row.rate == rate && row.side == side)
            .map(|row| ms(row.figures.p99_us))
    }

    /// Our p99 at `rate` storing every `every`, against the raw client's.
    pub(crate) fn p99_vs_raw(&self, rate: u64, every: u64) -> Option<f64> {
        let ours = self.p99_ms(rate, Side::Ours { every })?;
        let raw = self.p99_ms(rate, Side::Raw)?;
        Some(ours / raw.max(1e-3))
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A row with these figures, for tests.
#[cfg(test)]
pub(crate) fn test_row(rate: u64, side: Side, p99_us: u64) -> Row {
    Row {
        rate,
        side,
        published: Published {
            messages: 100_000,
            achieved_rate: 9_999.6,
            max_behind: Duration::from_micros(1_460),
            confirm: Figures {
                p50_us: 150,
                p99_us: 700,
                ..Figures::default()
            },
        },
        figures: Figures {
            messages: 100_000,
            p50_us: 420,
            p99_us,
            p999_us: 3_100,
            max_us: 12_345,
            last_us: 510,
            ..Figures::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rate: u64, side: Side, p99_us: u64) -> Row {
        test_row(rate, side, p99_us)
    }

    #[test]
    fn a_row_shows_rates_and_latencies() {
        let line = line(&row(10_000, Side::Ours { every: 10_000 }, 1_250));
        assert!(
            line.starts_with("latency  ours: consumer::run, store_every_messages=10000"),
            "{line}"
        );
        assert!(
            line.contains("at  10000 msg/s (achieved    10000)"),
            "{line}"
        );
        assert!(
            line.contains(
                "p50   0.420 ms  p99   1.250 ms  p99.9   3.100 ms  max   12.345 ms  last    0.510 ms"
            ),
            "{line}"
        );
        assert!(
            line.ends_with(
                "100000 msgs; publisher at most 1.5 ms behind, send → confirm p50 0.150 ms \
                 p99 0.700 ms"
            ),
            "{line}"
        );
    }

    #[test]
    fn ours_is_compared_with_raw_at_the_same_rate() {
        let latencies = Latencies {
            rows: vec![
                row(10_000, Side::Raw, 1_000),
                row(10_000, Side::Ours { every: 10 }, 1_500),
                row(10_000, Side::Ours { every: 10_000 }, 1_100),
                row(100_000, Side::Raw, 2_000),
            ],
        };
        assert_eq!(
            latencies.p99_ms(10_000, Side::Ours { every: 10_000 }),
            Some(1.1)
        );
        let ratio = latencies.p99_vs_raw(10_000, 10_000).unwrap();
        assert!((ratio - 1.1).abs() < 1e-9, "{ratio}");
        let ratio = latencies.p99_vs_raw(10_000, 10).unwrap();
        assert!((ratio - 1.5).abs() < 1e-9, "{ratio}");
        assert_eq!(latencies.p99_vs_raw(100_000, 10_000), None);
        assert_eq!(latencies.p99_ms(100_000, Side::Ours { every: 10 }), None);
    }

    #[test]
    fn a_row_missing_messages_or_send_times_is_an_error() {
        let figures = row(10_000, Side::Raw, 1).figures;
        assert!(check(&figures, 100_000).is_ok());
        assert!(check(&figures, 100_001).is_err());
        let without = Figures {
            without_sent_at: 1,
            ..figures
        };
        assert!(check(&without, 100_000).is_err());
    }
}
