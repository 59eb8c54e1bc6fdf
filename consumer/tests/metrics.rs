//! The Prometheus endpoint, scraped with a real HTTP client while a wave is consumed: what it
//! counts, its labels and content type, gauges absent until they have a value, and the lag in
//! seconds rising behind a slow handler and falling to ~0 once it caught up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::process::{named_consumer, our_binary, Running};
use testkit::streams::{unique, TestStream};
use testkit::summary::partition_of;

const LIMIT: Duration = Duration::from_secs(60);

/// The value of the first sample of `metric` (exactly that name, any labels).
fn value(scrape: &str, metric: &str) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// A free local port's `127.0.0.1:port`.
fn free_listen() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// GET `url`: the content type and the body, or `None` if nothing answers (yet).
fn scrape(url: &str) -> Option<(String, String)> {
    let mut response = ureq::get(url).call().ok()?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.body_mut().read_to_string().ok()?;
    Some((content_type, body))
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn metrics_count_what_was_processed_and_stored() {
    let stream = TestStream::new("m1").await;
    let name = unique("m1");
    let listen = free_listen();
    let running = Running::spawn(
        our_binary(env!("CARGO_BIN_EXE_consumer"))
            .args(["--stream", &stream.name, "--name", &name])
            .env("OFFSET_TRACKING__METRICS__LISTEN", &listen)
            .env("OFFSET_TRACKING__TRACKER__STORE_EVERY", "200ms"),
    );
    let url = format!("http://{listen}/metrics");
    // Before anything was processed: counters at 0, gauges absent (not 0).
    let deadline = Instant::now() + LIMIT;
    let (content_type, before) = loop {
        // Served from the start; the stream's series once its subscription is made.
        if let Some(answer) = scrape(&url).filter(|(_, body)| body.contains(&stream.name)) {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics of the stream on {url}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        value(&before, "offset_tracking_messages_processed_total"),
        Some(0.0),
        "{before}"
    );
    for gauge in [
        "offset_tracking_last_processed_offset",
        "offset_tracking_last_stored_offset",
        "offset_tracking_lag_seconds",
        "offset_tracking_last_processed_timestamp_seconds",
    ] {
        assert_eq!(
            value(&before, gauge),
            None,
            "{gauge} before a value: {before}"
        );
    }

    let published_at = now_s();
    // No marker: the consumer stays up to be scraped.
    stream
        .publish((0..1000).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let last = stream.read_all().await.last().unwrap().0;
    let mut scrape_text = String::new();
    // The lag is sampled every 5 s: wait for it too.
    for _ in 0..150 {
        std::thread::sleep(Duration::from_millis(100));
        if let Some((_, body)) = scrape(&url) {
            scrape_text = body;
            if value(&scrape_text, "offset_tracking_last_stored_offset") == Some(last as f64)
                && value(&scrape_text, "offset_tracking_lag_seconds") == Some(0.0)
            {
                break;
            }
        }
    }
    running.signal("TERM");
    let out = running.finish(LIMIT);
    assert!(out.status.success());
    let scrape = scrape_text;
    assert_eq!(
        value(&scrape, "offset_tracking_messages_processed_total"),
        Some(1000.0),
        "{scrape}"
    );
    assert_eq!(
        value(&scrape, "offset_tracking_last_processed_offset"),
        Some(last as f64),
        "{scrape}"
    );
    assert_eq!(
        value(&scrape, "offset_tracking_last_stored_offset"),
        Some(last as f64),
        "{scrape}"
    );
    assert!(
        value(&scrape, "offset_tracking_stores_total").unwrap() >= 1.0,
        "{scrape}"
    );
    // Caught up: nothing but offset stores after the last message.
    assert_eq!(value(&scrape, "offset_tracking_lag"), Some(0.0), "{scrape}");
    assert_eq!(
        value(&scrape, "offset_tracking_lag_seconds"),
        Some(0.0),
        "{scrape}"
    );
    // When the broker wrote the last processed message's chunk: this wave's, on this machine.
    let written = value(&scrape, "offset_tracking_last_processed_timestamp_seconds")
        .unwrap_or_else(|| panic!("no chunk timestamp: {scrape}"));
    assert!(
        (written - published_at).abs() < 60.0,
        "chunk timestamp {written} vs published at {published_at}: {scrape}"
    );
    assert!(
        scrape.contains("# HELP offset_tracking_messages_processed_total"),
        "{scrape}"
    );
    let help = scrape
        .lines()
        .find(|l| l.starts_with("# HELP offset_tracking_lag "))
        .unwrap_or_default();
    assert!(
        help.contains("upper bound"),
        "the offset lag's HELP says it is an upper bound: {scrape}"
    );
    // Each series names the consumer and its stream (a partition, on a super stream).
    let labels = format!("{{consumer=\"{name}\",stream=\"{}\"}}", stream.name);
    for metric in [
        "offset_tracking_messages_processed_total",
        "offset_tracking_last_stored_offset",
        "offset_tracking_stores_total",
        "offset_tracking_lag",
        "offset_tracking_lag_seconds",
    ] {
        assert!(
            scrape.contains(&format!("{metric}{labels} ")),
            "{metric} without {labels}: {scrape}"
        );
    }
}

/// The path of the `io_handler` example, built by `cargo test` next to the test binaries.
fn io_handler_path() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_consumer"))
        .with_file_name("examples")
        .join("io_handler");
    assert!(
        path.is_file(),
        "the io_handler example is not built at {}: run `cargo build -p consumer --examples`",
        path.display()
    );
    path
}

#[tokio::test]
async fn lag_in_seconds_rises_behind_a_slow_handler_and_falls_once_caught_up() {
    let stream = TestStream::new("m2").await;
    let name = unique("m2");
    // A backlog of 600 messages at 20 ms each: ~12 s of work, over two or three lag samples.
    stream
        .publish((0..600).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let last = stream.read_all().await.last().unwrap().0;
    let listen = free_listen();
    let running = Running::spawn(
        named_consumer(io_handler_path(), &stream.name, &name)
            .env("OFFSET_TRACKING__PROCESSING__MAX_IN_FLIGHT", "1")
            .env("OFFSET_TRACKING__METRICS__LISTEN", &listen)
            .args(["--work-ms", "20"]),
    );
    let url = format!("http://{listen}/metrics");
    let started = Instant::now();
    // (seconds since the start, lag in seconds, last processed offset)
    let mut samples: Vec<(f64, Option<f64>, Option<f64>)> = vec![];
    let mut caught_up_at = None;
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(250));
        let Some((_, body)) = scrape(&url) else {
            continue;
        };
        let lag = value(&body, "offset_tracking_lag_seconds");
        let processed = value(&body, "offset_tracking_last_processed_offset");
        let t = started.elapsed().as_secs_f64();
        samples.push((t, lag, processed));
        if processed == Some(last as f64) && caught_up_at.is_none() {
            caught_up_at = Some(t);
        }
        // Caught up, and sampled since (every 5 s).
        if caught_up_at.is_some_and(|at| t > at + 6.0) {
            break;
        }
    }
    running.signal("TERM");
    let out = running.finish(LIMIT);
    assert!(out.status.success());
    eprintln!(
        "caught up at {caught_up_at:?} s; samples (s, lag_seconds, last offset): {samples:?}"
    );
    let caught_up_at = caught_up_at.unwrap_or_else(|| panic!("never caught up: {samples:?}"));
    let behind: Vec<f64> = samples
        .iter()
        .filter(|(t, _, _)| *t < caught_up_at)
        .filter_map(|(_, lag, _)| *lag)
        .collect();
    // It rose while the handler worked through the backlog…
    let highest = behind.iter().copied().fold(0.0, f64::max);
    assert!(highest >= 4.0, "lag never rose: {samples:?}");
    assert!(
        behind.windows(2).any(|w| w[1] > w[0]),
        "lag did not rise between samples: {samples:?}"
    );
    // …and fell to ~0 once it caught up.
    let final_lag = samples.last().and_then(|(_, lag, _)| *lag);
    assert!(
        final_lag.is_some_and(|lag| lag < 1.0),
        "lag after catching up: {final_lag:?}: {samples:?}"
    );
    // The run's summary says the same: the most it was behind, and where it ended.
    let summary = partition_of(&out, &stream.name);
    assert!(
        summary
            .max_lag_seconds
            .is_some_and(|max| max >= highest - 0.5),
        "{summary:?} vs highest scraped {highest}"
    );
    assert!(
        summary.lag_seconds.is_some_and(|lag| lag < 1.0),
        "{summary:?}"
    );
}
