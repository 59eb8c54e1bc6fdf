//! Attaching to a stream on the consumer's own delivery path (the `delivery` crate): where to
//! start (the resume rule), which node to read from (a replica when there is one, as the other
//! RabbitMQ stream clients do, else the leader), the subscription itself with the broker's
//! answers mapped to the workspace's errors; the stream's nodes are asked on the process's kept
//! query connection (`queries`).

use std::sync::Arc;
use std::time::Duration;

use delivery::{ConnectOptions, DeliveryError, Event, ResponseCode, StartAt, SubscribeOptions};
use shared::config::{BrokerSettings, Endpoint};
use shared::connection::{self, Members};
use shared::error::{with_sources, Error, Result};
use shared::{routing, OffsetSpec};

use super::queries::Queries;

/// What a subscription that fails to open was doing, in errors.
const SUBSCRIBING: &str = "cannot subscribe";

/// Where to attach: right after the stored offset if there is one (it takes precedence over the
/// configured specification), else the configured specification.
pub(crate) fn start_position(stored: Option<u64>, configured: OffsetSpec) -> OffsetSpec {
    match stored {
        Some(offset) => OffsetSpec::Offset(offset.saturating_add(1)),
        None => configured,
    }
}

/// The delivery path's name for a position.
pub(crate) fn start_at(position: OffsetSpec) -> StartAt {
    match position {
        OffsetSpec::First => StartAt::First,
        OffsetSpec::Last => StartAt::Last,
        OffsetSpec::Next => StartAt::Next,
        OffsetSpec::Offset(offset) => StartAt::Offset(offset),
        OffsetSpec::Timestamp(ms) => StartAt::Timestamp(ms),
    }
}

/// Membership in a consumer group (`consumer.single_active`).
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The super stream the partition belongs to (`None`: a plain stream).
    pub(crate) super_stream: Option<String>,
}

/// A subscription just made, and the node it reads from.
pub(crate) struct Subscribed {
    /// The events of the subscription.
    pub(crate) events: delivery::Subscription,
    /// The node it reads from.
    pub(crate) node: Endpoint,
}

/// What the actor needs to subscribe, and to subscribe again.
#[derive(Clone)]
pub(crate) struct Subscription {
    /// The broker's settings (nodes, credentials, timeouts).
    pub(crate) broker: BrokerSettings,
    /// TLS for the delivery connection (from `[broker.tls]`).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// The consumer's name.
    pub(crate) name: String,
    /// The stream.
    pub(crate) stream: String,
    /// Where the first subscription attached.
    pub(crate) start: OffsetSpec,
    /// How long to keep trying to subscribe again after a loss.
    pub(crate) reconnect_timeout: Duration,
    /// Chunks the broker may send ahead of processing (`consumer.initial_credits`).
    pub(crate) initial_credits: u16,
    /// Membership in a consumer group, if `consumer.single_active`.
    pub(crate) group: Option<Group>,
}

impl Subscription {
    /// Attaches the named consumer at `position` (in a group, where the broker's consumer
    /// update says instead), on a node that holds the stream now.
    pub(crate) async fn subscribe(&self, position: OffsetSpec) -> Result<Subscribed> {
        let options = SubscribeOptions {
            stream: self.stream.clone(),
            offset: start_at(position),
            initial_credits: self.initial_credits,
            consumer_name: Some(self.name.clone()),
            single_active: self.group.is_some(),
            super_stream: self.group.as_ref().and_then(|g| g.super_stream.clone()),
        };
        self.open(options, &format!("consumer {}", self.name)).await
    }

    /// Opens `options` on the first of the stream's nodes that takes it.
    async fn open(&self, options: SubscribeOptions, connection_name: &str) -> Result<Subscribed> {
        self.reader().open(options, connection_name).await
    }

    /// The process's long-lived query connections, for this consumer's broker and TLS: what the
    /// lag probe and the idle check ask, instead of opening connections of their own.
    pub(crate) fn queries(&self) -> Queries<'_> {
        Queries {
            broker: &self.broker,
            tls: self.tls.clone(),
        }
    }

    /// Opens subscriptions as this consumer: its broker, TLS and replica preference.
    fn reader(&self) -> Reader<'_> {
        Reader {
            broker: &self.broker,
            tls: self.tls.clone(),
            spread: spread(&self.name, &self.stream),
        }
    }

    /// "partition s-0: " on a super stream, nothing on a plain stream.
    pub(crate) fn label(&self) -> String {
        let partitioned = self
            .group
            .as_ref()
            .is_some_and(|g| g.super_stream.is_some());
        routing::partition_label(&self.stream, partitioned)
    }
}

/// Opens subscriptions on the consumer's own delivery path: for the consumer, for lag probes
/// and for `consumer offsets`.
pub(crate) struct Reader<'a> {
    /// The broker's settings (nodes, credentials, timeouts).
    pub(crate) broker: &'a BrokerSettings,
    /// TLS for the connection (from `[broker.tls]`).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// Which replica to prefer (see [`spread`]).
    pub(crate) spread: usize,
}

impl Reader<'_> {
    /// Opens `options` on the first of the stream's nodes that takes it.
    async fn open(&self, options: SubscribeOptions, connection_name: &str) -> Result<Subscribed> {
        let stream = options.stream.clone();
        let mut failure = None;
        for node in self.nodes(&stream).await? {
            let connect = self.connect_options(&node, connection_name);
            match delivery::Subscription::open(&connect, options.clone()).await {
                Ok(events) => return Ok(Subscribed { events, node }),
                Err(err) => {
                    let err = subscribe_error(&stream, err);
                    // The stream itself is gone or refused: no other node will do better.
                    if matches!(err, Error::StreamNotFound { .. } | Error::Config(_)) {
                        return Err(err);
                    }
                    tracing::debug!("stream {stream} on {node}: {err}");
                    failure = Some(err);
                }
            }
        }
        Err(failure.unwrap_or(Error::Unavailable {
            what: SUBSCRIBING,
            stream,
        }))
    }

    /// The nodes to read `stream` from, in the order to try: the replicas online (starting at
    /// `spread`, so that consumers spread), then the leader. Behind a load balancer, the
    /// configured nodes instead (the advertised ones cannot be reached).
    async fn nodes(&self, stream: &str) -> Result<Vec<Endpoint>> {
        if self.broker.load_balancer_mode {
            return Ok(self.broker.endpoints());
        }
        // Asked on the process's kept query connection, not on one of its own.
        let Members {
            leader,
            mut replicas,
        } = self.queries().members(stream, SUBSCRIBING).await?;
        if !replicas.is_empty() {
            let turn = self.spread % replicas.len();
            replicas.rotate_left(turn);
        }
        replicas.push(leader);
        Ok(replicas)
    }

    fn connect_options(&self, node: &Endpoint, connection_name: &str) -> ConnectOptions {
        connection::delivery_options(self.broker, self.tls.clone(), node, connection_name)
    }

    /// The process's query connections, for this reader's broker and TLS.
    fn queries(&self) -> Queries<'_> {
        Queries {
            broker: self.broker,
            tls: self.tls.clone(),
        }
    }

    /// The offset of the first message the broker delivers from `position` on `stream`
    /// (`None`: nothing within `wait`); with `to_end`, of the last one it delivers before going
    /// quiet for `wait` (or after `wait` × 5 in all, on a busy stream). Reads on a subscription
    /// of its own.
    pub(crate) async fn delivered_offset(
        &self,
        stream: &str,
        position: OffsetSpec,
        to_end: bool,
        wait: Duration,
    ) -> Result<Option<u64>> {
        let options = SubscribeOptions {
            offset: start_at(position),
            initial_credits: 1,
            ..SubscribeOptions::new(stream)
        };
        let Subscribed { mut events, .. } = self.open(options, "stream check").await?;
        let deadline = tokio::time::Instant::now() + wait.saturating_mul(5);
        let mut seen = None;
        let mut failure = None;
        while let Ok(Some(event)) = tokio::time::timeout(wait, events.next()).await {
            match event {
                Ok(Event::Chunk(chunk)) => {
                    let offset = if to_end {
                        chunk.records.last()
                    } else {
                        chunk.records.first()
                    };
                    seen = offset.map(|record| record.offset).or(seen);
                }
                Ok(_) => {}
                Err(err) => {
                    failure = Some(subscribe_error(stream, err));
                    break;
                }
            }
            if seen.is_some() && (!to_end || tokio::time::Instant::now() > deadline) {
                break;
            }
        }
        if let Err(err) = events.close(connection::CLOSE_TIMEOUT).await {
            tracing::debug!("closing a stream check subscription: {err}");
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(seen),
        }
    }
}

/// A number of the consumer's own for choosing among replicas: the same consumer returns to the
/// same replica, different consumers spread.
pub(crate) fn spread(name: &str, stream: &str) -> usize {
    usize::try_from(routing::partition_of(&format!("{name}/{stream}"), u32::MAX)).unwrap_or(0)
}

/// The workspace's error for a subscription that failed (to open, or later).
pub(crate) fn subscribe_error(stream: &str, err: DeliveryError) -> Error {
    let stream = stream.to_owned();
    match err.response_code() {
        Some(ResponseCode::StreamDoesNotExist) => return Error::StreamNotFound { stream },
        Some(ResponseCode::StreamNotAvailable) => {
            return Error::Unavailable {
                what: SUBSCRIBING,
                stream,
            }
        }
        _ => {}
    }
    let reason = with_sources(&err);
    match err {
        DeliveryError::Authentication { code, .. } => Error::Connect {
            endpoint: stream,
            reason: shared::error::describe_code(&code),
            source: None,
        },
        DeliveryError::Decode { .. } => Error::ConsumeStopped { stream, reason },
        DeliveryError::InvalidOptions { .. } => Error::Config(reason),
        _ => Error::Broker {
            what: "subscription failed",
            stream,
            reason,
            source: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_offset_wins_and_resumes_right_after_it() {
        assert_eq!(
            start_position(Some(0), OffsetSpec::First),
            OffsetSpec::Offset(1)
        );
        assert_eq!(
            start_position(Some(99), OffsetSpec::Next),
            OffsetSpec::Offset(100)
        );
        assert_eq!(start_position(None, OffsetSpec::Last), OffsetSpec::Last);
        assert_eq!(
            start_position(None, OffsetSpec::Offset(42)),
            OffsetSpec::Offset(42)
        );
    }

    #[test]
    fn refusals_map_to_what_the_caller_acts_on() {
        let refused = |code| DeliveryError::Refused {
            stream: "s".into(),
            operation: "subscribe",
            code,
        };
        assert!(matches!(
            subscribe_error("s", refused(ResponseCode::StreamDoesNotExist)),
            Error::StreamNotFound { .. }
        ));
        assert!(matches!(
            subscribe_error("s", refused(ResponseCode::StreamNotAvailable)),
            Error::Unavailable { .. }
        ));
        assert!(matches!(
            subscribe_error("s", refused(ResponseCode::AccessRefused)),
            Error::Broker { .. }
        ));
    }
}
