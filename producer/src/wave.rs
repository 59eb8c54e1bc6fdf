//! A wave: where it goes ([`Target`]), publishing it ([`publish_wave`]) over one lane per stream
//! or partition, each on a task of its own, and what it did ([`WaveReport`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rabbitmq_stream_client::Environment;
use shared::config::{BrokerSettings, ProducerSettings, Settings};
use shared::connection;
use shared::error::{Error, Result};
use shared::summary::RunSummary;
use tokio::sync::oneshot;

use crate::body::Bodies;
use crate::connect::LaneTarget;
use crate::lane::Lane;
use crate::metrics::record_metrics;
use crate::progress::{report_progress, LaneProgress};
use crate::resend::publish_lane;

/// Where a wave goes and how: the broker, the stream (or a super stream's partitions) and the
/// `[producer]` settings.
#[derive(Clone)]
pub struct Target {
    /// Builds producers (built again after a lost connection: its node may be the one lost).
    pub environment: Environment,
    /// How to reach the broker again, and the publishing-sequence query's connection.
    pub broker: BrokerSettings,
    /// The streams: one plain stream, or a super stream's partitions in the broker's order.
    pub streams: Vec<String>,
    /// `[producer]` settings: batch size, in-flight window, timeouts, name, routing key.
    pub settings: ProducerSettings,
}

impl Target {
    /// Connects to the configured broker and makes sure the configured stream (or super stream)
    /// exists, creating it with the configured retention if not.
    pub async fn connect(settings: &Settings) -> Result<Self> {
        if let Some(listen) = &settings.metrics.listen {
            shared::metrics::serve(listen, &[]).await?;
        }
        let environment = connection::environment(&settings.broker, "producer").await?;
        let streams =
            connection::ensure_stream(&environment, &settings.broker, &settings.stream).await?;
        Ok(Self {
            environment,
            broker: settings.broker.clone(),
            streams,
            settings: settings.producer.clone(),
        })
    }
}

/// What a confirmed wave did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveReport {
    /// Messages the broker confirmed: all of the wave's.
    pub confirmed: u64,
    /// How long publishing and confirming took: from the first message sent (connections made,
    /// producers declared) to the last confirmation, as the raw client's rate is timed in the
    /// benchmark.
    pub elapsed: Duration,
    /// Times a connection was lost and made again (over every partition).
    pub reconnects: u64,
}

impl WaveReport {
    /// Confirmed messages per second.
    pub fn msg_per_s(&self) -> f64 {
        self.confirmed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The run summary of a producer that published this wave (what `--summary-json` prints).
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            program: "producer".into(),
            messages: self.confirmed,
            seconds: self.elapsed.as_secs_f64(),
            msg_per_s: self.msg_per_s(),
            reconnects: self.reconnects,
            partitions: vec![],
        }
    }
}

/// Publishes a wave of `count` messages to `target` — bodies [`crate::body`]: `hello0`, …, the
/// last of each stream or partition its marker — and returns only when the broker has confirmed
/// every one of them, or with an error that says how many it did not confirm
/// ([`Error::NotConfirmed`]).
///
/// On a super stream each message goes to the partition its routing key
/// (`producer.routing_key`) hashes to, each partition with a producer of its own. With
/// `producer.name` set, a lost connection is survived: the producer reconnects and resends from
/// the broker's last publishing id, and deduplication keeps every message written once. Shows
/// progress on stderr for waves longer than a second.
///
/// Needs a multi-threaded tokio runtime: each partition publishes on a task of its own.
pub async fn publish_wave(target: &Target, count: u64) -> Result<WaveReport> {
    publish(target, Bodies::Wave, count).await
}

/// Like [`publish_wave`], with `lines` as the bodies (`producer --from-file`): message `i`
/// carries `lines[i]` as it is; with `marker`, one more message follows them, `marker{n}` (`n`
/// lines), so that the consumer stops after the last line. On a super stream each partition
/// would need a marker of its own: lines go there only without one (`marker = false`, else a
/// configuration error).
pub async fn publish_lines(
    target: &Target,
    lines: Vec<Vec<u8>>,
    marker: bool,
) -> Result<WaveReport> {
    if marker && target.streams.len() > 1 {
        return Err(Error::Usage(
            "--from-file on a super stream publishes without a marker: pass --no-marker (each \
             partition would need a marker of its own)"
                .into(),
        ));
    }
    let bodies = Bodies::Lines {
        lines: Arc::new(lines),
        marker,
    };
    let count = bodies.count(0);
    if count == 0 {
        return Err(Error::Usage(
            "nothing to publish: the input holds no line (and --no-marker)".into(),
        ));
    }
    publish(target, bodies, count).await
}

/// Publishes `count` messages carrying `bodies`.
async fn publish(target: &Target, bodies: Bodies, count: u64) -> Result<WaveReport> {
    let lanes = Lane::plan(&target.streams, count, &target.settings.routing_key)?;
    if lanes.len() > 1 {
        for lane in &lanes {
            tracing::info!("partition {}: {} messages", lane.stream, lane.messages());
        }
    }
    let progress: Arc<Vec<LaneProgress>> =
        Arc::new(lanes.iter().map(|_| LaneProgress::default()).collect());
    // Dropping `stop` (here, or with this future) ends the reporter, which clears its display.
    let (stop, stopped) = oneshot::channel::<()>();
    let reporter = tokio::spawn(report_progress(progress.clone(), count, stopped));
    let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
    if shared::metrics::serving() {
        let streams = lanes.iter().map(|lane| lane.stream.clone()).collect();
        tokio::spawn(record_metrics(progress.clone(), streams, metrics_stopped));
    }
    let started = Instant::now();
    let mut report = WaveReport {
        confirmed: 0,
        elapsed: Duration::ZERO,
        reconnects: 0,
    };
    let targets: Vec<LaneTarget> = lanes
        .into_iter()
        .map(|lane| LaneTarget {
            environment: target.environment.clone(),
            broker: target.broker.clone(),
            settings: target.settings.clone(),
            name: lane.producer_name(target.settings.name.as_deref()),
            lane,
            bodies: bodies.clone(),
        })
        .collect();
    if let [_] = targets.as_slice() {
        // One lane (a plain stream): published right here, on the thread that waits for the
        // wave, as the benchmark's raw reference publishes, while the client's socket tasks run
        // on the runtime's two workers (as a task, the lane competed with them for those).
        for (lane_target, progress) in targets.into_iter().zip(progress.iter()) {
            let lane = publish_lane(lane_target, progress).await?;
            report.confirmed += lane.confirmed;
            report.reconnects += lane.reconnects;
        }
    } else {
        // On the runtime's worker threads, beside the client's own tasks; dropping the set (with
        // this future, or on the first failure) stops every lane.
        let mut publishing = tokio::task::JoinSet::new();
        for (number, lane_target) in targets.into_iter().enumerate() {
            let progress = progress.clone();
            publishing.spawn(async move {
                match progress.get(number) {
                    Some(progress) => publish_lane(lane_target, progress).await,
                    None => Err(Error::Internal("a lane without progress counters".into())),
                }
            });
        }
        // The first lane to fail fails the wave.
        while let Some(done) = publishing.join_next().await {
            let lane =
                done.map_err(|err| Error::Internal(format!("a publishing task failed: {err}")))??;
            report.confirmed += lane.confirmed;
            report.reconnects += lane.reconnects;
        }
    }
    let first_sent = progress
        .iter()
        .filter_map(|lane| lane.first_sent.get().copied())
        .min()
        .unwrap_or(started);
    report.elapsed = first_sent.elapsed();
    drop(stop);
    drop(stop_metrics);
    let _ = reporter.await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_the_producers() {
        let report = WaveReport {
            confirmed: 1000,
            elapsed: Duration::from_millis(500),
            reconnects: 1,
        };
        assert_eq!(
            report.summary(),
            RunSummary {
                program: "producer".into(),
                messages: 1000,
                seconds: 0.5,
                msg_per_s: 2000.0,
                reconnects: 1,
                partitions: vec![],
            }
        );
    }
}
