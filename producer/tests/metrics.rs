//! The producer's Prometheus endpoint (`metrics.listen`), scraped
//! with a real HTTP client while a wave is published: published, confirmed and in-flight series
//! per stream, in Prometheus' text format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use testkit::process::{our_binary, Running};
use testkit::streams::TestStream;

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

#[tokio::test]
async fn the_producer_serves_what_it_published_and_confirmed() {
    let stream = TestStream::new("pm").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let count = 500_000u64;
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_producer"));
    cmd.env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env(
            "OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT",
            count.to_string(),
        )
        .env(
            "OFFSET_TRACKING__METRICS__LISTEN",
            format!("127.0.0.1:{port}"),
        );
    let mut running = Running::spawn(&mut cmd);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let started = Instant::now();
    // The latest scrape that saw messages published, and its content type.
    let mut seen = None;
    let mut scrapes = 0;
    while started.elapsed() < Duration::from_secs(120)
        && running.child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(mut response) = ureq::get(&url).call() else {
            continue;
        };
        scrapes += 1;
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.body_mut().read_to_string().unwrap();
        if value(&body, "offset_tracking_producer_published_total").is_some_and(|p| p > 0.0) {
            seen = Some((content_type, body));
        }
    }
    let out = running.finish(Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (content_type, scrape) =
        seen.unwrap_or_else(|| panic!("no scrape saw the wave ({scrapes} scrapes)"));
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let published = value(&scrape, "offset_tracking_producer_published_total").unwrap();
    let confirmed = value(&scrape, "offset_tracking_producer_confirmed_total")
        .unwrap_or_else(|| panic!("no confirmed counter: {scrape}"));
    let in_flight = value(&scrape, "offset_tracking_producer_in_flight_messages")
        .unwrap_or_else(|| panic!("no in-flight gauge: {scrape}"));
    assert!(published <= count as f64, "{scrape}");
    assert!(confirmed <= published, "{scrape}");
    assert_eq!(in_flight, published - confirmed, "{scrape}");
    // The in-flight window bounds it (producer.max_unconfirmed, 10 000 by default).
    assert!(in_flight <= 10_000.0, "{scrape}");
    let label = format!("{{stream=\"{}\"}}", stream.name);
    for metric in [
        "offset_tracking_producer_published_total",
        "offset_tracking_producer_confirmed_total",
        "offset_tracking_producer_in_flight_messages",
    ] {
        assert!(
            scrape.contains(&format!("{metric}{label} ")),
            "{metric} without {label}: {scrape}"
        );
    }
    assert!(
        scrape.contains("# TYPE offset_tracking_producer_published_total counter"),
        "{scrape}"
    );
}
