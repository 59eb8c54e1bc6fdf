//! Prometheus metrics of both programs: names in one place, handles looked up once, and the
//! optional HTTP endpoint (`[metrics] listen`). Updated once per batch, per store or per sample,
//! never per message; with no endpoint no recorder is installed and every update is a no-op.
//!
//! Names follow Prometheus' conventions: base units (`_seconds`), counters end in `_total`.
//! Every consumer series carries `consumer` (the consumer's name, a label of the whole process)
//! and `stream` (the stream, or one partition of a super stream); the producer's carry `stream`.
//! A gauge is absent until it has a value, so a scraper never reads an unset 0.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The content type of Prometheus' text exposition format, with its version.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
/// Offsets between the last message processed and the stream's last message (gauge), sampled
/// every 5 s: an upper bound on the messages behind (tracking entries have offsets too).
pub const LAG: &str = "offset_tracking_lag";
/// How far behind the stream's end the consumer is, in seconds (gauge), sampled every 5 s.
pub const LAG_SECONDS: &str = "offset_tracking_lag_seconds";
/// Times the subscription was lost and made again (counter).
pub const RESUBSCRIBES: &str = "offset_tracking_resubscribes_total";
/// Of those, the times it was made again on another node (counter).
pub const FAILOVERS: &str = "offset_tracking_failovers_total";
/// When the broker wrote the chunk of the last message processed, in seconds since the Unix
/// epoch (gauge): `time() - this` is how old the newest processed message is.
pub const LAST_PROCESSED_TIMESTAMP: &str = "offset_tracking_last_processed_timestamp_seconds";

/// Messages of the wave published by the producer (counter).
pub const PRODUCER_PUBLISHED: &str = "offset_tracking_producer_published_total";
/// Messages the broker confirmed to the producer (counter).
pub const PRODUCER_CONFIRMED: &str = "offset_tracking_producer_confirmed_total";
/// Messages the broker rejected, or whose publishing failed (counter).
pub const PRODUCER_NACKED: &str = "offset_tracking_producer_nacked_total";
/// Messages published and not confirmed yet (gauge).
pub const PRODUCER_IN_FLIGHT: &str = "offset_tracking_producer_in_flight_messages";

/// The stream a series is about (a plain stream, or one partition of a super stream).
pub const STREAM_LABEL: &str = "stream";
/// The consumer's name, on every series of a consumer process.
pub const CONSUMER_LABEL: &str = "consumer";

/// A gauge registered on its first value: absent from a scrape until then.
#[derive(Clone)]
pub struct LazyGauge {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    gauge: Arc<OnceLock<Gauge>>,
}

impl LazyGauge {
    /// The gauge `name` with `labels`, not registered yet.
    pub fn new(name: &'static str, labels: &[(&'static str, String)]) -> Self {
        Self {
            name,
            labels: labels.to_vec(),
            gauge: Arc::default(),
        }
    }

    /// Sets the gauge, registering it the first time.
    pub fn set(&self, value: f64) {
        self.gauge
            .get_or_init(|| metrics::gauge!(self.name, self.labels.as_slice()))
            .set(value);
    }
}

/// [`LAST_PROCESSED_TIMESTAMP`], and the value kept for the lag in seconds (which the consumer
/// works out with or without an endpoint).
#[derive(Clone)]
pub struct TimestampGauge {
    gauge: LazyGauge,
    /// The last value's `f64` bits; `u64::MAX` (a NaN) for none.
    seconds: Arc<AtomicU64>,
}

impl TimestampGauge {
    /// Sets the timestamp, in seconds since the Unix epoch.
    pub fn set(&self, seconds: f64) {
        self.seconds.store(seconds.to_bits(), Ordering::Relaxed);
        self.gauge.set(seconds);
    }

    /// The last timestamp set, in seconds since the Unix epoch.
    pub fn get(&self) -> Option<f64> {
        Some(f64::from_bits(self.seconds.load(Ordering::Relaxed))).filter(|s| s.is_finite())
    }
}

/// The consumer's handles for one stream, looked up once (a lookup by name per update costs
/// more than the update). One set per stream in the process, shared by every caller of
/// [`ConsumerMetrics::new`]: the consumer actor reads what the parallel stage set. Make them
/// after [`serve`]: before it, or without it, they record nothing (the timestamp is kept still).
#[derive(Clone)]
pub struct ConsumerMetrics {
    /// [`MESSAGES_PROCESSED`]
    pub processed: Counter,
    /// [`LAST_PROCESSED_OFFSET`]
    pub last_processed: LazyGauge,
    /// [`UNSTORED_MESSAGES`]
    pub unstored: LazyGauge,
    /// [`RESUBSCRIBES`]
    pub resubscribes: Counter,
    /// [`FAILOVERS`]
    pub failovers: Counter,
    /// [`LAST_PROCESSED_TIMESTAMP`]
    pub last_processed_timestamp: TimestampGauge,
    /// [`LAG`]
    pub lag: LazyGauge,
    /// [`LAG_SECONDS`]
    pub lag_seconds: LazyGauge,
}

impl ConsumerMetrics {
    /// The handles of `stream` (a plain stream or a partition): the process's, made on first use.
    pub fn new(stream: &str) -> Self {
        static BY_STREAM: OnceLock<Mutex<std::collections::HashMap<String, ConsumerMetrics>>> =
            OnceLock::new();
        let mut by_stream = match BY_STREAM.get_or_init(Default::default).lock() {
            Ok(by_stream) => by_stream,
            Err(poisoned) => poisoned.into_inner(),
        };
        by_stream
            .entry(stream.to_owned())
            .or_insert_with(|| Self::make(stream))
            .clone()
    }

    fn make(stream: &str) -> Self {
        let labels = [(STREAM_LABEL, stream.to_owned())];
        Self {
            processed: metrics::counter!(MESSAGES_PROCESSED, &labels),
            last_processed: LazyGauge::new(LAST_PROCESSED_OFFSET, &labels),
            unstored: LazyGauge::new(UNSTORED_MESSAGES, &labels),
            resubscribes: metrics::counter!(RESUBSCRIBES, &labels),
            failovers: metrics::counter!(FAILOVERS, &labels),
            last_processed_timestamp: TimestampGauge {
                gauge: LazyGauge::new(LAST_PROCESSED_TIMESTAMP, &labels),
                seconds: Arc::new(AtomicU64::new(u64::MAX)),
            },
            lag: LazyGauge::new(LAG, &labels),
            lag_seconds: LazyGauge::new(LAG_SECONDS, &labels),
        }
    }
}

/// Records a lag sample of `stream`: `offsets` behind (an upper bound on messages) and, when
/// known, `seconds` behind.
pub fn record_lag(stream: &str, offsets: u64, seconds: Option<f64>) {
    let metrics = ConsumerMetrics::new(stream);
    metrics.lag.set(offsets as f64);
    if let Some(seconds) = seconds {
        metrics.lag_seconds.set(seconds);
    }
}

/// The tracker's handles; see [`ConsumerMetrics`].
#[derive(Clone)]
pub struct TrackerMetrics {
    /// [`STORES`]
    pub stores: Counter,
    /// [`STORE_ERRORS`]
    pub store_errors: Counter,
    /// [`LAST_STORED_OFFSET`]
    pub last_stored: LazyGauge,
}

impl TrackerMetrics {
    /// Looks the handles of `stream` up in the installed recorder.
    pub fn new(stream: &str) -> Self {
        let labels = [(STREAM_LABEL, stream.to_owned())];
        Self {
            stores: metrics::counter!(STORES, &labels),
            store_errors: metrics::counter!(STORE_ERRORS, &labels),
            last_stored: LazyGauge::new(LAST_STORED_OFFSET, &labels),
        }
    }
}

/// The producer's handles for one stream (or partition).
#[derive(Clone)]
pub struct ProducerMetrics {
    /// [`PRODUCER_PUBLISHED`]
    pub published: Counter,
    /// [`PRODUCER_CONFIRMED`]
    pub confirmed: Counter,
    /// [`PRODUCER_IN_FLIGHT`]
    pub in_flight: LazyGauge,
}

impl ProducerMetrics {
    /// Looks the handles of `stream` up in the installed recorder.
    pub fn new(stream: &str) -> Self {
        let labels = [(STREAM_LABEL, stream.to_owned())];
        Self {
            published: metrics::counter!(PRODUCER_PUBLISHED, &labels),
            confirmed: metrics::counter!(PRODUCER_CONFIRMED, &labels),
            in_flight: LazyGauge::new(PRODUCER_IN_FLIGHT, &labels),
        }
    }
}

/// Counts `count` messages the broker rejected (or whose publishing failed): rare, so looked up
/// per call.
pub fn record_nacks(count: u64) {
    metrics::counter!(PRODUCER_NACKED).increment(count);
}

/// Where `/metrics` is served: `host:port`, the host an IP address (`127.0.0.1:9464`,
/// `[::1]:9464`) or a name (`localhost:9464`), resolved when the endpoint starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen(String);

impl Listen {
    /// Checks `text` is `host:port`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!("expected an address and a port, such as \"127.0.0.1:9464\" or \"localhost:9464\", found {text:?}")
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        Ok(Self(text.to_owned()))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Self(addr.to_string())
    }
}

impl From<&SocketAddr> for Listen {
    fn from(addr: &SocketAddr) -> Self {
        Self(addr.to_string())
    }
}

impl From<&Listen> for Listen {
    fn from(listen: &Listen) -> Self {
        listen.clone()
    }
}

/// What [`serve`] installed: the recorder, once per process.
static SERVED: OnceLock<String> = OnceLock::new();

/// Whether [`serve`] installed the recorder in this process.
pub fn serving() -> bool {
    SERVED.get().is_some()
}

/// Serves `/metrics` on `listen` from now on, every series labelled with `labels` (e.g. the
/// consumer's name). Needs a Tokio runtime. Once per process: a second call does nothing (the
/// recorder is the process's).
pub async fn serve(listen: impl Into<Listen>, labels: &[(&str, &str)]) -> Result<()> {
    let listen = listen.into();
    if let Some(served) = SERVED.get() {
        tracing::debug!("metrics already served on {served}");
        return Ok(());
    }
    let cannot = |err: &dyn std::fmt::Display| {
        Error::Local(format!("cannot serve metrics on {listen}: {err}"))
    };
    let listener = tokio::net::TcpListener::bind(listen.0.as_str())
        .await
        .map_err(|err| cannot(&err))?;
    let bound = listener.local_addr().map_err(|err| cannot(&err))?;
    let mut builder = PrometheusBuilder::new();
    for (key, value) in labels {
        builder = builder.add_global_label(*key, *value);
    }
    let handle = builder.install_recorder().map_err(|err| cannot(&err))?;
    let _ = SERVED.set(bound.to_string());
    describe();
    tokio::spawn(accept(listener, handle));
    tracing::info!("metrics on http://{bound}/metrics");
    Ok(())
}

/// Answers every connection to `listener` with the scrape.
async fn accept(listener: tokio::net::TcpListener, handle: PrometheusHandle) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // E.g. out of file descriptors: pause rather than spin on the error.
                tracing::debug!("metrics endpoint: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |request| {
            std::future::ready(Ok::<_, std::convert::Infallible>(respond(
                &handle, &request,
            )))
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!("metrics endpoint: {err}");
            }
        });
    }
}

/// `/metrics` (or `/`): the scrape in Prometheus' text format; anything else: 404.
fn respond(handle: &PrometheusHandle, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut response = if matches!(request.uri().path(), "/metrics" | "/") {
        handle.run_upkeep();
        let mut response = Response::new(Full::new(Bytes::from(handle.render())));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_CONTENT_TYPE));
        response
    } else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"see /metrics\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    };
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
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
        "Processed messages not yet covered by a store (what a crash now would process again)"
    );
    describe_counter!(RESUBSCRIBES, "Subscriptions lost and made again");
    describe_counter!(
        FAILOVERS,
        "Subscriptions made again on another node than before (the stream moved, a node died)"
    );
    describe_gauge!(
        LAST_PROCESSED_TIMESTAMP,
        "When the broker wrote the chunk of the last message processed (Unix seconds)"
    );
    describe_gauge!(
        LAG,
        "Offset of the stream's last message minus the last processed one, sampled every 5 s: \
         an upper bound on messages behind (offset stores take offsets too)"
    );
    describe_gauge!(
        LAG_SECONDS,
        "Seconds behind, sampled every 5 s: 0 when the stream holds no message after the last \
         processed one, else the age of the last processed message's chunk (broker timestamp)"
    );
    describe_counter!(
        PRODUCER_PUBLISHED,
        "Messages of the wave published (a resend after a lost connection is not counted again)"
    );
    describe_counter!(PRODUCER_CONFIRMED, "Messages the broker confirmed");
    describe_counter!(
        PRODUCER_NACKED,
        "Messages the broker rejected, or whose publishing failed"
    );
    describe_gauge!(
        PRODUCER_IN_FLIGHT,
        "Messages published and not confirmed yet"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_a_host_name_or_an_address_and_a_port() {
        for good in [
            "127.0.0.1:9464",
            "localhost:9464",
            "[::1]:9464",
            "0.0.0.0:0",
        ] {
            assert_eq!(Listen::parse(good).map(|l| l.to_string()), Ok(good.into()));
        }
        for bad in [
            "nope",
            "localhost",
            ":9464",
            "localhost:http",
            "localhost:70000",
        ] {
            let err = Listen::parse(bad).unwrap_err();
            assert!(err.contains("expected an address and a port"), "{err}");
        }
        #[derive(Deserialize)]
        struct Section {
            listen: Listen,
        }
        let section: Section = serde_json::from_str(r#"{"listen": "localhost:9464"}"#).unwrap();
        assert_eq!(section.listen, Listen::parse("localhost:9464").unwrap());
    }

    #[test]
    fn the_timestamp_is_kept_without_a_recorder() {
        let metrics = ConsumerMetrics::new("timestamp-kept");
        assert_eq!(metrics.last_processed_timestamp.get(), None);
        metrics.last_processed_timestamp.set(1.5);
        // Another caller for the same stream shares it (the actor reads what the stage set).
        let other = ConsumerMetrics::new("timestamp-kept");
        assert_eq!(other.last_processed_timestamp.get(), Some(1.5));
    }
}
