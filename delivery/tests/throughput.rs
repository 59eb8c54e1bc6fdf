//! Throughput of the delivery path against rabbitmq-stream-client's `Environment` consumer
//! (ignored by default; needs the broker). Run in release:
//!
//! ```sh
//! cargo test -p delivery --release --test throughput -- --ignored --nocapture --test-threads 1
//! ```
//!
//! It publishes 1 M plain messages and reads them with both consumers (alternating, best of
//! `ROUNDS`), then 1 M messages in sub-entries of 100 (uncompressed and zstd), which only this
//! crate can read. `THROUGHPUT_MESSAGES` overrides the count.
// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestStream;
use delivery::{Compression, Event, StartAt, SubscribeOptions, Subscription};
use futures::StreamExt;
use rabbitmq_stream_client::types::{Message, OffsetSpecification};
use testkit::peer::sub_entries::{amqp, SubEntryPublisher};

const ROUNDS: usize = 3;

fn message_count() -> u64 {
    std::env::var("THROUGHPUT_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

async fn publish_plain_fast(stream: &TestStream, n: u64) {
    let producer = stream.env.producer().build(&stream.name).await.unwrap();
    let confirmed = Arc::new(AtomicU64::new(0));
    let mut i = 0u64;
    while i < n {
        let batch: Vec<Message> = (i..(i + 10_000).min(n))
            .map(|j| Message::builder().body(format!("hello{j}")).build())
            .collect();
        i += batch.len() as u64;
        let confirmed = confirmed.clone();
        producer
            .batch_send(batch, move |status| {
                let confirmed = confirmed.clone();
                async move {
                    if status.is_ok_and(|s| s.confirmed()) {
                        confirmed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while confirmed.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "publishing did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    producer.close().await.unwrap();
}

/// Messages per second of the client's `Environment` consumer from the first offset.
async fn client_rate(stream: &TestStream, n: u64) -> f64 {
    let mut consumer = stream
        .env
        .consumer()
        .offset(OffsetSpecification::First)
        .build(&stream.name)
        .await
        .unwrap();
    let started = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0usize;
    while count < n {
        let delivery = consumer.next().await.unwrap().unwrap();
        bytes += delivery.message().data().map_or(0, <[u8]>::len);
        count += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    assert!(bytes > 0);
    consumer.handle().close().await.unwrap();
    rate
}

/// Messages per second of a delivery `Subscription` from the first offset.
async fn our_rate(stream: &str, n: u64, credits: u16) -> f64 {
    let mut options = SubscribeOptions::new(stream);
    options.offset = StartAt::First;
    options.initial_credits = credits;
    let mut sub = Subscription::open(&common::connect_options(), options)
        .await
        .unwrap();
    let started = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0usize;
    let mut chunks = 0u64;
    while count < n {
        match sub.next().await.unwrap().unwrap() {
            Event::Chunk(chunk) => {
                chunks += 1;
                for record in &chunk.records {
                    bytes += record.message.data().map_or(0, <[u8]>::len);
                }
                count += chunk.records.len() as u64;
            }
            other => panic!("{other:?}"),
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    assert!(bytes > 0);
    println!("  ({chunks} chunks, {:.0} msg/s)", rate);
    sub.close(Duration::from_secs(5)).await.unwrap();
    rate
}

fn best(rates: &[f64]) -> f64 {
    rates.iter().copied().fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput figures: run in release with --ignored --nocapture"]
async fn throughput_plain_against_the_client() {
    let n = message_count();
    let stream = TestStream::new("throughput-plain").await;
    let t = Instant::now();
    publish_plain_fast(&stream, n).await;
    println!("published {n} plain messages in {:?}", t.elapsed());
    let (mut client, mut ours1, mut ours10) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        client.push(client_rate(&stream, n).await);
        ours1.push(our_rate(&stream.name, n, 1).await);
        ours10.push(our_rate(&stream.name, n, 10).await);
    }
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{:.0}", r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "client Environment consumer: best {:.0} msg/s ({})",
        best(&client),
        fmt(&client)
    );
    println!(
        "delivery, 1 credit:          best {:.0} msg/s ({})",
        best(&ours1),
        fmt(&ours1)
    );
    println!(
        "delivery, 10 credits:        best {:.0} msg/s ({})",
        best(&ours10),
        fmt(&ours10)
    );
    println!(
        "ratio delivery(10)/client: {:.2}",
        best(&ours10) / best(&client)
    );
    stream.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput figures: run in release with --ignored --nocapture"]
async fn throughput_sub_entries_of_100() {
    let n = message_count();
    for codec in [Compression::None, Compression::Zstd] {
        let stream = TestStream::new(&format!("throughput-sub-{codec}")).await;
        let name = stream.name.clone();
        let t = Instant::now();
        tokio::task::spawn_blocking(move || {
            let mut publisher = SubEntryPublisher::connect(&name).unwrap();
            let per_call = 1000u64; // batches of 100 per call
            let mut next = 0u64;
            while next < n {
                let batches: Vec<Vec<Vec<u8>>> = (0..per_call)
                    .map(|b| {
                        (0..100)
                            .map(|i| amqp(format!("hello{}", next + b * 100 + i).as_bytes()))
                            .collect()
                    })
                    .collect();
                publisher.publish_sub_entries(codec, &batches).unwrap();
                next += per_call * 100;
            }
            publisher.close().unwrap();
        })
        .await
        .unwrap();
        println!(
            "published {n} messages in {codec} sub-entries of 100 in {:?}",
            t.elapsed()
        );
        let mut rates = Vec::new();
        for _ in 0..ROUNDS {
            rates.push(our_rate(&stream.name, n, 10).await);
        }
        println!(
            "delivery, {codec} sub-entries of 100, 10 credits: best {:.0} msg/s ({})",
            best(&rates),
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        stream.delete().await;
    }
}
