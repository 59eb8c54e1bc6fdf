//! Where offsets go: the [`OffsetStore`] trait, and [`BrokerStore`], which stores them on the
//! broker through a connection of its own — never the consumer's, whose delivery path a store
//! frame would stall (the client sets no TCP_NODELAY).
//!
//! The client says nothing when a connection dies under it (`is_closed` is only set by our own
//! `close`), and a store, which has no reply, written to a dead socket can even "succeed".
//! [`BrokerStore`] therefore watches its connection (the client's message handler is told when
//! the connection ends) and opens a new one before the next store or query, rather than after a
//! store was lost on the dead one.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use rabbitmq_stream_client::types::MessageResult;
use rabbitmq_stream_client::Client;
use shared::config::BrokerSettings;
use shared::connection;
use shared::error::{describe_client_error, Error, Result};

/// Longest a stored-offset query may wait for its answer: the broker answers a live connection in
/// milliseconds, and a connection that went silent (a link dropped without a close) is replaced
/// rather than waited on until heartbeats find it dead.
const QUERY_TIMEOUT: Duration = Duration::from_secs(4);

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

/// The store connection and what is known of its health.
#[derive(Clone)]
struct Link {
    client: Client,
    /// Set by the client's message handler when the connection ends (lost, or closed by the
    /// broker).
    ended: Arc<AtomicBool>,
    /// Whether that handler is in place yet.
    watched: bool,
}

impl Link {
    fn new(client: Client) -> Self {
        let mut link = Self {
            client,
            ended: Arc::new(AtomicBool::new(false)),
            watched: false,
        };
        // Setting the handler takes a lock no one holds on a new client: done at once, almost
        // always; otherwise on first use.
        link.watched = link.watch().now_or_never().is_some();
        link
    }

    /// Makes the client tell `ended` when its connection ends (the end of its frames, or a read
    /// error).
    fn watch(&self) -> impl std::future::Future<Output = ()> + 'static {
        let ended = self.ended.clone();
        let client = self.client.clone();
        async move {
            let handler = move |item: MessageResult| {
                let ended = ended.clone();
                async move {
                    if matches!(item, None | Some(Err(_))) {
                        ended.store(true, Ordering::Relaxed);
                    }
                    Ok(())
                }
            };
            client.set_handler(handler).await;
        }
    }

    fn alive(&self) -> bool {
        !self.ended.load(Ordering::Relaxed) && !self.client.is_closed()
    }
}

/// Stores on the broker (server-side offset tracking) over a dedicated connection, which it
/// opens again when it was lost (a broker restart, a dead link, a proxy in between that died).
pub struct BrokerStore {
    link: Rc<RefCell<Option<Link>>>,
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
            link: Rc::new(RefCell::new(Some(Link::new(client)))),
            broker,
            consumer: consumer.into(),
            stream: stream.into(),
        }
    }

    /// The live connection, opened again if it was lost.
    fn connection(&self) -> LocalBoxFuture<'static, Result<Client>> {
        let slot = self.link.clone();
        let broker = self.broker.clone();
        let name = format!("tracker {}", self.consumer);
        Box::pin(async move {
            let current = slot.borrow().clone();
            if let Some(link) = current.clone().filter(Link::alive) {
                if !link.watched {
                    link.watch().await;
                    if let Some(kept) = slot.borrow_mut().as_mut() {
                        kept.watched = true;
                    }
                }
                // The handler may have come too late to hear of an end: the next failure tells.
                return Ok(link.client);
            }
            let why = match current {
                Some(_) => "the tracker's store connection was lost",
                None => "the tracker's store connection failed",
            };
            tracing::info!("{why}; opening it again on {}", broker.endpoint());
            let link = Link::new(connection::client(&broker, &name).await?);
            let client = link.client.clone();
            *slot.borrow_mut() = Some(link);
            Ok(client)
        })
    }
}

impl OffsetStore for BrokerStore {
    fn store(&self, offset: u64) -> LocalBoxFuture<'static, Result<()>> {
        let connect = self.connection();
        let slot = self.link.clone();
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
        let slot = self.link.clone();
        Box::pin(async move {
            let client = connect.await?;
            let query = connection::stored_offset(&client, &consumer, &stream);
            let stored = match tokio::time::timeout(QUERY_TIMEOUT, query).await {
                Ok(stored) => stored,
                Err(_) => Err(Error::QueryOffset {
                    consumer,
                    stream,
                    reason: format!(
                        "no answer within {} on the tracker's store connection (a silent link)",
                        humantime::format_duration(QUERY_TIMEOUT)
                    ),
                    source: None,
                }),
            };
            if stored.as_ref().is_err_and(|err| {
                err.is_network_failure() || matches!(err, Error::QueryOffset { source: None, .. })
            }) {
                // The next attempt opens a fresh connection.
                slot.borrow_mut().take();
            }
            stored
        })
    }

    fn close(&self) -> LocalBoxFuture<'static, ()> {
        let link = self.link.borrow_mut().take();
        Box::pin(async move {
            if let Some(link) = link.filter(Link::alive) {
                connection::close_within("the tracker's store connection", link.client.close())
                    .await;
            }
        })
    }
}
