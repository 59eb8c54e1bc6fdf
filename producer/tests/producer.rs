//! The producer against a real broker: the wave lands whole and confirmed, and bad connection
//! settings give a clear error and a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use testkit::broker::require_broker;
use testkit::process::{our_binary, run_with_deadline, stderr_of};
use testkit::streams::{unique, TestStream};
use testkit::summary::summary_of;

const LIMIT: Duration = Duration::from_secs(60);

fn producer(stream: &str) -> Command {
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_producer"));
    cmd.env("OFFSET_TRACKING__STREAM__NAME", stream);
    cmd
}

#[tokio::test]
async fn publishes_the_wave_and_waits_for_every_confirmation() {
    let stream = TestStream::new("p1").await;
    let out = run_with_deadline(&mut producer(&stream.name), LIMIT);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Publishing 100 messages\nMessages confirmed: True\n"
    );
    let summary = summary_of(&out);
    assert_eq!(summary.program, "producer");
    assert_eq!(summary.messages, 100, "confirmed");
    let log = stream.read_all().await;
    let bodies: Vec<String> = log
        .iter()
        .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..99)
        .map(|i| format!("hello{i}"))
        .chain(["marker99".to_string()])
        .collect();
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn creates_a_missing_stream_and_publishes_a_configured_count() {
    let fresh = unique("p2-fresh");
    let out = run_with_deadline(
        producer(&fresh).env("OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT", "2500"),
        LIMIT,
    );
    let env = require_broker().await;
    let deleted = env.delete_stream(&fresh).await;
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(deleted.is_ok(), "the producer did not create {fresh}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Publishing 2500 messages\nMessages confirmed: True\n"
    );
}

#[test]
fn wrong_credentials_and_unknown_vhost_are_named() {
    let cases = [
        (
            "OFFSET_TRACKING__BROKER__PASSWORD",
            "not-the-password",
            "authentication failed",
        ),
        (
            "OFFSET_TRACKING__BROKER__VIRTUAL_HOST",
            "no-such-vhost",
            "virtual host",
        ),
        ("OFFSET_TRACKING__BROKER__PORT", "1", "connection refused"),
    ];
    for (key, value, expected) in cases {
        let out = run_with_deadline(producer(&unique("p3")).env(key, value), LIMIT);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{key}: {err}");
        assert!(err.contains(expected), "{key}: {err}");
        assert!(
            !err.contains("not-the-password"),
            "the password leaked: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "{key}: nothing may claim success");
    }
}
