//! Building a producer or a consumer: under a deadline, and its failures mapped to the
//! workspace's errors (a stream without a leader is retryable; only a stream really gone is
//! "not found").

use std::future::Future;

use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::types::ResponseCode;

use super::streams::{stream_state, StreamState};
use super::{client, close_within};
use crate::config::BrokerSettings;
use crate::error::{describe_client_error, describe_code, Error};
use crate::Result;

/// Runs the building of a producer or a consumer (metadata, then a connection to the right node)
/// under a deadline of `connect_timeout` × 3: in load-balancer mode the client would otherwise
/// retry forever.
pub async fn build_within_deadline<T, E>(
    broker: &BrokerSettings,
    what: &'static str,
    stream: &str,
    build: impl Future<Output = std::result::Result<T, E>>,
) -> Result<std::result::Result<T, E>> {
    let limit = broker.connect_timeout.saturating_mul(3);
    tokio::time::timeout(limit, build)
        .await
        .map_err(|_| Error::Broker {
            what,
            stream: stream.to_owned(),
            reason: format!(
                "no answer within {} (3 × broker.connect_timeout{})",
                humantime::format_duration(limit),
                if broker.load_balancer_mode {
                    "; in load-balancer mode the client never reached the node it needs"
                } else {
                    ""
                }
            ),
            source: None,
        })
}

/// Why building a producer or a consumer failed, in the terms the client's two error types
/// (`ProducerCreateError`, `ConsumerCreateError`) share.
#[derive(Debug)]
pub enum BuildFailure {
    /// The client says the stream does not exist.
    Missing,
    /// The broker refused with this code.
    Refused(ResponseCode),
    /// The connection failed.
    Client(ClientError),
    /// Anything else, in words.
    Other(String),
}

/// The error for a failed build of a producer or a consumer on `stream` (`what`: "cannot
/// subscribe", …). A stream without a leader is [`Error::Unavailable`] (worth retrying). "Does not
/// exist" is checked with the broker first, because on a cluster the client also says so of a
/// stream that has no leader for the moment: only a stream really gone is
/// [`Error::StreamNotFound`].
pub async fn build_error(
    broker: &BrokerSettings,
    what: &'static str,
    stream: &str,
    failure: BuildFailure,
) -> Error {
    let unavailable = || Error::Unavailable {
        what,
        stream: stream.to_owned(),
    };
    let (reason, source) = match failure {
        BuildFailure::Missing => {
            let state = async {
                let admin = client(broker, "stream check").await?;
                let state = stream_state(&admin, stream).await;
                close_within("a stream check connection", admin.close()).await;
                state
            }
            .await;
            return match state {
                Ok(StreamState::Missing) => Error::StreamNotFound {
                    stream: stream.to_owned(),
                },
                Ok(_) => unavailable(),
                Err(err) => err,
            };
        }
        BuildFailure::Refused(ResponseCode::StreamNotAvailable) => return unavailable(),
        BuildFailure::Refused(code) => (
            describe_code(&code),
            Some(Box::new(ClientError::RequestError(code))),
        ),
        BuildFailure::Client(err) => (describe_client_error(&err), Some(Box::new(err))),
        BuildFailure::Other(reason) => (reason, None),
    };
    Error::Broker {
        what,
        stream: stream.to_owned(),
        reason,
        source,
    }
}
