//! `producer config`: the producer's sections with each value's origin; `config --check` against
//! the real broker is ok for a stream that does not exist yet (the producer creates it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::process::{our_binary, run_with_deadline, stdout_of};
use testkit::streams::unique;

#[test]
fn config_check_passes_before_the_stream_exists_and_lists_the_producers_keys() {
    let stream = unique("config-producer");
    let out = run_with_deadline(
        our_binary(env!("CARGO_BIN_EXE_producer"))
            .args(["--stream", &stream, "--count", "5", "config", "--check"]),
        Duration::from_secs(60),
    );
    let shown = stdout_of(&out);
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no line for {key}: {shown}"))
            .to_owned()
    };
    assert!(
        line("producer.message_count").ends_with("--count 5"),
        "{shown}"
    );
    assert!(
        line("stream.name").ends_with(&format!("--stream {stream}")),
        "{shown}"
    );
    assert!(line("broker.port").ends_with("built-in default"), "{shown}");
    assert!(!shown.contains("tracker.store_every"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("does not exist yet")),
        "{shown}"
    );
    assert!(!shown.contains("FAIL"), "{shown}");
}
