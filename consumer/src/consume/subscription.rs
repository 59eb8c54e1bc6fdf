//! Attaching to a stream: where to start (the resume rule), subscribing a named consumer (in a
//! group, with the broker's consumer-update callback), building it again on a fresh environment
//! after a loss, and the stream's end for the lag.

use std::collections::HashMap;
use std::time::Duration;

use rabbitmq_stream_client::error::ConsumerCreateError;
use rabbitmq_stream_client::{Consumer, Environment};
use shared::config::BrokerSettings;
use shared::connection::{self, BuildFailure};
use shared::error::Result;
use shared::{routing, OffsetSpec};

use super::group::{Group, Membership};

/// Where to attach: right after the stored offset if there is one (it takes precedence over the
/// configured specification), else the configured specification.
pub(crate) fn start_position(stored: Option<u64>, configured: OffsetSpec) -> OffsetSpec {
    match stored {
        Some(offset) => OffsetSpec::Offset(offset.saturating_add(1)),
        None => configured,
    }
}

/// A subscription just made: the client's consumer and, in a group, its membership.
pub(crate) struct Subscribed {
    /// The client's consumer.
    pub(crate) consumer: Consumer,
    /// In a group: whether the broker made this subscription active.
    pub(crate) membership: Option<Membership>,
}

/// What the actor needs to subscribe, and to subscribe again.
#[derive(Clone)]
pub(crate) struct Subscription {
    /// Builds consumers.
    pub(crate) environment: Environment,
    /// For the stream-existence check.
    pub(crate) broker: BrokerSettings,
    /// The consumer's name.
    pub(crate) name: String,
    /// The stream.
    pub(crate) stream: String,
    /// Where the first subscription attached.
    pub(crate) start: OffsetSpec,
    /// How long to keep trying to subscribe again after a loss.
    pub(crate) reconnect_timeout: Duration,
    /// The tracker's count trigger (0: off), for the crash bound.
    pub(crate) store_every_messages: u64,
    /// Membership in a consumer group, if `consumer.single_active`.
    pub(crate) group: Option<Group>,
}

impl Subscription {
    /// Attaches a named consumer at `position` (in a group, where the broker's consumer update
    /// says instead).
    pub(crate) async fn subscribe(&self, position: OffsetSpec) -> Result<Subscribed> {
        let membership = self.group.as_ref().map(|_| Membership::default());
        let mut builder = self
            .environment
            .consumer()
            .name(&self.name)
            .offset(position.to_client())
            .client_provided_name(&format!("consumer {}", self.name));
        if let (Some(group), Some(membership)) = (&self.group, &membership) {
            let mut properties = HashMap::new();
            if let Some(super_stream) = &group.super_stream {
                // Makes the broker spread the super stream's partitions over the group.
                properties.insert("super-stream".to_owned(), super_stream.clone());
            }
            builder = builder
                .enable_single_active_consumer(true)
                .properties(properties)
                .consumer_update_arc(Some(group.listener(membership.clone())));
        }
        let what = "cannot subscribe";
        let build = builder.build(&self.stream);
        match connection::build_within_deadline(&self.broker, what, &self.stream, build).await? {
            Ok(consumer) => Ok(Subscribed {
                consumer,
                membership,
            }),
            Err(err) => {
                let failure = build_failure(err);
                Err(connection::build_error(&self.broker, what, &self.stream, failure).await)
            }
        }
    }

    /// The same subscription on a fresh environment: after a lost connection, the node the old
    /// one knew may be the one that is gone.
    pub(super) async fn renewed(&self) -> Result<Subscription> {
        let environment =
            connection::environment(&self.broker, &format!("consumer {}", self.name)).await?;
        Ok(Subscription {
            environment,
            ..self.clone()
        })
    }

    /// "partition s-0: " on a super stream, nothing on a plain stream.
    pub(super) fn label(&self) -> String {
        let partitioned = self
            .group
            .as_ref()
            .is_some_and(|g| g.super_stream.is_some());
        routing::partition_label(&self.stream, partitioned)
    }
}

fn build_failure(err: ConsumerCreateError) -> BuildFailure {
    match err {
        ConsumerCreateError::StreamDoesNotExist { .. } => BuildFailure::Missing,
        ConsumerCreateError::Create { status, .. } => BuildFailure::Refused(status),
        ConsumerCreateError::Client(err) => BuildFailure::Client(err),
        other => BuildFailure::Other(other.to_string()),
    }
}

/// The offset of `stream`'s last message, read on a subscription of its own.
pub(crate) async fn stream_end(environment: &Environment, stream: &str) -> Result<Option<u64>> {
    connection::delivered_offset(
        environment,
        stream,
        OffsetSpec::Last,
        true,
        Duration::from_millis(300),
    )
    .await
}
