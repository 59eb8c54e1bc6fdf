//! The Prometheus endpoint, scraped with a real HTTP client while a wave is consumed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::process::{our_binary, Running};
use testkit::streams::{unique, TestStream};

const LIMIT: Duration = Duration::from_secs(60);

fn value(scrape: &str, metric: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(metric) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_what_was_processed_and_stored() {
    let stream = TestStream::new("m1").await;
    let published_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // No marker: the consumer stays up to be scraped.
    stream
        .publish((0..1000).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let last = stream.read_all().await.last().unwrap().0;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut running = Running::spawn(
        our_binary(env!("CARGO_BIN_EXE_consumer"))
            .args(["--stream", &stream.name, "--name", &unique("m1")])
            .env("OFFSET_TRACKING__METRICS__LISTEN", &listen)
            .env("OFFSET_TRACKING__TRACKER__STORE_EVERY", "200ms"),
    );
    running.wait_for_line("First message received", LIMIT);
    let url = format!("http://{listen}/metrics");
    let mut scrape = String::new();
    // The lag is sampled every 5 s: wait for it too.
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(mut response) = ureq::get(&url).call() {
            scrape = response.body_mut().read_to_string().unwrap();
            if value(&scrape, "offset_tracking_last_stored_offset") == Some(last as f64)
                && value(&scrape, "offset_tracking_lag").is_some()
            {
                break;
            }
        }
    }
    running.signal("TERM");
    let out = running.finish(LIMIT);
    assert!(out.status.success());
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
    // Each metric names its stream (a partition, on a super stream).
    let label = format!("{{stream=\"{}\"}}", stream.name);
    for metric in [
        "offset_tracking_messages_processed_total",
        "offset_tracking_last_stored_offset",
        "offset_tracking_lag",
    ] {
        assert!(
            scrape.contains(&format!("{metric}{label}")),
            "{metric} without {label}: {scrape}"
        );
    }
}
