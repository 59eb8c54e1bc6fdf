//! The command line: `--help` documents every flag, flags beat the environment, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::process::{our_binary, run_with_deadline, Running};
use testkit::streams::{unique, TestStream};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn help_names_every_flag_its_key_and_the_exit_codes() {
    for (binary, flags) in [(
        env!("CARGO_BIN_EXE_consumer"),
        &[
            "--config",
            "--stream",
            "--host",
            "--port",
            "--offset",
            "--name",
            "--store-every-messages",
            "--store-every",
            "--version",
        ][..],
    )] {
        let out = run_with_deadline(our_binary(binary).arg("--help"), LIMIT);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in flags {
            assert!(help.contains(flag), "{flag} missing from:\n{help}");
        }
        for text in [
            "consumer.offset",
            "tracker.store_every_messages",
            "[env: OFFSET_TRACKING__",
            "Exit codes: 0",
            "[default: first]",
        ] {
            assert!(help.contains(text), "{text} missing from:\n{help}");
        }
    }
}

#[test]
fn a_flag_beats_the_environment() {
    // The environment points at the real broker; the flag at a port where nothing listens.
    let out = run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_consumer"))
            .env("OFFSET_TRACKING__BROKER__PORT", "5552")
            .args(["--port", "1"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("localhost:1"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--offset", "fist"][..],
        &["--no-such-flag"],
        &["--store-every", "soon"],
    ] {
        let out = run_with_deadline(our_binary(env!("CARGO_BIN_EXE_consumer")).args(args), LIMIT);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn off_a_terminal_progress_is_plain_lines() {
    let stream = TestStream::new("cli-progress").await;
    // No marker: the consumer runs until it is stopped.
    stream
        .publish((0..10).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let mut running = Running::spawn(our_binary(env!("CARGO_BIN_EXE_consumer")).args([
        "--stream",
        &stream.name,
        "--name",
        &unique("cli"),
    ]));
    running.wait_for_line("First message received", LIMIT);
    std::thread::sleep(Duration::from_millis(6500));
    running.signal("TERM");
    let out = running.finish(LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("progress: processed 10,") && l.contains("last processed")),
        "no progress line: {err}"
    );
    assert!(
        !err.contains('\x1b'),
        "escape codes off a terminal: {err:?}"
    );
}
