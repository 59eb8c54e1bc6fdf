//! `consumer offsets show|set` and `--replay`, checked by consuming afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use testkit::process::{our_binary, run_with_deadline, stderr_of, stdout_of};
use testkit::streams::{unique, TestStream};
use testkit::summary::partition_of;

const LIMIT: Duration = Duration::from_secs(60);

fn consumer(stream: &str, name: &str) -> Command {
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_consumer"));
    cmd.args(["--stream", stream, "--name", name]);
    cmd
}

/// (first offset, messages) of a successful run on `stream`, from its summary.
fn consumed(out: &Output, stream: &str) -> (u64, u64) {
    assert!(out.status.success(), "{}", stderr_of(out));
    let summary = partition_of(out, stream);
    let first = summary
        .first_offset
        .unwrap_or_else(|| panic!("nothing consumed: {}", stderr_of(out)));
    (first, summary.messages)
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
    assert!(show.status.success(), "{}", stderr_of(&show));
    let shown = stdout_of(&show);
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
    assert!(set.status.success(), "{}", stderr_of(&set));
    assert!(stdout_of(&set).contains(&format!("the next run starts at {}", log[49] + 1)));
    assert_eq!(stream.stored_offset(&name).await, Some(log[49]));

    let show = run_with_deadline(
        consumer(&stream.name, &name).args(["offsets", "show"]),
        LIMIT,
    );
    let shown = stdout_of(&show);
    assert!(
        shown.contains(&format!("stored offset:  {}", log[49])),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("lag:            {} offsets", log[99] - log[49])),
        "{shown}"
    );

    let run = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    assert_eq!(consumed(&run, &stream.name), (log[50], 50));

    // `--replay` ignores the stored offset (now the marker's) once.
    let replay = run_with_deadline(
        consumer(&stream.name, &name).args(["--replay", "--offset", "first"]),
        LIMIT,
    );
    assert_eq!(consumed(&replay, &stream.name), (log[0], 100));

    let last = run_with_deadline(
        consumer(&stream.name, &name).args(["offsets", "set", "--to", "last"]),
        LIMIT,
    );
    assert!(last.status.success(), "{}", stderr_of(&last));
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
    assert_eq!(past.status.code(), Some(2), "{}", stderr_of(&past));
    assert!(
        stderr_of(&past).contains("past the end"),
        "{}",
        stderr_of(&past)
    );
    assert_eq!(stream.stored_offset(&name).await, None);

    let missing = unique("o2-missing");
    let unknown = run_with_deadline(consumer(&missing, &name).args(["offsets", "show"]), LIMIT);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr_of(&unknown).contains("does not exist"));

    let garbage = run_with_deadline(
        consumer(&stream.name, &name).args(["offsets", "set", "--to", "soon"]),
        LIMIT,
    );
    assert_eq!(garbage.status.code(), Some(2));
    assert_eq!(stream.stored_offset(&name).await, None);
}

/// With `tracker.store = "sqlite"` the consumer resumes from SQLite: `offsets set` sets that (and
/// the broker's), `offsets show` reads it, and the next run starts right after it.
#[tokio::test]
async fn with_the_sqlite_store_set_and_show_act_on_the_offset_the_consumer_resumes_from() {
    let stream = TestStream::new("o-sqlite").await;
    let name = unique("o-sqlite");
    stream.publish_wave(100).await;
    let log: Vec<u64> = stream.offsets().await;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("offsets.sqlite");
    let with_sqlite = |cmd: &mut Command| {
        cmd.env("OFFSET_TRACKING__TRACKER__STORE", "sqlite")
            .env("OFFSET_TRACKING__TRACKER__SQLITE_PATH", &database);
    };

    // A first run stores the marker's offset in SQLite.
    let mut first = consumer(&stream.name, &name);
    with_sqlite(&mut first);
    let (_, messages) = consumed(&run_with_deadline(&mut first, LIMIT), &stream.name);
    assert_eq!(messages, 100);

    let target = log[59];
    let mut set = consumer(&stream.name, &name);
    with_sqlite(set.args(["offsets", "set", "--to", &target.to_string()]));
    let set = run_with_deadline(&mut set, LIMIT);
    assert!(set.status.success(), "{}", stderr_of(&set));
    assert!(stdout_of(&set).contains("in SQLite"), "{}", stdout_of(&set));

    let mut show = consumer(&stream.name, &name);
    with_sqlite(show.args(["offsets", "show"]));
    let show = stdout_of(&run_with_deadline(&mut show, LIMIT));
    assert!(
        show.contains(&format!("stored offset:  {target} ")),
        "{show}"
    );

    let mut again = consumer(&stream.name, &name);
    with_sqlite(&mut again);
    let (first_offset, messages) = consumed(&run_with_deadline(&mut again, LIMIT), &stream.name);
    assert_eq!(
        first_offset, log[60],
        "resumes right after the offset set in SQLite"
    );
    assert_eq!(messages, 40);
}
