//! Consuming one stream (a plain stream, or one partition of a super stream): the actor and the
//! concerns around it, one file each.
//!
//! - `actor`: the [`ConsumerActor`] — the subscription's events, batches to the handler, reports
//!   to the tracker, the crash bound, subscribing again after a loss, the final flush.
//! - `subscription`: where to attach (the resume rule), which node to read from, subscribing on
//!   the consumer's own delivery path (the `delivery` crate).
//! - `group`: consumer groups — becoming active (from the group's stored offset) or inactive
//!   (flushing before the handover).
//! - `health`: the lag to the stream's end, and the idle check (deleted, leaderless, moved).
//! - `queries`: the process's long-lived query connections (one per node) that `health` asks.

mod actor;
mod group;
mod health;
mod queries;
mod subscription;

pub use actor::Outcome;
pub(crate) use actor::{ConsumerActor, Processing, TrackerLink, MAX_BATCH};
pub(crate) use queries::Queries;
pub(crate) use subscription::{start_position, Group, Reader, Subscribed, Subscription};
