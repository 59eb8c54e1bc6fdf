//! Progress of a wave on stderr ([`shared::progress`]): each lane's publishing loop updates its
//! counters once per block of messages, and a reporter task sums them once a tick.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use shared::progress::{self, Reporter};
use tokio::sync::oneshot;

/// What one lane has done so far (updated once per block, read once per tick).
#[derive(Debug, Default)]
pub(crate) struct LaneProgress {
    pub(crate) published: AtomicU64,
    pub(crate) confirmed: AtomicU64,
    /// When the lane's first message was sent (its connection made, its producer declared).
    pub(crate) first_sent: OnceLock<Instant>,
}

/// Shows the lanes' sums until `stop` resolves or is dropped, then clears the display.
pub(crate) async fn report_progress(
    lanes: Arc<Vec<LaneProgress>>,
    count: u64,
    mut stop: oneshot::Receiver<()>,
) {
    let mut reporter = Reporter::new("confirmed", Some(count));
    let mut ticks = tokio::time::interval(progress::TICK);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let sum = |read: fn(&LaneProgress) -> u64| lanes.iter().map(read).sum::<u64>();
                let published = sum(|lane| lane.published.load(Ordering::Relaxed));
                let details = format!("published {}", progress::count(published));
                reporter.tick(sum(|lane| lane.confirmed.load(Ordering::Relaxed)), &details);
            }
            _ = &mut stop => break,
        }
    }
    reporter.finish();
}
