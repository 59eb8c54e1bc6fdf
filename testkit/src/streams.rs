//! Streams made for one test: unique names, [`TestStream`] (created by the test) and
//! [`OwnedStream`] (plain or super, created by our programs), both deleted when dropped even if the
//! test panics; publishing and reading them with the raw client as an oracle independent of our
//! code; the producer's wave; the offsets a consumer run processed.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rabbitmq_stream_client::types::{Message, OffsetSpecification};
use rabbitmq_stream_client::Environment;
use shared::config::BrokerSettings;
use shared::connection;

use crate::broker::{broker, client_to, require_broker};
use crate::cluster::{cluster_broker, require_cluster};

/// How long a read of a whole stream waits for its first message.
pub const FIRST_CHUNK_WAIT: Duration = Duration::from_secs(10);

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The wave the producer publishes: `hello0` … `marker{n-1}`.
pub fn wave_bodies(count: u64) -> impl Iterator<Item = Vec<u8>> {
    (0..count).map(move |i| {
        if i + 1 == count {
            format!("marker{i}").into_bytes()
        } else {
            format!("hello{i}").into_bytes()
        }
    })
}

/// A stream created for one test and deleted when it is dropped, even if the test panics.
pub struct TestStream {
    /// The stream's name, unique to this test.
    pub name: String,
    owner: Owner,
}

impl TestStream {
    /// Creates a stream named [`unique`]`(prefix)` on the test broker (which must be up).
    pub async fn new(prefix: &str) -> Self {
        let env = require_broker().await;
        let name = unique(prefix);
        env.stream_creator().create(&name).await.unwrap();
        Self {
            owner: Owner::new(&name, 0, broker(), env),
            name,
        }
    }

    /// Publishes `bodies` with the raw client and waits until every one is confirmed.
    pub async fn publish(&self, bodies: impl IntoIterator<Item = Vec<u8>>) -> u64 {
        publish_raw(&self.owner.env, &self.name, bodies.into_iter().map(Some)).await
    }

    /// Publishes messages that may have no body (`None`).
    pub async fn publish_maybe_empty(
        &self,
        bodies: impl IntoIterator<Item = Option<Vec<u8>>>,
    ) -> u64 {
        publish_raw(&self.owner.env, &self.name, bodies.into_iter()).await
    }

    /// Publishes the producer's wave of `count` with the raw client.
    pub async fn publish_wave(&self, count: u64) -> u64 {
        self.publish(wave_bodies(count)).await
    }

    /// Every message now in the stream, as (offset, body), read with the raw client from the start
    /// until nothing more arrives for a second.
    pub async fn read_all(&self) -> Vec<(u64, Vec<u8>)> {
        self.owner
            .read_all(&self.name, Duration::from_secs(1))
            .await
    }

    /// The offsets of every message now in the stream, in order.
    pub async fn offsets(&self) -> Vec<u64> {
        self.read_all().await.into_iter().map(|(o, _)| o).collect()
    }

    /// The offset stored for `consumer`, if any.
    pub async fn stored_offset(&self, consumer: &str) -> Option<u64> {
        self.owner.stored_offset(consumer, &self.name).await
    }

    /// Stores `offset` for `consumer`, as an earlier run would have.
    pub async fn store_offset(&self, consumer: &str, offset: u64) {
        let client = client_to(&self.owner.broker).await;
        client
            .store_offset(consumer, &self.name, offset)
            .await
            .unwrap();
        // The store has no reply: a query on the same connection is answered after it.
        let stored = connection::stored_offset(&client, consumer, &self.name)
            .await
            .unwrap();
        assert_eq!(stored, Some(offset));
        let _ = client.close().await;
    }
}

/// A stream (plain or super) named for one test, created by our programs (not by the test),
/// deleted when dropped even if the test panics.
pub struct OwnedStream {
    /// The stream's (or super stream's) name, unique to this test.
    pub name: String,
    /// Its partitions: 0 for a plain stream.
    pub partitions: u32,
    owner: Owner,
}

impl OwnedStream {
    /// On the 3-node cluster (which must be up).
    pub async fn on_cluster(prefix: &str, partitions: u32) -> Self {
        Self::new(
            prefix,
            partitions,
            cluster_broker(),
            require_cluster().await,
        )
    }

    /// On the single test broker (which must be up).
    pub async fn on_broker(prefix: &str, partitions: u32) -> Self {
        Self::new(prefix, partitions, broker(), require_broker().await)
    }

    fn new(prefix: &str, partitions: u32, broker: BrokerSettings, env: Environment) -> Self {
        let name = unique(prefix);
        Self {
            owner: Owner::new(&name, partitions, broker, env),
            name,
            partitions,
        }
    }

    /// The streams holding messages: the plain stream, or the partitions in order.
    pub fn streams(&self) -> Vec<String> {
        if self.partitions == 0 {
            vec![self.name.clone()]
        } else {
            (0..self.partitions)
                .map(|p| format!("{}-{p}", self.name))
                .collect()
        }
    }

    /// Every message of `stream` as (offset, body), read with the raw client from the start until
    /// nothing more arrives for two seconds (through any node that answers).
    pub async fn read_all(&self, stream: &str) -> Vec<(u64, Vec<u8>)> {
        self.owner.read_all(stream, Duration::from_secs(2)).await
    }

    /// The offset stored for `consumer` on `stream`, if any.
    pub async fn stored_offset(&self, consumer: &str, stream: &str) -> Option<u64> {
        self.owner.stored_offset(consumer, stream).await
    }

    /// Deletes one partition (or the plain stream), as an operator would by mistake.
    pub async fn delete_stream(&self, stream: &str) {
        self.owner.env.delete_stream(stream).await.unwrap();
    }
}

/// What both kinds of test stream share: where the stream lives, reading it and its stored
/// offsets there, and deleting it (every partition too) on drop.
struct Owner {
    name: String,
    partitions: u32,
    broker: BrokerSettings,
    env: Environment,
}

impl Owner {
    fn new(name: &str, partitions: u32, broker: BrokerSettings, env: Environment) -> Self {
        Self {
            name: name.to_owned(),
            partitions,
            broker,
            env,
        }
    }

    /// Every message of `stream` as (offset, body), from the start until nothing more arrives for
    /// `quiet` (for the first message: [`FIRST_CHUNK_WAIT`]), on a new environment (so through any
    /// node that answers now).
    async fn read_all(&self, stream: &str, quiet: Duration) -> Vec<(u64, Vec<u8>)> {
        let env = connection::environment(&self.broker, "test").await.unwrap();
        let mut consumer = env
            .consumer()
            .offset(OffsetSpecification::First)
            .build(stream)
            .await
            .unwrap();
        let mut out = vec![];
        // The first chunk may be slow on a loaded machine (a 1 MiB message took over a second
        // with the suite running beside it): wait longer for it than between the others.
        let mut wait = quiet.max(FIRST_CHUNK_WAIT);
        while let Ok(Some(delivery)) = tokio::time::timeout(wait, consumer.next()).await {
            let d = delivery.unwrap();
            out.push((d.offset(), d.message().data().unwrap_or_default().to_vec()));
            wait = quiet;
        }
        let _ = consumer.handle().close().await;
        out
    }

    /// The offset stored for `consumer` on `stream`, if any, asked on a connection of its own.
    async fn stored_offset(&self, consumer: &str, stream: &str) -> Option<u64> {
        let client = client_to(&self.broker).await;
        let stored = connection::stored_offset(&client, consumer, stream)
            .await
            .unwrap();
        let _ = client.close().await;
        stored
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let (env, name, partitions) = (self.env.clone(), self.name.clone(), self.partitions);
        // `Drop` cannot await: the deletion runs on a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let limit = Duration::from_secs(20);
                    if partitions == 0 {
                        let _ = tokio::time::timeout(limit, env.delete_stream(&name)).await;
                    } else {
                        let _ = tokio::time::timeout(limit, env.delete_super_stream(&name)).await;
                        // A partition left behind (one the super stream no longer lists).
                        for p in 0..partitions {
                            let partition = format!("{name}-{p}");
                            let _ =
                                tokio::time::timeout(limit, env.delete_stream(&partition)).await;
                        }
                    }
                });
        })
        .join();
    }
}

/// Publishes `bodies` (`None`: a message without a body) to `stream` with the raw client; waits
/// until every one is confirmed and returns how many were sent.
async fn publish_raw(
    env: &Environment,
    stream: &str,
    bodies: impl Iterator<Item = Option<Vec<u8>>>,
) -> u64 {
    let messages = bodies.map(|body| match body {
        Some(body) => Message::builder().body(body).build(),
        None => Message::builder().build(),
    });
    publish_messages(env, stream, messages).await
}

/// The offsets a run processed on `stream`, from its per-batch debug lines
/// (`processed stream=… last=… count=…`, with `RUST_LOG=info,consumer::processed=debug`) and the
/// stream's log (the offsets of its messages, in order).
pub fn processed_offsets(stderr: &str, stream: &str, log: &[u64]) -> BTreeSet<u64> {
    let index: HashMap<u64, usize> = log.iter().enumerate().map(|(i, o)| (*o, i)).collect();
    let field = |line: &str, key: &str| -> Option<String> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
    };
    let mut seen = BTreeSet::new();
    for line in stderr.lines().filter(|l| l.contains(" processed ")) {
        if field(line, "stream").as_deref() != Some(stream) {
            continue;
        }
        let (Some(last), Some(count)) = (
            field(line, "last").and_then(|v| v.parse::<u64>().ok()),
            field(line, "count").and_then(|v| v.parse::<usize>().ok()),
        ) else {
            continue; // a line cut short by kill -9
        };
        let end = index[&last];
        seen.extend(&log[end + 1 - count..=end]);
    }
    seen
}

impl TestStream {
    /// Publishes the producer's wave of `count` ([`wave_bodies`], the last is the marker) with the
    /// raw client, message `i` carrying the AMQP application property `key` = `k{i % keys}` (for
    /// `processing.ordering = "key"` with `processing.key = "property:key"`); waits until every
    /// one is confirmed and returns how many were sent.
    pub async fn publish_keyed(&self, count: u64, keys: u64) -> u64 {
        let keys = keys.max(1);
        let messages = wave_bodies(count).enumerate().map(move |(i, body)| {
            Message::builder()
                .body(body)
                .application_properties()
                .insert("key", format!("k{}", i as u64 % keys))
                .message_builder()
                .build()
        });
        publish_messages(&self.owner.env, &self.name, messages).await
    }
}

/// Publishes ready-made `messages` to `stream` with the raw client; waits until every one is
/// confirmed and returns how many were sent.
async fn publish_messages(
    env: &Environment,
    stream: &str,
    messages: impl Iterator<Item = Message>,
) -> u64 {
    let producer = env.producer().build(stream).await.unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let confirmed = Arc::new(AtomicU64::new(0));
    for message in messages {
        sent.fetch_add(1, Ordering::Relaxed);
        let confirmed = confirmed.clone();
        producer
            .send(message, move |status| {
                let confirmed = confirmed.clone();
                async move {
                    assert!(
                        status.unwrap().confirmed(),
                        "the broker rejected a test message"
                    );
                    confirmed.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while confirmed.load(Ordering::Relaxed) < sent.load(Ordering::Relaxed) {
        assert!(
            Instant::now() < deadline,
            "test messages were not confirmed in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    producer.close().await.unwrap();
    sent.load(Ordering::Relaxed)
}
