//! Where offsets go: the [`OffsetStore`] trait, and [`BrokerStore`], which stores them on the
//! broker through a connection of its own — never the consumer's, whose delivery path a store
//! frame would stall (the client sets no TCP_NODELAY).

use futures::future::LocalBoxFuture;
use rabbitmq_stream_client::Client;
use shared::connection;
use shared::error::{describe_client_error, Error, Result};

/// A place that keeps a consumer's offset.
pub trait OffsetStore: Unpin + 'static {
    /// Sends `offset` as the last processed offset. May return before the store is durable.
    fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>>;

    /// Reads back the stored offset (`None`: none stored). After a `store` on the same store, it
    /// sees that store: flushes use it to confirm.
    fn query(&self) -> LocalBoxFuture<'static, Result<Option<u64>>>;

    /// Releases the connection.
    fn close(&self) -> LocalBoxFuture<'static, ()>;
}

/// Stores on the broker (server-side offset tracking) over a dedicated connection.
pub struct BrokerStore {
    client: Client,
    consumer: String,
    stream: String,
}

impl BrokerStore {
    /// Uses `client`, a connection of the tracker's own, for `consumer` on `stream`.
    pub fn new(client: Client, consumer: impl Into<String>, stream: impl Into<String>) -> Self {
        Self {
            client,
            consumer: consumer.into(),
            stream: stream.into(),
        }
    }
}

impl OffsetStore for BrokerStore {
    fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>> {
        let (client, consumer, stream) = (
            self.client.clone(),
            self.consumer.clone(),
            self.stream.clone(),
        );
        Box::pin(async move {
            // Fire-and-forget at the protocol level: the broker sends no reply to a store.
            client
                .store_offset(&consumer, &stream, offset)
                .await
                .map_err(|err| Error::StoreOffset {
                    consumer,
                    stream,
                    offset,
                    reason: describe_client_error(&err),
                })
        })
    }

    fn query(&self) -> LocalBoxFuture<'static, Result<Option<u64>>> {
        let (client, consumer, stream) = (
            self.client.clone(),
            self.consumer.clone(),
            self.stream.clone(),
        );
        Box::pin(async move { connection::stored_offset(&client, &consumer, &stream).await })
    }

    fn close(&self) -> LocalBoxFuture<'static, ()> {
        let client = self.client.clone();
        Box::pin(async move {
            // The client's close waits for the broker's reply without a deadline.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), client.close()).await;
        })
    }
}
