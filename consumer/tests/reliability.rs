//! Stops of every kind against a real broker: SIGTERM loses and repeats nothing; `kill -9` loses
//! nothing and repeats at most what was processed since the last store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use testkit::process::{kill_loop, named_consumer, stderr_of, Running};
use testkit::streams::{processed_offsets, unique, TestStream};
use testkit::summary::partition_of;

const LIMIT: Duration = Duration::from_secs(120);
const WAVE: u64 = 100_000;

fn consumer(stream: &str, name: &str) -> Command {
    let mut cmd = named_consumer(env!("CARGO_BIN_EXE_consumer"), stream, name);
    // One debug line per processed batch: what this run processed, for the checks below.
    cmd.env("RUST_LOG", "info,consumer::processed=debug");
    cmd
}

#[tokio::test]
async fn sigterm_mid_wave_then_restart_repeats_and_loses_nothing() {
    let stream = TestStream::new("r1").await;
    let name = unique("r1");
    stream.publish_wave(WAVE).await;
    let log: Vec<u64> = stream.offsets().await;

    let mut running = Running::spawn(&mut consumer(&stream.name, &name));
    running.wait_for_line("First message received", LIMIT);
    running.signal("TERM");
    let first = running.finish(LIMIT);
    assert!(
        first.status.success(),
        "SIGTERM must exit 0: {}",
        stderr_of(&first)
    );
    let first_seen = processed_offsets(&stderr_of(&first), &stream.name, &log);
    let first_last = *first_seen.last().unwrap();
    assert!(
        (first_seen.len() as u64) < WAVE,
        "the first run reached the marker before SIGTERM: nothing was tested"
    );
    assert_eq!(
        stream.stored_offset(&name).await,
        Some(first_last),
        "the flush stored the last processed offset"
    );

    let second = Running::spawn(&mut consumer(&stream.name, &name)).finish(LIMIT);
    assert!(second.status.success(), "{}", stderr_of(&second));
    let second_seen = processed_offsets(&stderr_of(&second), &stream.name, &log);
    assert!(
        first_seen.is_disjoint(&second_seen),
        "duplicates after SIGTERM"
    );
    assert_eq!(
        first_seen.len() + second_seen.len(),
        log.len(),
        "messages lost"
    );
    println!(
        "SIGTERM after {} messages; the restart processed {}; duplicates 0, lost 0",
        first_seen.len(),
        second_seen.len()
    );
}

#[tokio::test]
async fn kill_9_loop_loses_nothing_and_repeats_at_most_the_bound() {
    const KILLS: usize = 20;
    const STORE_EVERY: u64 = 1000;
    // The documented bound: messages processed since the last store, which the consumer keeps
    // within store_every_messages plus one delivery batch.
    const BOUND: usize = (STORE_EVERY + 512) as usize;

    let stream = TestStream::new("r2").await;
    let name = unique("r2");
    stream.publish_wave(WAVE).await;
    let log: Vec<u64> = stream.offsets().await;
    let outcome = kill_loop(
        || {
            let mut cmd = consumer(&stream.name, &name);
            cmd.env(
                "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES",
                STORE_EVERY.to_string(),
            )
            .env("OFFSET_TRACKING__TRACKER__STORE_EVERY", "0s");
            cmd
        },
        KILLS,
        // The first ~60 ms of consuming: a debug build does ~100 k msg/s.
        Duration::from_millis(60),
        LIMIT,
    );
    let kills = outcome.kills;
    let last_run = outcome.runs.last().unwrap();
    assert!(last_run.status.success(), "{}", stderr_of(last_run));
    assert!(
        partition_of(last_run, &stream.name).marker,
        "the last run did not reach the marker: {}",
        stderr_of(last_run)
    );
    let runs: Vec<BTreeSet<u64>> = outcome
        .runs
        .iter()
        .map(|out| processed_offsets(&stderr_of(out), &stream.name, &log))
        .collect();

    let all: BTreeSet<u64> = runs.iter().flatten().copied().collect();
    let lost = log.iter().filter(|o| !all.contains(o)).count();
    let total: usize = runs.iter().map(BTreeSet::len).sum();
    let duplicates = total - all.len();
    // What a crash repeated: the messages its run processed that a later run processed again.
    let worst = (0..runs.len())
        .map(|k| {
            let later: BTreeSet<u64> = runs[k + 1..].iter().flatten().copied().collect();
            runs[k].intersection(&later).count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "kill -9 survived: {kills}; messages {}; lost {lost}; duplicates {duplicates} (worst crash {worst}, bound {BOUND})",
        log.len()
    );
    assert!(
        kills >= KILLS,
        "only {kills} kills landed before the marker"
    );
    assert_eq!(lost, 0, "messages lost");
    assert!(
        worst <= BOUND,
        "a crash repeated {worst} messages, over the bound {BOUND}"
    );
    assert_eq!(stream.stored_offset(&name).await, log.last().copied());
}
