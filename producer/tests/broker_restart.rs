//! The broker restarts while a named producer publishes: it reconnects, resends what the broker
//! lacks, and the stream holds every message of the wave exactly once.
//! (Its own test binary, one test: the restart cuts every connection to the broker.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::broker::restart_broker;
use testkit::process::{our_binary, Running};
use testkit::streams::{unique, wave_bodies, TestStream};
use testkit::summary::summary_of;

#[tokio::test]
async fn a_named_producer_across_a_broker_restart_writes_each_message_once() {
    let stream = TestStream::new("pr").await;
    let count = 1_000_000u64;
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_producer"));
    cmd.env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env("OFFSET_TRACKING__PRODUCER__NAME", unique("producer"))
        .env(
            "OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT",
            count.to_string(),
        )
        .env("OFFSET_TRACKING__PRODUCER__RECONNECT_TIMEOUT", "90s");
    let mut running = Running::spawn(&mut cmd);
    running.wait_for_line("Publishing", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));

    restart_broker();

    let out = running.finish(Duration::from_secs(180));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Messages confirmed: True"));
    let reconnects = summary_of(&out).reconnects;
    assert!(
        reconnects >= 1,
        "the wave ended before the restart: nothing was tested\n{err}"
    );

    let log = stream.read_all().await;
    let bodies: Vec<Vec<u8>> = log.into_iter().map(|(_, body)| body).collect();
    let expected: Vec<Vec<u8>> = wave_bodies(count).collect();
    println!(
        "producer across a broker restart: reconnects {reconnects}, messages in the stream {}",
        bodies.len()
    );
    assert_eq!(
        bodies.len(),
        expected.len(),
        "the stream does not hold the wave exactly once"
    );
    assert!(
        bodies == expected,
        "the stream's messages differ from the wave"
    );
}
