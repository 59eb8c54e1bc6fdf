//! Reading offsets: the offset stored for a consumer, with the resume rule's three outcomes.
//! (What the broker delivers from a position is read on the consumer's own delivery path.)

use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::types::ResponseCode;
use rabbitmq_stream_client::Client;

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
