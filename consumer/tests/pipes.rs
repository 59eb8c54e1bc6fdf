//! The consumer in shell pipes: a reader that leaves early (`| head -1`, a closed pipe) ends the
//! run quietly with exit 0 — no panic — and what was processed before is stored, like a SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::process::{named_consumer, our_binary, stderr_of, stdout_of};
use testkit::streams::{unique, TestStream};
use testkit::summary::summary_of;

const LIMIT: Duration = Duration::from_secs(60);
const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

/// Waits for `child` (its stdout already taken or dropped), killing it and failing the test after
/// [`LIMIT`].
fn finish(child: std::process::Child) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("the consumer did not exit within {LIMIT:?} after its stdout closed");
        }
    }
}

/// `bash -o pipefail -c '"$CONSUMER" ARGS… | head -1'` with the consumer's clean environment:
/// the pipeline's status is the consumer's.
fn into_head(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = our_binary("bash");
    cmd.args(["-o", "pipefail", "-c", r#""$0" "$@" | head -1"#, CONSUMER])
        .args(args)
        .envs(envs.iter().copied());
    testkit::process::run_with_deadline(&mut cmd, LIMIT)
}

fn assert_quiet(out: &Output) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("internal error"), "{err}");
    assert!(!err.contains("ERROR"), "{err}");
}

#[tokio::test]
async fn offsets_show_into_head_or_a_closed_pipe_exits_quietly() {
    let stream = TestStream::new("pipe-show").await;
    stream.publish_wave(10).await;
    let name = unique("pipe-show");
    let out = into_head(
        &["--stream", &stream.name, "--name", &name, "offsets", "show"],
        &[],
    );
    assert_quiet(&out);
    assert_eq!(stdout_of(&out).lines().count(), 1, "{}", stdout_of(&out));

    // Deterministic: the reader is gone before the first line is written.
    let mut child = named_consumer(CONSUMER, &stream.name, &name)
        .args(["offsets", "show"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert_quiet(&finish(child));
}

#[tokio::test]
async fn the_consumer_into_head_stops_cleanly_and_stores_what_it_processed() {
    let stream = TestStream::new("pipe-head").await;
    stream.publish_wave(100).await;
    let name = unique("pipe-head");
    let out = into_head(
        &["--stream", &stream.name, "--name", &name],
        &[("OFFSET_TRACKING_SUMMARY_JSON", "1")],
    );
    assert_quiet(&out);
    assert_eq!(stdout_of(&out).trim(), "Started consuming");
    let run = &summary_of(&out).partitions[0];
    // Whether it stopped on the closed pipe or at the marker, what it processed is stored.
    assert!(run.last_offset.is_some(), "{run:?}");
    assert_eq!(run.stored_offset, run.last_offset, "{run:?}");
    assert_eq!(stream.stored_offset(&name).await, run.last_offset);
}

#[tokio::test]
async fn a_reader_leaving_mid_stream_stops_the_run_and_nothing_is_lost() {
    // No marker: only the closed pipe can end this run.
    let stream = TestStream::new("pipe-print").await;
    // 5 000 lines of ~100 bytes: far more than a pipe holds (64 KiB), so the consumer is still
    // writing when the reader leaves, whatever the timing.
    stream
        .publish((0..5_000).map(|i| format!("line{i:0>96}").into_bytes()))
        .await;
    let log = stream.offsets().await;
    let name = unique("pipe-print");
    let mut child = named_consumer(CONSUMER, &stream.name, &name)
        .args(["--print", "--format", "{offset}\\t{body}"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let read: Vec<u64> = (0..10)
        .map(|_| {
            let line = lines.next().unwrap().unwrap();
            line.split('\t').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(read, log[..10]);
    drop(lines);
    let out = finish(child);
    assert_quiet(&out);
    assert!(
        stderr_of(&out).contains("stdout was closed by its reader"),
        "{}",
        stderr_of(&out)
    );
    let run = &summary_of(&out).partitions[0];
    let stored = run.stored_offset.expect("an offset stored");
    assert_eq!(run.stored_offset, run.last_offset, "{run:?}");
    assert!(stored >= log[9], "stored {stored}, read up to {}", log[9]);
    assert!(
        stored < *log.last().unwrap(),
        "the pipe filled long before the end"
    );
    assert_eq!(stream.stored_offset(&name).await, Some(stored));

    // The next run starts right after it: nothing skipped.
    let mut next = named_consumer(CONSUMER, &stream.name, &name);
    next.args(["--print", "--format", "{offset}", "--max-messages", "1"]);
    let out = testkit::process::run_with_deadline(&mut next, LIMIT);
    assert_quiet(&out);
    let after = log.iter().find(|&&o| o > stored).copied();
    assert_eq!(stdout_of(&out).trim().parse::<u64>().ok(), after);
}
