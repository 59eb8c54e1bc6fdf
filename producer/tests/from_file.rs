//! `producer --from-file PATH|-`: one message per line, as it is, then the marker (or not, with
//! `--no-marker`), read back from the real broker; completions and the man page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::process::{assert_ok, our_binary, run_with_deadline, stderr_of, stdout_of, Running};
use testkit::streams::TestStream;

const LIMIT: Duration = Duration::from_secs(60);
const PRODUCER: &str = env!("CARGO_BIN_EXE_producer");

fn producer(stream: &str) -> Command {
    let mut cmd = our_binary(PRODUCER);
    cmd.args(["--stream", stream]);
    cmd
}

fn bodies(log: &[(u64, Vec<u8>)]) -> Vec<Vec<u8>> {
    log.iter().map(|(_, body)| body.clone()).collect()
}

#[tokio::test]
async fn lines_of_a_file_then_the_marker() {
    let stream = TestStream::new("from-file").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    std::fs::write(&path, b"first\r\nsecond \xff\n\nlast, no newline").unwrap();
    let out = run_with_deadline(
        producer(&stream.name).args(["--from-file", path.to_str().unwrap()]),
        LIMIT,
    );
    assert_ok(&out);
    assert!(
        stdout_of(&out).contains("Publishing 5 messages"),
        "{}",
        stdout_of(&out)
    );
    let expected: Vec<Vec<u8>> = vec![
        b"first".to_vec(),
        b"second \xff".to_vec(),
        vec![],
        b"last, no newline".to_vec(),
        b"marker4".to_vec(),
    ];
    assert_eq!(bodies(&stream.read_all().await), expected);
}

#[tokio::test]
async fn lines_from_standard_input_without_a_marker() {
    let stream = TestStream::new("from-stdin").await;
    let mut cmd = producer(&stream.name);
    cmd.args(["--from-file", "-", "--no-marker"])
        .stdin(Stdio::piped());
    let mut running = Running::spawn(&mut cmd);
    let lines: Vec<String> = (0..1000).map(|i| format!("event {i}")).collect();
    {
        let mut stdin = running.child.stdin.take().unwrap();
        stdin.write_all(lines.join("\n").as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    let out = running.finish(LIMIT);
    assert_ok(&out);
    let read = bodies(&stream.read_all().await);
    let expected: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
    assert_eq!(read, expected);
}

#[test]
fn a_missing_file_or_a_count_beside_it_is_a_usage_error() {
    let out = run_with_deadline(
        producer("never-created").args(["--from-file", "/nonexistent/lines.txt"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("/nonexistent/lines.txt"),
        "{}",
        stderr_of(&out)
    );
    let out = run_with_deadline(
        producer("never-created").args(["--from-file", "-", "--count", "5"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
}

#[test]
fn completions_and_the_man_page_are_printed() {
    let out = run_with_deadline(our_binary(PRODUCER).args(["completions", "bash"]), LIMIT);
    assert_ok(&out);
    assert!(stdout_of(&out).contains("from-file"), "{}", stdout_of(&out));
    let out = run_with_deadline(our_binary(PRODUCER).arg("man"), LIMIT);
    assert_ok(&out);
    assert!(
        stdout_of(&out).contains(".TH producer"),
        "{}",
        stdout_of(&out)
    );
}
