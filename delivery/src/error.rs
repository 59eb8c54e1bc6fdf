//! The one error type of the crate: what went wrong with a subscription, kept apart by kind (and
//! with its source) so a caller can tell a refused login from a lost socket, a broker response
//! code or an undecodable chunk without reading the message.

use std::io;
use std::time::Duration;

use rabbitmq_stream_protocol::ResponseCode;

use crate::chunk::ChunkError;

/// Why a subscription could not be opened, or why it ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The options cannot work (e.g. single active consumer without a consumer name).
    #[error("stream {stream}: invalid subscription options: {detail}")]
    InvalidOptions {
        /// The stream.
        stream: String,
        /// What is wrong.
        detail: String,
    },
    /// No TCP connection to the broker.
    #[error("stream {stream}: cannot connect to {address}")]
    Connect {
        /// The stream.
        stream: String,
        /// `host:port`.
        address: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// Connecting, the handshake and the subscription together took longer than allowed.
    #[error("stream {stream}: no subscription on {address} within {after:?} ({step})")]
    Timeout {
        /// The stream.
        stream: String,
        /// `host:port`.
        address: String,
        /// The step that was under way.
        step: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// The TLS handshake failed (certificate, server name, protocol).
    #[error("stream {stream}: TLS with {address} failed")]
    Tls {
        /// The stream.
        stream: String,
        /// `host:port`.
        address: String,
        /// What rustls or the socket said.
        #[source]
        source: io::Error,
    },
    /// The broker refused the credentials.
    #[error("stream {stream}: the broker refused the credentials of user {username:?} ({code:?})")]
    Authentication {
        /// The stream.
        stream: String,
        /// The user name that was refused.
        username: String,
        /// The broker's code (`AuthenticationFailure`, `SaslMechanismNotSupported`, …).
        code: ResponseCode,
    },
    /// The broker answered a request with an error code (e.g. `StreamDoesNotExist` to the
    /// subscription, `VirtualHostAccessFailure` to opening the virtual host).
    #[error("stream {stream}: the broker answered {operation} with {code:?}")]
    Refused {
        /// The stream.
        stream: String,
        /// The request: "open", "subscribe", "credit", …
        operation: &'static str,
        /// The broker's code.
        code: ResponseCode,
    },
    /// The connection broke: socket error, or the broker closed the socket without a Close.
    #[error("stream {stream}: connection to the broker lost")]
    Network {
        /// The stream.
        stream: String,
        /// The socket error (`UnexpectedEof` when the broker just went away).
        #[source]
        source: io::Error,
    },
    /// The broker sent nothing, not even a heartbeat, for four heartbeat intervals.
    #[error("stream {stream}: the broker has been silent for {silent_for:?} (4 heartbeats)")]
    HeartbeatTimeout {
        /// The stream.
        stream: String,
        /// How long it was silent.
        silent_for: Duration,
    },
    /// A delivered chunk could not be decoded.
    #[error("stream {stream}: a delivered chunk cannot be decoded")]
    Decode {
        /// The stream.
        stream: String,
        /// Which chunk and what was found.
        #[source]
        source: ChunkError,
    },
    /// The broker sent something this client does not understand at that point.
    #[error("stream {stream}: protocol error: {detail}")]
    Protocol {
        /// The stream.
        stream: String,
        /// What was received.
        detail: String,
    },
    /// The task that reads the connection panicked (a bug): the subscription is gone.
    #[error("stream {stream}: the delivery task panicked: {message}")]
    TaskPanicked {
        /// The stream.
        stream: String,
        /// The panic's message, when it was a string.
        message: String,
    },
    /// `close()` did not finish in time; the socket was dropped.
    #[error("stream {stream}: closing did not finish within {after:?}; the socket was dropped")]
    CloseTimeout {
        /// The stream.
        stream: String,
        /// The deadline given.
        after: Duration,
    },
}

impl DeliveryError {
    /// The stream the subscription was (or was to be) on.
    pub fn stream(&self) -> &str {
        match self {
            Self::InvalidOptions { stream, .. }
            | Self::Connect { stream, .. }
            | Self::Timeout { stream, .. }
            | Self::Tls { stream, .. }
            | Self::Authentication { stream, .. }
            | Self::Refused { stream, .. }
            | Self::Network { stream, .. }
            | Self::HeartbeatTimeout { stream, .. }
            | Self::Decode { stream, .. }
            | Self::Protocol { stream, .. }
            | Self::TaskPanicked { stream, .. }
            | Self::CloseTimeout { stream, .. } => stream,
        }
    }

    /// The broker's response code, for errors that carry one.
    pub fn response_code(&self) -> Option<&ResponseCode> {
        match self {
            Self::Authentication { code, .. } | Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}
