//! Offsets in the application's own SQLite database, against a real broker: with the SQLite sink
//! a kill loop writes every message exactly once; stores are switched cleanly; bad databases are
//! clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::process::{kill_loop, named_consumer, run_with_deadline, stderr_of};
use testkit::streams::{unique, TestStream};
use testkit::summary::partition_of;

const LIMIT: Duration = Duration::from_secs(120);

fn sqlite_consumer(stream: &str, name: &str, path: &Path, sink: bool) -> Command {
    let mut cmd = named_consumer(env!("CARGO_BIN_EXE_consumer"), stream, name);
    cmd.env("OFFSET_TRACKING__TRACKER__STORE", "sqlite")
        .env("OFFSET_TRACKING__TRACKER__SQLITE_PATH", path);
    if sink {
        cmd.env("OFFSET_TRACKING__CONSUMER__SINK", "sqlite");
    }
    cmd
}

/// (rows in `messages`, distinct offsets in it, the stored offset).
fn tally(path: &Path, stream: &str) -> (u64, u64, Option<u64>) {
    let db = rusqlite::Connection::open(path).unwrap();
    let (rows, distinct): (i64, i64) = db
        .query_row(
            "SELECT count(*), count(DISTINCT offset) FROM messages WHERE stream = ?1",
            [stream],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let stored: Option<i64> = db
        .query_row(
            "SELECT offset FROM offsets WHERE stream = ?1",
            [stream],
            |r| r.get(0),
        )
        .ok();
    (rows as u64, distinct as u64, stored.map(|o| o as u64))
}

#[tokio::test]
async fn kill_9_loop_with_the_sqlite_sink_writes_every_message_exactly_once() {
    // 20 runs killed within their first 40 ms read up to ~6 000 messages each in a debug build:
    // 300 000 keeps every kill before the marker (100 000 let 18 of 20 land in one CI run).
    const WAVE: u64 = 300_000;
    let stream = TestStream::new("s1").await;
    let name = unique("s1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.sqlite");
    stream.publish_wave(WAVE).await;
    let log = stream.offsets().await;

    let outcome = kill_loop(
        || {
            let mut cmd = sqlite_consumer(&stream.name, &name, &path, true);
            cmd.env("OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES", "1000");
            cmd
        },
        20,
        Duration::from_millis(40),
        LIMIT,
    );
    let last = outcome.runs.last().unwrap();
    assert!(last.status.success(), "{}", stderr_of(last));
    assert!(
        partition_of(last, &stream.name).marker,
        "the last run did not reach the marker: {}",
        stderr_of(last)
    );
    let (rows, distinct, stored) = tally(&path, &stream.name);
    println!(
        "SQLite sink, kill -9 survived: {}; rows {rows}, distinct offsets {distinct}, wave {WAVE}, duplicates {}",
        outcome.kills,
        rows - distinct
    );
    assert!(
        outcome.kills >= 20,
        "only {} kills landed before the marker",
        outcome.kills
    );
    assert_eq!((rows, distinct), (WAVE, WAVE), "every message exactly once");
    assert_eq!(
        stored,
        log.last().copied(),
        "the SQLite offset is the marker's"
    );
    // The broker's offset is kept up to date too, for admin tools.
    assert_eq!(stream.stored_offset(&name).await, log.last().copied());
}

#[tokio::test]
async fn switching_from_the_broker_store_to_an_empty_database_starts_at_the_configured_offset() {
    let stream = TestStream::new("s2").await;
    let name = unique("s2");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.sqlite");
    stream.publish_wave(100).await;
    stream.publish_wave(100).await;
    let log = stream.offsets().await;
    // With the broker store: the first wave.
    let broker_run = run_with_deadline(
        &mut named_consumer(env!("CARGO_BIN_EXE_consumer"), &stream.name, &name),
        LIMIT,
    );
    assert!(broker_run.status.success());
    assert_eq!(stream.stored_offset(&name).await, Some(log[99]));
    // Then SQLite, empty: the broker's offset is not read; `offset = 42` applies.
    let sqlite_run = run_with_deadline(
        sqlite_consumer(&stream.name, &name, &path, false)
            .env("OFFSET_TRACKING__CONSUMER__OFFSET", "42"),
        LIMIT,
    );
    assert!(sqlite_run.status.success(), "{}", stderr_of(&sqlite_run));
    assert_eq!(
        partition_of(&sqlite_run, &stream.name).first_offset,
        Some(42)
    );
    assert_eq!(
        tally(&path, &stream.name).2,
        Some(log[99]),
        "stored in SQLite at the marker"
    );
    // And the next SQLite run resumes from SQLite: the second wave.
    let next = run_with_deadline(
        &mut sqlite_consumer(&stream.name, &name, &path, false),
        LIMIT,
    );
    assert!(next.status.success(), "{}", stderr_of(&next));
    assert_eq!(
        partition_of(&next, &stream.name).first_offset,
        Some(log[100])
    );
}

#[tokio::test]
async fn bad_databases_are_clear_errors_that_store_nothing() {
    let stream = TestStream::new("s3").await;
    let name = unique("s3");
    stream.publish_wave(10).await;
    let dir = tempfile::tempdir().unwrap();
    let not_a_db = dir.path().join("notes.txt");
    std::fs::write(
        &not_a_db,
        "not a database, just text that is long enough to have a header",
    )
    .unwrap();
    let other = dir.path().join("other.sqlite");
    tracker::Database::open(&other, "another-stream", &name).unwrap();
    let cases = [
        (dir.path().to_path_buf(), "cannot open"),
        (not_a_db, "not a database"),
        (other, "belongs to consumer"),
    ];
    for (path, expected) in cases {
        let out = run_with_deadline(
            &mut sqlite_consumer(&stream.name, &name, &path, true),
            LIMIT,
        );
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", path.display());
        assert!(
            err.contains(expected) && err.contains("tracker.sqlite_path"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(stream.stored_offset(&name).await, None, "nothing stored");
}

#[tokio::test]
async fn a_locked_database_fails_the_run_clearly_and_keeps_nothing_half_written() {
    let stream = TestStream::new("s4").await;
    let name = unique("s4");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.sqlite");
    tracker::Database::open(&path, &stream.name, &name).unwrap();
    stream.publish_wave(100).await;
    // Another process (here: this test) holds the write lock for longer than the 5 s busy wait.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = run_with_deadline(
        &mut sqlite_consumer(&stream.name, &name, &path, true),
        LIMIT,
    );
    holder.execute_batch("ROLLBACK").unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("locked") && err.contains("SQLite"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        tally(&path, &stream.name),
        (0, 0, None),
        "nothing half-written"
    );
}
