//! Where offsets go: the [`OffsetStore`] trait, and [`BrokerStore`], which stores them on the
//! broker through a connection of its own — never the consumer's, whose delivery path a store
//! frame would stall (the client sets no TCP_NODELAY).

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use rabbitmq_stream_client::Client;
use shared::config::BrokerSettings;
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

/// Stores on the broker (server-side offset tracking) over a dedicated connection, which it
/// opens again when it was lost (a broker restart, a dead link).
pub struct BrokerStore {
    client: Rc<RefCell<Option<Client>>>,
    broker: BrokerSettings,
    consumer: String,
    stream: String,
}

impl BrokerStore {
    /// Uses `client`, a connection of the tracker's own, for `consumer` on `stream`; reconnects
    /// with `broker` when that connection is lost.
    pub fn new(
        client: Client,
        broker: BrokerSettings,
        consumer: impl Into<String>,
        stream: impl Into<String>,
    ) -> Self {
        Self {
            client: Rc::new(RefCell::new(Some(client))),
            broker,
            consumer: consumer.into(),
            stream: stream.into(),
        }
    }

    /// The live connection, opened again if it was lost.
    fn connection(&self) -> LocalBoxFuture<'static, Result<Client>> {
        let slot = self.client.clone();
        let broker = self.broker.clone();
        let name = format!("tracker {}", self.consumer);
        Box::pin(async move {
            let current = slot.borrow().clone();
            if let Some(client) = current.filter(|c| !c.is_closed()) {
                return Ok(client);
            }
            tracing::info!("opening the tracker's store connection again");
            let client = connection::client(&broker, &name).await?;
            *slot.borrow_mut() = Some(client.clone());
            Ok(client)
        })
    }
}

impl OffsetStore for BrokerStore {
    fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>> {
        let connect = self.connection();
        let slot = self.client.clone();
        let (consumer, stream) = (self.consumer.clone(), self.stream.clone());
        Box::pin(async move {
            let client = connect.await?;
            // Fire-and-forget at the protocol level: the broker sends no reply to a store.
            let stored = client.store_offset(&consumer, &stream, offset).await;
            stored.map_err(|err| {
                slot.borrow_mut().take();
                Error::StoreOffset {
                    consumer,
                    stream,
                    offset,
                    reason: describe_client_error(&err),
                    source: Some(Box::new(err)),
                }
            })
        })
    }

    fn query(&self) -> LocalBoxFuture<'static, Result<Option<u64>>> {
        let connect = self.connection();
        let (consumer, stream) = (self.consumer.clone(), self.stream.clone());
        let slot = self.client.clone();
        Box::pin(async move {
            let client = connect.await?;
            let stored = connection::stored_offset(&client, &consumer, &stream).await;
            if stored.is_err() {
                // The next attempt opens a fresh connection.
                slot.borrow_mut().take();
            }
            stored
        })
    }

    fn close(&self) -> LocalBoxFuture<'static, ()> {
        let client = self.client.borrow_mut().take();
        Box::pin(async move {
            if let Some(client) = client {
                connection::close_within("the tracker's store connection", client.close()).await;
            }
        })
    }
}
