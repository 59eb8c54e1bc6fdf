//! The consumer's Prometheus metrics: names in one place, and the optional HTTP endpoint
//! (`[metrics] listen`). Counters are updated once per batch or per store, never per message;
//! with no endpoint configured no recorder is installed and every update is a no-op.

use std::net::SocketAddr;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::error::{Error, Result};

/// Messages processed (counter).
pub const MESSAGES_PROCESSED: &str = "offset_tracking_messages_processed_total";
/// Offset of the last message processed (gauge).
pub const LAST_PROCESSED_OFFSET: &str = "offset_tracking_last_processed_offset";
/// Offset last stored on the broker (gauge).
pub const LAST_STORED_OFFSET: &str = "offset_tracking_last_stored_offset";
/// Offset stores sent to the broker (counter).
pub const STORES: &str = "offset_tracking_stores_total";
/// Offset stores that failed (counter).
pub const STORE_ERRORS: &str = "offset_tracking_store_errors_total";
/// Processed messages not yet covered by a store (gauge): what a crash now would repeat.
pub const UNSTORED_MESSAGES: &str = "offset_tracking_unstored_messages";
/// Offsets between the last message processed and the stream's end (gauge), sampled every 5 s.
pub const LAG: &str = "offset_tracking_lag";
/// Times the subscription was lost and made again (counter).
pub const RESUBSCRIBES: &str = "offset_tracking_resubscribes_total";
/// When the broker wrote the chunk of the last message processed, in seconds since the Unix
/// epoch (gauge): `time() - this` is how old the newest processed message is.
pub const LAST_PROCESSED_TIMESTAMP: &str = "offset_tracking_last_processed_timestamp_seconds";

/// Every metric carries the stream it is about (a plain stream, or one partition of a super
/// stream) in this label.
pub const STREAM_LABEL: &str = "stream";

/// The consumer's handles, looked up once (a lookup by name per update costs more than the
/// update). Make them after [`serve`]: before it, or without it, they record nothing.
#[derive(Clone)]
pub struct ConsumerMetrics {
    /// [`MESSAGES_PROCESSED`]
    pub processed: Counter,
    /// [`LAST_PROCESSED_OFFSET`]
    pub last_processed: Gauge,
    /// [`UNSTORED_MESSAGES`]
    pub unstored: Gauge,
    /// [`RESUBSCRIBES`]
    pub resubscribes: Counter,
    /// [`LAST_PROCESSED_TIMESTAMP`]
    pub last_processed_timestamp: Gauge,
}

impl ConsumerMetrics {
    /// Looks the handles of `stream` (a plain stream or a partition) up in the installed recorder.
    pub fn new(stream: &str) -> Self {
        let label = || [(STREAM_LABEL, stream.to_owned())];
        Self {
            processed: metrics::counter!(MESSAGES_PROCESSED, &label()),
            last_processed: metrics::gauge!(LAST_PROCESSED_OFFSET, &label()),
            unstored: metrics::gauge!(UNSTORED_MESSAGES, &label()),
            resubscribes: metrics::counter!(RESUBSCRIBES, &label()),
            last_processed_timestamp: metrics::gauge!(LAST_PROCESSED_TIMESTAMP, &label()),
        }
    }
}

/// Records a lag sample. Looked up per call (every few seconds): the gauge appears only once a
/// sample exists, so a scraper never reads an unsampled 0.
pub fn record_lag(stream: &str, lag: u64) {
    metrics::gauge!(LAG, STREAM_LABEL => stream.to_owned()).set(lag as f64);
}

/// The tracker's handles; see [`ConsumerMetrics`].
#[derive(Clone)]
pub struct TrackerMetrics {
    /// [`STORES`]
    pub stores: Counter,
    /// [`STORE_ERRORS`]
    pub store_errors: Counter,
    /// [`LAST_STORED_OFFSET`]
    pub last_stored: Gauge,
}

impl TrackerMetrics {
    /// Looks the handles of `stream` up in the installed recorder.
    pub fn new(stream: &str) -> Self {
        let label = || [(STREAM_LABEL, stream.to_owned())];
        Self {
            stores: metrics::counter!(STORES, &label()),
            store_errors: metrics::counter!(STORE_ERRORS, &label()),
            last_stored: metrics::gauge!(LAST_STORED_OFFSET, &label()),
        }
    }
}

/// Serves `/metrics` on `listen` from now on.
pub fn serve(listen: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
        .map_err(|err| Error::Local(format!("cannot serve metrics on {listen}: {err}")))?;
    describe();
    tracing::info!("metrics on http://{listen}/metrics");
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(MESSAGES_PROCESSED, "Messages processed");
    describe_gauge!(
        LAST_PROCESSED_OFFSET,
        "Offset of the last message processed"
    );
    describe_gauge!(LAST_STORED_OFFSET, "Offset last stored on the broker");
    describe_counter!(STORES, "Offset stores sent to the broker");
    describe_counter!(STORE_ERRORS, "Offset stores that failed");
    describe_gauge!(
        UNSTORED_MESSAGES,
        "Processed messages not yet covered by a store"
    );
    describe_counter!(RESUBSCRIBES, "Subscriptions lost and made again");
    describe_gauge!(
        LAST_PROCESSED_TIMESTAMP,
        "When the broker wrote the chunk of the last message processed (Unix seconds)"
    );
    describe_gauge!(
        LAG,
        "Offsets between the last message processed and the stream's end"
    );
}
