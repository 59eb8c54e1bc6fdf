//! The consumer process's long-lived query connections: one per broker node it asks, shared by
//! every partition's actor, for the lag probe and the idle check (a stream's state, its end, the
//! nodes that answer). Without them each partition opened a connection (and a subscription)
//! every few seconds: with 100 partitions, hundreds of connections a minute.
//!
//! A connection is opened on first use and kept; a query that fails on it for want of the
//! connection (lost, timed out, closed by the broker) drops it, and the next query opens a new one
//! (lazily — nothing reconnects in the background). Every query has a deadline:
//! `broker.connect_timeout`. Connections are kept per node, user, virtual host and TLS
//! configuration, in a registry of the process (so nothing has to hand them around); they live
//! as long as the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use delivery::{DeliveryError, QueryConnection, ResponseCode};
use shared::config::{BrokerSettings, Endpoint};
use shared::connection::{self, Members, StreamState};
use shared::error::{with_sources, Error, Result};

use super::subscription::subscribe_error;

/// The name the query connections show in the broker's management UI.
const CONNECTION_NAME: &str = "consumer queries";

/// One node's connection, opened by one caller at a time (the others wait for it).
type Slot = Arc<tokio::sync::Mutex<Option<Arc<QueryConnection>>>>;

fn registry() -> &'static Mutex<HashMap<String, Slot>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Where a connection goes and as whom: one connection per distinct key.
fn key(
    broker: &BrokerSettings,
    tls: Option<&Arc<rustls::ClientConfig>>,
    node: &Endpoint,
) -> String {
    let tls = tls.map_or(0, |config| Arc::as_ptr(config) as usize);
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{node}\u{0}{tls}",
        broker.username,
        broker.password.expose(),
        broker.virtual_host
    )
}

fn slot(key: String) -> Slot {
    let mut registry = match registry().lock() {
        Ok(registry) => registry,
        Err(poisoned) => poisoned.into_inner(),
    };
    registry.entry(key).or_default().clone()
}

/// The query connections of one consumer (its broker settings and TLS).
#[derive(Clone)]
pub(crate) struct Queries<'a> {
    pub(crate) broker: &'a BrokerSettings,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl Queries<'_> {
    /// The connection to `node`: the one kept, or a new one if there is none or it is gone.
    async fn to(&self, node: &Endpoint) -> Result<Arc<QueryConnection>> {
        let slot = slot(key(self.broker, self.tls.as_ref(), node));
        let mut kept = slot.lock().await;
        if let Some(conn) = kept.as_ref().filter(|conn| !conn.is_closed()) {
            return Ok(conn.clone());
        }
        let options =
            connection::delivery_options(self.broker, self.tls.clone(), node, CONNECTION_NAME);
        let conn = QueryConnection::open(&options)
            .await
            .map_err(|err| Error::Connect {
                endpoint: node.to_string(),
                reason: with_sources(&err),
                source: None,
            })?;
        tracing::debug!("query connection to {node} opened");
        let conn = Arc::new(conn);
        *kept = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets `conn` (if it is still the one kept for `node`) when `err` says the connection
    /// itself failed: the next query opens a new one.
    async fn forget_if_broken(
        &self,
        node: &Endpoint,
        conn: &Arc<QueryConnection>,
        err: &DeliveryError,
    ) {
        if err.response_code().is_some() {
            return;
        }
        let slot = slot(key(self.broker, self.tls.as_ref(), node));
        let mut kept = slot.lock().await;
        if kept.as_ref().is_some_and(|k| Arc::ptr_eq(k, conn)) {
            tracing::debug!("query connection to {node} dropped: {err}");
            *kept = None;
        }
    }

    /// The connection for queries any node answers (metadata, statistics): to the first of
    /// the configured nodes with a connection kept, else to the first that answers.
    async fn home(&self) -> Result<(Endpoint, Arc<QueryConnection>)> {
        let endpoints = self.broker.endpoints();
        for node in &endpoints {
            let slot = slot(key(self.broker, self.tls.as_ref(), node));
            let kept = slot.lock().await;
            if let Some(conn) = kept.as_ref().filter(|conn| !conn.is_closed()) {
                return Ok((node.clone(), conn.clone()));
            }
        }
        let mut failure = None;
        for node in endpoints {
            match self.to(&node).await {
                Ok(conn) => return Ok((node, conn)),
                Err(err) => failure = Some(err),
            }
        }
        Err(failure.unwrap_or_else(|| Error::Config("broker.hosts: no node to ask".into())))
    }

    /// Runs `query` on `conn` (to `node`), forgetting the connection if it broke.
    async fn run<T, F>(
        &self,
        node: &Endpoint,
        conn: &Arc<QueryConnection>,
        query: F,
    ) -> std::result::Result<T, DeliveryError>
    where
        F: std::future::Future<Output = std::result::Result<T, DeliveryError>>,
    {
        let result = query.await;
        if let Err(err) = &result {
            self.forget_if_broken(node, conn, err).await;
        }
        result
    }

    /// The metadata of `stream`, asked on the home connection.
    async fn metadata(&self, stream: &str) -> Result<delivery::StreamMetadata> {
        let (node, conn) = self.home().await?;
        self.run(&node, &conn, conn.metadata(stream))
            .await
            .map_err(|err| broker_error("cannot read the stream's metadata", stream, err))
    }

    /// Whether `stream` can be used now (see [`StreamState`]).
    pub(crate) async fn stream_state(&self, stream: &str) -> Result<StreamState> {
        let metadata = self.metadata(stream).await?;
        Ok(state_of(&metadata))
    }

    /// Where `stream` is now: its leader and the replicas online. Missing:
    /// [`Error::StreamNotFound`]; without a leader: [`Error::Unavailable`] for `what`.
    pub(crate) async fn members(&self, stream: &str, what: &'static str) -> Result<Members> {
        let metadata = self.metadata(stream).await?;
        members_of(&metadata, stream, what)
    }

    /// The first offset of the stream's last committed chunk (StreamStats' `committed_chunk_id`);
    /// `None` for a stream that holds no chunk. That chunk may be a tracking chunk (a stored
    /// offset), and it holds records up to an offset this does not tell: not the last offset.
    pub(crate) async fn committed_chunk_id(&self, stream: &str) -> Result<Option<u64>> {
        let (node, conn) = self.home().await?;
        let stats = self
            .run(&node, &conn, conn.stream_stats(stream))
            .await
            .map_err(|err| subscribe_error(stream, err))?;
        Ok(stats
            .get("committed_chunk_id")
            .and_then(|id| u64::try_from(*id).ok()))
    }

    /// The offset of the stream's last message (of its last user chunk), read with a short
    /// subscription on the query connection to the stream's leader; `None` when nothing came
    /// within `wait`.
    pub(crate) async fn last_offset(&self, stream: &str, wait: Duration) -> Result<Option<u64>> {
        let node = if self.broker.load_balancer_mode {
            self.home().await?.0
        } else {
            self.members(stream, "cannot read the stream's end")
                .await?
                .leader
        };
        let conn = self.to(&node).await?;
        self.run(&node, &conn, conn.last_offset(stream, wait))
            .await
            .map_err(|err| subscribe_error(stream, err))
    }

    /// Why a stream whose leader is up cannot take new messages, as far as a client can tell
    /// (see `shared::connection::quorum_lost`, whose rule this is): its leader has no replica
    /// online and most of the configured `broker.hosts` do not answer — asked on the kept
    /// connections (one per node), not on new ones.
    pub(crate) async fn quorum_lost(
        &self,
        stream: &str,
        state: StreamState,
    ) -> Result<Option<String>> {
        let endpoints = self.broker.endpoints();
        if state != (StreamState::Available { replicas: 0 }) || endpoints.len() < 2 {
            return Ok(None);
        }
        let tries = endpoints.iter().map(|node| async move {
            match self.to(node).await {
                Ok(conn) => self.run(node, &conn, conn.metadata(stream)).await.is_ok(),
                Err(_) => false,
            }
        });
        let answering = futures::future::join_all(tries)
            .await
            .into_iter()
            .filter(|answered| *answered)
            .count();
        let configured = endpoints.len();
        Ok((answering <= configured / 2).then(|| {
            format!(
                "its leader has no replica online and only {answering} of the {configured} \
                 broker.hosts answer: a replicated stream takes no new messages then (lost quorum)"
            )
        }))
    }
}

/// The state a stream's metadata says.
fn state_of(metadata: &delivery::StreamMetadata) -> StreamState {
    match ResponseCode::try_from(metadata.code) {
        Ok(ResponseCode::Ok) if metadata.leader.is_some() => StreamState::Available {
            replicas: metadata.replicas.len(),
        },
        Ok(ResponseCode::StreamDoesNotExist) => StreamState::Missing,
        _ => StreamState::Unavailable,
    }
}

fn members_of(
    metadata: &delivery::StreamMetadata,
    stream: &str,
    what: &'static str,
) -> Result<Members> {
    let endpoint = |(host, port): &(String, u16)| Endpoint {
        host: host.clone(),
        port: *port,
    };
    match (state_of(metadata), &metadata.leader) {
        (StreamState::Available { .. }, Some(leader)) => Ok(Members {
            leader: endpoint(leader),
            replicas: metadata.replicas.iter().map(endpoint).collect(),
        }),
        (StreamState::Missing, _) => Err(Error::StreamNotFound {
            stream: stream.to_owned(),
        }),
        _ => Err(Error::Unavailable {
            what,
            stream: stream.to_owned(),
        }),
    }
}

fn broker_error(what: &'static str, stream: &str, err: DeliveryError) -> Error {
    Error::Broker {
        what,
        stream: stream.to_owned(),
        reason: with_sources(&err),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(code: u16, leader: bool, replicas: usize) -> delivery::StreamMetadata {
        delivery::StreamMetadata {
            code,
            leader: leader.then(|| ("l".to_owned(), 1)),
            replicas: vec![("r".to_owned(), 2); replicas],
        }
    }

    #[test]
    fn metadata_codes_map_to_stream_states() {
        assert_eq!(
            state_of(&metadata(1, true, 2)),
            StreamState::Available { replicas: 2 }
        );
        assert_eq!(state_of(&metadata(2, false, 0)), StreamState::Missing);
        assert_eq!(state_of(&metadata(6, false, 0)), StreamState::Unavailable);
        assert_eq!(state_of(&metadata(1, false, 0)), StreamState::Unavailable);
        assert!(matches!(
            members_of(&metadata(2, false, 0), "s", "x"),
            Err(Error::StreamNotFound { .. })
        ));
        assert!(matches!(
            members_of(&metadata(6, false, 0), "s", "x"),
            Err(Error::Unavailable { .. })
        ));
        let members = members_of(&metadata(1, true, 1), "s", "x").unwrap();
        assert_eq!(members.leader.port, 1);
        assert_eq!(members.replicas.len(), 1);
    }
}
