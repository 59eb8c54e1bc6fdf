//! The offset tracker: an actor that turns "processed" reports into server-side offset stores,
//! batched by message count or by time, whichever comes first, flushed on demand (the marker,
//! shutdown), only ever forward, and off the consumer's delivery path.
//!
//! - [`policy`]: when a store is due (pure logic).
//! - [`store`]: where offsets go ([`BrokerStore`]: the broker, over a connection of its own).
//! - [`actor`]: the [`Tracker`] actor that ties them together.

pub mod actor;
pub mod policy;
pub mod sqlite;
pub mod store;

pub use actor::{Close, Tracker, MAILBOX_CAPACITY};
pub use store::{BrokerStore, OffsetStore};
