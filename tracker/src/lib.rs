//! The offset tracker: an actor that turns "processed" reports into server-side offset stores,
//! batched by message count or by time, whichever comes first, flushed on demand (the marker,
//! shutdown), only ever forward, and off the consumer's delivery path.
//!
//! # Guarantees
//!
//! - **What is stored, when**: the newest offset reported processed (a [`Processed`] message),
//!   once `store_every_messages` messages were reported since the last store, or when the
//!   `store_every` timer fires with progress since the last store; and on [`Flush`] (the marker,
//!   shutdown), which stores and reads the offset back to confirm it.
//! - **Only forward**: never an offset at or below the last stored one, nor below what the store
//!   held when the tracker started.
//! - **Crash bound**: a consumer that reports each processed batch and waits on
//!   [`Tracker::stored_progress`] when it is `store_every_messages` plus one batch ahead (as the
//!   `consumer` crate's actor does) repeats at most that many messages after a crash; with the
//!   count trigger off, what arrived within `store_every`.
//! - **Off the delivery path**: stores go through the store's own connection; reports are
//!   coalescible, so a sender that finds the bounded mailbox full merges them and never waits.
//!
//! Never report an offset before its message is processed: the tracker stores what it is told.
//!
//! # Layout
//!
//! | file | what lives there |
//! |---|---|
//! | `actor.rs` | the [`Tracker`] actor and its protocol: [`Processed`], [`Flush`], [`GetStats`], [`Close`], [`StoredProgress`] |
//! | `client.rs` | [`TrackerClient`]: reporting without waiting, the crash-bound wait, flushing — for whoever processes |
//! | `policy.rs` | when a store is due (pure logic, unit-tested) |
//! | `store.rs` | where offsets go: the [`OffsetStore`] trait; [`BrokerStore`], the broker over a connection of its own |
//! | `sqlite.rs` | offsets in the application's own SQLite [`Database`]; [`SqliteThenBroker`]; [`CommittedThenBroker`] |

mod actor;
mod client;
mod policy;
mod sqlite;
mod store;

pub use actor::{
    Activate, Close, Deactivate, Flush, GetStats, Processed, StoredProgress, Tracker, TrackerStats,
    FLUSH_PATIENCE, MAILBOX_CAPACITY,
};
pub use client::{Flusher, TrackerClient};
pub use sqlite::{CommittedThenBroker, Database, SqliteThenBroker};
pub use store::{BrokerStore, OffsetStore};
