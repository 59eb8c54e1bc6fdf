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

/// Runs the producer with `args` and `env`; expects exit 2 and returns stderr.
fn config_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_producer"))
            .args(args)
            .envs(env.iter().copied()),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
    err
}

#[test]
fn configuration_errors_name_the_flag_or_variable_they_came_from() {
    let err = config_error(&["--count", "0"], &[]);
    assert!(
        err.contains("configuration error: --count 0: producer.message_count: must be at least 1"),
        "{err}"
    );
    let err = config_error(&[], &[("OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT", "0")]);
    assert!(
        err.contains(
            "configuration error: OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT=0: \
             producer.message_count: must be at least 1"
        ),
        "{err}"
    );
    assert!(!err.contains("--count"), "{err}");
    let err = config_error(&[], &[("OFFSET_TRACKING__PRODUCER__MESSAGE_COUNTT", "7")]);
    assert!(
        err.contains(
            "configuration error: OFFSET_TRACKING__PRODUCER__MESSAGE_COUNTT=7: unknown key \
             `producer.message_countt`: [producer] has `message_count`"
        ),
        "{err}"
    );
    assert!(!err.contains("config.toml"), "{err}");
    let err = config_error(&["--port", "5672"], &[]);
    assert!(
        err.contains(
            "configuration error: --port 5672: broker.port: 5672 is RabbitMQ's AMQP port; \
             streams listen on 5552"
        ),
        "{err}"
    );
    let err = config_error(&[], &[("OFFSET_TRACKING__BROKER__HOSTS", "localhost:5672")]);
    assert!(
        err.contains(
            "configuration error: OFFSET_TRACKING__BROKER__HOSTS=localhost:5672: \
             broker.hosts[0]: 'localhost:5672': 5672 is RabbitMQ's AMQP port"
        ),
        "{err}"
    );
}
