//! Building a lane's producer: plain, or named (deduplication), under the broker's build
//! deadline; for a named one, also where to resume: the broker's last publishing id for that name
//! plus one.

use std::sync::Arc;

use rabbitmq_stream_client::error::{ProducerCreateError, ProducerPublishError};
use rabbitmq_stream_client::types::Message as StreamMessage;
use rabbitmq_stream_client::{Dedup, Environment, NoDedup, Producer};
use shared::config::{BrokerSettings, ProducerSettings};
use shared::connection::{self, BuildFailure};
use shared::error::{describe_client_error, Error, Result};

use crate::confirm::{Confirmations, ConnectionLost};
use crate::lane::Lane;

/// One lane's producer: how to reach it, and under which name.
#[derive(Clone)]
pub(crate) struct LaneTarget {
    /// Builds the producer; replaced after a lost connection (its node may be the one lost).
    pub(crate) environment: Environment,
    pub(crate) broker: BrokerSettings,
    pub(crate) settings: ProducerSettings,
    pub(crate) lane: Lane,
    /// The producer's name (deduplication), if any.
    pub(crate) name: Option<String>,
    /// What the messages carry.
    pub(crate) bodies: crate::body::Bodies,
}

/// A producer with or without deduplication.
pub(crate) enum StreamProducer {
    Plain(Producer<NoDedup>),
    Named(Producer<Dedup>),
}

impl StreamProducer {
    /// Sends `message`; `confirmations` counts its confirmation.
    pub(crate) async fn send(
        &mut self,
        message: StreamMessage,
        confirmations: &Arc<Confirmations>,
    ) -> Result<(), ProducerPublishError> {
        let callback = confirmations.callback();
        match self {
            StreamProducer::Plain(p) => p.send(message, callback).await,
            StreamProducer::Named(p) => p.send(message, callback).await,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            StreamProducer::Plain(p) => p.is_closed(),
            StreamProducer::Named(p) => p.is_closed(),
        }
    }

    /// Closes the producer within a deadline (dropping one would block a runtime thread on it).
    pub(crate) async fn close(self) {
        match self {
            StreamProducer::Plain(p) => connection::close_within("the producer", p.close()).await,
            StreamProducer::Named(p) => connection::close_within("the producer", p.close()).await,
        }
    }
}

impl LaneTarget {
    /// Builds a producer whose lost connection `lost` hears of; for a named one, also the first
    /// publishing id to use (the broker's last plus one; ids start at 1 so that "0"
    /// unambiguously means "nothing published yet"), 0 for a plain one.
    pub(crate) async fn connect(&self, lost: Arc<Confirmations>) -> Result<(StreamProducer, u64)> {
        let on_closed = Box::new(ConnectionLost(lost));
        let name = format!("producer {}", self.name.as_deref().unwrap_or(""));
        let stream = &self.lane.stream;
        let build = async {
            match &self.name {
                None => self
                    .environment
                    .producer()
                    .client_provided_name(name.trim())
                    .batch_size(self.settings.batch_size as usize)
                    .on_closed(on_closed)
                    .build(stream)
                    .await
                    .map(StreamProducer::Plain),
                Some(producer_name) => self
                    .environment
                    .producer()
                    // First: `name` resets the builder's other settings.
                    .name(producer_name)
                    .client_provided_name(&name)
                    .batch_size(self.settings.batch_size as usize)
                    .on_closed(on_closed)
                    .build(stream)
                    .await
                    .map(StreamProducer::Named),
            }
        };
        let what = "cannot create a producer";
        let producer =
            match connection::build_within_deadline(&self.broker, what, stream, build).await? {
                Ok(producer) => producer,
                Err(err) => {
                    let failure = build_failure(err);
                    return Err(connection::build_error(&self.broker, what, stream, failure).await);
                }
            };
        let next_id = match &self.name {
            None => 0,
            Some(producer_name) => self.last_publishing_id(producer_name).await? + 1,
        };
        Ok((producer, next_id))
    }

    /// The last publishing id the broker holds for `producer_name` on the lane's stream.
    async fn last_publishing_id(&self, producer_name: &str) -> Result<u64> {
        let client = connection::client(&self.broker, "producer sequence").await?;
        let sequence = client
            .query_publisher_sequence(producer_name, &self.lane.stream)
            .await
            .map_err(|err| Error::Broker {
                what: "cannot query the producer's last publishing id",
                stream: self.lane.stream.clone(),
                reason: describe_client_error(&err),
                source: Some(Box::new(err)),
            });
        connection::close_within("the producer sequence client", client.close()).await;
        sequence
    }
}

fn build_failure(err: ProducerCreateError) -> BuildFailure {
    match err {
        ProducerCreateError::StreamDoesNotExist { .. } => BuildFailure::Missing,
        ProducerCreateError::Create { status, .. } => BuildFailure::Refused(status),
        ProducerCreateError::Client(err) => BuildFailure::Client(err),
        other => BuildFailure::Other(other.to_string()),
    }
}
