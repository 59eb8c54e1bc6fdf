//! Reading a stream back with the `delivery` crate's [`Subscription`]: the oracle for streams
//! holding sub-entries, which `rabbitmq-stream-client` cannot read (it panics on them), and for
//! where a stream stops being readable (the first chunk that does not decode).
//!
//! It is independent of our consumer binary (no actor, no tracker, no handler): a subscription at
//! `first`, every record of every chunk, until the stream has been quiet for a while.

use std::time::Duration;

use delivery::{ConnectOptions, DeliveryError, Event, StartAt, SubscribeOptions, Subscription};
use shared::config::BrokerSettings;
use shared::error::with_sources;

/// What a stream holds, read from its start.
#[derive(Debug)]
pub struct Delivered {
    /// Every message read, as (offset, body), in order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// What ended the reading before the stream went quiet (e.g. [`DeliveryError::Decode`] with
    /// the undecodable chunk's first offset), if anything did.
    pub error: Option<DeliveryError>,
}

impl Delivered {
    /// The offsets read, in order.
    pub fn offsets(&self) -> Vec<u64> {
        self.records.iter().map(|(offset, _)| *offset).collect()
    }

    /// The bodies read, in order.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.records.iter().map(|(_, body)| body.clone()).collect()
    }
}

/// Subscription options for the first node of `broker` (plain TCP).
pub fn connect_options(broker: &BrokerSettings) -> ConnectOptions {
    let node = broker
        .endpoints()
        .into_iter()
        .next()
        .expect("the broker settings name no node");
    ConnectOptions {
        host: node.host,
        port: node.port,
        username: broker.username.clone(),
        password: broker.password.expose().to_owned(),
        virtual_host: broker.virtual_host.clone(),
        connection_name: Some("testkit oracle".to_owned()),
        ..ConnectOptions::default()
    }
}

/// Every message of `stream` on the test broker, read with a [`Subscription`] from `first` until
/// nothing arrived for a second; an error that ends the subscription is returned in
/// [`Delivered::error`] with what was read before it. Panics if the subscription cannot be opened.
pub async fn read_delivered(stream: &str) -> Delivered {
    read_delivered_from(&crate::broker::broker(), stream, Duration::from_secs(1)).await
}

/// [`read_delivered`] but fails the test on any error: every message of `stream`, as (offset,
/// body).
pub async fn read_all_delivered(stream: &str) -> Vec<(u64, Vec<u8>)> {
    let delivered = read_delivered(stream).await;
    if let Some(err) = &delivered.error {
        panic!(
            "the oracle could not read '{stream}' to its end after {} messages: {}",
            delivered.records.len(),
            with_sources(err)
        );
    }
    delivered.records
}

/// [`read_delivered`] on `broker`, quiet for `quiet` at the end.
pub async fn read_delivered_from(
    broker: &BrokerSettings,
    stream: &str,
    quiet: Duration,
) -> Delivered {
    let mut options = SubscribeOptions::new(stream);
    options.offset = StartAt::First;
    let mut sub = Subscription::open(&connect_options(broker), options)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "the oracle cannot subscribe to '{stream}' on {}: {}",
                broker.endpoint(),
                with_sources(&err)
            )
        });
    let mut delivered = Delivered {
        records: Vec::new(),
        error: None,
    };
    while let Ok(event) = tokio::time::timeout(quiet, sub.next()).await {
        match event {
            None => break,
            Some(Err(err)) => {
                delivered.error = Some(err);
                break;
            }
            Some(Ok(Event::Chunk(chunk))) => {
                delivered.records.extend(
                    chunk
                        .records
                        .into_iter()
                        .map(|r| (r.offset, r.message.data().unwrap_or_default().to_vec())),
                );
            }
            Some(Ok(Event::Closed { reason })) => {
                panic!("the oracle's subscription to '{stream}' closed: {reason:?}")
            }
            Some(Ok(_)) => {}
        }
    }
    let _ = sub.close(Duration::from_secs(5)).await;
    delivered
}
