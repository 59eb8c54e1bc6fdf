//! The latency rows' consumer child (`bench latency-consumer`) against the real broker: it
//! subscribes at `next`, reads each message's `sent_at_us`, stops at the marker and reports
//! figures covering every message — with our consumer library, our delivery path alone, and the
//! raw client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use rabbitmq_stream_client::types::{Message, SimpleValue};
use serde_json::Value;
use testkit::broker::require_broker;
use testkit::streams::{unique, TestStream};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Messages published once the child has subscribed.
const COUNT: u64 = 300;

/// How long before publishing each message claims to have been sent: every latency recorded
/// must be at least this.
const BACKDATED_US: u64 = 50_000;

fn now_us() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

/// Runs the child for `client` on a fresh stream, publishes [`COUNT`] backdated messages (the
/// wave's bodies, the last the marker) and returns the child's figures.
async fn figures_of(client: &str) -> Value {
    let env = require_broker().await;
    let stream = TestStream::new(&format!("bench-latency-{client}")).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["latency-consumer", "--client", client])
        .env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env("OFFSET_TRACKING__CONSUMER__NAME", unique("bench-latency"))
        .env("OFFSET_TRACKING__CONSUMER__OFFSET", "next")
        .env("OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let subscribed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "Started consuming" {
                return;
            }
        }
        panic!("the child ended before subscribing");
    });
    subscribed.await.expect("the child did not subscribe");

    // A message published before it subscribed would not be seen: it tails from `next`.
    let producer = env.producer().build(&stream.name).await.unwrap();
    let messages: Vec<Message> = (0..COUNT)
        .map(|index| {
            Message::builder()
                .application_properties()
                .insert("sent_at_us", SimpleValue::Ulong(now_us() - BACKDATED_US))
                .message_builder()
                .body(producer::wave_body(index, COUNT))
                .build()
        })
        .collect();
    for status in producer.batch_send_with_confirm(messages).await.unwrap() {
        assert!(status.confirmed());
    }
    producer.close().await.unwrap();

    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the child did not stop at the marker")
        .unwrap();
    assert!(status.success(), "{status}");
    let mut figures = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(json) = line.strip_prefix("latency-json: ") {
            figures = Some(serde_json::from_str::<Value>(json).unwrap());
        }
    }
    figures.expect("no latency-json line")
}

fn check(figures: &Value) {
    assert_eq!(figures["messages"], COUNT, "{figures}");
    assert_eq!(figures["without_sent_at"], 0, "{figures}");
    let p50 = figures["p50_us"].as_u64().unwrap();
    let max = figures["max_us"].as_u64().unwrap();
    assert!(p50 >= BACKDATED_US, "{figures}");
    assert!(max < 30_000_000, "{figures}");
    assert!(figures["p99_us"].as_u64().unwrap() >= p50, "{figures}");
}

#[tokio::test(flavor = "multi_thread")]
async fn our_consumer_records_every_message_s_latency_until_the_marker() {
    check(&figures_of("ours").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delivery_path_alone_records_every_message_s_latency_until_the_marker() {
    check(&figures_of("delivery").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_raw_consumer_records_every_message_s_latency_until_the_marker() {
    check(&figures_of("raw").await);
}
