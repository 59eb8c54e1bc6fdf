//! `consumer offsets show|set` and `--replay`, checked by consuming afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use shared::testing::{our_binary, run_with_deadline, summary_field, unique, TestStream};

const LIMIT: Duration = Duration::from_secs(60);

fn consumer(stream: &str, name: &str) -> Command {
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_consumer"));
    cmd.args(["--stream", stream, "--name", name]);
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn first_offset(out: &Output) -> u64 {
    assert!(out.status.success(), "{}", text(&out.stderr));
    summary_field(&text(&out.stderr), "first_offset")
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn set_then_consume_starts_right_after_and_show_reports_it() {
    let stream = TestStream::new("o1").await;
    let name = unique("o1");
    stream.publish_wave(100).await;
    let log: Vec<u64> = stream.offsets().await;

    let show = run_with_deadline(
        consumer(&stream.name, &name).args(["offsets", "show"]),
        LIMIT,
    );
    assert!(show.status.success(), "{}", text(&show.stderr));
    let shown = text(&show.stdout);
    assert!(shown.contains("stored offset:  none"), "{shown}");
    assert!(
        shown.contains(&format!("last offset:    {}", log[99])),
        "{shown}"
    );

    let to = log[49].to_string();
    let set = run_with_deadline(
        consumer(&stream.name, &name).args(["offsets", "set", "--to", &to]),
        LIMIT,
    );
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(text(&set.stdout).contains(&format!("the next run starts at {}", log[49] + 1)));
    assert_eq!(stream.stored_offset(&name).await, Some(log[49]));

    let show = run_with_deadline(
        consumer(&stream.name, &name).args(["offsets", "show"]),
        LIMIT,
    );
    let shown = text(&show.stdout);
    assert!(
        shown.contains(&format!("stored offset:  {}", log[49])),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("lag:            {} offsets", log[99] - log[49])),
        "{shown}"
    );

    let run = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    assert_eq!(first_offset(&run), log[50]);
    assert_eq!(
        summary_field(&text(&run.stderr), "messages").as_deref(),
        Some("50")
    );

    // `--replay` ignores the stored offset (now the marker's) once.
    let replay = run_with_deadline(
        consumer(&stream.name, &name).args(["--replay", "--offset", "first"]),
        LIMIT,
    );
    assert_eq!(first_offset(&replay), log[0]);
    assert_eq!(
        summary_field(&text(&replay.stderr), "messages").as_deref(),
        Some("100")
    );

    let last = run_with_deadline(
        consumer(&stream.name, &name).args(["offsets", "set", "--to", "last"]),
        LIMIT,
    );
    assert!(last.status.success(), "{}", text(&last.stderr));
    assert_eq!(stream.stored_offset(&name).await, Some(log[99]));
}

#[tokio::test]
async fn bad_targets_and_unknown_streams_exit_2_and_store_nothing() {
    let stream = TestStream::new("o2").await;
    let name = unique("o2");
    stream.publish_wave(10).await;
    let past = run_with_deadline(
        consumer(&stream.name, &name).args(["offsets", "set", "--to", "1000000"]),
        LIMIT,
    );
    assert_eq!(past.status.code(), Some(2), "{}", text(&past.stderr));
    assert!(
        text(&past.stderr).contains("past the end"),
        "{}",
        text(&past.stderr)
    );
    assert_eq!(stream.stored_offset(&name).await, None);

    let missing = unique("o2-missing");
    let unknown = run_with_deadline(consumer(&missing, &name).args(["offsets", "show"]), LIMIT);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("does not exist"));

    let garbage = run_with_deadline(
        consumer(&stream.name, &name).args(["offsets", "set", "--to", "soon"]),
        LIMIT,
    );
    assert_eq!(garbage.status.code(), Some(2));
    assert_eq!(stream.stored_offset(&name).await, None);
}
