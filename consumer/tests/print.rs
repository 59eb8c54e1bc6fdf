//! The consumer beyond the tutorial's lines, against the real broker: `--print` / `--format` /
//! `--max-messages`; a missing stream refused (and not created) unless `--create-stream`; the
//! notice when attaching past the end or to an empty stream; completions and the man page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use testkit::broker::raw_client;
use testkit::process::{
    assert_ok, named_consumer, our_binary, run_with_deadline, stderr_of, stdout_of, Running,
};
use testkit::streams::{unique, OwnedStream, TestStream};
use testkit::summary::summary_of;

const LIMIT: Duration = Duration::from_secs(60);
const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

fn consumer(stream: &str, name: &str) -> Command {
    named_consumer(CONSUMER, stream, name)
}

fn run(cmd: &mut Command) -> Output {
    run_with_deadline(cmd, LIMIT)
}

async fn exists(stream: &str) -> bool {
    let client = raw_client().await;
    let exists = shared::connection::stream_exists(&client, stream)
        .await
        .unwrap();
    let _ = client.close().await;
    exists
}

#[tokio::test]
async fn print_shows_offset_timestamp_and_escaped_body_then_stops_at_the_marker() {
    let stream = TestStream::new("print").await;
    stream
        .publish_maybe_empty([
            Some(b"hello0".to_vec()),
            Some(b"two\nlines\tand\\ \xff\xfe".to_vec()),
            None,
            Some("café".as_bytes().to_vec()),
            Some(b"marker4".to_vec()),
            Some(b"after the marker".to_vec()),
        ])
        .await;
    let log = stream.offsets().await;
    let name = unique("print");
    let out = run(consumer(&stream.name, &name).arg("--print"));
    assert_ok(&out);
    let text = stdout_of(&out);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        lines.len(),
        5,
        "stops at the marker; only messages on stdout: {text}"
    );
    let offsets: Vec<u64> = lines.iter().map(|l| l[0].parse().unwrap()).collect();
    assert_eq!(offsets, log[..5]);
    for line in &lines {
        assert_eq!(line.len(), 3, "{line:?}");
        let when = humantime::parse_rfc3339(line[1]).unwrap();
        let age = std::time::SystemTime::now().duration_since(when).unwrap();
        assert!(age < Duration::from_secs(600), "{line:?}");
    }
    let bodies: Vec<&str> = lines.iter().map(|l| l[2]).collect();
    assert_eq!(
        bodies,
        [
            "hello0",
            "two\\nlines\\tand\\\\ \\xff\\xfe",
            "",
            "café",
            "marker4"
        ]
    );
    let err = stderr_of(&out);
    assert!(err.contains("Started consuming"), "moved to the log: {err}");
    assert_eq!(
        stream.stored_offset(&name).await,
        Some(log[4]),
        "the marker's"
    );
}

#[tokio::test]
async fn format_and_max_messages_print_and_store_exactly_n() {
    let stream = TestStream::new("print-max").await;
    stream.publish_wave(100).await;
    let log = stream.read_all().await;
    let name = unique("print-max");
    let out = run(consumer(&stream.name, &name).args([
        "--format",
        "{stream}|{offset}|{size}|{timestamp_ms}|{{{body}}}",
        "--max-messages",
        "3",
    ]));
    assert_ok(&out);
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, (offset, body)) in lines.iter().zip(&log) {
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields[0], stream.name);
        assert_eq!(fields[1], offset.to_string());
        assert_eq!(fields[2], body.len().to_string());
        assert!(
            fields[3].parse::<u64>().unwrap() > 1_700_000_000_000,
            "{line}"
        );
        assert_eq!(fields[4], format!("{{{}}}", String::from_utf8_lossy(body)));
    }
    let first = &summary_of(&out).partitions[0];
    assert_eq!(first.messages, 3);
    assert_eq!(first.stored_offset, Some(log[2].0));
    assert_eq!(stream.stored_offset(&name).await, Some(log[2].0));

    // The tutorial's run stops after N too, and resumes after what the first run stored.
    let out = run(consumer(&stream.name, &name).args(["--max-messages", "5"]));
    assert_ok(&out);
    let second = &summary_of(&out).partitions[0];
    assert_eq!((second.first_offset, second.messages), (Some(log[3].0), 5));
    assert_eq!(stream.stored_offset(&name).await, Some(log[7].0));
    assert!(
        stdout_of(&out).contains("Done consuming"),
        "{}",
        stdout_of(&out)
    );
}

#[tokio::test]
async fn bad_print_flags_are_usage_errors() {
    for args in [
        &["--format", "{offset} {bdy}"][..],
        &["--format", "{offset"],
        &["--max-messages", "0"],
    ] {
        let out = run(our_binary(CONSUMER).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(!stderr_of(&out).contains("panicked"), "{}", stderr_of(&out));
    }
    let out = run(our_binary(CONSUMER).args(["--format", "{bdy}"]));
    assert!(
        stderr_of(&out).contains("{body}"),
        "lists the placeholders: {}",
        stderr_of(&out)
    );
}

#[tokio::test]
async fn a_missing_stream_is_refused_and_not_created_unless_asked() {
    let stream = OwnedStream::on_broker("missing", 0).await;
    let name = unique("missing");
    let out = run(&mut consumer(&stream.name, &name));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("stream '{}' does not exist", stream.name))
            && err.contains("producer")
            && err.contains("--create-stream"),
        "{err}"
    );
    assert!(
        !exists(&stream.name).await,
        "the consumer created the stream"
    );

    // A super stream likewise.
    let out = run(consumer(&stream.name, &name).env("OFFSET_TRACKING__STREAM__PARTITIONS", "3"));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("super stream '{}' does not exist", stream.name)),
        "{err}"
    );

    // --create-stream creates it, and waits there for its first message.
    let running = Running::spawn(consumer(&stream.name, &name).arg("--create-stream"));
    running.wait_for_log(
        &["the stream is empty; waiting for its first message"],
        LIMIT,
    );
    assert!(exists(&stream.name).await);
    running.signal("TERM");
    assert_ok(&running.finish(LIMIT));
}

#[tokio::test]
async fn attaching_past_the_end_or_to_an_empty_stream_is_said() {
    let stream = TestStream::new("past-end").await;
    let running = Running::spawn(&mut consumer(&stream.name, &unique("empty")));
    running.wait_for_log(
        &["the stream is empty; waiting for its first message"],
        LIMIT,
    );
    running.signal("TERM");
    assert_ok(&running.finish(LIMIT));

    stream.publish_wave(10).await;
    let last = *stream.offsets().await.last().unwrap();
    let running =
        Running::spawn(consumer(&stream.name, &unique("past")).args(["--offset", "99999999"]));
    let line = running.wait_for_log(&[&format!("the stream ends at offset {last};")], LIMIT);
    assert!(line.contains("99999999"), "{line}");
    running.signal("TERM");
    assert_ok(&running.finish(LIMIT));
}

#[test]
fn completions_and_the_man_page_are_printed_without_a_broker_or_a_config() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(our_binary(CONSUMER)
            .args(["completions", shell])
            .env("OFFSET_TRACKING_CONFIG", "/nonexistent/config.toml"));
        assert_ok(&out);
        let script = stdout_of(&out);
        assert!(
            script.contains("consumer") && script.contains("max-messages"),
            "{shell}: {script}"
        );
    }
    let out = run(our_binary(CONSUMER).arg("man"));
    assert_ok(&out);
    let page = stdout_of(&out);
    assert!(
        page.contains(".TH consumer") && page.contains("create\\-stream"),
        "{page}"
    );
}
