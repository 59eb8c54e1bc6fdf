//! The broker restarts while the consumer runs: the same process subscribes again after the last
//! processed message and reaches the marker with nothing lost and nothing repeated.
//! (Its own test binary, one test: the restart cuts every connection to the broker.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::broker::restart_broker;
use testkit::process::{our_binary, Running};
use testkit::streams::{unique, TestStream};
use testkit::summary::summary_of;

#[tokio::test]
async fn a_broker_restart_mid_consume_loses_and_repeats_nothing() {
    let stream = TestStream::new("rr").await;
    let name = unique("rr");
    let half = 50_000u64;
    // The first half has no marker: the consumer is still running when the broker goes away.
    stream
        .publish((0..half).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_consumer"));
    cmd.env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env("OFFSET_TRACKING__CONSUMER__NAME", &name)
        .env("OFFSET_TRACKING__CONSUMER__RECONNECT_TIMEOUT", "90s");
    let mut running = Running::spawn(&mut cmd);
    running.wait_for_line("First message received", Duration::from_secs(60));

    restart_broker();

    // The second half, marker last, published after the restart.
    stream
        .publish((half..2 * half).map(|i| {
            if i + 1 == 2 * half {
                format!("marker{i}").into_bytes()
            } else {
                format!("hello{i}").into_bytes()
            }
        }))
        .await;
    let out = running.finish(Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let summary = summary_of(&out);
    println!(
        "broker restart: reconnects {}, messages {}",
        summary.reconnects, summary.messages
    );
    assert!(summary.reconnects >= 1, "no reconnect seen: {err}");
    // Each recovery says what happened and how long consumption was interrupted.
    let partition = &summary.partitions[0];
    assert!(
        partition.max_interruption_ms > 0,
        "no interruption recorded: {partition:?}"
    );
    assert!(
        err.lines()
            .any(|line| line.contains("subscribed again at") && line.contains(" ms after: ")),
        "no recovery line: {err}"
    );
    assert_eq!(
        summary.messages,
        2 * half,
        "lost or repeated messages: {err}"
    );
    let log = stream.read_all().await;
    assert_eq!(
        stream.stored_offset(&name).await,
        Some(log.last().unwrap().0)
    );
}
