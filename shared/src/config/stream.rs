//! `[stream]`: the stream (or super stream) and its retention, with its validation.

use std::time::Duration;

use serde::Deserialize;

use super::MAX_PARTITIONS;
use crate::error::{Error, Result};

/// `[stream]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Name of the stream.
    pub name: String,
    /// Retention by size, in bytes (the tutorial's 2 GB).
    pub max_length_bytes: u64,
    /// Retention by age, e.g. "7days"; none by default.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Size of the stream's segment files, in bytes; the broker's default when absent.
    pub max_segment_size_bytes: Option<u64>,
    /// On a cluster: how many nodes hold the stream (leader and replicas), the broker's
    /// `x-initial-cluster-size`; the broker's default (every node) when absent.
    pub initial_cluster_size: Option<u32>,
    /// 0: `name` is a plain stream. N > 0: `name` is a super stream of N partitions,
    /// `name-0` … `name-{N-1}`.
    pub partitions: u32,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: "stream-offset-tracking-rust".into(),
            max_length_bytes: 2_000_000_000,
            max_age: None,
            max_segment_size_bytes: None,
            initial_cluster_size: None,
            partitions: 0,
        }
    }
}

impl StreamSettings {
    /// Rejects `[stream]` values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, why: &str| Err(Error::Config(format!("stream.{key}: {why}")));
        if self.name.trim().is_empty() {
            return invalid("name", "must not be empty");
        }
        if self.name.len() > 255 {
            return invalid("name", "must be at most 255 bytes");
        }
        if self.max_length_bytes == 0 {
            return invalid("max_length_bytes", "must be more than 0");
        }
        if self.initial_cluster_size == Some(0) {
            return invalid("initial_cluster_size", "must be at least 1, or absent");
        }
        if self.partitions > MAX_PARTITIONS {
            return invalid(
                "partitions",
                &format!("must be at most {MAX_PARTITIONS} (0: a plain stream)"),
            );
        }
        if self.partitions > 0 && self.name.len() > 255 - 11 {
            return invalid(
                "name",
                "must be at most 244 bytes with partitions (room for the partition's suffix)",
            );
        }
        Ok(())
    }
}
