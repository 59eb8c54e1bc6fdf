//! `consumer offsets show|set|export|import` and `--replay`, against the real broker, checked by
//! reading the stored offsets back with the raw client and by consuming afterwards. Streams get
//! a second wave after stores, so offsets are not contiguous (tracking entries sit between).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::process::{
    our_binary, run_with_deadline, stderr_of, stdout_of, workspace_binary, Running,
};
use testkit::streams::{unique, OwnedStream, TestStream};
use testkit::summary::partition_of;

const LIMIT: Duration = Duration::from_secs(60);

fn consumer(stream: &str, name: &str) -> Command {
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_consumer"));
    cmd.args(["--stream", stream, "--name", name]);
    cmd
}

/// `consumer --stream S --name N offsets ARGS…`, run to completion.
fn offsets(stream: &str, name: &str, args: &[&str]) -> Output {
    run_with_deadline(consumer(stream, name).arg("offsets").args(args), LIMIT)
}

/// Like [`offsets`], and it must succeed; its stdout.
fn offsets_ok(stream: &str, name: &str, args: &[&str]) -> String {
    let out = offsets(stream, name, args);
    assert!(
        out.status.success(),
        "offsets {args:?}: exit {:?}\n{}",
        out.status,
        stderr_of(&out)
    );
    stdout_of(&out)
}

/// `offsets show --output json` as JSON rows.
fn show_json(stream: &str, names: &str) -> Vec<Value> {
    let out = offsets_ok(stream, names, &["show", "--output", "json"]);
    serde_json::from_str::<Value>(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
        .as_array()
        .unwrap()
        .clone()
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

/// A stream of two waves of 100 with stores between them: `log` holds the 200 message offsets,
/// and `log[100]` is past `log[99] + 1`.
async fn two_waves(prefix: &str) -> (TestStream, Vec<u64>) {
    let stream = TestStream::new(prefix).await;
    stream.publish_wave(100).await;
    let log = stream.offsets().await;
    for i in [10, 20, 30] {
        stream.store_offset(&unique("filler"), log[i]).await;
    }
    stream.publish_wave(100).await;
    let log = stream.offsets().await;
    assert_eq!(log.len(), 200);
    assert!(log[100] > log[99] + 1, "tracking entries between the waves");
    (stream, log)
}

#[tokio::test]
async fn show_counts_messages_not_offsets_for_several_names_as_table_and_json() {
    let (stream, log) = two_waves("o-show").await;
    let (a, b) = (unique("o-show-a"), unique("o-show-b"));
    stream.store_offset(&a, log[49]).await;

    let rows = show_json(&stream.name, &format!("{a},{b}"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row_a = &rows[0];
    assert_eq!(row_a["consumer"], a.as_str());
    assert_eq!(row_a["store"], "broker");
    assert_eq!(row_a["stored_offset"], log[49]);
    assert_eq!(row_a["first_offset"], log[0]);
    assert_eq!(row_a["last_offset"], log[199]);
    // 150 messages follow, over more offsets than that: the stores are not counted.
    assert_eq!(row_a["lag_messages"], 150);
    assert!(log[199] - log[49] > 150);
    assert_eq!(row_a["lag_messages_exact"], true);
    assert!(row_a["lag_seconds"].as_f64().unwrap() >= 0.0, "{row_a}");
    assert_eq!(rows[1]["consumer"], b.as_str());
    assert!(rows[1]["stored_offset"].is_null());
    assert!(rows[1]["lag_messages"].is_null());

    let table = offsets_ok(&stream.name, &format!("{a},{b}"), &["show"]);
    let line_a = table.lines().find(|l| l.starts_with(&a)).unwrap();
    let cells: Vec<&str> = line_a.split_whitespace().collect();
    assert_eq!(
        &cells[..7],
        &[
            a.as_str(),
            stream.name.as_str(),
            "broker",
            &log[49].to_string(),
            &log[0].to_string(),
            &log[199].to_string(),
            "150"
        ],
        "{table}"
    );
    assert!(table.starts_with("CONSUMER"), "{table}");
}

#[tokio::test]
async fn set_dry_run_changes_nothing_then_set_and_shift_by_move_by_messages() {
    let (stream, log) = two_waves("o-set").await;
    let name = unique("o-set");
    stream.store_offset(&name, log[120]).await;

    // Back 30 messages: across the tracking entries between the waves.
    let dry = offsets_ok(
        &stream.name,
        &name,
        &["set", "--shift-by", "-30", "--dry-run"],
    );
    assert!(
        dry.contains(&format!("{} -> {}", log[120], log[90])),
        "{dry}"
    );
    assert!(dry.contains("replays 30 messages"), "{dry}");
    assert!(dry.contains("nothing was changed"), "{dry}");
    assert_eq!(stream.stored_offset(&name).await, Some(log[120]));

    let back = offsets_ok(&stream.name, &name, &["set", "--shift-by", "-30"]);
    assert!(back.contains("replays 30 messages"), "{back}");
    assert_eq!(stream.stored_offset(&name).await, Some(log[90]));

    let forward = offsets_ok(&stream.name, &name, &["set", "--shift-by", "+15"]);
    assert!(forward.contains("skips 15 messages"), "{forward}");
    assert_eq!(stream.stored_offset(&name).await, Some(log[105]));

    let to = offsets_ok(&stream.name, &name, &["set", "--to", &log[49].to_string()]);
    assert!(
        to.contains(&format!("the next run starts at {}", log[49] + 1)),
        "{to}"
    );
    assert!(to.contains("replays 56 messages"), "{to}");
    // The run stops at the first wave's marker.
    let run = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    assert_eq!(consumed(&run, &stream.name), (log[50], 50));

    // `--replay` ignores the stored offset (now the marker's) once.
    let replay = run_with_deadline(
        consumer(&stream.name, &name).args(["--replay", "--offset", "first"]),
        LIMIT,
    );
    assert_eq!(consumed(&replay, &stream.name), (log[0], 100));
}

#[tokio::test]
async fn set_to_last_first_and_timestamp() {
    let stream = TestStream::new("o-time").await;
    let name = unique("o-time");
    stream.publish_wave(100).await;
    // The broker stamps chunks in milliseconds: leave a clear gap around the moment.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stream.store_offset(&unique("filler"), 3).await;
    stream.publish_wave(100).await;
    let log = stream.offsets().await;

    let at = offsets_ok(
        &stream.name,
        &name,
        &["set", "--to", &format!("timestamp:{between}")],
    );
    assert!(at.contains("nothing was stored"), "{at}");
    assert_eq!(stream.stored_offset(&name).await, Some(log[100] - 1));
    let run = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    assert_eq!(consumed(&run, &stream.name), (log[100], 100));

    offsets_ok(&stream.name, &name, &["set", "--to", "last"]);
    assert_eq!(stream.stored_offset(&name).await, Some(log[199]));

    // The first message is at 0: the broker cannot hold the offset before it.
    let first = offsets(&stream.name, &name, &["set", "--to", "first"]);
    assert_eq!(first.status.code(), Some(2), "{}", stderr_of(&first));
    assert!(stderr_of(&first).contains("--replay --offset first"));
    assert_eq!(stream.stored_offset(&name).await, Some(log[199]));
}

#[tokio::test]
async fn bad_targets_and_unknown_streams_exit_2_and_store_nothing() {
    let stream = TestStream::new("o2").await;
    let name = unique("o2");
    stream.publish_wave(10).await;
    let past = offsets(&stream.name, &name, &["set", "--to", "1000000"]);
    assert_eq!(past.status.code(), Some(2), "{}", stderr_of(&past));
    assert!(
        stderr_of(&past).contains("past the end"),
        "{}",
        stderr_of(&past)
    );
    let shift = offsets(&stream.name, &name, &["set", "--shift-by", "-5"]);
    assert_eq!(shift.status.code(), Some(2), "{}", stderr_of(&shift));
    assert!(stderr_of(&shift).contains("nothing is stored"));
    assert_eq!(stream.stored_offset(&name).await, None);

    let missing = unique("o2-missing");
    let unknown = offsets(&missing, &name, &["show"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr_of(&unknown).contains("does not exist"));

    for args in [
        &["set", "--to", "soon"][..],
        &["set", "--shift-by", "0"],
        &["set"],
        &["set", "--to", "last", "--shift-by", "3"],
        &["show", "--output", "yaml"],
        &["export", "--file", "offsets.txt"],
    ] {
        let out = offsets(&stream.name, &name, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
    }
    assert_eq!(stream.stored_offset(&name).await, None);
}

/// Whether the management API lists a consumer named `name` on `stream` now.
fn listed(stream: &str, name: &str) -> bool {
    let url = "http://guest:guest@localhost:15672/api/stream/consumers/%2F";
    let Ok(mut response) = ureq::get(url).call() else {
        return false;
    };
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let consumers: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    consumers
        .iter()
        .any(|c| c["queue"]["name"] == stream && c["properties"]["name"] == name)
}

#[tokio::test]
async fn set_refuses_while_a_consumer_of_the_name_is_connected_unless_forced() {
    let stream = TestStream::new("o-busy").await;
    let name = unique("o-busy");
    stream.publish_wave(10).await;
    let log = stream.offsets().await;

    // A consumer waiting for new messages (there will be none): connected, named.
    let mut waiting = Running::spawn(consumer(&stream.name, &name).args(["--offset", "next"]));
    waiting.wait_for_line("Started consuming", LIMIT);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !listed(&stream.name, &name) {
        assert!(
            Instant::now() < deadline,
            "the management API never listed consumer {name}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let refused = offsets(&stream.name, &name, &["set", "--to", "last"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    let why = stderr_of(&refused);
    assert!(
        why.contains("is connected") && why.contains("--force"),
        "{why}"
    );
    assert_eq!(stream.stored_offset(&name).await, None);

    // Another name on the same stream is free to move.
    let other = unique("o-busy-other");
    offsets_ok(&stream.name, &other, &["set", "--to", "last"]);

    let forced = offsets_ok(&stream.name, &name, &["set", "--to", "last", "--force"]);
    assert!(
        forced.contains(&format!("stored offset {}", log[9])),
        "{forced}"
    );
    assert_eq!(stream.stored_offset(&name).await, Some(log[9]));

    waiting.signal("TERM");
    assert!(waiting.finish(LIMIT).status.success());

    // No management API to ask: refused too, saying so.
    let mut blind = consumer(&stream.name, &name);
    blind
        .env(
            "OFFSET_TRACKING__BROKER__MANAGEMENT_URL",
            "http://127.0.0.1:1",
        )
        .args(["offsets", "set", "--to", &log[5].to_string()]);
    let blind = run_with_deadline(&mut blind, LIMIT);
    assert_eq!(blind.status.code(), Some(1), "{}", stderr_of(&blind));
    assert!(
        stderr_of(&blind).contains("management") && stderr_of(&blind).contains("--force"),
        "{}",
        stderr_of(&blind)
    );
    assert_eq!(stream.stored_offset(&name).await, Some(log[9]));
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_import_onto_another_name_round_trips_every_partition() {
    let stream = OwnedStream::on_broker("o-ss", 2).await;
    let name = unique("o-ss");
    let producer = workspace_binary(env!("CARGO_BIN_EXE_consumer"), "producer");
    let mut publish = our_binary(producer);
    publish
        .env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env("OFFSET_TRACKING__STREAM__PARTITIONS", "2")
        .args(["--count", "200"]);
    assert!(run_with_deadline(&mut publish, LIMIT).status.success());
    let with_partitions = |cmd: &mut Command| {
        cmd.env("OFFSET_TRACKING__STREAM__PARTITIONS", "2");
    };
    let mut run = consumer(&stream.name, &name);
    with_partitions(&mut run);
    assert!(run_with_deadline(&mut run, LIMIT).status.success());
    let partitions = stream.streams();
    // Every partition 7 messages back from its marker.
    let mut back = consumer(&stream.name, &name);
    with_partitions(back.args(["offsets", "set", "--shift-by", "-7"]));
    assert!(run_with_deadline(&mut back, LIMIT).status.success());
    let mut stored = vec![];
    for partition in &partitions {
        let log = stream.read_all(partition).await;
        let offset = stream.stored_offset(&name, partition).await.unwrap();
        assert_eq!(offset, log[log.len() - 8].0, "{partition}");
        stored.push(offset);
    }

    let dir = tempfile::tempdir().unwrap();
    for file in ["offsets.csv", "offsets.json"] {
        let path = dir.path().join(file);
        let path = path.to_str().unwrap();
        let mut export = consumer(&stream.name, &name);
        with_partitions(export.args(["offsets", "export", "--file", path]));
        let export = run_with_deadline(&mut export, LIMIT);
        assert!(export.status.success(), "{}", stderr_of(&export));
        assert!(stdout_of(&export).contains("exported 2 offsets"));

        let target = unique("o-ss-import");
        let mut dry = consumer(&stream.name, &target);
        with_partitions(dry.args(["offsets", "import", "--file", path, "--dry-run"]));
        let dry = run_with_deadline(&mut dry, LIMIT);
        assert!(dry.status.success(), "{}", stderr_of(&dry));
        assert!(stdout_of(&dry).contains("nothing was changed"));
        for partition in &partitions {
            assert_eq!(stream.stored_offset(&target, partition).await, None);
        }

        let mut import = consumer(&stream.name, &target);
        with_partitions(import.args(["offsets", "import", "--file", path]));
        let import = run_with_deadline(&mut import, LIMIT);
        assert!(import.status.success(), "{}", stderr_of(&import));
        for (partition, offset) in partitions.iter().zip(&stored) {
            assert_eq!(
                stream.stored_offset(&target, partition).await,
                Some(*offset),
                "{file}"
            );
        }
        let mut show = consumer(&stream.name, &format!("{name},{target}"));
        with_partitions(show.args(["offsets", "show", "--output", "json"]));
        let rows: Vec<Value> =
            serde_json::from_slice(&run_with_deadline(&mut show, LIMIT).stdout).unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows
            .iter()
            .all(|r| r["super_stream"] == stream.name.as_str()));
        assert!(rows.iter().all(|r| r["lag_messages"] == 7), "{rows:?}");
    }

    // A file for a stream that is not this one stores nothing.
    let foreign = dir.path().join("foreign.csv");
    std::fs::write(&foreign, "consumer,stream,offset\nx,elsewhere,5\n").unwrap();
    let target = unique("o-ss-foreign");
    let mut import = consumer(&stream.name, &target);
    with_partitions(import.args(["offsets", "import", "--file", foreign.to_str().unwrap()]));
    let import = run_with_deadline(&mut import, LIMIT);
    assert_eq!(import.status.code(), Some(2), "{}", stderr_of(&import));
    assert!(stderr_of(&import).contains("elsewhere"));
}

/// With `tracker.store = "sqlite"` the consumer resumes from SQLite: `offsets set` sets that (and
/// the broker's), `offsets show` reads it, `--to first` at offset 0 removes it, and the next run
/// starts right after what was set.
#[tokio::test]
async fn with_the_sqlite_store_every_verb_acts_on_the_offset_the_consumer_resumes_from() {
    let stream = TestStream::new("o-sqlite").await;
    let name = unique("o-sqlite");
    stream.publish_wave(100).await;
    let log: Vec<u64> = stream.offsets().await;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("offsets.sqlite");
    let sqlite = |args: &[&str]| {
        let mut cmd = consumer(&stream.name, &name);
        cmd.env("OFFSET_TRACKING__TRACKER__STORE", "sqlite")
            .env("OFFSET_TRACKING__TRACKER__SQLITE_PATH", &database)
            .args(args);
        run_with_deadline(&mut cmd, LIMIT)
    };

    // A first run stores the marker's offset in SQLite.
    let (_, messages) = consumed(&sqlite(&[]), &stream.name);
    assert_eq!(messages, 100);

    let target = log[59];
    let set = sqlite(&["offsets", "set", "--to", &target.to_string()]);
    assert!(set.status.success(), "{}", stderr_of(&set));
    assert!(stdout_of(&set).contains("in SQLite"), "{}", stdout_of(&set));
    assert!(stdout_of(&set).contains("replays 40 messages"));

    let show = sqlite(&["offsets", "show", "--output", "json"]);
    let rows: Vec<Value> = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(rows[0]["store"], "sqlite");
    assert_eq!(rows[0]["stored_offset"], target);
    assert_eq!(rows[0]["lag_messages"], 40);

    let again = sqlite(&[]);
    assert_eq!(
        consumed(&again, &stream.name),
        (log[60], 40),
        "resumes right after the offset set in SQLite"
    );

    // The first message is at 0: with SQLite (and consumer.offset = first) the offset goes.
    let first = sqlite(&["offsets", "set", "--to", "first"]);
    assert!(first.status.success(), "{}", stderr_of(&first));
    assert!(
        stdout_of(&first).contains("replays 100 messages"),
        "{}",
        stdout_of(&first)
    );
    let from_start = sqlite(&[]);
    assert_eq!(consumed(&from_start, &stream.name), (log[0], 100));

    // Export from SQLite, import under the same name after a move: back where it was.
    let file = dir.path().join("offsets.json");
    let file = file.to_str().unwrap();
    assert!(sqlite(&["offsets", "export", "--file", file])
        .status
        .success());
    assert!(sqlite(&["offsets", "set", "--shift-by", "-10"])
        .status
        .success());
    assert!(sqlite(&["offsets", "import", "--file", file])
        .status
        .success());
    let show = sqlite(&["offsets", "show", "--output", "json"]);
    let rows: Vec<Value> = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(rows[0]["stored_offset"], log[99]);
}

/// Counting a large lag reads for seconds: meanwhile `show` says how far it has read (off a
/// terminal, a `progress:` line on stderr, as the consumer's own progress), and the count it
/// ends with covers every message after the stored offset.
#[tokio::test]
async fn show_reports_progress_while_counting_a_large_lag() {
    // ~3 s of counting in a debug build (~330 000 messages a second): past the 1 s before
    // progress shows, within the 10 s count budget.
    const WAVE: u64 = 1_000_000;
    let stream = TestStream::new("o-progress").await;
    let name = unique("o-progress");
    stream.publish_wave(WAVE).await;
    // A fresh stream: the first message is at offset 0, and no tracking entry precedes it.
    stream.store_offset(&name, 0).await;

    let started = Instant::now();
    let out = offsets(&stream.name, &name, &["show", "--output", "json"]);
    let seconds = started.elapsed().as_secs_f64();
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    let row = &rows.as_array().unwrap()[0];
    let exact = row["lag_messages_exact"] == true;
    if exact {
        assert_eq!(row["lag_messages"], WAVE - 1, "{row}");
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("progress: offsets read") && l.contains(&stream.name)),
        "no progress line while counting for {seconds:.1} s (exact: {exact}): {stderr}"
    );
}
