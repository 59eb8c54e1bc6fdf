//! The subscription against a scripted fake broker on loopback: the endings a real broker cannot
//! be made to produce on demand (silence, a server Close, a dropped socket, a corrupted chunk) and
//! the credit flow (a credit goes back only when the caller takes a chunk).
// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use delivery::{
    CloseReason, ConnectOptions, DeliveryError, Event, StartAt, SubscribeOptions, Subscription,
};
use rabbitmq_stream_protocol::codec::Encoder;
use rabbitmq_stream_protocol::message::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn read_frame(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).await.ok()?;
    let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
    socket.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

async fn write_frame(socket: &mut TcpStream, key: u16, content: &[u8]) {
    let mut out = Vec::new();
    out.extend_from_slice(&(4 + content.len() as u32).to_be_bytes());
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(content);
    socket.write_all(&out).await.unwrap();
}

fn key(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[0], frame[1]])
}

fn correlation(frame: &[u8]) -> [u8; 4] {
    frame[4..8].try_into().unwrap()
}

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// Accepts one client and answers its handshake and Subscribe like a broker proposing a 1 s
/// heartbeat; returns the socket right after the Subscribe response.
async fn accept_and_handshake(listener: &TcpListener) -> TcpStream {
    let (mut socket, _) = listener.accept().await.unwrap();
    loop {
        let frame = read_frame(&mut socket).await.expect("handshake frame");
        let ok = |frame: &[u8]| {
            let mut c = correlation(frame).to_vec();
            c.extend_from_slice(&1u16.to_be_bytes());
            c
        };
        match key(&frame) {
            0x11 => {
                let mut c = ok(&frame);
                c.extend_from_slice(&0u32.to_be_bytes());
                write_frame(&mut socket, 0x8011, &c).await;
            }
            0x12 => {
                let mut c = ok(&frame);
                c.extend_from_slice(&1u32.to_be_bytes());
                c.extend_from_slice(&string("PLAIN"));
                write_frame(&mut socket, 0x8012, &c).await;
            }
            0x13 => {
                write_frame(&mut socket, 0x8013, &ok(&frame)).await;
                let mut tune = 1_048_576u32.to_be_bytes().to_vec();
                tune.extend_from_slice(&1u32.to_be_bytes());
                write_frame(&mut socket, 20, &tune).await;
            }
            20 => {}
            0x15 => {
                let mut c = ok(&frame);
                c.extend_from_slice(&0u32.to_be_bytes());
                write_frame(&mut socket, 0x8015, &c).await;
            }
            0x07 => {
                write_frame(&mut socket, 0x8007, &ok(&frame)).await;
                return socket;
            }
            other => panic!("unexpected frame {other:#06x} in the handshake"),
        }
    }
}

async fn fake() -> (TcpListener, ConnectOptions) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = ConnectOptions {
        host: "127.0.0.1".to_owned(),
        port: listener.local_addr().unwrap().port(),
        heartbeat: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    };
    (listener, options)
}

async fn open(options: &ConnectOptions, credits: u16) -> Subscription {
    let mut subscribe = SubscribeOptions::new("fake-stream");
    subscribe.offset = StartAt::First;
    subscribe.initial_credits = credits;
    Subscription::open(options, subscribe).await.unwrap()
}

/// A valid user chunk of plain entries with these bodies, starting at `first_offset`.
fn chunk(first_offset: u64, bodies: &[&str]) -> Vec<u8> {
    let mut data = Vec::new();
    for body in bodies {
        let mut m = Vec::new();
        Message::builder()
            .body(body.as_bytes().to_vec())
            .build()
            .encode(&mut m)
            .unwrap();
        data.extend_from_slice(&(m.len() as u32).to_be_bytes());
        data.extend_from_slice(&m);
    }
    let mut out = vec![0x50, 0];
    out.extend_from_slice(&(bodies.len() as u16).to_be_bytes());
    out.extend_from_slice(&(bodies.len() as u32).to_be_bytes());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&first_offset.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&data).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&data);
    out
}

async fn deliver(socket: &mut TcpStream, chunk: &[u8]) {
    let mut content = vec![1u8]; // subscription id
    content.extend_from_slice(chunk);
    write_frame(socket, 8, &content).await;
}

/// Reads frames until one with `wanted` key arrives (or `within` passes): `None` if none did.
async fn wait_for_key(socket: &mut TcpStream, wanted: u16, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, read_frame(socket)).await {
            Ok(Some(frame)) if key(&frame) == wanted => return Some(frame),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn a_silent_broker_ends_the_subscription_with_an_error() {
    let (listener, options) = fake().await;
    let server = tokio::spawn(async move {
        let mut socket = accept_and_handshake(&listener).await;
        // Read (heartbeats) but never write again.
        while read_frame(&mut socket).await.is_some() {}
    });
    let mut sub = open(&options, 1).await;
    let started = Instant::now();
    let item = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a silent broker must not hang the subscription");
    match item {
        Some(Err(DeliveryError::HeartbeatTimeout { silent_for, stream })) => {
            assert_eq!(stream, "fake-stream");
            assert!(silent_for >= Duration::from_secs(4), "{silent_for:?}");
        }
        other => panic!("expected a heartbeat timeout, got {other:?}"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(4) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    assert!(sub.next().await.is_none());
    drop(sub);
    server.await.unwrap();
}

#[tokio::test]
async fn a_server_close_is_answered_and_ends_the_stream_with_closed() {
    let (listener, options) = fake().await;
    let server = tokio::spawn(async move {
        let mut socket = accept_and_handshake(&listener).await;
        let mut content = 77u32.to_be_bytes().to_vec();
        content.extend_from_slice(&15u16.to_be_bytes());
        content.extend_from_slice(&string("node shutting down"));
        write_frame(&mut socket, 22, &content).await;
        let answer = wait_for_key(&mut socket, 0x8016, Duration::from_secs(5))
            .await
            .expect("the client must answer the Close");
        assert_eq!(correlation(&answer), 77u32.to_be_bytes());
    });
    let mut sub = open(&options, 1).await;
    match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        Ok(Some(Ok(Event::Closed {
            reason: CloseReason::Broker { code: 15, text },
        }))) => assert_eq!(text, "node shutting down"),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(sub.next().await.is_none());
    server.await.unwrap();
}

#[tokio::test]
async fn a_lost_socket_is_a_network_error() {
    let (listener, options) = fake().await;
    let server = tokio::spawn(async move {
        let socket = accept_and_handshake(&listener).await;
        drop(socket);
    });
    let mut sub = open(&options, 1).await;
    server.await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        Ok(Some(Err(err @ DeliveryError::Network { .. }))) => {
            assert!(std::error::Error::source(&err).is_some());
            assert!(err.to_string().contains("fake-stream"), "{err}");
        }
        other => panic!("expected a network error, got {other:?}"),
    }
    assert!(sub.next().await.is_none());
}

#[tokio::test]
async fn a_corrupted_chunk_is_a_decode_error_naming_its_offset() {
    let (listener, options) = fake().await;
    let server = tokio::spawn(async move {
        let mut socket = accept_and_handshake(&listener).await;
        let mut bad = chunk(4242, &["a", "b"]);
        // Cut short: the data section announces more than the frame holds.
        let len = bad.len();
        bad.truncate(len - 3);
        deliver(&mut socket, &bad).await;
        let _ = wait_for_key(&mut socket, 0xffff, Duration::from_secs(2)).await;
    });
    let mut sub = open(&options, 1).await;
    match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        Ok(Some(Err(err @ DeliveryError::Decode { .. }))) => {
            let source = std::error::Error::source(&err).unwrap().to_string();
            assert!(source.contains("4242"), "{source}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(sub.next().await.is_none());
    server.abort();
}

#[tokio::test]
async fn a_credit_goes_back_only_when_the_caller_takes_a_chunk() {
    let (listener, options) = fake().await;
    let (took_tx, took_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut socket = accept_and_handshake(&listener).await;
        deliver(&mut socket, &chunk(0, &["one", "two"])).await;
        // Not taken yet: no credit may come.
        assert!(
            wait_for_key(&mut socket, 9, Duration::from_millis(700))
                .await
                .is_none(),
            "a credit came back before the caller took the chunk"
        );
        let _ = took_rx.await;
        let credit = wait_for_key(&mut socket, 9, Duration::from_secs(2))
            .await
            .expect("no credit after the caller took the chunk");
        assert_eq!(credit[4], 1, "subscription id");
        assert_eq!(u16::from_be_bytes([credit[5], credit[6]]), 1, "credits");
        socket
    });
    let mut sub = open(&options, 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    match sub.next().await {
        Some(Ok(Event::Chunk(chunk))) => {
            assert_eq!(chunk.records.len(), 2);
            assert_eq!(chunk.records[1].offset, 1);
        }
        other => panic!("expected a chunk, got {other:?}"),
    }
    took_tx.send(()).unwrap();
    let mut socket = server.await.unwrap();
    // close(): Unsubscribe then Close, answered by the fake.
    let closer = tokio::spawn(async move {
        let unsubscribe = wait_for_key(&mut socket, 12, Duration::from_secs(5))
            .await
            .unwrap();
        let mut c = correlation(&unsubscribe).to_vec();
        c.extend_from_slice(&1u16.to_be_bytes());
        write_frame(&mut socket, 0x800c, &c).await;
        let close = wait_for_key(&mut socket, 22, Duration::from_secs(5))
            .await
            .unwrap();
        let mut c = correlation(&close).to_vec();
        c.extend_from_slice(&1u16.to_be_bytes());
        write_frame(&mut socket, 0x8016, &c).await;
    });
    sub.close(Duration::from_secs(5)).await.unwrap();
    closer.await.unwrap();
}

#[tokio::test]
async fn close_gives_up_at_its_deadline() {
    let (listener, options) = fake().await;
    let server = tokio::spawn(async move {
        let mut socket = accept_and_handshake(&listener).await;
        while read_frame(&mut socket).await.is_some() {} // never answers
    });
    let sub = open(&options, 1).await;
    let started = Instant::now();
    let err = sub.close(Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, DeliveryError::CloseTimeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    server.abort();
}

#[tokio::test]
async fn a_credit_kept_for_an_inactive_consumer_is_no_error_but_others_are() {
    let (listener, options) = fake().await;
    let server = tokio::spawn(async move {
        let mut socket = accept_and_handshake(&listener).await;
        // What RabbitMQ answers a credit for a single active consumer it made inactive:
        // precondition failed (0x11), the credit kept.
        write_frame(&mut socket, 0x8009, &[0x00, 0x11, 1]).await;
        deliver(&mut socket, &chunk(7, &["after"])).await;
        // Subscription id does not exist (0x04): the subscription is gone.
        write_frame(&mut socket, 0x8009, &[0x00, 0x04, 1]).await;
        let _ = wait_for_key(&mut socket, 0xffff, Duration::from_secs(2)).await;
    });
    let mut sub = open(&options, 1).await;
    match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        Ok(Some(Ok(Event::Chunk(chunk)))) => assert_eq!(chunk.records[0].offset, 7),
        other => panic!("expected the chunk after the kept credit, got {other:?}"),
    }
    match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        Ok(Some(Err(DeliveryError::Refused { operation, .. }))) => {
            assert_eq!(operation, "credit")
        }
        other => panic!("expected the refused credit, got {other:?}"),
    }
    server.abort();
}
