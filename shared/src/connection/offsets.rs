//! Reading offsets: the offset stored for a consumer (with the resume rule's three outcomes), and
//! the offset of what the broker delivers from a position.

use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::types::ResponseCode;
use rabbitmq_stream_client::{Client, Environment};

use super::close_within;
use crate::error::{describe_client_error, describe_code, Error, Result};

/// The offset stored for `consumer` on `stream`: `Ok(None)` when none is stored; any other
/// failure (network, missing stream, permissions) is an error, never silently "start at 0".
pub async fn stored_offset(client: &Client, consumer: &str, stream: &str) -> Result<Option<u64>> {
    match client.query_offset(consumer.to_owned(), stream).await {
        Ok(offset) => Ok(Some(offset)),
        Err(ClientError::RequestError(ResponseCode::OffsetNotFound)) => Ok(None),
        Err(ClientError::RequestError(ResponseCode::StreamDoesNotExist)) => {
            Err(Error::StreamNotFound {
                stream: stream.to_owned(),
            })
        }
        Err(ClientError::RequestError(code)) => Err(Error::QueryOffset {
            consumer: consumer.to_owned(),
            stream: stream.to_owned(),
            reason: describe_code(&code),
            source: Some(Box::new(ClientError::RequestError(code))),
        }),
        Err(err) => Err(Error::QueryOffset {
            consumer: consumer.to_owned(),
            stream: stream.to_owned(),
            reason: describe_client_error(&err),
            source: Some(Box::new(err)),
        }),
    }
}

/// The offset of the first message the broker delivers from `position` on `stream` (`None`: it
/// delivers nothing within `wait`); with `to_end`, of the last one it delivers before going quiet
/// for `wait` (or after `wait` × 5 in all, on a busy stream). Reads with a subscription of its own.
pub async fn delivered_offset(
    environment: &Environment,
    stream: &str,
    position: crate::OffsetSpec,
    to_end: bool,
    wait: std::time::Duration,
) -> Result<Option<u64>> {
    use futures::StreamExt;
    let mut consumer = environment
        .consumer()
        .offset(position.to_client())
        .client_provided_name("stream check")
        .build(stream)
        .await
        .map_err(|err| Error::Broker {
            what: "cannot read the stream",
            stream: stream.to_owned(),
            reason: err.to_string(),
            source: None,
        })?;
    let deadline = tokio::time::Instant::now() + wait.saturating_mul(5);
    let mut seen = None;
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(wait, consumer.next()).await {
        seen = Some(delivery.offset());
        if !to_end || tokio::time::Instant::now() > deadline {
            break;
        }
    }
    close_within("a stream check subscription", consumer.handle().close()).await;
    Ok(seen)
}
