//! `[producer]`: the wave to publish, deduplication, routing, and its validation.

use std::time::Duration;

use serde::Deserialize;

use super::{duration_within, number_within, LONGEST};
use crate::error::{Error, Result};

/// `[producer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerSettings {
    /// How many messages one run publishes: `hello0` … and the last one `marker{n-1}`.
    pub message_count: u64,
    /// Most messages published but not yet confirmed at any time (bounds memory).
    pub max_unconfirmed: u32,
    /// Most messages sent to the broker in one publish frame (the broker writes about one chunk
    /// per frame; larger chunks mean fewer offset stores per message for consumers).
    pub batch_size: u32,
    /// Give up when no confirmation arrived for this long.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// A name turns on deduplication: after a lost connection the producer resends what the
    /// broker does not hold, and nothing is written twice. Unnamed, a lost connection fails the run.
    pub name: Option<String>,
    /// With a name: keep trying to reconnect for this long.
    #[serde(with = "humantime_serde")]
    pub reconnect_timeout: Duration,
    /// With `stream.partitions`: the routing key of message `i`, with `{index}` replaced by `i`;
    /// its murmur3 hash (as every RabbitMQ stream client computes it) chooses the partition.
    pub routing_key: String,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            message_count: 100,
            max_unconfirmed: 10_000,
            batch_size: 100,
            confirm_timeout: Duration::from_secs(30),
            name: None,
            reconnect_timeout: Duration::from_secs(60),
            routing_key: "{index}".into(),
        }
    }
}

impl ProducerSettings {
    /// Rejects `[producer]` values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, why: &str| Err(Error::Config(format!("producer.{key}: {why}")));
        if !self.routing_key.contains("{index}") {
            return invalid(
                "routing_key",
                "must contain {index} (e.g. \"{index}\" or \"order-{index}\"): a key without it sends every message to one partition",
            );
        }
        if self.message_count == 0 {
            return invalid("message_count", "must be at least 1 (the marker)");
        }
        number_within("producer.batch_size", self.batch_size.into(), 1, 100_000)?;
        number_within(
            "producer.max_unconfirmed",
            self.max_unconfirmed.into(),
            1,
            1_000_000,
        )?;
        duration_within(
            "producer.confirm_timeout",
            self.confirm_timeout,
            Duration::from_millis(1),
            LONGEST,
        )?;
        duration_within(
            "producer.reconnect_timeout",
            self.reconnect_timeout,
            Duration::ZERO,
            LONGEST,
        )?;
        if self
            .name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty() || n.len() > 255)
        {
            return invalid("name", "must be 1 to 255 bytes, or absent");
        }
        Ok(())
    }
}
