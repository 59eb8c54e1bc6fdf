//! Parallel processing (`[processing]`: an async handler on up to `max_in_flight` deliveries at
//! once, `ordering` = partition | key | unordered) against a real broker, through the
//! `io_handler` example, whose `--print-handled` lines (`handled <stream> <offset>`) are the
//! effects counted here:
//!
//! - `kill -9` loses nothing and a crash repeats at most the stated bound, for each ordering;
//!   `partition` handles each run's deliveries in stream order, `key` each key's;
//! - a handler failing on one delivery ends the run (exit 1) storing nothing from it on, and the
//!   next run picks it up;
//! - SIGTERM waits for the work in flight and stores only the finished prefix;
//! - a consumer group hands parallel work over without loss or repeat;
//! - with `key`, the marker ends a run only after every message before it is handled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use testkit::process::{kill_loop, named_consumer, stderr_of, stdout_of, Running};
use testkit::streams::{unique, TestStream};
use testkit::summary::partition_of;

/// Longest any single wait of these tests may take.
const LIMIT: Duration = Duration::from_secs(90);

/// Most deliveries handled as one batch: `MAX_BATCH` in consumer/src/consume/actor.rs (the
/// tracker's crash bound adds one batch to `store_every_messages`, consumer/src/lib.rs).
const MAX_BATCH: u64 = 512;
/// Deliveries admitted per delivery in flight: `LOOKAHEAD` in consumer/src/processing/stage.rs.
const LOOKAHEAD: u64 = 4;
/// Fewest deliveries the stage's window holds: `MIN_WINDOW` (= `MAX_BATCH`) in
/// consumer/src/processing/stage.rs.
const MIN_WINDOW: u64 = MAX_BATCH;

/// The path of the `io_handler` example, built by `cargo test` next to the test binaries.
fn io_handler_path() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_consumer"))
        .with_file_name("examples")
        .join("io_handler");
    assert!(
        path.is_file(),
        "the io_handler example is not built at {}: run `cargo build -p consumer --examples`",
        path.display()
    );
    path
}

/// The `io_handler` example as the named consumer `name` of `stream`, processing with
/// `ordering` (with `key`, the application property `key`) on up to `max_in_flight` deliveries,
/// each taking `work_ms`, printing its `handled` lines.
fn io_handler(
    stream: &str,
    name: &str,
    ordering: &str,
    max_in_flight: u64,
    work_ms: u64,
) -> Command {
    let mut cmd = named_consumer(io_handler_path(), stream, name);
    cmd.env("OFFSET_TRACKING__PROCESSING__ORDERING", ordering)
        .env(
            "OFFSET_TRACKING__PROCESSING__MAX_IN_FLIGHT",
            max_in_flight.to_string(),
        )
        .args(["--print-handled", "--work-ms", &work_ms.to_string()]);
    if ordering == "key" {
        cmd.env("OFFSET_TRACKING__PROCESSING__KEY", "property:key");
    }
    cmd
}

/// The stream's messages as the raw client reads them back: offsets in order (never assumed
/// contiguous) and each offset's index in the stream.
struct Log {
    offsets: Vec<u64>,
    index: HashMap<u64, usize>,
}

impl Log {
    async fn of(stream: &TestStream, expected: u64) -> Self {
        let offsets = stream.offsets().await;
        assert_eq!(
            offsets.len() as u64,
            expected,
            "the stream does not hold the {expected} messages published"
        );
        let index = offsets.iter().enumerate().map(|(i, o)| (*o, i)).collect();
        Self { offsets, index }
    }

    fn last(&self) -> u64 {
        *self.offsets.last().unwrap()
    }

    /// The offsets `out` printed as handled on `stream`, in the order it printed them; fails the
    /// test on an offset that is not a message of the stream.
    fn handled(&self, out: &Output, stream: &str) -> Vec<u64> {
        let offsets: Vec<u64> = stdout_of(out)
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                if words.next() != Some("handled") || words.next() != Some(stream) {
                    return None;
                }
                words.next().and_then(|w| w.parse().ok())
            })
            .collect();
        if let Some(stray) = offsets.iter().find(|o| !self.index.contains_key(o)) {
            panic!(
                "a run printed `handled {stream} {stray}`, not an offset of the stream's messages"
            );
        }
        offsets
    }

    /// The stream's messages none of `seen` handled.
    fn lost(&self, seen: &BTreeSet<u64>) -> Vec<u64> {
        self.offsets
            .iter()
            .filter(|o| !seen.contains(o))
            .copied()
            .collect()
    }
}

/// The first few of `offsets`, for failure messages.
fn some(offsets: &[u64]) -> String {
    let shown: Vec<String> = offsets.iter().take(10).map(u64::to_string).collect();
    let more = if offsets.len() > 10 { ", …" } else { "" };
    format!("{} [{}{more}]", offsets.len(), shown.join(", "))
}

/// Deliveries of one stream processed at once: one for `partition` (stage.rs `in_flight`).
fn in_flight(ordering: &str, max_in_flight: u64) -> u64 {
    if ordering == "partition" {
        1
    } else {
        max_in_flight
    }
}

/// The most one `kill -9` may repeat:
///
/// `store_every_messages + MAX_BATCH + window`, with `window = max(LOOKAHEAD × in_flight,
/// MIN_WINDOW)` = `max(4 × in_flight, 512)` and `in_flight` = 1 for `partition`,
/// `max_in_flight` otherwise.
///
/// The tracker keeps what finished beyond its last store within `store_every_messages +
/// MAX_BATCH` (no delivery starts past it), and the stage's window holds at most `window`
/// deliveries admitted but not covered by the finished prefix.
fn crash_bound(store_every_messages: u64, ordering: &str, max_in_flight: u64) -> usize {
    let window = (LOOKAHEAD * in_flight(ordering, max_in_flight)).max(MIN_WINDOW);
    (store_every_messages + MAX_BATCH + window) as usize
}

/// What a kill loop of one ordering came to.
struct KillReport {
    kills: usize,
    effects: usize,
    duplicates: usize,
    worst: usize,
    bound: usize,
    seconds: f64,
}

/// A keyed wave of `wave` messages consumed through `kill -9`s, each within `window` after
/// `Started consuming`, with `ordering`: 0 lost, each crash's repeats within the bound, and the
/// order `ordering` promises within each run.
async fn kill_loop_with(ordering: &'static str, wave: u64, window: Duration) -> KillReport {
    const KEYS: u64 = 100;
    const KILLS: usize = 5;
    const STORE_EVERY_MESSAGES: u64 = 500;
    const MAX_IN_FLIGHT: u64 = 64;
    let bound = crash_bound(STORE_EVERY_MESSAGES, ordering, MAX_IN_FLIGHT);

    let stream = TestStream::new(&format!("par-kill-{ordering}")).await;
    let name = unique(&format!("par-kill-{ordering}"));
    stream.publish_keyed(wave, KEYS).await;
    let log = Log::of(&stream, wave).await;
    // Message i carries key k{i % KEYS} (publish_keyed), i its index in the stream.
    let key_of = |offset: u64| log.index[&offset] as u64 % KEYS;

    let started = Instant::now();
    let outcome = kill_loop(
        || {
            let mut cmd = io_handler(&stream.name, &name, ordering, MAX_IN_FLIGHT, 1);
            cmd.env(
                "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES",
                STORE_EVERY_MESSAGES.to_string(),
            )
            .env("OFFSET_TRACKING__TRACKER__STORE_EVERY", "0s");
            cmd
        },
        KILLS,
        window,
        LIMIT,
    );
    let seconds = started.elapsed().as_secs_f64();
    let last_run = outcome.runs.last().unwrap();
    assert!(
        last_run.status.success(),
        "{ordering}: the last run failed: {}",
        stderr_of(last_run)
    );
    assert!(
        partition_of(last_run, &stream.name).marker,
        "{ordering}: the last run did not reach the marker: {}",
        stderr_of(last_run)
    );
    assert_eq!(
        outcome.kills,
        KILLS,
        "{ordering}: only {} of {KILLS} kills landed before a run reached the marker (runs: \
         {}); the kill window {window:?} is too long for this machine",
        outcome.kills,
        outcome.runs.len()
    );
    let runs: Vec<Vec<u64>> = outcome
        .runs
        .iter()
        .map(|out| log.handled(out, &stream.name))
        .collect();

    for (number, run) in runs.iter().enumerate() {
        match ordering {
            "partition" => {
                if let Some(pair) = run.windows(2).find(|pair| pair[0] >= pair[1]) {
                    panic!(
                        "partition: run {number} handled {} after {}: not in stream order",
                        pair[1], pair[0]
                    );
                }
            }
            "key" => {
                let mut last_of_key: HashMap<u64, u64> = HashMap::new();
                for &offset in run {
                    let key = key_of(offset);
                    if let Some(before) = last_of_key.insert(key, offset) {
                        assert!(
                            before < offset,
                            "key: run {number} handled {offset} after {before}, both of key \
                             k{key}: not in stream order within the key"
                        );
                    }
                }
            }
            _ => {}
        }
    }

    let sets: Vec<BTreeSet<u64>> = runs
        .iter()
        .map(|run| run.iter().copied().collect())
        .collect();
    for (number, (run, set)) in runs.iter().zip(&sets).enumerate() {
        assert_eq!(
            run.len(),
            set.len(),
            "{ordering}: run {number} handled an offset twice"
        );
    }
    let all: BTreeSet<u64> = sets.iter().flatten().copied().collect();
    let effects: usize = runs.iter().map(Vec::len).sum();
    let duplicates = effects - all.len();
    // What a crash repeated: what its run handled that a later run handled again.
    let repeats: Vec<usize> = (0..outcome.kills)
        .map(|k| {
            let later: BTreeSet<u64> = sets[k + 1..].iter().flatten().copied().collect();
            sets[k].intersection(&later).count()
        })
        .collect();
    let worst = repeats.iter().copied().max().unwrap_or(0);
    let lost = log.lost(&all);
    let stored = stream.stored_offset(&name).await;
    println!(
        "{ordering}: kills {}; runs handled {:?}; effects {effects} for {} messages; duplicates \
         {duplicates}; repeats per crash {repeats:?} (max {worst}, bound {bound}); {seconds:.1} s",
        outcome.kills,
        runs.iter().map(Vec::len).collect::<Vec<_>>(),
        log.offsets.len()
    );
    assert!(
        lost.is_empty(),
        "{ordering}: no run handled {}; the last run exited 0 at the marker, its summary: {:?}; \
         stored offset {stored:?} (the stream's last message: {})",
        some(&lost),
        partition_of(last_run, &stream.name),
        log.last()
    );
    assert!(
        worst <= bound,
        "{ordering}: a crash repeated {worst} messages, over the bound {bound} (per crash: \
         {repeats:?})"
    );
    assert_eq!(
        stored,
        Some(log.last()),
        "{ordering}: the stored offset after the last run is not the stream's last message"
    );
    KillReport {
        kills: outcome.kills,
        effects,
        duplicates,
        worst,
        bound,
        seconds,
    }
}

#[tokio::test]
async fn a_kill_9_loop_loses_nothing_and_repeats_within_the_bound_for_each_ordering() {
    // Measured on 2 shared cores (debug build), --work-ms 1: `partition` handles one delivery
    // at a time, ~1 ms each, so a run killed within 1.5 s handles up to ~1_500 (past a store of
    // 500 or not: both cases); with 64 in flight (`key`, `unordered`) ~20_000 a second, and a
    // run killed within 150 ms handles up to ~4_500. On a loaded machine (CI runs this binary's
    // tests side by side) kills come late: one run of 150 ms handled 6_000 and another reached
    // the marker of a 20_000 wave. The waves leave room for five late kills before the marker;
    // the last run handles the rest in ~8 s (`partition`) and ~5 s (the others).
    let mut failed = vec![];
    for (ordering, wave, window) in [
        ("partition", 12_000, Duration::from_millis(1_500)),
        ("key", 100_000, Duration::from_millis(150)),
        ("unordered", 100_000, Duration::from_millis(150)),
    ] {
        // Each ordering runs (and reports) even when an earlier one failed.
        match tokio::spawn(kill_loop_with(ordering, wave, window)).await {
            Ok(report) => println!(
                "{ordering}: kills {}, total effects {}, duplicates {}, max per crash {} (bound \
                 {}), {:.1} s",
                report.kills,
                report.effects,
                report.duplicates,
                report.worst,
                report.bound,
                report.seconds
            ),
            Err(err) => failed.push(format!("{ordering} ({err})")),
        }
    }
    assert!(
        failed.is_empty(),
        "failed: {failed:?} (their panics are above)"
    );
}

#[tokio::test]
async fn a_handler_failing_mid_batch_leaves_the_stored_offset_below_it() {
    const WAVE: u64 = 5_000;
    let stream = TestStream::new("par-fail").await;
    let name = unique("par-fail");
    stream.publish_wave(WAVE).await;
    let log = Log::of(&stream, WAVE).await;
    let fail_at = log.offsets[2_500];

    let mut failing = io_handler(&stream.name, &name, "unordered", 64, 1);
    failing.args(["--fail-at", &fail_at.to_string()]);
    let first = Running::spawn(&mut failing).finish(LIMIT);
    let stderr = stderr_of(&first);
    assert_eq!(
        first.status.code(),
        Some(1),
        "a handler failure must exit 1: {:?}\n{stderr}",
        first.status
    );
    assert!(
        stderr.contains(&format!("offset {fail_at}")),
        "stderr does not name the failed offset {fail_at}:\n{stderr}"
    );
    let first_seen: BTreeSet<u64> = log.handled(&first, &stream.name).into_iter().collect();
    assert!(
        !first_seen.contains(&fail_at),
        "the failed delivery {fail_at} was printed as handled"
    );
    let stored = stream.stored_offset(&name).await;
    assert!(
        stored.is_none_or(|s| s < fail_at),
        "stored {stored:?}, not below the failed offset {fail_at}"
    );
    // What is stored finished.
    let unfinished: Vec<u64> = log
        .offsets
        .iter()
        .filter(|o| stored.is_some_and(|s| **o <= s) && !first_seen.contains(o))
        .copied()
        .collect();
    assert!(
        unfinished.is_empty(),
        "stored {stored:?}, but the failed run never handled {}",
        some(&unfinished)
    );

    let second =
        Running::spawn(&mut io_handler(&stream.name, &name, "unordered", 64, 1)).finish(LIMIT);
    assert!(second.status.success(), "{}", stderr_of(&second));
    assert!(partition_of(&second, &stream.name).marker);
    let second_seen: BTreeSet<u64> = log.handled(&second, &stream.name).into_iter().collect();
    let missed: Vec<u64> = log
        .offsets
        .iter()
        .filter(|o| **o >= fail_at && !second_seen.contains(o))
        .copied()
        .collect();
    assert!(
        missed.is_empty(),
        "the second run did not handle {} (at or after the failed offset {fail_at})",
        some(&missed)
    );
    let all: BTreeSet<u64> = first_seen.union(&second_seen).copied().collect();
    let lost = log.lost(&all);
    println!(
        "failed at {fail_at} (index 2500); the failed run handled {}, stored {stored:?}; the \
         second run handled {}; duplicates {}; lost {}",
        first_seen.len(),
        second_seen.len(),
        first_seen.intersection(&second_seen).count(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost {}", some(&lost));
    assert_eq!(stream.stored_offset(&name).await, Some(log.last()));
}

#[tokio::test]
async fn sigterm_waits_for_in_flight_work_and_stores_only_the_finished_prefix() {
    const WAVE: u64 = 3_000;
    let stream = TestStream::new("par-term").await;
    let name = unique("par-term");
    stream.publish_wave(WAVE).await;
    let log = Log::of(&stream, WAVE).await;

    let mut running = Running::spawn(&mut io_handler(&stream.name, &name, "unordered", 32, 20));
    running.wait_for_line("handled", LIMIT);
    running.signal("TERM");
    let first = running.finish(LIMIT);
    let stderr = stderr_of(&first);
    assert!(
        first.status.success(),
        "SIGTERM must exit 0: {:?}\n{stderr}",
        first.status
    );
    assert!(
        !stderr.contains("abandoned"),
        "SIGTERM abandoned work in flight rather than waiting for it:\n{stderr}"
    );
    let first_seen: BTreeSet<u64> = log.handled(&first, &stream.name).into_iter().collect();
    assert!(
        (first_seen.len() as u64) < WAVE,
        "the first run handled the whole wave before SIGTERM: nothing was tested"
    );
    let stored = stream
        .stored_offset(&name)
        .await
        .expect("nothing stored after SIGTERM, though the run handled messages");
    let unfinished: Vec<u64> = log
        .offsets
        .iter()
        .filter(|o| **o <= stored && !first_seen.contains(o))
        .copied()
        .collect();
    assert!(
        unfinished.is_empty(),
        "stored {stored}, but the run never handled {}",
        some(&unfinished)
    );
    // Everything that started finished (the drain), and what finished is a prefix: all stored.
    let beyond: Vec<u64> = first_seen.range(stored + 1..).copied().collect();
    assert!(
        beyond.is_empty(),
        "stored {stored}, but the run also finished {} beyond it (repeated by the next run)",
        some(&beyond)
    );

    let second =
        Running::spawn(&mut io_handler(&stream.name, &name, "unordered", 32, 20)).finish(LIMIT);
    assert!(second.status.success(), "{}", stderr_of(&second));
    let second_seen: BTreeSet<u64> = log.handled(&second, &stream.name).into_iter().collect();
    let next = log.offsets.iter().find(|o| **o > stored).copied();
    assert_eq!(
        second_seen.first().copied(),
        next,
        "the second run did not resume right after the stored offset {stored}"
    );
    let all: BTreeSet<u64> = first_seen.union(&second_seen).copied().collect();
    let lost = log.lost(&all);
    println!(
        "SIGTERM after {} handled, stored {stored}; the restart handled {}; duplicates {}; \
         lost {}",
        first_seen.len(),
        second_seen.len(),
        first_seen.intersection(&second_seen).count(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost {}", some(&lost));
}

#[tokio::test]
async fn a_consumer_group_hands_over_parallel_work_cleanly() {
    const WAVE: u64 = 20_000;
    let stream = TestStream::new("par-group").await;
    let name = unique("par-group");
    stream.publish_wave(WAVE).await;
    let log = Log::of(&stream, WAVE).await;

    let member = || {
        let mut cmd = io_handler(&stream.name, &name, "unordered", 32, 1);
        cmd.env("OFFSET_TRACKING__CONSUMER__SINGLE_ACTIVE", "true")
            .env("OFFSET_TRACKING__TRACKER__STORE_EVERY", "1s");
        cmd
    };
    let mut members = vec![Running::spawn(&mut member()), Running::spawn(&mut member())];
    // The active member says so on stderr ("inactive in group" never says "resuming at").
    let deadline = Instant::now() + LIMIT;
    let active = loop {
        if let Some(active) = members
            .iter()
            .position(|m| m.find_log(&["active in group", "resuming at"]).is_some())
        {
            break active;
        }
        assert!(
            Instant::now() < deadline,
            "no member became active within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut first = members.remove(active);
    let other = members.remove(0);
    first.wait_for_line("handled", LIMIT);
    first.signal("TERM");
    let first = first.finish(LIMIT);
    assert!(first.status.success(), "{}", stderr_of(&first));

    let deadline = Instant::now() + LIMIT;
    loop {
        let stored = stream.stored_offset(&name).await;
        if stored == Some(log.last()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group's stored offset is {stored:?} after {LIMIT:?}, not the last offset {}",
            log.last()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    other.signal("TERM");
    let second = other.finish(LIMIT);
    assert!(second.status.success(), "{}", stderr_of(&second));

    let first_seen = log.handled(&first, &stream.name);
    let second_seen = log.handled(&second, &stream.name);
    let first_set: BTreeSet<u64> = first_seen.iter().copied().collect();
    let second_set: BTreeSet<u64> = second_seen.iter().copied().collect();
    let all: BTreeSet<u64> = first_set.union(&second_set).copied().collect();
    let duplicates = first_seen.len() + second_seen.len() - all.len();
    let repeated: Vec<u64> = first_set.intersection(&second_set).copied().collect();
    let lost = log.lost(&all);
    println!(
        "group: the first member handled {} then SIGTERM; the second handled {}; duplicates \
         {duplicates}; lost {}",
        first_seen.len(),
        second_seen.len(),
        lost.len()
    );
    assert!(
        !second_seen.is_empty(),
        "the second member handled nothing: the first finished the wave before SIGTERM, no \
         handover was tested"
    );
    assert!(lost.is_empty(), "lost {}", some(&lost));
    assert_eq!(
        duplicates,
        0,
        "the handover repeated {} (both members handled them)",
        some(&repeated)
    );
}

/// `ordering = "key"`: the marker (the handler's `Flow::Stop`) ends a run only once every message
/// before it in the stream is handled — also those queued behind a busy key when the marker, of
/// a key free at once, finishes. Three uninterrupted runs of a keyed wave (each a new consumer
/// name on the same stream).
#[tokio::test]
async fn key_ordering_ends_at_the_marker_only_after_every_message_before_it() {
    const WAVE: u64 = 20_000;
    let stream = TestStream::new("par-key-stop").await;
    stream.publish_keyed(WAVE, 100).await;
    let log = Log::of(&stream, WAVE).await;
    let mut failures = vec![];
    for round in 0..3 {
        let name = unique("par-key-stop");
        let out = Running::spawn(&mut io_handler(&stream.name, &name, "key", 64, 1)).finish(LIMIT);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let summary = partition_of(&out, &stream.name);
        let seen: BTreeSet<u64> = log.handled(&out, &stream.name).into_iter().collect();
        let unhandled = log.lost(&seen);
        let stored = stream.stored_offset(&name).await;
        println!(
            "round {round}: marker {}; handled {} of {WAVE}; never handled {}; summary \
             last_offset {:?}, messages {}; stored {stored:?} (last message {})",
            summary.marker,
            seen.len(),
            some(&unhandled),
            summary.last_offset,
            summary.messages,
            log.last()
        );
        if !unhandled.is_empty() || stored != Some(log.last()) {
            failures.push(format!(
                "round {round}: the run exited 0 at the marker (summary marker {}) without \
                 handling {}; stored {stored:?}",
                summary.marker,
                some(&unhandled)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A super stream: each partition has its own stage, tracker and marker; all run at once.
#[tokio::test(flavor = "multi_thread")]
async fn every_partition_of_a_super_stream_is_processed_in_parallel_and_stored() {
    const PARTITIONS: u32 = 3;
    let stream = testkit::streams::OwnedStream::on_broker("par-super", PARTITIONS).await;
    let name = unique("par-super");
    let producer = testkit::process::workspace_binary(env!("CARGO_BIN_EXE_consumer"), "producer");
    let published = Running::spawn(
        testkit::process::our_binary(producer)
            .env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
            .env(
                "OFFSET_TRACKING__STREAM__PARTITIONS",
                PARTITIONS.to_string(),
            )
            .args(["--count", "6000"]),
    )
    .finish(LIMIT);
    assert!(published.status.success(), "{}", stderr_of(&published));

    let mut cmd = io_handler(&stream.name, &name, "unordered", 16, 1);
    cmd.env(
        "OFFSET_TRACKING__STREAM__PARTITIONS",
        PARTITIONS.to_string(),
    );
    let out = Running::spawn(&mut cmd).finish(LIMIT);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let handled = stdout_of(&out);
    for partition in stream.streams() {
        let log: Vec<u64> = stream
            .read_all(&partition)
            .await
            .into_iter()
            .map(|(offset, _)| offset)
            .collect();
        assert!(!log.is_empty(), "{partition} holds nothing");
        let seen: BTreeSet<u64> = handled
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("handled") && words.next() == Some(partition.as_str()))
                    .then(|| words.next()?.parse().ok())
                    .flatten()
            })
            .collect();
        let lost: Vec<u64> = log.iter().filter(|o| !seen.contains(o)).copied().collect();
        assert!(lost.is_empty(), "{partition}: not handled {}", some(&lost));
        assert_eq!(
            stream.stored_offset(&name, &partition).await,
            log.last().copied(),
            "{partition}: the stored offset is its marker's"
        );
    }
}

/// A slow shutdown: the first SIGTERM waits for in-flight work (here 20 s of it); a second one
/// exits at once, non-zero, saying what that means; nothing unfinished is stored.
#[tokio::test]
async fn a_second_sigterm_during_a_slow_shutdown_exits_at_once() {
    let stream = TestStream::new("par-twice").await;
    let name = unique("par-twice");
    stream.publish_keyed(100, 10).await;
    let mut cmd = io_handler(&stream.name, &name, "unordered", 4, 20_000);
    cmd.env("OFFSET_TRACKING__PROCESSING__DRAIN_TIMEOUT", "60s");
    let mut running = Running::spawn(&mut cmd);
    running.wait_for_line("Started consuming", LIMIT);
    std::thread::sleep(Duration::from_millis(1500));
    running.signal("TERM");
    running.wait_for_log(&["another SIGINT/SIGTERM exits at once"], LIMIT);
    let second_at = Instant::now();
    running.signal("TERM");
    let out = running.finish(LIMIT);
    let exited_after = second_at.elapsed();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("a second SIGTERM during shutdown"), "{err}");
    assert!(
        exited_after < Duration::from_secs(5),
        "exited {exited_after:?} after the second SIGTERM"
    );
    assert!(!stdout_of(&out).contains("handled"), "nothing finished");
    assert_eq!(stream.stored_offset(&name).await, None);
    println!("exited {exited_after:?} after the second SIGTERM");
}
