//! The producer's Prometheus metrics (`[metrics] listen`): each lane's progress counters — which
//! the publishing loop keeps anyway, once per block — read once a second by a task of their own,
//! so publishing does no extra work for them. Rejections are counted where they are logged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use shared::metrics::ProducerMetrics;
use tokio::sync::oneshot;

use crate::progress::LaneProgress;

/// How often the lanes' counters are copied into the metrics.
const EVERY: Duration = Duration::from_secs(1);

/// Copies `lanes`' counters (lane `i` publishes to `streams[i]`) into the metrics every second
/// until `stop` resolves or is dropped, then once more.
pub(crate) async fn record_metrics(
    lanes: Arc<Vec<LaneProgress>>,
    streams: Vec<String>,
    mut stop: oneshot::Receiver<()>,
) {
    let handles: Vec<ProducerMetrics> = streams.iter().map(|s| ProducerMetrics::new(s)).collect();
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick() => record(&lanes, &handles),
            _ = &mut stop => break,
        }
    }
    record(&lanes, &handles);
}

fn record(lanes: &[LaneProgress], handles: &[ProducerMetrics]) {
    for (lane, metrics) in lanes.iter().zip(handles) {
        let published = lane.published.load(Ordering::Relaxed);
        let confirmed = lane.confirmed.load(Ordering::Relaxed);
        // Counters only grow: after a reconnect the lane's position may step back to resend.
        metrics.published.absolute(published);
        metrics.confirmed.absolute(confirmed);
        metrics
            .in_flight
            .set(published.saturating_sub(confirmed) as f64);
    }
}
