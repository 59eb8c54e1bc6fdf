//! `[consumer]` (who consumes, from where, into what) and `[tracker]` (how often and where
//! offsets are stored), with their validation.

use std::time::Duration;

use serde::Deserialize;

use super::{duration_within, number_within, LONGEST};
use crate::error::{Error, Result};
use crate::offset_spec::OffsetSpec;

/// `[consumer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// The consumer's name: the key under which the broker stores its offset.
    pub name: String,
    /// Where to attach when no offset is stored for `name`.
    pub offset: OffsetSpec,
    /// After losing the subscription (connection lost, broker restart), keep trying to subscribe
    /// again for this long before giving up.
    #[serde(with = "humantime_serde")]
    pub reconnect_timeout: Duration,
    /// Where processed messages go besides the tutorial's processing.
    #[serde(deserialize_with = "super::by_name")]
    pub sink: SinkKind,
    /// Join the consumer group `name`: the broker keeps one active consumer per partition (per
    /// stream, for a plain stream) among the processes with this name. A member runs until
    /// stopped (SIGINT/SIGTERM) rather than ending at the marker.
    pub single_active: bool,
    /// Chunks the broker may send ahead of processing (the protocol's credits), 1 to
    /// [`MAX_INITIAL_CREDITS`]: more keeps the pipe full, each one costs a chunk of memory.
    pub initial_credits: u16,
    /// Create the stream (or super stream) with the `[stream]` settings if it does not exist.
    /// Off by default: a consumer started on a mistyped name would otherwise create that stream
    /// and wait for ever for messages nobody sends; the producer creates streams.
    pub create_stream: bool,
}

/// Most credits a consumer may give the broker at once.
pub const MAX_INITIAL_CREDITS: u16 = 100;

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            name: "consumer-1".into(),
            offset: OffsetSpec::First,
            reconnect_timeout: Duration::from_secs(60),
            sink: SinkKind::None,
            single_active: false,
            initial_credits: 10,
            create_stream: false,
        }
    }
}

/// `[consumer] sink`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// The tutorial's processing only.
    #[default]
    None,
    /// Each processed batch into the SQLite table `messages`, with its offset, in one transaction
    /// (needs `tracker.store = "sqlite"`): exactly-once effects.
    Sqlite,
}

impl ConsumerSettings {
    /// Rejects `[consumer]` values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, why: &str| Err(Error::Config(format!("consumer.{key}: {why}")));
        if self.single_active && self.name.trim().is_empty() {
            return invalid(
                "name",
                "single_active = true needs a name: the group's members share it",
            );
        }
        if self.name.trim().is_empty() {
            return invalid(
                "name",
                "must not be empty: the broker stores offsets under this name",
            );
        }
        if self.name.len() > 255 {
            return invalid("name", "must be at most 255 bytes");
        }
        number_within(
            "consumer.initial_credits",
            self.initial_credits.into(),
            1,
            MAX_INITIAL_CREDITS.into(),
        )?;
        duration_within(
            "consumer.reconnect_timeout",
            self.reconnect_timeout,
            Duration::ZERO,
            LONGEST,
        )?;
        Ok(())
    }
}

/// `[tracker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSettings {
    /// Store after this many processed messages; 0 turns the count trigger off.
    pub store_every_messages: u64,
    /// Store when this much time passed with progress; "0s" turns the time trigger off.
    #[serde(with = "humantime_serde")]
    pub store_every: Duration,
    /// Where offsets are kept, and read from to resume.
    #[serde(deserialize_with = "super::by_name")]
    pub store: OffsetStoreKind,
    /// The SQLite database, with `store = "sqlite"`.
    pub sqlite_path: std::path::PathBuf,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self {
            store_every_messages: 10,
            store_every: Duration::from_secs(5),
            store: OffsetStoreKind::Broker,
            sqlite_path: "offsets.sqlite".into(),
        }
    }
}

/// Most messages between two stores by count.
pub const MAX_STORE_EVERY_MESSAGES: u64 = 1_000_000_000;

impl TrackerSettings {
    /// Rejects `[tracker]` values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        number_within(
            "tracker.store_every_messages",
            self.store_every_messages,
            0,
            MAX_STORE_EVERY_MESSAGES,
        )?;
        if !self.store_every.is_zero() {
            // Shorter would make the timer spin; "0s" turns it off.
            duration_within(
                "tracker.store_every",
                self.store_every,
                Duration::from_millis(10),
                LONGEST,
            )?;
        }
        Ok(())
    }
}

/// `[tracker] store`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetStoreKind {
    /// Server-side offset tracking on the broker.
    #[default]
    Broker,
    /// The application's SQLite database (`sqlite_path`); the broker is still updated, for
    /// admin tools, but never read to resume.
    Sqlite,
}
