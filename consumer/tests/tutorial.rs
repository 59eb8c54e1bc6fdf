//! The tutorial's scenarios against a real broker: attach anywhere, resume after the stored
//! offset, and store by count and by time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use testkit::process::{
    assert_ok, named_consumer, our_binary, run_with_deadline, stderr_of, stdout_of, Running,
};
use testkit::proxy::StoreCountingProxy;
use testkit::streams::{unique, TestStream};
use testkit::summary::{partition_of, summary_of};

const LIMIT: Duration = Duration::from_secs(60);

fn consumer(stream: &str, name: &str) -> Command {
    named_consumer(env!("CARGO_BIN_EXE_consumer"), stream, name)
}

/// (first_offset, last_offset) from the tutorial's closing line.
fn done_line(out: &Output) -> (u64, u64) {
    let text = stdout_of(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("Done consuming"))
        .unwrap_or_else(|| panic!("no Done line in {text:?}; stderr: {}", stderr_of(out)));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{line}");
    (numbers[0], numbers[1])
}

fn messages(out: &Output) -> u64 {
    summary_of(out).messages
}

#[tokio::test]
async fn first_wave_from_first_prints_the_tutorials_lines() {
    let stream = TestStream::new("t1").await;
    stream.publish_wave(100).await;
    let log = stream.read_all().await;
    let out = run_with_deadline(&mut consumer(&stream.name, &unique("c1")), LIMIT);
    assert_ok(&out);
    assert_eq!(
        stdout_of(&out),
        format!(
            "Started consuming\nFirst message received\nDone consuming first_offset: {} last_offset: {}\n",
            log[0].0, log[99].0
        )
    );
    assert_eq!(messages(&out), 100);
}

#[tokio::test]
async fn a_second_run_resumes_after_the_first_and_repeats_nothing() {
    let stream = TestStream::new("t2").await;
    let name = unique("c2");
    stream.publish_wave(100).await;
    let first = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    assert_ok(&first);
    let (_, first_last) = done_line(&first);
    assert_eq!(stream.stored_offset(&name).await, Some(first_last));

    stream.publish_wave(100).await;
    let second = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    assert_ok(&second);
    let (second_first, second_last) = done_line(&second);
    assert!(second_first > first_last, "{second_first} <= {first_last}");
    assert_eq!(messages(&second), 100, "exactly wave 2, nothing of wave 1");
    // Offsets are not contiguous: wave 2's first message is where the raw client sees it.
    let log = stream.read_all().await;
    let wave2: Vec<_> = log.iter().filter(|(o, _)| *o > first_last).collect();
    assert_eq!(wave2.len(), 100);
    assert_eq!((second_first, second_last), (wave2[0].0, wave2[99].0));
    assert_eq!(wave2[0].1, b"hello0");
}

#[tokio::test]
async fn a_numeric_offset_starts_there() {
    let stream = TestStream::new("t3n").await;
    stream.publish_wave(100).await;
    let log = stream.read_all().await;
    let out = run_with_deadline(
        consumer(&stream.name, &unique("c3n")).env("OFFSET_TRACKING__CONSUMER__OFFSET", "42"),
        LIMIT,
    );
    assert_ok(&out);
    assert_eq!(done_line(&out), (42, log[99].0));
    assert_eq!(
        messages(&out),
        log.iter().filter(|(o, _)| *o >= 42).count() as u64
    );
}

#[tokio::test]
async fn next_waits_for_the_next_wave() {
    let stream = TestStream::new("t3x").await;
    stream.publish_wave(100).await;
    let mut cmd = consumer(&stream.name, &unique("c3x"));
    cmd.env("OFFSET_TRACKING__CONSUMER__OFFSET", "next");
    let mut running = Running::spawn(&mut cmd);
    running.wait_for_line("Started consuming", LIMIT);
    // Nothing of the first wave arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.publish_wave(100).await;
    let out = running.finish(LIMIT);
    assert_ok(&out);
    let log = stream.read_all().await;
    assert_eq!(done_line(&out), (log[100].0, log[199].0));
    assert_eq!(messages(&out), 100);
}

#[tokio::test]
async fn last_attaches_at_the_last_chunk() {
    let stream = TestStream::new("t3l").await;
    stream.publish_wave(100).await;
    stream.publish_wave(100).await;
    let log = stream.read_all().await;
    let out = run_with_deadline(
        consumer(&stream.name, &unique("c3l")).env("OFFSET_TRACKING__CONSUMER__OFFSET", "last"),
        LIMIT,
    );
    assert_ok(&out);
    let (first, last) = done_line(&out);
    assert!(first > log[99].0, "attached in wave 1 at {first}");
    assert_eq!(last, log[199].0, "ends on wave 2's marker");
    assert!(messages(&out) <= 100);
}

#[tokio::test]
async fn a_timestamp_attaches_at_the_first_chunk_after_it() {
    let stream = TestStream::new("t3t").await;
    stream.publish_wave(100).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let between = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.publish_wave(100).await;
    let log = stream.read_all().await;
    let out = run_with_deadline(
        consumer(&stream.name, &unique("c3t")).env(
            "OFFSET_TRACKING__CONSUMER__OFFSET",
            format!("timestamp:{between}"),
        ),
        LIMIT,
    );
    assert_ok(&out);
    assert_eq!(done_line(&out), (log[100].0, log[199].0));
    assert_eq!(messages(&out), 100);
}

#[tokio::test]
async fn a_stored_offset_of_zero_does_not_deliver_offset_zero_again() {
    let stream = TestStream::new("t4").await;
    let name = unique("c4");
    stream.publish_wave(100).await;
    stream.store_offset(&name, 0).await;
    let log = stream.read_all().await;
    let out = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    assert_ok(&out);
    assert_eq!(done_line(&out), (log[1].0, log[99].0));
    assert_eq!(messages(&out), 99);
}

#[tokio::test]
async fn the_time_trigger_stores_without_a_marker() {
    let stream = TestStream::new("t5").await;
    let name = unique("c5");
    // No marker: the consumer keeps running, and only the timer can store.
    stream
        .publish((0..50).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let last = stream.read_all().await[49].0;
    let mut cmd = consumer(&stream.name, &name);
    cmd.env("OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES", "0")
        .env("OFFSET_TRACKING__TRACKER__STORE_EVERY", "1s");
    let mut running = Running::spawn(&mut cmd);
    running.wait_for_line("First message received", LIMIT);
    let mut stored = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = stream.stored_offset(&name).await;
        if stored == Some(last) {
            break;
        }
    }
    running.signal("KILL");
    let _ = running.finish(LIMIT);
    assert_eq!(
        stored,
        Some(last),
        "the timer did not store the last processed offset in 5 s"
    );
}

#[tokio::test]
async fn the_count_trigger_stores_at_most_once_per_n_messages() {
    let stream = TestStream::new("t6").await;
    let name = unique("c6");
    stream.publish_wave(100).await;
    let log = stream.read_all().await;
    let proxy = StoreCountingProxy::start();
    let mut cmd = consumer(&stream.name, &name);
    cmd.env("OFFSET_TRACKING__BROKER__PORT", proxy.port.to_string())
        .env("OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES", "10")
        .env("OFFSET_TRACKING__TRACKER__STORE_EVERY", "0s");
    let out = run_with_deadline(&mut cmd, LIMIT);
    assert_ok(&out);
    let stores = proxy.stores();
    println!("stores that reached the broker: {stores}");
    assert!(
        (1..=11).contains(&stores),
        "{stores} stores for 100 messages"
    );
    assert_eq!(stream.stored_offset(&name).await, Some(log[99].0));
    assert_eq!(
        partition_of(&out, &stream.name).stores,
        stores,
        "the summary counts what crossed the wire"
    );
}

#[test]
fn bad_configuration_names_the_key_and_exits_2() {
    let cases = [
        ("OFFSET_TRACKING__CONSUMER__OFFSET", "fist", "offset"),
        (
            "OFFSET_TRACKING__TRACKER__STORE_EVERY",
            "soon",
            "store_every",
        ),
        ("OFFSET_TRACKING__BROKER__PORT", "70000", "port"),
    ];
    for (key, value, named) in cases {
        let out = run_with_deadline(
            our_binary(env!("CARGO_BIN_EXE_consumer")).env(key, value),
            LIMIT,
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{key}={value}: {}",
            stderr_of(&out)
        );
        assert!(
            stderr_of(&out).contains(named),
            "{key}={value}: {}",
            stderr_of(&out)
        );
        assert!(!stderr_of(&out).contains("panicked"), "{}", stderr_of(&out));
    }
    let out = run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_consumer")).args(["--config", "/nonexistent.toml"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("/nonexistent.toml"));
}

#[test]
fn an_unreachable_broker_is_a_clear_error_not_a_hang() {
    // Port 1 on loopback: nothing listens there.
    let out = run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_consumer")).env("OFFSET_TRACKING__BROKER__PORT", "1"),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot connect to the broker at localhost:1"),
        "{err}"
    );
    assert!(err.contains("scripts/broker.sh up"), "{err}");
    assert!(stdout_of(&out).is_empty());
}
