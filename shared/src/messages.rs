//! The typed messages the consumer and the tracker exchange.
//!
//! The consumer knows the tracker only as `Recipient`s of these messages, so either side can be
//! replaced (a test double for the tracker, another store) without the other knowing.

use actix::Message;

use crate::error::Result;

/// "These messages are processed": the newest processed offset and how many messages were
/// processed since the previous report. Sent once per batch, never per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Processed {
    /// The offset of the last message processed.
    pub offset: u64,
    /// How many messages this report covers (at least 1).
    pub count: u64,
}

/// "Store the newest processed offset now and confirm it reached the broker": sent on the marker
/// and on shutdown. Answers the offset now stored, or `None` if nothing was ever processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "Result<Option<u64>>")]
pub struct Flush;

/// A snapshot of the tracker's work, for summaries and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, actix::MessageResponse)]
pub struct TrackerStats {
    /// The newest offset reported processed.
    pub last_processed: Option<u64>,
    /// The newest offset the tracker stored.
    pub last_stored: Option<u64>,
    /// Stores sent to the broker.
    pub stores: u64,
    /// Stores that failed.
    pub store_errors: u64,
}

/// Asks the tracker for its [`TrackerStats`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "TrackerStats")]
pub struct GetStats;

/// What the tracker has stored so far, published on a `tokio::sync::watch` channel: the consumer
/// reads it to keep the messages processed beyond the last store within the crash bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredProgress {
    /// The newest offset stored.
    pub offset: Option<u64>,
    /// How many messages had been reported processed when that offset was stored.
    pub processed: u64,
}
