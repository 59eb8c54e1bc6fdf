//! Helpers of the integration tests: the real broker (fail loudly if it is not there), unique
//! streams deleted at the end, plain publishing with rabbitmq-stream-client. The sub-entry writers
//! (our own, and Python `rstream` as an independent peer) are testkit's (`testkit::peer`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use delivery::{ConnectOptions, Event, StartAt, SubscribeOptions, Subscription};
use rabbitmq_stream_client::types::Message;
use rabbitmq_stream_client::Environment;

pub const HOST: &str = "localhost";
pub const PORT: u16 = 5552;

/// Fails the test, saying how to start the broker, when nothing answers on localhost:5552.
pub async fn environment() -> Environment {
    let reachable = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((HOST, PORT)),
    )
    .await;
    if !matches!(reachable, Ok(Ok(_))) {
        panic!(
            "no RabbitMQ stream broker on {HOST}:{PORT}: start one with `scripts/broker.sh up` \
             (from the repository root) and run the tests again"
        );
    }
    Environment::builder()
        .host(HOST)
        .port(PORT)
        .username("guest")
        .password("guest")
        .virtual_host("/")
        .build()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to the broker on {HOST}:{PORT} ({e}); `scripts/broker.sh up`")
        })
}

/// A stream name no other test (or run) uses.
pub fn unique_stream(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "delivery-{test}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A stream created for one test; `delete()` at the end (also tried on drop, best effort).
pub struct TestStream {
    pub env: Environment,
    pub name: String,
    deleted: bool,
}

impl TestStream {
    pub async fn new(test: &str) -> Self {
        let env = environment().await;
        let name = unique_stream(test);
        env.stream_creator().create(&name).await.unwrap();
        Self {
            env,
            name,
            deleted: false,
        }
    }

    pub async fn delete(mut self) {
        self.env.delete_stream(&self.name).await.unwrap();
        self.deleted = true;
    }

    /// Publishes `bodies` as plain messages (one entry each) and waits for every confirm.
    pub async fn publish_plain(&self, bodies: impl IntoIterator<Item = String>) {
        let producer = self.env.producer().build(&self.name).await.unwrap();
        let messages: Vec<Message> = bodies
            .into_iter()
            .map(|b| Message::builder().body(b.into_bytes()).build())
            .collect();
        for batch in messages.chunks(1000) {
            let confirms = producer
                .batch_send_with_confirm(batch.to_vec())
                .await
                .unwrap();
            assert!(
                confirms.iter().all(|c| c.confirmed()),
                "unconfirmed publish"
            );
        }
        producer.close().await.unwrap();
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        if !self.deleted {
            // A failed test: delete the stream anyway, from a thread of its own.
            let name = self.name.clone();
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        if let Ok(env) = Environment::builder().build().await {
                            let _ = env.delete_stream(&name).await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

pub fn connect_options() -> ConnectOptions {
    ConnectOptions {
        host: HOST.to_owned(),
        port: PORT,
        connection_name: Some("delivery integration test".to_owned()),
        ..ConnectOptions::default()
    }
}

pub async fn subscribe(stream: &str, offset: StartAt) -> Subscription {
    let mut options = SubscribeOptions::new(stream);
    options.offset = offset;
    Subscription::open(&connect_options(), options)
        .await
        .unwrap()
}

/// Reads records until `count` were received (each chunk's offsets checked to be increasing);
/// returns (offset, body) pairs.
pub async fn read_records(sub: &mut Subscription, count: usize) -> Vec<(u64, String)> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .unwrap_or_else(|_| panic!("no event within 20 s after {} records", out.len()))
            .expect("the subscription ended")
            .expect("subscription error");
        match event {
            Event::Chunk(chunk) => {
                for record in chunk.records {
                    let body = record.message.data().unwrap_or_default();
                    out.push((record.offset, String::from_utf8_lossy(body).into_owned()));
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    out
}
