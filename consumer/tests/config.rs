//! `consumer config`: the effective configuration with each value's origin (flag, environment
//! variable, file:line, built-in default) and the password masked; `config --check`: the probe,
//! ok against the real broker, FAIL with a hint for a wrong port and for wrong credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::Duration;

use testkit::process::{our_binary, run_with_deadline, stdout_of};
use testkit::streams::{unique, TestStream};

const LIMIT: Duration = Duration::from_secs(60);

fn consumer(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_consumer"))
            .args(args)
            .envs(env.iter().copied()),
        LIMIT,
    )
}

/// The listing's line for `key`.
fn line_of<'a>(listing: &'a str, key: &str) -> &'a str {
    listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no line for {key}: {listing}"))
}

#[test]
fn config_names_where_each_value_came_from_and_masks_the_password() {
    let dir = std::env::temp_dir().join(unique("config-show"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("settings.toml");
    std::fs::write(
        &file,
        "# the test's file\n[tracker]\nstore_every = \"2s\"\n\n[broker]\npassword = \"file-secret-42\"\n",
    )
    .unwrap();
    let file_arg = file.display().to_string();
    let out = consumer(
        &["--config", &file_arg, "--name", "from-a-flag", "config"],
        &[
            ("OFFSET_TRACKING__BROKER__HEARTBEAT", "7s"),
            ("OFFSET_TRACKING__BROKER__PASSWORD", "env-secret-43"),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let listing = stdout_of(&out);
    assert!(out.status.success(), "{listing}{:?}", out.stderr);
    assert!(
        line_of(&listing, "consumer.name").contains("\"from-a-flag\"")
            && line_of(&listing, "consumer.name").ends_with("--name from-a-flag"),
        "{listing}"
    );
    assert!(
        line_of(&listing, "broker.heartbeat").ends_with("OFFSET_TRACKING__BROKER__HEARTBEAT=7s"),
        "{listing}"
    );
    assert!(
        line_of(&listing, "tracker.store_every").ends_with(&format!("{file_arg}:3")),
        "{listing}"
    );
    assert!(
        line_of(&listing, "tracker.store_every_messages").ends_with("built-in default"),
        "{listing}"
    );
    // The environment beats the file, and neither value is ever shown.
    let password = line_of(&listing, "broker.password");
    assert!(password.contains("***"), "{password}");
    assert!(
        password.ends_with("OFFSET_TRACKING__BROKER__PASSWORD=***"),
        "{password}"
    );
    assert!(
        !listing.contains("secret-4"),
        "a password is shown: {listing}"
    );
    // The consumer's sections only.
    assert!(!listing.contains("producer.batch_size"), "{listing}");
}

#[tokio::test]
async fn the_probe_is_ok_against_the_local_broker() {
    let stream = TestStream::new("config-probe").await;
    let out = consumer(&["--stream", &stream.name, "config", "--check"], &[]);
    let shown = stdout_of(&out);
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "TCP",
        "stream protocol",
        "credentials",
        "virtual host",
        "stream",
        "stored offset",
        "management API",
    ] {
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("ok") && l[2..].trim_start().starts_with(step)),
            "no ok line for {step}: {shown}"
        );
    }
    assert!(!shown.contains("FAIL"), "{shown}");
}

/// With `tracker.store = "sqlite"` the next run resumes from the database, so the probe reads the
/// offset there (the broker holds none here), and fails for a database of another consumer.
#[tokio::test]
async fn with_the_sqlite_store_the_probe_reads_the_offset_the_next_run_resumes_from() {
    let stream = TestStream::new("config-sqlite").await;
    let name = unique("config-sqlite");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.sqlite");
    let path_arg = path.display().to_string();
    let probe = |consumer_name: &str| {
        consumer(
            &[
                "--stream",
                &stream.name,
                "--name",
                consumer_name,
                "config",
                "--check",
            ],
            &[
                ("OFFSET_TRACKING__TRACKER__STORE", "sqlite"),
                ("OFFSET_TRACKING__TRACKER__SQLITE_PATH", &path_arg),
            ],
        )
    };
    let stored_line = |out: &Output| {
        let shown = stdout_of(out);
        shown
            .lines()
            .find(|l| {
                l.get(4..)
                    .unwrap_or("")
                    .trim_start()
                    .starts_with("stored offset")
            })
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no stored offset line: {shown}"))
    };

    let before = probe(&name);
    assert!(before.status.success(), "{}", stdout_of(&before));
    let line = stored_line(&before);
    assert!(
        line.starts_with("ok") && line.contains("no database at") && line.contains(&path_arg),
        "{line}"
    );
    assert!(!path.exists(), "the probe created the database");

    tracker::Database::open(&path, &stream.name, &name)
        .unwrap()
        .store_offset(3)
        .unwrap();
    let stored = probe(&name);
    assert!(stored.status.success(), "{}", stdout_of(&stored));
    let line = stored_line(&stored);
    assert!(
        line.starts_with("ok") && line.contains("stored 3 in") && line.contains("starts at 4"),
        "{line}"
    );

    let stranger = probe(&unique("config-stranger"));
    assert_eq!(stranger.status.code(), Some(1), "{}", stdout_of(&stranger));
    let line = stored_line(&stranger);
    assert!(
        line.starts_with("FAIL") && line.contains(&format!("belongs to consumer '{name}'")),
        "{line}"
    );
}

#[test]
fn the_probe_explains_a_wrong_port() {
    // A port nothing listens on: taken, then given back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = consumer(
        &["--host", "127.0.0.1", "--port", &port, "config", "--check"],
        &[],
    );
    let shown = stdout_of(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let tcp = shown
        .lines()
        .position(|l| l.starts_with("FAIL") && l.contains("TCP"))
        .unwrap_or_else(|| panic!("no FAIL for TCP: {shown}"));
    let hint = shown.lines().nth(tcp + 1).unwrap_or_default();
    assert!(
        hint.contains("hint:") && hint.contains("--port") && hint.contains(&port),
        "{hint}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("--") && l.contains("credentials")),
        "later steps are not checked: {shown}"
    );
}

#[test]
fn the_probe_explains_wrong_credentials_without_showing_them() {
    let out = consumer(
        &["config", "--check"],
        &[("OFFSET_TRACKING__BROKER__PASSWORD", "not-the-pw-123")],
    );
    let shown = stdout_of(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("TCP")),
        "{shown}"
    );
    let refused = shown
        .lines()
        .position(|l| l.starts_with("FAIL") && l.contains("credentials"))
        .unwrap_or_else(|| panic!("no FAIL for the credentials: {shown}"));
    let hint = shown.lines().nth(refused + 1).unwrap_or_default();
    assert!(
        hint.contains("hint:") && hint.contains("broker.password"),
        "{hint}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !shown.contains("not-the-pw-123") && !err.contains("not-the-pw-123"),
        "the password is shown: {shown}{err}"
    );
}
