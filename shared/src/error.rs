//! The one error type of the workspace: each variant names what went wrong and, where it helps,
//! what to do about it.

use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::types::ResponseCode;
use rustls::CertificateError;

use crate::config::TlsSettings;

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

/// Puts a client error into words a user can act on.
pub fn describe_client_error(err: &ClientError) -> String {
    match err {
        ClientError::RequestError(code) => describe_code(code),
        ClientError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: is RabbitMQ running with the stream plugin on that port? \
             (scripts/broker.sh up starts one)"
                .into()
        }
        err if tls_error(err).is_some() => {
            tls_error(err).map(describe_tls_error).unwrap_or_default()
        }
        ClientError::Io(io) => format!("I/O error: {io}"),
        ClientError::ConnectionClosed => {
            "the broker closed the connection (a RabbitMQ older than 3.11, wrong credentials or virtual host?)".into()
        }
        other => other.to_string(),
    }
}

/// The TLS error inside a client error, if it is one: a failed handshake comes back as an I/O
/// error wrapping it, a client certificate and key that do not match as a generic one.
pub fn tls_error(err: &ClientError) -> Option<&rustls::Error> {
    match err {
        ClientError::Tls(tls) => Some(tls),
        ClientError::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        ClientError::GenericError(generic) => generic.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// Puts a TLS error into words a user can act on.
pub fn describe_tls_error(err: &rustls::Error) -> String {
    use rustls::Error as Tls;
    match err {
        Tls::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "TLS handshake failed: the broker's certificate is not signed by the CA in \
             broker.tls.ca_file ({err})"
        ),
        Tls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "TLS handshake failed: the broker's certificate is not valid for the host name \
             connected to; use one its certificate names as broker.host ({err})"
        ),
        Tls::InvalidCertificate(_) => {
            format!("TLS handshake failed: the broker's certificate was rejected ({err})")
        }
        Tls::AlertReceived(_) => format!(
            "TLS handshake failed: the broker refused it ({err}); if it asks for a client \
             certificate, set broker.tls.client_cert_file and broker.tls.client_key_file"
        ),
        Tls::InvalidMessage(_)
        | Tls::InappropriateMessage { .. }
        | Tls::InappropriateHandshakeMessage { .. } => format!(
            "TLS handshake failed: the other end does not speak TLS ({err}); is broker.port the \
             broker's TLS stream listener (stream.listeners.ssl, usually 5551)?"
        ),
        Tls::InconsistentKeys(_) | Tls::NoCertificatesPresented => format!(
            "TLS: broker.tls.client_cert_file and broker.tls.client_key_file do not make a \
             certificate and its key ({err})"
        ),
        other => format!("TLS error: {other}"),
    }
}

/// A failed connection attempt with `[broker.tls]` set, in words naming the files involved;
/// `None` when the failure has nothing to do with TLS.
pub fn describe_tls_connect_error(
    err: &ClientError,
    tls: &TlsSettings,
    endpoint: &str,
) -> Option<String> {
    let ca = match &tls.ca_file {
        Some(path) => format!("broker.tls.ca_file = {}", path.display()),
        None => "broker.tls.trust_everything = true".to_owned(),
    };
    match err {
        err if tls_error(err).is_some() => tls_error(err)
            .map(describe_tls_error)
            .map(|reason| format!("{reason} [{ca}]")),
        // The other end closed the connection in the middle of the TLS handshake.
        ClientError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Some(format!(
            "TLS handshake failed: {endpoint} closed the connection during it ({io}); is that \
             the broker's TLS stream listener (stream.listeners.ssl, usually 5551)? [{ca}]"
        )),
        // With TLS 1.3 the broker checks the client certificate after the client thinks the
        // handshake is done: a refused certificate looks like a closed connection.
        ClientError::ConnectionClosed => Some(match &tls.client_cert_file {
            Some(cert) => format!(
                "the broker closed the connection right after the TLS handshake: did it refuse \
                 the client certificate (broker.tls.client_cert_file = {}), or are the \
                 credentials or virtual host wrong? [{ca}]",
                cert.display()
            ),
            None => format!(
                "the broker closed the connection right after the TLS handshake: does it require \
                 a client certificate (broker.tls.client_cert_file), or are the credentials or \
                 virtual host wrong? [{ca}]"
            ),
        }),
        _ => None,
    }
}
