//! Reaching the broker, one concern a file:
//!
//! - `connect`: environments and plain clients on the first configured node that answers, under
//!   `broker.connect_timeout`; how many nodes answer.
//! - `tls`: the client's TLS configuration, and TLS failures in words.
//! - `streams`: creating the configured stream or super stream, a stream's state (available,
//!   without a leader, missing), partitions, the lost-quorum diagnosis.
//! - `build`: building a producer or a consumer under a deadline, its failures mapped.
//! - `offsets`: the stored-offset query.
//! - `own`: the options of our own delivery path's connections.
//!
//! Closing is one helper, [`close_within`]: the client's `close()` waits for the broker's answer
//! with no limit.

mod build;
mod connect;
mod offsets;
mod own;
mod streams;
mod tls;

use std::future::Future;
use std::time::Duration;

pub use build::{build_error, build_within_deadline, BuildFailure};
pub use connect::{client, environment, nodes_answering};
pub use offsets::stored_offset;
pub use own::delivery_options;
pub use streams::{
    ensure_stream, partitions, quorum_lost, stream_exists, stream_members, stream_state, Members,
    StreamState, NO_LEADER,
};
pub use tls::{
    describe_tls_error, rustls_client_config, rustls_client_config_of, tls_configuration, tls_error,
};

/// How long closing a connection, a producer or a subscription may take before we stop waiting
/// for the broker.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes something of the client's (`close` is its close future) within [`CLOSE_TIMEOUT`]: a
/// broker that does not answer is left behind with a debug line naming `what`. Closing is
/// clean-up, so its failure is logged, never returned.
pub async fn close_within<T, E: std::fmt::Display>(
    what: &str,
    close: impl Future<Output = std::result::Result<T, E>>,
) {
    match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::debug!("closing {what}: {err}"),
        Err(_) => tracing::debug!(
            "closing {what}: no answer within {}; leaving it",
            humantime::format_duration(CLOSE_TIMEOUT)
        ),
    }
}
