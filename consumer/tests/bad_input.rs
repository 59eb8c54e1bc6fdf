//! Bad input against a real broker: odd message bodies are processed, a deleted stream is a clear
//! error, and nothing panics or hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use testkit::broker::require_broker;
use testkit::process::{named_consumer, run_with_deadline, stderr_of, Running};
use testkit::streams::{unique, TestStream};
use testkit::summary::summary_of;

const LIMIT: Duration = Duration::from_secs(60);

fn consumer(stream: &str, name: &str) -> Command {
    named_consumer(env!("CARGO_BIN_EXE_consumer"), stream, name)
}

#[tokio::test]
async fn empty_non_utf8_and_large_bodies_are_processed() {
    let stream = TestStream::new("b1").await;
    let name = unique("b1");
    let large = vec![b'x'; 1 << 20];
    stream
        .publish_maybe_empty([
            None,
            Some(vec![0xff, 0xfe, 0x00, 0x80]),
            Some(Vec::new()),
            Some(large),
            Some(b"marker\xff".to_vec()),
        ])
        .await;
    let log = stream.read_all().await;
    assert_eq!(log.len(), 5);
    let out = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(summary_of(&out).messages, 5);
    assert!(!stderr_of(&out).contains("panicked"));
    assert_eq!(stream.stored_offset(&name).await, Some(log[4].0));
}

#[tokio::test]
async fn a_stream_deleted_while_consuming_is_a_clear_error() {
    let stream = TestStream::new("b2").await;
    let name = unique("b2");
    // No marker: the consumer waits for more.
    stream
        .publish((0..10).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let mut running = Running::spawn(&mut consumer(&stream.name, &name));
    running.wait_for_line("First message received", LIMIT);
    let env = require_broker().await;
    env.delete_stream(&stream.name).await.unwrap();
    let deleted_at = std::time::Instant::now();
    let out = running.finish(Duration::from_secs(30));
    let noticed_after = deleted_at.elapsed();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The broker's metadata update ends the subscription at once (no idle probe needed).
    println!("the consumer exited {noticed_after:?} after the stream was deleted");
    assert!(
        noticed_after <= Duration::from_secs(1),
        "the consumer took {noticed_after:?} to report the deleted stream: {err}"
    );
    assert!(
        err.contains(&stream.name) && err.contains("deleted"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
