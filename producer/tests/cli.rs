//! The producer's command line: `--help` documents every flag; flags set the wave.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::process::{our_binary, run_with_deadline};
use testkit::streams::TestStream;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn help_names_every_flag() {
    let out = run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_producer")).arg("--help"),
        LIMIT,
    );
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for text in [
        "--config",
        "--stream",
        "--host",
        "--port",
        "--count",
        "--name",
        "producer.message_count",
        "Exit codes: 0",
    ] {
        assert!(help.contains(text), "{text} missing from:\n{help}");
    }
}

#[tokio::test]
async fn count_and_stream_flags_set_the_wave() {
    let stream = TestStream::new("pc").await;
    let out = run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_producer"))
            .env("OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT", "100")
            .args(["--stream", &stream.name, "--count", "7"]),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Publishing 7 messages\nMessages confirmed: True\n"
    );
    assert_eq!(stream.read_all().await.len(), 7);
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable_and_a_bad_flag_the_flag() {
    let from_env = run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_producer"))
            .env("OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT", "lots"),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&from_env.stderr);
    assert_eq!(from_env.status.code(), Some(2), "{err}");
    assert!(
        err.contains("OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT=lots: invalid value"),
        "{err}"
    );
    let from_flag = run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_producer")).args(["--count", "lots"]),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&from_flag.stderr);
    assert_eq!(from_flag.status.code(), Some(2), "{err}");
    assert!(err.contains("'--count <N>'"), "{err}");
    assert!(!err.contains("OFFSET_TRACKING__"), "{err}");
}
