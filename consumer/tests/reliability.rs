//! Stops of every kind against a real broker: SIGTERM loses and repeats nothing; `kill -9` loses
//! nothing and repeats at most what was processed since the last store; a consumer whose
//! connections were all cut (a proxy in between died for a few seconds) recovers and then stops
//! as cleanly as one that never lost them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use testkit::process::{kill_loop, named_consumer, stderr_of, Running};
use testkit::proxy::StoreCountingProxy;
use testkit::streams::{processed_offsets, unique, TestStream};
use testkit::summary::partition_of;

const LIMIT: Duration = Duration::from_secs(120);
const WAVE: u64 = 100_000;

/// The kill -9 loop's wave: 20 runs killed within their first 30 ms read at most ~10 000 messages
/// each in a debug build, so 300 000 keeps every kill before the marker however fast a run is.
const KILL_WAVE: u64 = 300_000;

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
    stream.publish_wave(KILL_WAVE).await;
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
        // The first ~30 ms of consuming: a debug build reads a few hundred thousand messages a
        // second on its own delivery path, so 20 kills must land early in each run to fall before
        // the marker.
        Duration::from_millis(30),
        LIMIT,
    );
    let kills = outcome.kills;
    assert!(
        kills >= KILLS,
        "only {kills} kills landed before the marker"
    );
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
    assert_eq!(lost, 0, "messages lost");
    assert!(
        worst <= BOUND,
        "a crash repeated {worst} messages, over the bound {BOUND}"
    );
    assert_eq!(stream.stored_offset(&name).await, log.last().copied());
}

#[tokio::test]
async fn a_consumer_recovered_from_a_cut_connection_stops_cleanly_and_loses_nothing() {
    const FIRST: u64 = 20_000;
    const SECOND: u64 = 50_000;
    const CUT: Duration = Duration::from_secs(3);
    // Every connection of the consumer (queries, subscription, the tracker's stores) goes through
    // the proxy: in load-balancer mode the configured node is the only one it uses.
    let proxy = StoreCountingProxy::start();
    let stream = TestStream::new("r3").await;
    let name = unique("r3");
    // No marker: the consumer runs until SIGTERM.
    stream
        .publish((0..FIRST).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let first_wave_end = *stream.offsets().await.last().unwrap();
    let through_proxy = || {
        let mut cmd = consumer(&stream.name, &name);
        cmd.env("OFFSET_TRACKING__BROKER__PORT", proxy.port.to_string())
            .env("OFFSET_TRACKING__BROKER__LOAD_BALANCER_MODE", "true");
        cmd
    };
    let mut running = Running::spawn(&mut through_proxy());
    running.wait_for_line("First message received", LIMIT);
    wait_until_processed(&running, first_wave_end);
    assert!(
        proxy.stores() > 0,
        "no store crossed the proxy before the cut"
    );

    // The user's report: cut while idle, restored, subscribed again, then a clean stop. Nothing
    // touches the tracker's dead store connection before the final flush.
    proxy.cut();
    running.wait_for_log(&["subscription lost"], LIMIT);
    std::thread::sleep(CUT);
    proxy.restore();
    let resumed = running.wait_for_log(&["subscribed again"], LIMIT);
    running.signal("TERM");
    let first = running.finish(LIMIT);
    let err = stderr_of(&first);
    assert!(
        first.status.success(),
        "SIGTERM after a recovered cut must exit 0: {err}"
    );
    assert!(!err.contains("older than 3.11"), "a guessed cause: {err}");
    let summary = partition_of(&first, &stream.name);
    assert!(summary.reconnects >= 1, "no reconnect counted: {err}");
    assert_eq!(summary.stored_offset, Some(first_wave_end), "{err}");
    assert_eq!(
        stream.stored_offset(&name).await,
        Some(first_wave_end),
        "the broker holds the last processed offset"
    );

    // The next run goes on right after it, to the marker, with a cut while it consumes: nothing
    // lost, nothing repeated.
    stream
        .publish((FIRST..FIRST + SECOND).map(|i| {
            let body = if i + 1 == FIRST + SECOND {
                "marker"
            } else {
                "hello"
            };
            format!("{body}{i}").into_bytes()
        }))
        .await;
    let log: Vec<u64> = stream.offsets().await;
    let mut running = Running::spawn(&mut through_proxy());
    running.wait_for_line("First message received", LIMIT);
    proxy.cut();
    std::thread::sleep(CUT);
    proxy.restore();
    let second = running.finish(LIMIT);
    assert!(second.status.success(), "{}", stderr_of(&second));
    let summary = partition_of(&second, &stream.name);
    assert!(summary.marker, "{}", stderr_of(&second));
    assert_eq!(summary.stored_offset, log.last().copied());
    let first_seen = processed_offsets(&err, &stream.name, &log);
    let second_seen = processed_offsets(&stderr_of(&second), &stream.name, &log);
    assert!(
        first_seen.is_disjoint(&second_seen),
        "duplicates after the cut"
    );
    assert_eq!(
        first_seen.len() + second_seen.len(),
        log.len(),
        "messages lost"
    );
    println!(
        "cut for {CUT:?}: {}; SIGTERM exit 0, stored {first_wave_end}; the next run, cut while \
         consuming ({} reconnects, {} store errors), processed {}, duplicates 0, lost 0",
        resumed.split(" INFO ").last().unwrap_or(&resumed),
        summary.reconnects,
        summary.store_errors,
        second_seen.len()
    );
}

/// Waits until `running` logged processing the message at `offset`.
fn wait_until_processed(running: &Running, offset: u64) {
    let batch_end = format!("last={offset} ");
    let deadline = std::time::Instant::now() + LIMIT;
    while running.logs(&[" processed ", &batch_end]).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "offset {offset} was not processed within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
