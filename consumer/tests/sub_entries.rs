//! Streams written with sub-entry batching — by another client (Python `rstream`: uncompressed
//! and gzip) and by our own writer (uncompressed, snappy, lz4, zstd), mixed with plain messages —
//! are consumed by our consumer binary exactly like plain ones: every message once, the offsets an
//! independent oracle reads (the `delivery` crate's subscription from `first`), the marker, the
//! stored offset, and a second run resuming right after it. A chunk nobody can decode (a
//! sub-entry under an unknown codec code) ends the run with exit 1 and a clear error, within a
//! deadline, storing nothing past the last message before it. Against the real broker
//! (`scripts/broker.sh up`); each test has its own stream (deleted at the end) and consumer name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use delivery::{ChunkProblem, Compression, DeliveryError};
use testkit::oracle::{read_all_delivered, read_delivered};
use testkit::peer::rstream::{self, RstreamCodec};
use testkit::peer::sub_entries::SubEntryPublisher;
use testkit::peer::{batches, encoded};
use testkit::process::{assert_ok, named_consumer, run_with_deadline, stderr_of};
use testkit::streams::{processed_offsets, unique, TestStream};
use testkit::summary::{partition_of, summary_of};

/// Most a consumer run of these small waves may take.
const LIMIT: Duration = Duration::from_secs(60);
/// Messages per sub-entry batch.
const PER_BATCH: usize = 100;
/// Sub-entry batches in each half of a wave.
const BATCHES_PER_HALF: usize = 10;
/// Plain messages before each half of a wave.
const PLAIN_PER_HALF: usize = 5;
/// Messages in a wave: two halves of plain messages then sub-entry batches.
const WAVE: usize = 2 * (PLAIN_PER_HALF + BATCHES_PER_HALF * PER_BATCH);

/// Who writes the sub-entry batches, with which codec.
#[derive(Debug, Clone, Copy)]
enum Writer {
    Rstream(RstreamCodec),
    Ours(Compression),
}

impl Writer {
    /// Writes `batches` of bodies as sub-entry batches, one each; returns once all are confirmed.
    async fn write(self, stream: &str, batches: Vec<Vec<Vec<u8>>>) {
        let stream = stream.to_owned();
        tokio::task::spawn_blocking(move || match self {
            Writer::Rstream(codec) => rstream::publish(&stream, codec, &batches),
            Writer::Ours(codec) => {
                let mut publisher = SubEntryPublisher::connect(&stream).unwrap();
                publisher
                    .publish_sub_entries(codec, &encoded(&batches))
                    .unwrap();
                publisher.close().unwrap();
            }
        })
        .await
        .unwrap();
    }
}

/// The consumer binary as the named consumer `name` of `stream`, from `first` when nothing is
/// stored, logging each processed batch (for [`processed_offsets`]).
fn consumer(stream: &str, name: &str) -> Command {
    let mut cmd = named_consumer(env!("CARGO_BIN_EXE_consumer"), stream, name);
    cmd.env("OFFSET_TRACKING__CONSUMER__OFFSET", "first")
        .env("RUST_LOG", "info,consumer::processed=debug");
    cmd
}

/// The bodies of wave `wave`: `w{wave}-hello{i}`, the last one `marker-w{wave}-{i}`.
fn wave_bodies(wave: u32) -> Vec<Vec<u8>> {
    (0..WAVE)
        .map(|i| {
            if i + 1 == WAVE {
                format!("marker-w{wave}-{i}").into_bytes()
            } else {
                format!("w{wave}-hello{i}").into_bytes()
            }
        })
        .collect()
}

/// Writes wave `wave` to `stream`, twice: plain messages (the raw client), then sub-entry batches
/// (`writer`). Returns the bodies in the order written.
async fn write_wave(stream: &TestStream, writer: Writer, wave: u32) -> Vec<Vec<u8>> {
    let bodies = wave_bodies(wave);
    for half in bodies.chunks(WAVE / 2) {
        let (plain, sub_entries) = half.split_at(PLAIN_PER_HALF);
        stream.publish(plain.to_vec()).await;
        writer
            .write(&stream.name, batches(sub_entries.to_vec(), PER_BATCH))
            .await;
    }
    bodies
}

/// Checks one consumer run against the oracle's `expected` (offset, body) records: exit 0, every
/// message once, first and last offsets, marker, stored offset (in the summary and on the broker).
async fn check_run(
    out: &Output,
    stream: &TestStream,
    name: &str,
    log: &[u64],
    expected: &[(u64, Vec<u8>)],
) {
    assert_ok(out);
    let stderr = stderr_of(out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let first = expected.first().unwrap().0;
    let last = expected.last().unwrap().0;
    let summary = summary_of(out);
    assert_eq!(summary.messages, expected.len() as u64, "{summary:?}");
    let partition = partition_of(out, &stream.name);
    assert_eq!(partition.first_offset, Some(first), "{partition:?}");
    assert_eq!(partition.last_offset, Some(last), "{partition:?}");
    assert!(
        partition.marker,
        "the marker was not reached: {partition:?}"
    );
    assert_eq!(partition.stored_offset, Some(last), "{partition:?}");
    let seen = processed_offsets(&stderr, &stream.name, log);
    let want: BTreeSet<u64> = expected.iter().map(|(o, _)| *o).collect();
    assert_eq!(seen, want, "the offsets processed are not the oracle's");
    assert_eq!(stream.stored_offset(name).await, Some(last));
}

/// Two waves of sub-entries (from `writer`) and plain messages, each consumed by one run of our
/// consumer; the second run resumes right after the first.
async fn two_waves_are_consumed_exactly(writer: Writer) {
    let stream = TestStream::new("sub").await;
    let name = unique("sub");

    let bodies = write_wave(&stream, writer, 1).await;
    let wave1 = read_all_delivered(&stream.name).await;
    let read: Vec<Vec<u8>> = wave1.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(read, bodies, "the oracle does not read what was written");
    let log: Vec<u64> = wave1.iter().map(|(o, _)| *o).collect();
    let out = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    check_run(&out, &stream, &name, &log, &wave1).await;
    let wave1_last = log.last().copied().unwrap();

    let bodies = write_wave(&stream, writer, 2).await;
    let all = read_all_delivered(&stream.name).await;
    assert_eq!(&all[..wave1.len()], &wave1[..], "wave 1 changed");
    let wave2: Vec<(u64, Vec<u8>)> = all
        .iter()
        .filter(|(o, _)| *o > wave1_last)
        .cloned()
        .collect();
    let read: Vec<Vec<u8>> = wave2.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(read, bodies, "the oracle does not read wave 2 as written");
    let log: Vec<u64> = all.iter().map(|(o, _)| *o).collect();
    let out = run_with_deadline(&mut consumer(&stream.name, &name), LIMIT);
    // Run 2 starts at wave 2's first message (the next one after run 1's stored offset) and
    // processes nothing of wave 1 again.
    check_run(&out, &stream, &name, &log, &wave2).await;
}

#[tokio::test]
async fn rstream_uncompressed_sub_entries_are_consumed_and_resumed_exactly() {
    two_waves_are_consumed_exactly(Writer::Rstream(RstreamCodec::None)).await;
}

#[tokio::test]
async fn rstream_gzip_sub_entries_are_consumed_and_resumed_exactly() {
    two_waves_are_consumed_exactly(Writer::Rstream(RstreamCodec::Gzip)).await;
}

#[tokio::test]
async fn uncompressed_sub_entries_are_consumed_and_resumed_exactly() {
    two_waves_are_consumed_exactly(Writer::Ours(Compression::None)).await;
}

#[tokio::test]
async fn snappy_sub_entries_are_consumed_and_resumed_exactly() {
    two_waves_are_consumed_exactly(Writer::Ours(Compression::Snappy)).await;
}

#[tokio::test]
async fn lz4_sub_entries_are_consumed_and_resumed_exactly() {
    two_waves_are_consumed_exactly(Writer::Ours(Compression::Lz4)).await;
}

#[tokio::test]
async fn zstd_sub_entries_are_consumed_and_resumed_exactly() {
    two_waves_are_consumed_exactly(Writer::Ours(Compression::Zstd)).await;
}

/// Good messages (plain, then zstd sub-entries), then a sub-entry batch under the unknown codec
/// `code`, then a plain marker: the consumer must stop at the bad chunk with exit 1 and a clear
/// error, and store nothing past the last good message.
async fn an_unknown_codec_is_a_clear_error(code: u8) {
    let stream = TestStream::new("sub-bad").await;
    let name = unique("sub-bad");
    stream
        .publish((0..10).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let good = batches((10..110).map(|i| format!("hello{i}").into_bytes()), 50);
    let bad = batches((110..120).map(|i| format!("hello{i}").into_bytes()), 10);
    let target = stream.name.clone();
    tokio::task::spawn_blocking(move || {
        let mut publisher = SubEntryPublisher::connect(&target).unwrap();
        publisher
            .publish_sub_entries(Compression::Zstd, &encoded(&good))
            .unwrap();
        // Confirmed before the bad batch is sent: it lands in a chunk of its own.
        publisher.publish_with_code(code, &encoded(&bad)).unwrap();
        publisher.close().unwrap();
    })
    .await
    .unwrap();
    // A consumer that skipped the bad chunk would reach this marker and exit 0.
    stream.publish([b"marker120".to_vec()]).await;

    // The oracle reads the good messages, then meets the bad chunk.
    let oracle = read_delivered(&stream.name).await;
    assert_eq!(oracle.records.len(), 110, "{:?}", oracle.error);
    let last_good = oracle.records.last().unwrap().0;
    let bad_chunk = match &oracle.error {
        Some(DeliveryError::Decode { source, .. }) => {
            assert!(
                matches!(
                    source.problem(),
                    ChunkProblem::UnknownCompression { code: found, .. } if *found == code
                ),
                "{source}"
            );
            source.first_offset().unwrap()
        }
        other => panic!("the oracle should have met an undecodable chunk, got {other:?}"),
    };
    assert_eq!(bad_chunk, last_good + 1);

    let started = Instant::now();
    let out = run_with_deadline(&mut consumer(&stream.name, &name), Duration::from_secs(30));
    let elapsed = started.elapsed();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&stream.name),
        "the error must name the stream: {stderr}"
    );
    assert!(
        stderr.contains(&format!("offset {bad_chunk}")),
        "the error must name the chunk's first offset {bad_chunk}: {stderr}"
    );
    assert!(
        stderr.contains(&format!("unknown compression code {code}")),
        "the error must say what was found: {stderr}"
    );
    let log = oracle.offsets();
    let processed = processed_offsets(&stderr, &stream.name, &log);
    assert!(
        processed.iter().all(|o| *o <= last_good),
        "processed past the bad chunk: {processed:?}"
    );
    let stored = stream.stored_offset(&name).await;
    assert!(
        stored.is_none_or(|s| s <= last_good),
        "stored {stored:?}, past the last good message {last_good}"
    );
    let error = stderr
        .lines()
        .filter(|l| l.contains("ERROR"))
        .collect::<Vec<_>>();
    println!("exit 1 after {elapsed:?}; stored {stored:?}; last good {last_good}; {error:?}");
}

#[tokio::test]
async fn a_sub_entry_with_unknown_codec_5_is_a_clear_error_and_nothing_past_it_is_stored() {
    an_unknown_codec_is_a_clear_error(5).await;
}

#[tokio::test]
async fn a_sub_entry_with_unknown_codec_7_is_a_clear_error_and_nothing_past_it_is_stored() {
    an_unknown_codec_is_a_clear_error(7).await;
}
