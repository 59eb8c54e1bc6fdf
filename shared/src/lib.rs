//! What the producer, the consumer and the tracker share at run time: configuration, one error
//! type, how to reach the broker, retries, and the pieces of a program's life (command line,
//! runtime and exit codes, diagnostics, progress, metrics, the run summary).
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`config`] | the `config.toml` schema, loading (file < environment < flags), validation per section |
//! | [`error`] | [`Error`], the workspace's one error type, and broker answers in words |
//! | [`connection`] | connections, TLS, streams and their state, building producers and consumers, offset queries |
//! | [`retry`] | jittered exponential back-off, retrying while a stream has no leader |
//! | [`offset_spec`] | where a consumer attaches: `first`, `last`, `next`, an offset, a timestamp |
//! | [`routing`] | super stream routing (murmur3, as every RabbitMQ stream client) |
//! | [`marker`] | the tutorial's marker: what the last message of a wave starts with |
//! | [`cli`], [`runtime`], [`telemetry`] | flags both programs take; the actix-on-tokio runtime, signals and exit codes; logging |
//! | [`progress`], [`metrics`], [`summary`] | progress on stderr; Prometheus metrics; the run summary (human and JSON) |

pub mod cli;
pub mod config;
pub mod connection;
pub mod error;
pub mod marker;
pub mod metrics;
pub mod offset_spec;
pub mod progress;
pub mod retry;
pub mod routing;
pub mod runtime;
pub mod summary;
pub mod telemetry;

pub use config::Settings;
pub use error::{Error, Result};
pub use offset_spec::OffsetSpec;
