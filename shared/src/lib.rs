//! What the producer, the consumer and the tracker share: configuration, the typed messages
//! their actors exchange, one error type, and how to reach the broker.

pub mod cli;
pub mod config;
pub mod connection;
pub mod error;
pub mod messages;
pub mod metrics;
pub mod offset_spec;
pub mod progress;
pub mod routing;
pub mod runtime;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::Settings;
pub use error::{Error, Result};
pub use offset_spec::OffsetSpec;
