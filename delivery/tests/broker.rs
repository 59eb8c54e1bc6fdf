//! The delivery path against the real broker (localhost:5552, guest/guest; `scripts/broker.sh
//! up`): plain waves, start offsets, sub-entry batches of every codec from two writers, a stream
//! deleted under a subscription, stored offsets in the stream, single active consumer, refusals.
// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{connect_options, read_records, subscribe, TestStream};
use delivery::{
    CloseReason, Compression, ConnectOptions, DeliveryError, Event, ResponseCode, StartAt,
    SubscribeOptions, Subscription,
};
use futures::StreamExt;
use rabbitmq_stream_client::types::OffsetSpecification;
use testkit::peer::batches;
use testkit::peer::rstream::{self, RstreamCodec};
use testkit::peer::sub_entries::{amqp, SubEntryPublisher};

fn expected(prefix: &str, range: std::ops::Range<u64>) -> Vec<(u64, String)> {
    range.map(|i| (i, format!("{prefix}{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_wave_is_read_back_exactly() {
    let stream = TestStream::new("plain").await;
    stream
        .publish_plain((0..2500).map(|i| format!("hello{i}")))
        .await;
    let mut sub = subscribe(&stream.name, StartAt::First).await;
    let got = read_records(&mut sub, 2500).await;
    assert_eq!(got, expected("hello", 0..2500));
    sub.close(Duration::from_secs(5)).await.unwrap();
    stream.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_start_trims_the_first_chunk() {
    let stream = TestStream::new("offset").await;
    stream
        .publish_plain((0..300).map(|i| format!("m{i}")))
        .await;
    let mut sub = subscribe(&stream.name, StartAt::Offset(123)).await;
    let got = read_records(&mut sub, 177).await;
    assert_eq!(got, expected("m", 123..300));
    sub.close(Duration::from_secs(5)).await.unwrap();
    stream.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_entries_of_every_codec_from_our_writer_are_read_back_exactly() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let stream = TestStream::new(&format!("sub-{codec}")).await;
        // Plain entries around the sub-entries: offsets must stay contiguous across both kinds.
        stream.publish_plain((0..3).map(|i| format!("v{i}"))).await;
        let name = stream.name.clone();
        tokio::task::spawn_blocking(move || {
            let batches: Vec<Vec<Vec<u8>>> = (0..20u64)
                .map(|b| {
                    (0..100u64)
                        .map(|i| amqp(format!("v{}", 3 + b * 100 + i).as_bytes()))
                        .collect()
                })
                .collect();
            let mut publisher = SubEntryPublisher::connect(&name).unwrap();
            publisher.publish_sub_entries(codec, &batches).unwrap();
            publisher.close().unwrap();
        })
        .await
        .unwrap();
        stream
            .publish_plain((2003..2010).map(|i| format!("v{i}")))
            .await;
        let mut sub = subscribe(&stream.name, StartAt::First).await;
        let got = read_records(&mut sub, 2010).await;
        assert_eq!(got, expected("v", 0..2010), "{codec}");
        sub.close(Duration::from_secs(5)).await.unwrap();
        stream.delete().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_entries_written_by_python_rstream_are_read_back_exactly() {
    let stream = TestStream::new("rstream").await;
    let name = stream.name.clone();
    tokio::task::spawn_blocking(move || {
        let bodies =
            |prefix: &'static str| (0..500).map(move |i| format!("{prefix}{i}").into_bytes());
        rstream::publish(&name, RstreamCodec::None, &batches(bodies("none-"), 50));
        rstream::publish(&name, RstreamCodec::Gzip, &batches(bodies("gzip-"), 50));
    })
    .await
    .unwrap();
    let mut sub = subscribe(&stream.name, StartAt::First).await;
    let got = read_records(&mut sub, 1000).await;
    let want: Vec<(u64, String)> = (0..500)
        .map(|i| (i, format!("none-{i}")))
        .chain((0..500).map(|i| (500 + i, format!("gzip-{i}"))))
        .collect();
    assert_eq!(got, want);
    sub.close(Duration::from_secs(5)).await.unwrap();
    stream.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_under_a_waiting_subscription_ends_it_within_a_second() {
    let stream = TestStream::new("deleted").await;
    stream.publish_plain((0..5).map(|i| format!("d{i}"))).await;
    let mut sub = subscribe(&stream.name, StartAt::First).await;
    assert_eq!(read_records(&mut sub, 5).await, expected("d", 0..5));
    let name = stream.name.clone();
    let deleted_at = Instant::now();
    stream.delete().await;
    let event = tokio::time::timeout(Duration::from_secs(1), sub.next())
        .await
        .expect("nothing within 1 s of the deletion")
        .expect("the stream ended without a word");
    let elapsed = deleted_at.elapsed();
    match event {
        Ok(Event::MetadataUpdate { stream, code }) => {
            assert_eq!(stream, name);
            assert_eq!(
                ResponseCode::try_from(code).ok(),
                Some(ResponseCode::StreamNotAvailable)
            );
        }
        other => panic!("expected a MetadataUpdate, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        Ok(Some(Ok(Event::Closed {
            reason: CloseReason::MetadataUpdate { .. },
        }))) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(sub.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_offsets_in_the_stream_are_skipped_with_the_right_offsets() {
    let stream = TestStream::new("tracking").await;
    let tracker = stream
        .env
        .consumer()
        .name("delivery-tracking-test")
        .offset(OffsetSpecification::Next)
        .build(&stream.name)
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for wave in 0..3 {
        let wave_bodies: Vec<String> = (0..10).map(|i| format!("t{wave}-{i}")).collect();
        stream.publish_plain(wave_bodies.clone()).await;
        bodies.extend(wave_bodies);
        tracker.store_offset(wave * 10).await.unwrap();
    }
    // Stores are fire-and-forget: wait until the last one is readable.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracker.query_offset().await.ok() != Some(20) {
        assert!(Instant::now() < deadline, "the stores never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stream.publish_plain(["after".to_owned()]).await;
    bodies.push("after".to_owned());
    tracker.handle().close().await.unwrap();

    // The oracle: the client's own consumer on the same (plain) stream.
    let mut reference = Vec::new();
    let mut consumer = stream
        .env
        .consumer()
        .offset(OffsetSpecification::First)
        .build(&stream.name)
        .await
        .unwrap();
    while reference.len() < bodies.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let body = String::from_utf8(delivery.message().data().unwrap().to_vec()).unwrap();
        reference.push((delivery.offset(), body));
    }
    consumer.handle().close().await.unwrap();

    let mut sub = subscribe(&stream.name, StartAt::First).await;
    let got = read_records(&mut sub, bodies.len()).await;
    assert_eq!(got, reference);
    assert_eq!(
        got.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
        bodies
    );
    // The stores took offsets of their own: the messages are not contiguous.
    assert!(got.last().unwrap().0 > bodies.len() as u64 - 1, "{got:?}");
    sub.close(Duration::from_secs(5)).await.unwrap();
    stream.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_starts_where_the_update_answer_says() {
    let stream = TestStream::new("sac").await;
    stream.publish_plain((0..50).map(|i| format!("s{i}"))).await;
    let mut options = SubscribeOptions::new(&stream.name);
    options.offset = StartAt::First;
    options.consumer_name = Some("delivery-sac".to_owned());
    options.single_active = true;
    let mut sub = Subscription::open(&connect_options(), options)
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
        Ok(Some(Ok(Event::ConsumerUpdate { active, reply }))) => {
            assert!(active);
            reply.send(StartAt::Offset(42)).unwrap();
        }
        other => panic!("expected a consumer update, got {other:?}"),
    }
    assert_eq!(read_records(&mut sub, 8).await, expected("s", 42..50));
    sub.close(Duration::from_secs(5)).await.unwrap();
    stream.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_keep_their_kind_and_code() {
    let _ = common::environment().await; // fail loudly if there is no broker
    let missing = common::unique_stream("missing");
    let err = Subscription::open(&connect_options(), SubscribeOptions::new(&missing))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            DeliveryError::Refused {
                operation: "subscribe",
                code: ResponseCode::StreamDoesNotExist,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.stream(), missing);
    assert!(err.to_string().contains(&missing), "{err}");

    let wrong = ConnectOptions {
        password: "not the password".to_owned(),
        ..connect_options()
    };
    let err = Subscription::open(&wrong, SubscribeOptions::new(&missing))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            DeliveryError::Authentication {
                code: ResponseCode::AuthenticationFailure,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!format!("{wrong:?}").contains("not the password"));

    let nobody = ConnectOptions {
        port: 1,
        ..connect_options()
    };
    let err = Subscription::open(&nobody, SubscribeOptions::new(&missing))
        .await
        .unwrap_err();
    assert!(matches!(&err, DeliveryError::Connect { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
}
