//! Precedence, for one key of each section: flag > `OFFSET_TRACKING__<SECTION>__<KEY>` > file >
//! built-in default.
//! (Its own test binary: it changes the process environment.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Duration;

use shared::config::{KeySource, Ordering};
use shared::{OffsetSpec, Settings};

/// The environment is one per process: the tests here take turns.
static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_environment_overrides_the_file() {
    let _turn = ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(
        b"[broker]\nport = 1111\n[stream]\nname = \"from-file\"\n[producer]\nmessage_count = 5\n\
          [consumer]\noffset = \"last\"\n[tracker]\nstore_every_messages = 3\n",
    )
    .unwrap();
    let overrides = [
        ("OFFSET_TRACKING__BROKER__PORT", "2222"),
        ("OFFSET_TRACKING__STREAM__NAME", "from-env"),
        ("OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT", "6"),
        (
            "OFFSET_TRACKING__CONSUMER__OFFSET",
            "timestamp:1970-01-01T00:00:02Z",
        ),
        ("OFFSET_TRACKING__TRACKER__STORE_EVERY", "2s"),
        (
            "OFFSET_TRACKING__BROKER__HOSTS",
            "localhost:5561,localhost:5562",
        ),
        ("OFFSET_TRACKING__STREAM__PARTITIONS", "3"),
    ];
    for (key, value) in overrides {
        std::env::set_var(key, value);
    }
    let _unset = Unset(overrides.iter().map(|(key, _)| *key).collect());
    let s = Settings::load(Some(file.path())).unwrap();
    assert_eq!(s.broker.port, 2222);
    assert_eq!(s.stream.name, "from-env");
    assert_eq!(s.producer.message_count, 6);
    assert_eq!(s.consumer.offset, OffsetSpec::Timestamp(2000));
    assert_eq!(s.tracker.store_every, Duration::from_secs(2));
    // A list, comma-separated.
    assert_eq!(s.broker.hosts, ["localhost:5561", "localhost:5562"]);
    assert_eq!(s.stream.partitions, 3);
    // Keys the environment does not name come from the file.
    assert_eq!(s.tracker.store_every_messages, 3);

    // A flag (an override) beats the environment, for one key of each section.
    let flags = [
        ("broker.port", "3333".to_string()),
        ("stream.name", "from-flag".to_string()),
        ("producer.message_count", "7".to_string()),
        ("consumer.offset", "next".to_string()),
        ("tracker.store_every", "3s".to_string()),
    ];
    let s = Settings::load_with(Some(file.path()), &flags).unwrap();
    assert_eq!(s.broker.port, 3333);
    assert_eq!(s.stream.name, "from-flag");
    assert_eq!(s.producer.message_count, 7);
    assert_eq!(s.consumer.offset, OffsetSpec::Next);
    assert_eq!(s.tracker.store_every, Duration::from_secs(3));
    // Without file, environment or flag: the built-in default.
    assert_eq!(s.broker.host, "localhost");
}

#[test]
fn environment_values_are_taken_verbatim() {
    let _turn = ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Secrets and names are strings: a leading zero, a case or a decimal point must survive.
    let values = [
        ("OFFSET_TRACKING__BROKER__PASSWORD", "0123"),
        ("OFFSET_TRACKING__BROKER__USERNAME", "TRUE"),
        ("OFFSET_TRACKING__BROKER__VIRTUAL_HOST", "1.50"),
        ("OFFSET_TRACKING__CONSUMER__NAME", "007"),
        ("OFFSET_TRACKING__CONSUMER__SINGLE_ACTIVE", "TRUE"),
    ];
    for (key, value) in values {
        std::env::set_var(key, value);
    }
    let loaded = Settings::load(None);
    for (key, _) in values {
        std::env::remove_var(key);
    }
    let s = loaded.unwrap();
    assert_eq!(s.broker.password.expose(), "0123");
    assert_eq!(s.broker.username, "TRUE");
    assert_eq!(s.broker.virtual_host, "1.50");
    assert_eq!(s.consumer.name, "007");
    // Typed keys still read their own strings.
    assert!(s.consumer.single_active);
}

#[test]
fn the_environment_sets_the_processing_section() {
    let _turn = ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(b"[processing]\nmax_in_flight = 2\ndrain_timeout = \"1s\"\n")
        .unwrap();
    let values = [
        ("OFFSET_TRACKING__PROCESSING__MAX_IN_FLIGHT", "16"),
        ("OFFSET_TRACKING__PROCESSING__ORDERING", "key"),
        ("OFFSET_TRACKING__PROCESSING__KEY", "property:customer"),
        ("OFFSET_TRACKING__PROCESSING__DRAIN_TIMEOUT", "5s"),
    ];
    for (key, value) in values {
        std::env::set_var(key, value);
    }
    let from_env = Settings::load(Some(file.path()));
    let flags = [("processing.max_in_flight", "32".to_string())];
    let from_flag = Settings::load_with(Some(file.path()), &flags);
    for (key, _) in values {
        std::env::remove_var(key);
    }
    let p = from_env.unwrap().processing;
    assert_eq!(p.max_in_flight, 16);
    assert_eq!(p.ordering, Ordering::Key);
    assert_eq!(p.key, Some(KeySource::Property("customer".into())));
    assert_eq!(p.drain_timeout, Duration::from_secs(5));
    // A flag beats the environment.
    assert_eq!(from_flag.unwrap().processing.max_in_flight, 32);
}

/// Removes these variables when dropped: a test's environment must not leak into the next.
struct Unset(Vec<&'static str>);

impl Drop for Unset {
    fn drop(&mut self) {
        for key in &self.0 {
            std::env::remove_var(key);
        }
    }
}

/// Loads with `vars` set (and nothing else of ours), then removes them.
fn load_with_env(
    vars: &[(&str, &str)],
    file: Option<&std::path::Path>,
) -> shared::Result<Settings> {
    for (key, value) in vars {
        std::env::set_var(key, value);
    }
    let loaded = Settings::load(file);
    for (key, _) in vars {
        std::env::remove_var(key);
    }
    loaded
}

#[test]
fn errors_from_the_environment_name_the_variable_not_a_file() {
    let _turn = ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(b"[broker]\nport = 5552\n").unwrap();
    let path = file.path().display().to_string();
    for (var, value, expected) in [
        (
            "OFFSET_TRACKING__BROKER__PORTT",
            "1",
            "configuration error: OFFSET_TRACKING__BROKER__PORTT=1: unknown key `broker.portt`: \
             [broker] has `host`, `port`",
        ),
        (
            "OFFSET_TRACKING__BROKR__HOST",
            "x",
            "configuration error: OFFSET_TRACKING__BROKR__HOST=x: unknown key `brokr`: the \
             sections are `broker`",
        ),
        (
            "OFFSET_TRACKING__TRACKER__STORE",
            "redis",
            "configuration error: OFFSET_TRACKING__TRACKER__STORE=redis: tracker.store: unknown \
             value `redis`: use `broker` or `sqlite`",
        ),
        (
            "OFFSET_TRACKING__TRACKER__STORE_EVERY",
            "5",
            "configuration error: OFFSET_TRACKING__TRACKER__STORE_EVERY=5: tracker.store_every: \
             expected a duration",
        ),
        (
            "OFFSET_TRACKING__BROKER__PORT",
            "5672",
            "configuration error: OFFSET_TRACKING__BROKER__PORT=5672: broker.port: 5672 is \
             RabbitMQ's AMQP port; streams listen on 5552",
        ),
        (
            "OFFSET_TRACKING__BROKER__HOSTS",
            "a:5552,b:5672",
            "configuration error: OFFSET_TRACKING__BROKER__HOSTS=a:5552,b:5672: broker.hosts[1]: \
             'b:5672': 5672 is RabbitMQ's AMQP port",
        ),
    ] {
        for file in [None, Some(file.path())] {
            let err = load_with_env(&[(var, value)], file).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{var}={value}: {err}");
            let err = err.to_string();
            assert!(err.starts_with(expected), "{var}={value} gave {err:?}");
            assert!(
                !err.contains("config.toml") && !err.contains(&path),
                "{err}"
            );
        }
    }
    // A password is never shown, even in an error about it.
    let err = load_with_env(
        &[
            ("OFFSET_TRACKING__BROKER__PASSWORD", "hunter2"),
            ("OFFSET_TRACKING__BROKER__PASSWORDD", "hunter2"),
        ],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains("hunter2"), "{err}");
}
