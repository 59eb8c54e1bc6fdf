//! On the local 3-node cluster (`scripts/cluster.sh up`): a replicated stream surviving its
//! leader's `kill -9`, a super stream shared by a consumer group through a `kill -9` and a
//! SIGTERM, interop with the client's own super stream code, and the loss of two nodes of three
//! (with how a client tells that a stream has lost its quorum, checked on the single broker).
//! The tests stop nodes, so they take turns ([`cluster_lock`]) and start every node they stopped
//! again, even when they fail. Those on the cluster are named `on_three_nodes_…`:
//! `scripts/test.sh` runs them beside the single-broker tests, in a lane of their own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rabbitmq_stream_client::types::{
    HashRoutingMurmurStrategy, Message, OffsetSpecification, RoutingStrategy,
};
use shared::config::BrokerSettings;
use shared::connection::{quorum_lost, stream_state, StreamState};
use testkit::broker::broker;
use testkit::cluster::{
    cluster_hosts, cluster_lock, cluster_script, require_cluster, stream_leader,
};
use testkit::process::{our_binary, stderr_of, workspace_binary, Running};
use testkit::streams::{processed_offsets, unique, wave_bodies, OwnedStream, TestStream};
use testkit::summary::{partition_of, summary_of};

const LIMIT: Duration = Duration::from_secs(180);

fn producer_binary() -> std::path::PathBuf {
    workspace_binary(env!("CARGO_BIN_EXE_consumer"), "producer")
}

/// Our producer publishing `count` messages to `stream` as the named producer `name`, through
/// node `first` (then the others).
fn producer(stream: &OwnedStream, first: u8, count: u64, name: &str) -> Command {
    let mut cmd = our_binary(producer_binary());
    cmd.env("OFFSET_TRACKING__BROKER__HOSTS", cluster_hosts(first))
        .env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env(
            "OFFSET_TRACKING__STREAM__PARTITIONS",
            stream.partitions.to_string(),
        )
        .env("OFFSET_TRACKING__STREAM__INITIAL_CLUSTER_SIZE", "3")
        .env("OFFSET_TRACKING__PRODUCER__CONFIRM_TIMEOUT", "5s")
        .env("OFFSET_TRACKING__PRODUCER__RECONNECT_TIMEOUT", "150s")
        .args(["--count", &count.to_string(), "--name", name]);
    cmd
}

/// Our consumer as `name` on `stream`, through node `first` (then the others), logging each
/// processed batch.
fn consumer(stream: &OwnedStream, first: u8, name: &str) -> Command {
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_consumer"));
    cmd.env("OFFSET_TRACKING__BROKER__HOSTS", cluster_hosts(first))
        .env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env(
            "OFFSET_TRACKING__STREAM__PARTITIONS",
            stream.partitions.to_string(),
        )
        .env("OFFSET_TRACKING__STREAM__INITIAL_CLUSTER_SIZE", "3")
        // Some scenarios start the consumer first: it creates the (replicated) stream.
        .env("OFFSET_TRACKING__CONSUMER__CREATE_STREAM", "true")
        .env("OFFSET_TRACKING__CONSUMER__NAME", name)
        .env("OFFSET_TRACKING__CONSUMER__RECONNECT_TIMEOUT", "150s")
        .env("RUST_LOG", "info,consumer::processed=debug");
    cmd
}

/// A node this test stopped: started again when dropped, even if the test fails.
struct Stopped(Vec<u8>);

impl Stopped {
    fn kill(nodes: &[u8]) -> Self {
        for node in nodes {
            cluster_script(&["kill", &node.to_string()]);
        }
        Self(nodes.to_vec())
    }

    fn start_again(mut self) {
        self.start_all();
    }

    fn start_all(&mut self) {
        let nodes = std::mem::take(&mut self.0);
        // Together: a node started alone may wait for its peers' tables.
        let starts: Vec<_> = nodes
            .iter()
            .map(|node| {
                let node = node.to_string();
                std::thread::spawn(move || cluster_script(&["start", &node]))
            })
            .collect();
        for start in starts {
            start.join().unwrap();
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            self.start_all();
        }
    }
}

/// A node other than `nodes`.
fn other_than(nodes: &[u8]) -> u8 {
    (1..=3).find(|n| !nodes.contains(n)).unwrap()
}

/// The stream's leader, asked of node `ask`, waiting for it to have one.
fn leader_of(stream: &str, ask: u8) -> u8 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = stream_leader(stream, ask) {
            return leader;
        }
        assert!(Instant::now() < deadline, "{stream} has no leader");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks that `stream` holds `expected` bodies exactly once each, in order; returns its offsets.
async fn assert_exactly_once(stream: &OwnedStream, name: &str, expected: &[Vec<u8>]) -> Vec<u64> {
    let messages = stream.read_all(name).await;
    let bodies: Vec<&Vec<u8>> = messages.iter().map(|(_, body)| body).collect();
    let expected: Vec<&Vec<u8>> = expected.iter().collect();
    if bodies != expected {
        let distinct: BTreeSet<&Vec<u8>> = bodies.iter().copied().collect();
        panic!(
            "{name} holds {} messages ({} distinct), expected {} exactly once, in order",
            bodies.len(),
            distinct.len(),
            expected.len()
        );
    }
    messages.into_iter().map(|(offset, _)| offset).collect()
}

/// A consumer through node `consumer_node` and a named producer of `wave` messages through
/// node 1, both running, the consumer having received its first message: the wave is under way.
/// Also the stream's leader, looked up before publishing starts (the lookup takes a second or
/// two, which the wave must not spend).
fn wave_under_way(
    stream: &OwnedStream,
    consumer_node: u8,
    wave: u64,
    name: &str,
) -> (Running, Running, u8) {
    // The consumer first: it creates the stream.
    let mut consuming = Running::spawn(&mut consumer(stream, consumer_node, name));
    consuming.wait_for_line("Started consuming", LIMIT);
    let leader = leader_of(&stream.name, consumer_node);
    let publishing = Running::spawn(&mut producer(stream, 1, wave, &unique("p")));
    consuming.wait_for_line("First message received", LIMIT);
    (consuming, publishing, leader)
}

/// Fails the test if the wave ended before the failure it was to live through.
fn assert_still_publishing(publishing: &mut Running) {
    assert!(
        publishing.child.try_wait().unwrap().is_none(),
        "the producer finished before the nodes were killed: nothing was tested"
    );
}

/// Offsets processed more than once, and offsets of `log` nobody processed.
fn duplicates_and_lost(runs: &[BTreeSet<u64>], log: &[u64]) -> (usize, usize) {
    let all: BTreeSet<u64> = runs.iter().flatten().copied().collect();
    let total: usize = runs.iter().map(BTreeSet::len).sum();
    let lost = log.iter().filter(|o| !all.contains(o)).count();
    (total - all.len(), lost)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_three_nodes_a_replicated_stream_survives_its_leader_killed_mid_wave() {
    const WAVE: u64 = 500_000;
    let _turn = cluster_lock().await;
    let stream = OwnedStream::on_cluster("cl-failover", 0).await;
    let name = unique("cl-failover");

    let (consuming, mut publishing, leader) = wave_under_way(&stream, 2, WAVE, &name);
    let killed_at = Instant::now();
    let killed_wall = chrono::Utc::now();
    let stopped = Stopped::kill(&[leader]);
    assert_still_publishing(&mut publishing);
    publishing.wait_for_log(&["reconnected"], LIMIT);
    let producer_failover = killed_at.elapsed();

    let published = publishing.finish(LIMIT);
    assert!(published.status.success(), "{}", stderr_of(&published));
    let consumed = consuming.finish(LIMIT);
    assert!(consumed.status.success(), "{}", stderr_of(&consumed));
    assert!(
        partition_of(&consumed, &stream.name).marker,
        "the consumer did not reach the marker: {}",
        stderr_of(&consumed)
    );
    stopped.start_again();

    let expected: Vec<Vec<u8>> = wave_bodies(WAVE).collect();
    let log = assert_exactly_once(&stream, &stream.name, &expected).await;
    let processed = processed_offsets(&stderr_of(&consumed), &stream.name, &log);
    let batches_total: u64 = stderr_of(&consumed)
        .lines()
        .filter(|l| l.contains(" processed "))
        .filter_map(|l| l.split("count=").nth(1))
        .filter_map(|c| c.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    let lost = log.iter().filter(|o| !processed.contains(o)).count();
    // When the consumer subscribed again, if it had to (its replica may have survived).
    let consumer_failover = stderr_of(&consumed)
        .lines()
        .filter(|line| line.contains("subscribed again"))
        .filter_map(|line| {
            chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()
        })
        .find(|at| *at > killed_wall)
        .map(|at| {
            (at.with_timezone(&chrono::Utc) - killed_wall)
                .to_std()
                .unwrap_or_default()
        });
    println!(
        "leader c{leader} killed mid-wave: producer reconnected after {producer_failover:?}, \
         consumer subscribed again after {consumer_failover:?}; \
         reconnects producer {} consumer {}; stream holds {} of {WAVE} exactly once; consumer \
         lost {lost}, duplicates {}",
        summary_of(&published).reconnects,
        summary_of(&consumed).reconnects,
        log.len(),
        batches_total - processed.len() as u64,
    );
    assert_eq!(lost, 0, "the consumer missed messages");
    assert_eq!(
        batches_total,
        processed.len() as u64,
        "the consumer processed messages twice"
    );
    // The broker's metadata update is acted on at once (the client's consumer took ~6 s): the
    // target is 1.5 s after the kill. On a loaded machine the election itself can take longer;
    // the producer, which needs the new leader too, shows when it was there.
    if let Some(resumed) = consumer_failover {
        let allowed = Duration::from_millis(1500).max(producer_failover + Duration::from_secs(1));
        assert!(
            resumed <= allowed,
            "the consumer resumed {resumed:?} after the leader's kill, the producer after \
             {producer_failover:?} (allowed: {allowed:?}): {}",
            stderr_of(&consumed)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_three_nodes_losing_two_nodes_of_three_stalls_clearly_and_recovers_with_nothing_lost_or_doubled(
) {
    const WAVE: u64 = 400_000;
    let _turn = cluster_lock().await;
    let stream = OwnedStream::on_cluster("cl-2down", 0).await;
    let name = unique("cl-2down");

    let (consuming, mut publishing, leader) = wave_under_way(&stream, 1, WAVE, &name);
    let survivor = other_than(&[leader, if leader == 1 { 2 } else { 1 }]);
    let lost_nodes: Vec<u8> = (1..=3).filter(|n| *n != survivor).collect();
    let stopped = Stopped::kill(&lost_nodes);
    println!("leader c{leader}; killed {lost_nodes:?}");
    assert_still_publishing(&mut publishing);
    // Both say why they cannot go on: no leader, or no confirmation, lost quorum.
    publishing.wait_for_log(&["lost quorum"], Duration::from_secs(60));
    consuming.wait_for_log(&["lost quorum"], Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let down_for = Instant::now();
    stopped.start_again();
    println!("nodes {lost_nodes:?} back after {:?}", down_for.elapsed());

    let published = publishing.finish(LIMIT);
    assert!(published.status.success(), "{}", stderr_of(&published));
    let consumed = consuming.finish(LIMIT);
    assert!(consumed.status.success(), "{}", stderr_of(&consumed));

    let expected: Vec<Vec<u8>> = wave_bodies(WAVE).collect();
    let log = assert_exactly_once(&stream, &stream.name, &expected).await;
    let processed = processed_offsets(&stderr_of(&consumed), &stream.name, &log);
    let (_, lost) = duplicates_and_lost(std::slice::from_ref(&processed), &log);
    let producer_log = stderr_of(&published);
    let producer_said: Vec<&str> = producer_log
        .lines()
        .filter(|l| l.contains("lost quorum"))
        .take(1)
        .collect();
    let consumer_log = stderr_of(&consumed);
    let consumer_said: Vec<&str> = consumer_log
        .lines()
        .filter(|l| l.contains("lost quorum"))
        .take(1)
        .collect();
    println!(
        "lost nodes {lost_nodes:?} of 3 (leader c{leader}); the producer said: {producer_said:?}; \
         the consumer said: {consumer_said:?}; \
         stream holds {} of {WAVE} exactly once; consumer lost {lost}",
        log.len()
    );
    assert_eq!(lost, 0, "the consumer missed messages");
}

/// The index of the wave's message in `body` (`hello12`, `marker99`), as the routing key.
fn index_key(message: &Message) -> String {
    let body = message.data().unwrap_or_default();
    let digits: String = String::from_utf8_lossy(body)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    digits
}

/// Every message of the super stream `name`, read with the client's own super stream consumer:
/// body → partition it was in.
async fn read_super_stream(name: &str, expected: usize) -> BTreeMap<Vec<u8>, String> {
    let env = require_cluster().await;
    let mut reader = env
        .super_stream_consumer()
        .offset(OffsetSpecification::First)
        .build(name)
        .await
        .unwrap();
    let mut found = BTreeMap::new();
    while found.len() < expected {
        let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_secs(10), reader.next()).await
        else {
            break;
        };
        let delivery = delivery.unwrap();
        let body = delivery.message().data().unwrap_or_default().to_vec();
        assert!(
            found.insert(body, delivery.stream().clone()).is_none(),
            "a message was read twice"
        );
    }
    let _ = reader.handle().close().await;
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn on_three_nodes_the_clients_own_super_stream_code_agrees_on_every_partition() {
    const WAVE: u64 = 3_000;
    let _turn = cluster_lock().await;
    let ours = OwnedStream::on_cluster("cl-interop-ours", 3).await;
    let theirs = OwnedStream::on_cluster("cl-interop-theirs", 3).await;
    let published = Running::spawn(&mut producer(&ours, 1, WAVE, &unique("p"))).finish(LIMIT);
    assert!(published.status.success(), "{}", stderr_of(&published));

    // The same keys through the client's super stream producer and its murmur3 routing.
    let env = require_cluster().await;
    env.stream_creator()
        .create_super_stream(&theirs.name, 3, None)
        .await
        .unwrap();
    let mut reference = env
        .super_stream_producer(RoutingStrategy::HashRoutingStrategy(
            HashRoutingMurmurStrategy {
                routing_extractor: &index_key,
            },
        ))
        .build(&theirs.name)
        .await
        .unwrap();
    let confirmed = Arc::new(AtomicU64::new(0));
    for body in wave_bodies(WAVE) {
        let confirmed = confirmed.clone();
        reference
            .send(Message::builder().body(body).build(), move |status| {
                let confirmed = confirmed.clone();
                async move {
                    assert!(status.unwrap().confirmed());
                    confirmed.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while confirmed.load(Ordering::Relaxed) < WAVE {
        assert!(
            Instant::now() < deadline,
            "the reference wave was not confirmed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = reference.close().await;

    let ours_read = read_super_stream(&ours.name, WAVE as usize).await;
    let theirs_read = read_super_stream(&theirs.name, WAVE as usize).await;
    assert_eq!(
        ours_read.len() as u64,
        WAVE,
        "our super stream is missing messages"
    );
    assert_eq!(theirs_read.len() as u64, WAVE);
    let mut disagreements = 0;
    let mut per_partition: BTreeMap<String, u64> = BTreeMap::new();
    for (body, partition) in &ours_read {
        let suffix = partition.rsplit('-').next().unwrap().to_owned();
        let key = index_key(&Message::builder().body(body.clone()).build());
        let reference_body = format!("hello{key}").into_bytes();
        let marker_body = format!("marker{key}").into_bytes();
        let theirs_partition = theirs_read
            .get(&reference_body)
            .or_else(|| theirs_read.get(&marker_body))
            .unwrap();
        if theirs_partition.rsplit('-').next().unwrap() != suffix {
            disagreements += 1;
        }
        *per_partition.entry(partition.clone()).or_default() += 1;
    }
    println!(
        "{WAVE} messages; per partition {per_partition:?}; disagreements with the client's \
         murmur3 routing: {disagreements}"
    );
    assert_eq!(disagreements, 0);
}

/// Whether `member` is, by its own log, the active consumer of `partition` now.
fn is_active(member: &Running, partition: &str) -> bool {
    member
        .logs(&[&format!("partition {partition}: "), "active in group"])
        .last()
        .is_some_and(|line| !line.contains("inactive in group"))
}

/// Writes each member's log to `target/tmp/<group>/member-<n>.log` for a failure's post-mortem;
/// returns the folder.
fn keep_logs(group: &str, logs: &[String]) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(group);
    let _ = std::fs::create_dir_all(&dir);
    for (n, log) in logs.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("member-{n}.log")), log);
    }
    dir.display().to_string()
}

/// Each member's consumer-group lines and warnings, for a failure message.
fn group_lines(logs: &[String]) -> Vec<Vec<&str>> {
    logs.iter()
        .map(|log| {
            log.lines()
                .filter(|l| l.contains("group") || l.contains("WARN"))
                .collect()
        })
        .collect()
}

/// Waits until the group's stored offset of every partition is the partition's last offset.
async fn await_stored_to_end(
    stream: &OwnedStream,
    group: &str,
    members: &[Running],
) -> BTreeMap<String, Vec<u64>> {
    let mut logs = BTreeMap::new();
    for partition in stream.streams() {
        let log: Vec<u64> = stream
            .read_all(&partition)
            .await
            .into_iter()
            .map(|(offset, _)| offset)
            .collect();
        logs.insert(partition, log);
    }
    let deadline = Instant::now() + LIMIT;
    for (partition, log) in &logs {
        loop {
            let stored = stream.stored_offset(group, partition).await;
            if stored == log.last().copied() {
                break;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = members.iter().map(|m| m.logs(&[]).join("\n")).collect();
                panic!(
                    "{partition}: stored {stored:?}, its last offset is {:?}; logs in {}; group \
                     lines: {:#?}",
                    log.last(),
                    keep_logs(group, &logs),
                    group_lines(&logs)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    logs
}

#[tokio::test(flavor = "multi_thread")]
async fn on_three_nodes_a_consumer_group_shares_a_super_stream_and_hands_over_on_kill_and_sigterm()
{
    const STORE_EVERY: u64 = 1000;
    // A crash repeats at most what was processed since the last store: the tracker's bound.
    const BOUND: usize = (STORE_EVERY + 512) as usize;
    let _turn = cluster_lock().await;
    let stream = OwnedStream::on_cluster("cl-group", 3).await;
    let group = unique("cl-group");
    let producer_name = unique("p");
    let partitions = stream.streams();
    let member = |first: u8| {
        let mut cmd = consumer(&stream, first, &group);
        cmd.env("OFFSET_TRACKING__CONSUMER__SINGLE_ACTIVE", "true")
            .env(
                "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES",
                STORE_EVERY.to_string(),
            )
            .env("OFFSET_TRACKING__TRACKER__STORE_EVERY", "1s");
        cmd
    };
    let publish = |count: u64| Running::spawn(&mut producer(&stream, 1, count, &producer_name));

    // Phase 1: three members share the three partitions.
    let first_wave = publish(30_000).finish(LIMIT);
    assert!(first_wave.status.success(), "{}", stderr_of(&first_wave));
    let mut members: Vec<Running> = (1..=3u8).map(|n| Running::spawn(&mut member(n))).collect();
    for running in &mut members {
        running.wait_for_line("Started consuming", LIMIT);
    }
    await_stored_to_end(&stream, &group, &members).await;
    // Each partition has exactly one active member once the broker's rebalancing settles.
    let settle = Instant::now();
    loop {
        let actives: Vec<Vec<usize>> = partitions
            .iter()
            .map(|p| (0..3).filter(|&m| is_active(&members[m], p)).collect())
            .collect();
        if actives.iter().all(|a| a.len() == 1) {
            break;
        }
        if settle.elapsed() > Duration::from_secs(30) {
            let history: Vec<Vec<String>> = members.iter().map(|m| m.logs(&["group"])).collect();
            panic!("active members per partition {actives:?}; logs: {history:#?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let spread: Vec<usize> = (0..3)
        .map(|m| {
            partitions
                .iter()
                .filter(|p| is_active(&members[m], p))
                .count()
        })
        .collect();

    // Phase 2: kill -9 the member active on the first partition, mid-wave.
    let victim = (0..3)
        .find(|&m| is_active(&members[m], &partitions[0]))
        .unwrap();
    let victim_partitions: Vec<String> = partitions
        .iter()
        .filter(|p| is_active(&members[victim], p))
        .cloned()
        .collect();
    let mut second_wave = publish(150_000);
    second_wave.wait_for_line("Publishing", LIMIT);
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = chrono::Utc::now();
    members[victim].signal("KILL");
    // From the kill to the first activation on that partition another member logged after it.
    let taken_over = format!("partition {}: active in group", partitions[0]);
    let failover = loop {
        let activation = (0..3)
            .filter(|&m| m != victim)
            .flat_map(|m| members[m].logs(&[&taken_over]))
            .filter_map(|line| {
                chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()
            })
            .find(|at| *at > killed_at);
        if let Some(at) = activation {
            break (at.with_timezone(&chrono::Utc) - killed_at)
                .to_std()
                .unwrap_or_default();
        }
        let waited = (chrono::Utc::now() - killed_at)
            .to_std()
            .unwrap_or_default();
        assert!(
            waited < Duration::from_secs(60),
            "no member took {} over",
            partitions[0]
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let second_wave = second_wave.finish(LIMIT);
    assert!(second_wave.status.success(), "{}", stderr_of(&second_wave));
    await_stored_to_end(&stream, &group, &members).await;

    // Phase 3: SIGTERM another member mid-wave: a clean handover.
    let survivors: Vec<usize> = (0..3).filter(|&m| m != victim).collect();
    let leaving = survivors[0];
    let mut third_wave = publish(150_000);
    third_wave.wait_for_line("Publishing", LIMIT);
    std::thread::sleep(Duration::from_millis(1500));
    members[leaving].signal("TERM");
    let third_wave = third_wave.finish(LIMIT);
    assert!(third_wave.status.success(), "{}", stderr_of(&third_wave));
    let logs = await_stored_to_end(&stream, &group, &members).await;

    for &m in &survivors {
        members[m].signal("TERM");
    }
    let outputs: Vec<_> = members.into_iter().map(|m| m.finish(LIMIT)).collect();
    for &m in &survivors {
        assert!(
            outputs[m].status.success(),
            "SIGTERM must exit 0: {}",
            stderr_of(&outputs[m])
        );
    }

    let mut report = vec![];
    for partition in &partitions {
        let log = &logs[partition];
        let runs: Vec<BTreeSet<u64>> = outputs
            .iter()
            .map(|out| processed_offsets(&stderr_of(out), partition, log))
            .collect();
        let (duplicates, lost) = duplicates_and_lost(&runs, log);
        let others: Vec<BTreeSet<u64>> = (0..3)
            .filter(|&m| m != victim)
            .map(|m| runs[m].clone())
            .collect();
        let (duplicates_without_victim, _) = duplicates_and_lost(&others, log);
        report.push(format!(
            "{partition}: {} messages, lost {lost}, duplicates {duplicates} (after the kill -9; \
             {duplicates_without_victim} otherwise)",
            log.len()
        ));
        if lost != 0 || duplicates > BOUND || duplicates_without_victim != 0 {
            let logs: Vec<String> = outputs.iter().map(stderr_of).collect();
            panic!(
                "{partition}: lost {lost}, duplicates {duplicates} (bound {BOUND}), \
                 {duplicates_without_victim} of them by the SIGTERM handover or a rebalance \
                 (must be 0); killed member {victim}, SIGTERM'd member {leaving}; logs in {}; \
                 group lines: {:#?}",
                keep_logs(&group, &logs),
                group_lines(&logs)
            );
        }
    }
    println!(
        "group of 3 on 3 partitions, spread {spread:?}; killed the member active on \
         {victim_partitions:?}: {} taken over after {failover:?}; SIGTERM handover clean\n{}",
        partitions[0],
        report.join("\n")
    );
}

/// The leader-alone case of `losing_two_nodes…`, on the single broker: a stream with no replica
/// online has lost its quorum only when most of the configured hosts do not answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_without_replicas_lost_its_quorum_only_when_most_hosts_are_down() {
    let stream = TestStream::new("quorum-view").await;
    let client = shared::connection::client(&broker(), "test").await.unwrap();
    let state = stream_state(&client, &stream.name).await.unwrap();
    let _ = client.close().await;
    assert_eq!(state, StreamState::Available { replicas: 0 });

    let up = broker().endpoint().to_string();
    let down = "localhost:1".to_owned();
    let with_hosts = |hosts: &[&String]| BrokerSettings {
        hosts: hosts.iter().map(|h| (*h).clone()).collect(),
        ..broker()
    };
    let one_of_three = quorum_lost(&with_hosts(&[&up, &down, &down]), state).await;
    let why = one_of_three
        .unwrap()
        .expect("1 of 3 answering is a lost quorum");
    assert!(why.contains("only 1 of the 3 broker.hosts answer"), "{why}");
    assert!(why.contains("lost quorum"), "{why}");
    let two_of_three = quorum_lost(&with_hosts(&[&up, &up, &down]), state).await;
    assert_eq!(two_of_three.unwrap(), None, "2 of 3 answering is a quorum");
    // One configured host: nothing to tell a single node from a cluster that lost the others.
    assert_eq!(quorum_lost(&broker(), state).await.unwrap(), None);
    let with_replica = StreamState::Available { replicas: 1 };
    let leader_and_replica = quorum_lost(&with_hosts(&[&up, &down, &down]), with_replica).await;
    assert_eq!(
        leader_and_replica.unwrap(),
        None,
        "a replica online: not alone"
    );
}
