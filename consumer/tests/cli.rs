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

/// Runs the consumer with `args`, `env` and, if given, a config file of `toml`; expects exit 2
/// and returns stderr and the file's path.
fn config_error(args: &[&str], env: &[(&str, &str)], toml: Option<&str>) -> (String, String) {
    let dir = std::env::temp_dir().join(unique("cli-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("settings.toml");
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_consumer"));
    if let Some(toml) = toml {
        std::fs::write(&file, toml).unwrap();
        cmd.arg("--config").arg(&file);
    }
    cmd.args(args).envs(env.iter().copied());
    let out = run_with_deadline(&mut cmd, LIMIT);
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
    (err, file.display().to_string())
}

#[test]
fn configuration_errors_name_the_flag_variable_or_file_line_they_came_from() {
    let duration = "tracker.store_every: expected a duration such as \"250ms\", \"5s\" or \"1h 30m\", found string \"5\"";
    // A flag: the flag, not a file (there is none) nor the variable behind the flag.
    let (err, _) = config_error(&["--store-every", "5"], &[], None);
    assert!(
        err.contains(&format!("configuration error: --store-every 5: {duration}")),
        "{err}"
    );
    assert!(
        !err.contains("config.toml") && !err.contains("OFFSET_TRACKING__"),
        "{err}"
    );
    // The variable behind that flag: the variable, not the flag.
    let (err, _) = config_error(&[], &[("OFFSET_TRACKING__TRACKER__STORE_EVERY", "5")], None);
    assert!(
        err.contains(&format!(
            "configuration error: OFFSET_TRACKING__TRACKER__STORE_EVERY=5: {duration}"
        )),
        "{err}"
    );
    assert!(
        !err.contains("--store-every") && !err.contains("config.toml"),
        "{err}"
    );
    // A bad value in the file: the file and the line, once.
    let (err, file) = config_error(
        &[],
        &[],
        Some("[tracker]\nstore_every_messages = 10\nstore_every = \"5\"\n"),
    );
    assert!(
        err.contains(&format!("configuration error: {file}:3: {duration}")),
        "{err}"
    );
    assert_eq!(err.matches(&file).count(), 1, "{err}");
    // An unknown key from the environment, with no file at all.
    let (err, _) = config_error(&[], &[("OFFSET_TRACKING__BROKER__PORTT", "5552")], None);
    assert!(
        err.contains(
            "configuration error: OFFSET_TRACKING__BROKER__PORTT=5552: unknown key \
             `broker.portt`: [broker] has `host`, `port`"
        ),
        "{err}"
    );
    assert!(!err.contains("config.toml"), "{err}");
    // An unknown key in the file.
    let (err, file) = config_error(&[], &[], Some("[consumer]\nname = \"c\"\nofset = 3\n"));
    assert!(
        err.contains(&format!(
            "configuration error: {file}:3: unknown key `consumer.ofset`: [consumer] has `name`, `offset`"
        )),
        "{err}"
    );
    // An unknown name lists the allowed ones, in our words.
    let (err, _) = config_error(&[], &[("OFFSET_TRACKING__TRACKER__STORE", "redis")], None);
    assert!(
        err.contains(
            "configuration error: OFFSET_TRACKING__TRACKER__STORE=redis: tracker.store: unknown \
             value `redis`: use `broker` or `sqlite`"
        ),
        "{err}"
    );
    assert!(!err.contains("enum") && !err.contains("variant"), "{err}");
    // RabbitMQ's AMQP port, from a flag (subcommands too) and from the file.
    let amqp = "broker.port: 5672 is RabbitMQ's AMQP port; streams listen on 5552";
    for args in [
        &["--port", "5672"][..],
        &["offsets", "show", "--port", "5672"],
    ] {
        let (err, _) = config_error(args, &[], None);
        assert!(
            err.contains(&format!("configuration error: --port 5672: {amqp}")),
            "{args:?}: {err}"
        );
    }
    let (err, file) = config_error(&[], &[], Some("[broker]\nport = 5672\n"));
    assert!(
        err.contains(&format!("configuration error: {file}:2: {amqp}")),
        "{err}"
    );
}
