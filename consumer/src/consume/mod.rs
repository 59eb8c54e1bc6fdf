//! Consuming one stream (a plain stream, or one partition of a super stream): the actor and the
//! concerns around it, one file each.
//!
//! - `actor`: the [`ConsumerActor`] — batches of deliveries to the handler, reports to the
//!   tracker, the crash bound, subscribing again after a loss, the final flush.
//! - `subscription`: where to attach (the resume rule) and subscribing a named consumer.
//! - `group`: consumer groups — the broker's consumer updates, handover stores, becoming active
//!   or inactive.
//! - `health`: the lag to the stream's end, and the idle check (deleted, leaderless, moved).

mod actor;
mod group;
mod health;
mod subscription;

pub use actor::Outcome;
pub(crate) use actor::{ConsumerActor, TrackerLink};
pub(crate) use group::{Group, GroupUpdate};
pub(crate) use subscription::{start_position, Subscribed, Subscription};
