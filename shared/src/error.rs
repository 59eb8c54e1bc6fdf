//! The one error type of the workspace: each variant names what went wrong and, where it helps,
//! what to do about it.

use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::types::ResponseCode;

use crate::connection::{describe_tls_error, tls_error};

/// Result with the workspace's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot be read or makes no sense.
    #[error("configuration error: {0}")]
    Config(String),

    /// A command was asked something impossible (an unknown stream, an offset past the end).
    #[error("{0}")]
    Usage(String),

    /// No connection could be opened to the broker.
    #[error("cannot connect to the broker at {endpoint}: {reason}")]
    Connect {
        /// `host:port`
        endpoint: String,
        /// What the client or the broker said, in words.
        reason: String,
        /// The client's error (`None`: no answer in time); with several nodes, the last one's.
        #[source]
        source: Option<Box<ClientError>>,
    },

    /// The broker refused to create the stream.
    #[error("cannot create stream '{stream}': the broker answered {code:?}")]
    StreamCreate {
        /// The stream.
        stream: String,
        /// The broker's response code.
        code: ResponseCode,
    },

    /// The stream does not exist (or was deleted).
    #[error("stream '{stream}' does not exist")]
    StreamNotFound {
        /// The stream.
        stream: String,
    },

    /// The stream was deleted while it was being consumed.
    #[error("consuming stream '{stream}' stopped: the stream was deleted")]
    StreamDeleted {
        /// The stream.
        stream: String,
    },

    /// Querying the stored offset failed for a reason other than "none stored".
    #[error(
        "cannot query the stored offset of consumer '{consumer}' on stream '{stream}': {reason}"
    )]
    QueryOffset {
        /// The consumer's name.
        consumer: String,
        /// The stream.
        stream: String,
        /// What went wrong.
        reason: String,
        /// The client's error.
        #[source]
        source: Option<Box<ClientError>>,
    },

    /// Storing an offset failed.
    #[error(
        "cannot store offset {offset} for consumer '{consumer}' on stream '{stream}': {reason}"
    )]
    StoreOffset {
        /// The consumer's name.
        consumer: String,
        /// The stream.
        stream: String,
        /// The offset that was not stored.
        offset: u64,
        /// What went wrong.
        reason: String,
        /// The client's error.
        #[source]
        source: Option<Box<ClientError>>,
    },

    /// The stream exists but has no leader for now (a node is down, the quorum is lost, or it was
    /// just created or restarted): worth trying again.
    #[error("{what} on stream '{stream}': the stream has no leader now: its leader's node is down, or most of its nodes are (lost quorum)")]
    Unavailable {
        /// What we were doing.
        what: &'static str,
        /// The stream.
        stream: String,
    },

    /// Creating a producer or a consumer, or talking to the broker afterwards, failed.
    #[error("{what} on stream '{stream}': {reason}")]
    Broker {
        /// What we were doing.
        what: &'static str,
        /// The stream.
        stream: String,
        /// What went wrong.
        reason: String,
        /// The client's error, when it said one.
        #[source]
        source: Option<Box<ClientError>>,
    },

    /// Some published messages were not confirmed by the broker.
    #[error("{unconfirmed} of {total} messages were not confirmed by the broker ({reason})")]
    NotConfirmed {
        /// How many were not confirmed.
        unconfirmed: u64,
        /// How many were published.
        total: u64,
        /// Why we stopped waiting.
        reason: String,
    },

    /// The consumer's subscription ended before the marker arrived.
    #[error("consuming stream '{stream}' stopped before the marker: {reason}")]
    ConsumeStopped {
        /// The stream.
        stream: String,
        /// What happened.
        reason: String,
    },

    /// The application's database (the SQLite store or sink) failed.
    #[error("database error: {0}")]
    Database(String),

    /// A local resource failed (a listening port, a signal handler, the runtime).
    #[error("{0}")]
    Local(String),

    /// An actor went away before answering (a bug, or a shutdown race).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The process exit code for this error: 2 for usage and configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// The stream client's error behind this one, if there is one.
    pub fn client_error(&self) -> Option<&ClientError> {
        match self {
            Error::Connect { source, .. }
            | Error::QueryOffset { source, .. }
            | Error::StoreOffset { source, .. }
            | Error::Broker { source, .. } => source.as_deref(),
            _ => None,
        }
    }

    /// The broker refused the credentials (user name, password) — not worth retrying.
    pub fn is_authentication_failure(&self) -> bool {
        matches!(
            self.client_error(),
            Some(ClientError::RequestError(
                ResponseCode::AuthenticationFailure | ResponseCode::AuthenticationFailureLoopback
            ))
        )
    }

    /// A network failure: the connection was refused, lost or timed out.
    pub fn is_network_failure(&self) -> bool {
        match self {
            Error::Connect { source: None, .. } => true,
            _ => matches!(
                self.client_error(),
                Some(ClientError::Io(_) | ClientError::ConnectionClosed)
            ),
        }
    }
}

/// An error and its causes, in one line: `error: cause: cause of the cause`.
pub fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Puts a broker response code into words a user can act on.
pub fn describe_code(code: &ResponseCode) -> String {
    match code {
        ResponseCode::AuthenticationFailure | ResponseCode::AuthenticationFailureLoopback => {
            "authentication failed: check broker.username and broker.password".into()
        }
        ResponseCode::VirtualHostAccessFailure => {
            "access to the virtual host refused: check broker.virtual_host exists and the user may use it".into()
        }
        ResponseCode::StreamDoesNotExist => "the stream does not exist".into(),
        ResponseCode::AccessRefused => "access refused: the user lacks permissions".into(),
        other => format!("the broker answered {other:?}"),
    }
}

/// Puts a client error on a connection that was open into words a user can act on: what
/// happened, never a guess at why (a lost connection is said to be lost).
pub fn describe_client_error(err: &ClientError) -> String {
    use std::io::ErrorKind;
    match err {
        ClientError::RequestError(code) => describe_code(code),
        ClientError::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
            "connection refused: is RabbitMQ running with the stream plugin on that port? \
             (scripts/broker.sh up starts one)"
                .into()
        }
        err if tls_error(err).is_some() => {
            tls_error(err).map(describe_tls_error).unwrap_or_default()
        }
        ClientError::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::BrokenPipe
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::UnexpectedEof
            ) =>
        {
            format!("the connection to the broker was lost ({io})")
        }
        ClientError::Io(io) => format!("I/O error: {io}"),
        ClientError::ConnectionClosed => CONNECTION_LOST.into(),
        other => other.to_string(),
    }
}

/// What [`ClientError::ConnectionClosed`] means on a connection that was open.
const CONNECTION_LOST: &str =
    "the connection to the broker was lost before it answered (closed by \
the broker or by something between it and us, e.g. a proxy or load balancer)";

/// Like [`describe_client_error`], for a connection being opened: there, a broker that closes
/// the connection during the handshake usually does so for one of a few known reasons.
pub fn describe_connect_error(err: &ClientError) -> String {
    match err {
        ClientError::ConnectionClosed => "the broker closed the connection during the handshake \
            (a RabbitMQ older than 3.11, wrong credentials or virtual host?)"
            .into(),
        other => describe_client_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("subscription failed")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("TLS handshake")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn with_sources_names_every_cause_in_order() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            with_sources(&Outer(Middle(io))),
            "subscription failed: TLS handshake: refused"
        );
        let alone = std::io::Error::new(std::io::ErrorKind::InvalidData, "alone");
        assert_eq!(with_sources(&alone), "alone");
    }
}
