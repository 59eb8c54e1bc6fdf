//! Super streams and consumer groups on the single test broker: every partition consumed and
//! resumed on its own, and bad settings or a deleted partition as clear errors that store nothing
//! wrong. (Failover, group handover under kill -9 and interop run on the cluster: `cluster.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use testkit::process::{
    our_binary, run_with_deadline, stderr_of, stdout_of, workspace_binary, Running,
};
use testkit::streams::{unique, OwnedStream};
use testkit::summary::{partition_of, summary_of};

const LIMIT: Duration = Duration::from_secs(120);

fn producer(stream: &OwnedStream, count: u64) -> Command {
    let bin = workspace_binary(env!("CARGO_BIN_EXE_consumer"), "producer");
    let mut cmd = our_binary(bin);
    cmd.env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env(
            "OFFSET_TRACKING__STREAM__PARTITIONS",
            stream.partitions.to_string(),
        )
        .args(["--count", &count.to_string(), "--name", "wave"]);
    cmd
}

fn consumer(stream: &OwnedStream, name: &str) -> Command {
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_consumer"));
    cmd.env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env(
            "OFFSET_TRACKING__STREAM__PARTITIONS",
            stream.partitions.to_string(),
        )
        .env("OFFSET_TRACKING__CONSUMER__NAME", name);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn every_partition_is_consumed_to_its_marker_and_resumed_on_its_own() {
    let stream = OwnedStream::on_broker("ss1", 3).await;
    let name = unique("ss1");
    let published = run_with_deadline(&mut producer(&stream, 3_000), LIMIT);
    assert!(published.status.success(), "{}", stderr_of(&published));

    let first = run_with_deadline(&mut consumer(&stream, &name), LIMIT);
    let err = stderr_of(&first);
    assert!(first.status.success(), "{err}");
    let out = stdout_of(&first);
    let mut total = 0;
    for partition in stream.streams() {
        let log = stream.read_all(&partition).await;
        let (last, body) = log.last().unwrap();
        assert!(
            body.starts_with(b"marker"),
            "{partition} ends with its marker"
        );
        assert!(
            out.contains(&format!("Done consuming partition {partition} ")),
            "{out}"
        );
        assert_eq!(partition_of(&first, &partition).messages, log.len() as u64);
        assert_eq!(stream.stored_offset(&name, &partition).await, Some(*last));
        total += log.len();
    }
    assert_eq!(total, 3_000);
    assert_eq!(summary_of(&first).markers(), 3);

    // A second wave: each partition resumes right after its own stored offset.
    let published = run_with_deadline(&mut producer(&stream, 300), LIMIT);
    assert!(published.status.success(), "{}", stderr_of(&published));
    let second = run_with_deadline(&mut consumer(&stream, &name), LIMIT);
    let err = stderr_of(&second);
    assert!(second.status.success(), "{err}");
    assert_eq!(summary_of(&second).messages, 300, "{err}");
    for partition in stream.streams() {
        let log = stream.read_all(&partition).await;
        assert_eq!(
            stream.stored_offset(&name, &partition).await,
            log.last().map(|(offset, _)| *offset)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_partition_and_group_settings_are_clear_errors() {
    let stream = OwnedStream::on_broker("ss2", 3).await;
    let plain = OwnedStream::on_broker("ss2-plain", 0).await;
    let name = unique("ss2");
    assert!(run_with_deadline(&mut producer(&stream, 30), LIMIT)
        .status
        .success());
    assert!(run_with_deadline(&mut producer(&plain, 10), LIMIT)
        .status
        .success());

    let expect = |cmd: &mut Command, code: i32, words: &[&str]| {
        let out = run_with_deadline(cmd, LIMIT);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(code), "{err}");
        for word in words {
            assert!(err.contains(word), "{word:?} not in: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    };
    // Another partition count than the super stream's.
    expect(
        consumer(&stream, &name).env("OFFSET_TRACKING__STREAM__PARTITIONS", "2"),
        2,
        &["stream.partitions = 2", "has 3 partitions"],
    );
    // A super stream read as a plain stream, and a plain stream as a super stream.
    expect(
        consumer(&stream, &name).env("OFFSET_TRACKING__STREAM__PARTITIONS", "0"),
        2,
        &["is a super stream of 3 partitions"],
    );
    expect(
        producer(&plain, 10).env("OFFSET_TRACKING__STREAM__PARTITIONS", "3"),
        2,
        &["is a plain stream"],
    );
    // A group without a name, or with offsets another member cannot read.
    expect(
        consumer(&stream, "")
            .env("OFFSET_TRACKING__CONSUMER__SINGLE_ACTIVE", "true")
            .env("OFFSET_TRACKING__CONSUMER__NAME", ""),
        2,
        &["consumer.name", "single_active"],
    );
    expect(
        consumer(&plain, &name)
            .env("OFFSET_TRACKING__CONSUMER__SINGLE_ACTIVE", "true")
            .env("OFFSET_TRACKING__TRACKER__STORE", "sqlite"),
        2,
        &["consumer.single_active"],
    );
    // A routing key that would send everything to one partition.
    expect(
        producer(&stream, 10).env("OFFSET_TRACKING__PRODUCER__ROUTING_KEY", "same"),
        2,
        &["producer.routing_key"],
    );
    // Too few messages to give every partition its marker.
    expect(&mut producer(&stream, 1), 2, &["no marker"]);
    // No host answers: each is named with why.
    expect(
        consumer(&stream, &name)
            .env("OFFSET_TRACKING__BROKER__HOSTS", "localhost:1,127.0.0.1:2")
            .env("OFFSET_TRACKING__BROKER__CONNECT_TIMEOUT", "2s"),
        1,
        &[
            "localhost:1",
            "127.0.0.1:2",
            "none of the broker.hosts answered",
        ],
    );
    expect(
        consumer(&stream, &name).env("OFFSET_TRACKING__BROKER__HOSTS", "localhost"),
        2,
        &["broker.hosts[0]"],
    );
    // Nothing of it stored anything.
    for partition in stream.streams() {
        assert_eq!(stream.stored_offset(&name, &partition).await, None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_deleted_while_consuming_is_a_clear_error_and_the_others_flush() {
    let stream = OwnedStream::on_broker("ss3", 3).await;
    let name = unique("ss3");
    assert!(run_with_deadline(&mut producer(&stream, 300), LIMIT)
        .status
        .success());
    // A group member never stops at markers: it is still consuming when the partition goes.
    let mut running = Running::spawn(
        consumer(&stream, &name).env("OFFSET_TRACKING__CONSUMER__SINGLE_ACTIVE", "true"),
    );
    let partitions = stream.streams();
    for partition in &partitions {
        running.wait_for_line(&format!("Marker received partition {partition} "), LIMIT);
    }
    stream.delete_stream(&partitions[1]).await;
    let out = running.finish(LIMIT);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&partitions[1]) && err.contains("deleted"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for partition in [&partitions[0], &partitions[2]] {
        let log = stream.read_all(partition).await;
        assert_eq!(
            stream.stored_offset(&name, partition).await,
            log.last().map(|(offset, _)| *offset),
            "{partition} flushed what it processed"
        );
    }
}
