//! A long-lived connection for queries, shared by many callers: Metadata (where a stream is, and
//! whether it exists or has a leader), StreamStats (key `0x001c`, RabbitMQ 3.11 and later: the
//! stream's first and committed chunk ids) and a peek at the stream's last chunk (a short
//! subscription at `last` with one credit). A task owns the socket — it answers heartbeats and
//! routes responses by correlation id and chunks by subscription id — so any number of queries
//! can be under way at once, from any task. Every query has a deadline (the `connect_timeout` of
//! the [`ConnectOptions`]). Once the task has ended (socket lost, broker closed it, heartbeats
//! missed) every query fails at once and [`QueryConnection::is_closed`] says so: open a new one.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rabbitmq_stream_protocol::commands::{
    credit::CreditCommand, metadata::MetadataCommand, subscribe::OffsetSpecification,
    subscribe::SubscribeCommand, unsubscribe::UnSubscribeCommand,
};
use rabbitmq_stream_protocol::ResponseCode;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::chunk::{decode_chunk, ChunkKind};
use crate::connection::{ConnectOptions, Connection};
use crate::error::DeliveryError;
use crate::frame::{self, Incoming, Reader};

/// The protocol's key for StreamStats (no request type for it in `rabbitmq-stream-protocol`).
const STREAM_STATS: u16 = 0x001c;

/// Subscription ids a connection can hold at once (the protocol's id is a byte).
const SUBSCRIPTION_IDS: u16 = 256;

/// What a stream's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMetadata {
    /// The broker's code for the stream: `Ok`, `StreamDoesNotExist`, `StreamNotAvailable` (no
    /// leader now), … (raw, see `ResponseCode::try_from`).
    pub code: u16,
    /// The leader's node as it advertises itself (`None`: no leader now).
    pub leader: Option<(String, u16)>,
    /// The nodes of the replicas online.
    pub replicas: Vec<(String, u16)>,
}

/// A request for the task: a frame built with the correlation id it gives, and where the
/// response frame goes.
type Build = Box<dyn FnOnce(u32) -> io::Result<Vec<u8>> + Send>;

enum Job {
    Request {
        build: Build,
        reply: oneshot::Sender<Bytes>,
    },
    /// Chunks (and the end) of subscription `id` on `stream` go to `to`.
    Route {
        id: u8,
        stream: String,
        to: mpsc::UnboundedSender<Bytes>,
    },
    /// Give subscription `id` one more credit.
    Credit(u8),
    /// Unsubscribe `id` (not waiting for the answer) and stop routing its chunks.
    Unsubscribe(u8),
}

/// A long-lived query connection; see the module documentation. Dropping it closes the socket.
pub struct QueryConnection {
    label: String,
    address: String,
    deadline: Duration,
    jobs: mpsc::UnboundedSender<Job>,
    ids: Arc<Mutex<BTreeSet<u8>>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for QueryConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryConnection")
            .field("address", &self.address)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for QueryConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl QueryConnection {
    /// Connects, authenticates and opens the virtual host within `options.connect_timeout`,
    /// then hands the socket to a task of its own (spawned on the current Tokio runtime).
    pub async fn open(options: &ConnectOptions) -> Result<QueryConnection, DeliveryError> {
        let address = options.address();
        let label = format!("(queries on {address})");
        let mut step = "TCP connect";
        let conn = match tokio::time::timeout(
            options.connect_timeout,
            Connection::open(options, &label, &mut step),
        )
        .await
        {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(DeliveryError::Timeout {
                    stream: label,
                    address,
                    step,
                    after: options.connect_timeout,
                })
            }
        };
        let (jobs, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut task = Task {
                conn,
                jobs: receiver,
                pending: HashMap::new(),
                routes: HashMap::new(),
            };
            let ended = task.run().await;
            match ended {
                Ok(()) => tracing::debug!("{}: closed", task.conn.stream),
                Err(err) => tracing::debug!("{}: ended: {err}", task.conn.stream),
            }
        });
        Ok(QueryConnection {
            label,
            address,
            deadline: options.connect_timeout,
            jobs,
            ids: Arc::new(Mutex::new(BTreeSet::new())),
            task,
        })
    }

    /// `host:port` of the node this connection is to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the connection is gone (every query on it fails): open a new one.
    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed() || self.task.is_finished()
    }

    /// The metadata of `stream`.
    pub async fn metadata(&self, stream: &str) -> Result<StreamMetadata, DeliveryError> {
        let streams = vec![stream.to_owned()];
        let build: Build = Box::new(move |id| frame::encode(MetadataCommand::new(id, streams)));
        let response = self
            .within(stream, "metadata", self.request(stream, build))
            .await?;
        parse_metadata(&response, stream).map_err(|detail| self.protocol(stream, detail))
    }

    /// The statistics of `stream` (StreamStats): `first_chunk_id` and `committed_chunk_id` on
    /// RabbitMQ 3.11 – 4.0, -1 when the stream holds no chunk. A refusal (no such stream, no
    /// leader) is [`DeliveryError::Refused`] with the broker's code.
    pub async fn stream_stats(&self, stream: &str) -> Result<HashMap<String, i64>, DeliveryError> {
        let name = stream.to_owned();
        let build: Build = Box::new(move |id| {
            let mut content = Vec::with_capacity(6 + name.len());
            content.extend_from_slice(&id.to_be_bytes());
            frame::put_string(&mut content, &name);
            Ok(frame::raw_frame(STREAM_STATS, &content))
        });
        let response = self
            .within(stream, "stream stats", self.request(stream, build))
            .await?;
        let (code, stats) =
            parse_stream_stats(&response).map_err(|detail| self.protocol(stream, detail))?;
        self.check(stream, "stream stats", code)?;
        Ok(stats)
    }

    /// The offset of the last message of `stream`'s last user chunk, read with a short
    /// subscription at `last` on this connection (one credit; tracking chunks are skipped). `None`
    /// when no user chunk came within `wait` (a stream without messages). The node must hold a
    /// member of the stream (the broker refuses with `StreamNotAvailable` otherwise).
    pub async fn last_offset(
        &self,
        stream: &str,
        wait: Duration,
    ) -> Result<Option<u64>, DeliveryError> {
        let peek = async {
            let id = self.subscription_id(stream)?;
            let (to, mut chunks) = mpsc::unbounded_channel();
            // From here on the subscription is undone however this ends (a deadline included).
            let _guard = Unsubscribe {
                id,
                jobs: self.jobs.clone(),
                ids: self.ids.clone(),
            };
            self.send(
                stream,
                Job::Route {
                    id,
                    stream: stream.to_owned(),
                    to,
                },
            )?;
            let name = stream.to_owned();
            let build: Build = Box::new(move |cid| {
                frame::encode(SubscribeCommand::new(
                    cid,
                    id,
                    name,
                    OffsetSpecification::Last,
                    1,
                    HashMap::new(),
                ))
            });
            let response = self.request(stream, build).await?;
            let code = response_code(&response).map_err(|d| self.protocol(stream, d))?;
            self.check(stream, "subscribe", code)?;
            loop {
                let chunk = match tokio::time::timeout(wait, chunks.recv()).await {
                    Err(_) => return Ok(None),
                    Ok(None) => {
                        return Err(self.protocol(
                            stream,
                            "the subscription ended (metadata update or connection lost)".into(),
                        ))
                    }
                    Ok(Some(chunk)) => chunk,
                };
                let chunk = decode_chunk(chunk).map_err(|source| DeliveryError::Decode {
                    stream: stream.to_owned(),
                    source,
                })?;
                if chunk.kind == ChunkKind::User && chunk.record_count > 0 {
                    return Ok(Some(chunk.next_offset() - 1));
                }
                self.send(stream, Job::Credit(id))?;
            }
        };
        // Connecting is done: subscribing and the wait for the chunk get the deadline plus the
        // wait asked for.
        tokio::time::timeout(self.deadline + wait, peek)
            .await
            .unwrap_or_else(|_| Err(self.timeout(stream, "last chunk")))
    }

    /// A free subscription id, taken.
    fn subscription_id(&self, stream: &str) -> Result<u8, DeliveryError> {
        let mut ids = self
            .ids
            .lock()
            .map_err(|_| self.protocol(stream, "subscription ids poisoned".into()))?;
        let free = (0..SUBSCRIPTION_IDS)
            .filter_map(|id| u8::try_from(id).ok())
            .find(|id| !ids.contains(id))
            .ok_or_else(|| self.protocol(stream, "all 256 subscription ids in use".into()))?;
        ids.insert(free);
        Ok(free)
    }

    /// Runs `query` under the connection's deadline.
    async fn within<T>(
        &self,
        stream: &str,
        step: &'static str,
        query: impl std::future::Future<Output = Result<T, DeliveryError>>,
    ) -> Result<T, DeliveryError> {
        tokio::time::timeout(self.deadline, query)
            .await
            .unwrap_or_else(|_| Err(self.timeout(stream, step)))
    }

    async fn request(&self, stream: &str, build: Build) -> Result<Bytes, DeliveryError> {
        let (reply, response) = oneshot::channel();
        self.send(stream, Job::Request { build, reply })?;
        response.await.map_err(|_| self.lost(stream))
    }

    fn send(&self, stream: &str, job: Job) -> Result<(), DeliveryError> {
        self.jobs.send(job).map_err(|_| self.lost(stream))
    }

    fn check(&self, stream: &str, operation: &'static str, code: u16) -> Result<(), DeliveryError> {
        if code == 1 {
            return Ok(());
        }
        let code = ResponseCode::try_from(code)
            .map_err(|_| self.protocol(stream, format!("unknown response code {code}")))?;
        Err(DeliveryError::Refused {
            stream: stream.to_owned(),
            operation,
            code,
        })
    }

    fn lost(&self, stream: &str) -> DeliveryError {
        DeliveryError::Network {
            stream: stream.to_owned(),
            source: io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("the query connection {} is gone", self.label),
            ),
        }
    }

    fn timeout(&self, stream: &str, step: &'static str) -> DeliveryError {
        DeliveryError::Timeout {
            stream: stream.to_owned(),
            address: self.address.clone(),
            step,
            after: self.deadline,
        }
    }

    fn protocol(&self, stream: &str, detail: String) -> DeliveryError {
        DeliveryError::Protocol {
            stream: stream.to_owned(),
            detail,
        }
    }
}

/// Undoes a peek subscription when dropped: unsubscribes (the task sends it before anything
/// queued later, so the id can be reused at once) and frees the id.
struct Unsubscribe {
    id: u8,
    jobs: mpsc::UnboundedSender<Job>,
    ids: Arc<Mutex<BTreeSet<u8>>>,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let _ = self.jobs.send(Job::Unsubscribe(self.id));
        if let Ok(mut ids) = self.ids.lock() {
            ids.remove(&self.id);
        }
    }
}

/// What woke the task.
enum Wake {
    Job(Option<Job>),
    Frame(io::Result<Option<Bytes>>),
    Tick,
}

/// The task that owns the socket.
struct Task {
    conn: Connection,
    jobs: mpsc::UnboundedReceiver<Job>,
    pending: HashMap<u32, oneshot::Sender<Bytes>>,
    routes: HashMap<u8, (String, mpsc::UnboundedSender<Bytes>)>,
}

impl Task {
    async fn run(&mut self) -> Result<(), DeliveryError> {
        // At least once a minute: a tick also forgets replies nobody waits for any more.
        let period = self.conn.tick_period().min(Duration::from_secs(60));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                job = self.jobs.recv() => Wake::Job(job),
                frame = self.conn.reader.next() => Wake::Frame(frame),
                _ = tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Job(None) => return self.close().await,
                Wake::Job(Some(job)) => self.on_job(job).await?,
                Wake::Frame(frame) => {
                    let frame = frame.map_err(|source| self.conn.network(source))?;
                    let frame = frame.ok_or_else(|| {
                        self.conn.network(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the socket was closed by the other end (the broker, or a proxy between)",
                        ))
                    })?;
                    self.conn.received();
                    let incoming = frame::parse(frame).map_err(|d| self.conn.protocol(d))?;
                    self.on_frame(incoming)?;
                }
                Wake::Tick => self.on_tick().await?,
            }
        }
    }

    async fn on_job(&mut self, job: Job) -> Result<(), DeliveryError> {
        match job {
            Job::Request { build, reply } => {
                let id = self.conn.correlation_id();
                self.conn.write(build(id)).await?;
                self.pending.insert(id, reply);
            }
            Job::Route { id, stream, to } => {
                self.routes.insert(id, (stream, to));
            }
            Job::Credit(id) => {
                if self.routes.contains_key(&id) {
                    self.conn
                        .write(frame::encode(CreditCommand::new(id, 1)))
                        .await?;
                }
            }
            Job::Unsubscribe(id) => {
                self.routes.remove(&id);
                let cid = self.conn.correlation_id();
                self.conn
                    .write(frame::encode(UnSubscribeCommand::new(cid, id)))
                    .await?;
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, incoming: Incoming) -> Result<(), DeliveryError> {
        match incoming {
            Incoming::Response {
                correlation_id,
                frame,
                ..
            } => {
                if let Some(reply) = self.pending.remove(&correlation_id) {
                    let _ = reply.send(frame);
                }
            }
            Incoming::Deliver {
                subscription_id,
                chunk,
            } => {
                if let Some((_, to)) = self.routes.get(&subscription_id) {
                    let _ = to.send(chunk);
                }
            }
            // The broker dropped the stream's subscriptions on this connection: their
            // receivers see the end.
            Incoming::MetadataUpdate { stream, .. } => {
                self.routes.retain(|_, (routed, _)| *routed != stream);
            }
            Incoming::CreditRefused {
                subscription_id, ..
            } => {
                self.routes.remove(&subscription_id);
            }
            Incoming::Close { code, reason, .. } => {
                return Err(self.conn.protocol(format!(
                    "the broker closed the query connection (code {code}: {reason})"
                )))
            }
            Incoming::Heartbeat | Incoming::ConsumerUpdate { .. } | Incoming::Tune { .. } => {}
            Incoming::Other { .. } => {}
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<(), DeliveryError> {
        // Queries whose caller gave up (deadline) leave their reply behind: forget them.
        self.pending.retain(|_, reply| !reply.is_closed());
        self.conn.keep_alive().await
    }

    /// Every handle is gone: close politely, without waiting long for the answer.
    async fn close(&mut self) -> Result<(), DeliveryError> {
        let id = self.conn.request_close().await?;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(Some(frame)) = self.conn.reader.next().await {
                if matches!(frame::parse(frame), Ok(Incoming::Response { correlation_id, .. }) if correlation_id == id)
                {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }
}

/// The response code of a correlated response frame (key, version, correlation id, code).
fn response_code(frame: &[u8]) -> Result<u16, String> {
    let mut r = Reader(frame);
    r.take(8)?;
    r.u16()
}

/// StreamStats response: key, version, correlation id, code, then `count` × (name, i64).
fn parse_stream_stats(frame: &[u8]) -> Result<(u16, HashMap<String, i64>), String> {
    let mut r = Reader(frame);
    r.take(8)?;
    let code = r.u16()?;
    let mut stats = HashMap::new();
    if code == 1 {
        for _ in 0..r.count()? {
            let name = r.string()?;
            stats.insert(name, r.i64()?);
        }
    }
    Ok((code, stats))
}

/// Metadata response (no response code of its own): key, version, correlation id, brokers
/// (reference u16, host, port u32), then per stream: name, code u16, leader reference u16,
/// replica references.
fn parse_metadata(frame: &[u8], stream: &str) -> Result<StreamMetadata, String> {
    let mut r = Reader(frame);
    r.take(8)?;
    let mut brokers = HashMap::new();
    for _ in 0..r.count()? {
        let reference = r.u16()?;
        let host = r.string()?;
        let port = u16::try_from(r.u32()?).unwrap_or_default();
        brokers.insert(reference, (host, port));
    }
    for _ in 0..r.count()? {
        let name = r.string()?;
        let code = r.u16()?;
        let leader = r.u16()?;
        let mut replicas = Vec::new();
        for _ in 0..r.count()? {
            if let Some(node) = brokers.get(&r.u16()?) {
                replicas.push(node.clone());
            }
        }
        if name == stream {
            return Ok(StreamMetadata {
                code,
                leader: if code == 1 {
                    brokers.get(&leader).cloned()
                } else {
                    None
                },
                replicas,
            });
        }
    }
    Err(format!("no metadata for stream {stream} in the answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(key: u16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(key | 0x8000).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&7u32.to_be_bytes());
        out
    }

    #[test]
    fn stream_stats_answers_are_read() {
        let mut f = header(STREAM_STATS);
        f.extend_from_slice(&1u16.to_be_bytes());
        f.extend_from_slice(&2i32.to_be_bytes());
        frame::put_string(&mut f, "first_chunk_id");
        f.extend_from_slice(&0i64.to_be_bytes());
        frame::put_string(&mut f, "committed_chunk_id");
        f.extend_from_slice(&41i64.to_be_bytes());
        let (code, stats) = parse_stream_stats(&f).unwrap();
        assert_eq!(code, 1);
        assert_eq!(stats["committed_chunk_id"], 41);
        assert_eq!(stats["first_chunk_id"], 0);
        assert!(parse_stream_stats(&f[..f.len() - 3]).is_err());
        let mut refused = header(STREAM_STATS);
        refused.extend_from_slice(&2u16.to_be_bytes());
        assert_eq!(parse_stream_stats(&refused).unwrap().0, 2);
    }

    #[test]
    fn metadata_answers_are_read() {
        let mut f = header(15);
        f.extend_from_slice(&2i32.to_be_bytes());
        for (reference, host, port) in [(0u16, "a", 5552u32), (1, "b", 5553)] {
            f.extend_from_slice(&reference.to_be_bytes());
            frame::put_string(&mut f, host);
            f.extend_from_slice(&port.to_be_bytes());
        }
        f.extend_from_slice(&2i32.to_be_bytes());
        frame::put_string(&mut f, "gone");
        f.extend_from_slice(&2u16.to_be_bytes());
        f.extend_from_slice(&u16::MAX.to_be_bytes());
        f.extend_from_slice(&0i32.to_be_bytes());
        frame::put_string(&mut f, "s");
        f.extend_from_slice(&1u16.to_be_bytes());
        f.extend_from_slice(&1u16.to_be_bytes());
        f.extend_from_slice(&1i32.to_be_bytes());
        f.extend_from_slice(&0u16.to_be_bytes());
        let s = parse_metadata(&f, "s").unwrap();
        assert_eq!(s.leader, Some(("b".to_owned(), 5553)));
        assert_eq!(s.replicas, vec![("a".to_owned(), 5552)]);
        let gone = parse_metadata(&f, "gone").unwrap();
        assert_eq!((gone.code, gone.leader), (2, None));
        assert!(parse_metadata(&f, "other").is_err());
    }

    /// Against the test broker (`scripts/broker.sh up`): one connection answers metadata, stream
    /// statistics and last-chunk peeks for many streams, concurrently; a stored offset (a
    /// tracking chunk) moves `committed_chunk_id` but not the last message's offset.
    #[tokio::test(flavor = "multi_thread")]
    async fn one_connection_answers_every_query_on_the_real_broker() {
        let stream = testkit::streams::TestStream::new("query").await;
        let conn = QueryConnection::open(&ConnectOptions::default())
            .await
            .unwrap();
        let empty = conn.stream_stats(&stream.name).await.unwrap();
        assert_eq!(empty.get("committed_chunk_id"), Some(&-1), "{empty:?}");
        assert_eq!(
            conn.last_offset(&stream.name, Duration::from_millis(300))
                .await
                .unwrap(),
            None
        );
        stream.publish_wave(10).await;
        let last = *stream.offsets().await.last().unwrap();
        let stats = conn.stream_stats(&stream.name).await.unwrap();
        let committed = u64::try_from(stats["committed_chunk_id"]).unwrap();
        assert!(committed <= last, "{stats:?}, last {last}");
        stream.store_offset("query-test", last).await;
        // The store is a tracking chunk after the last message.
        let stats = conn.stream_stats(&stream.name).await.unwrap();
        assert!(
            stats["committed_chunk_id"] > i64::try_from(last).unwrap(),
            "{stats:?}"
        );
        let peeks = (0..20).map(|_| conn.last_offset(&stream.name, Duration::from_secs(2)));
        for peek in futures::future::join_all(peeks).await {
            assert_eq!(peek.unwrap(), Some(last));
        }
        let metadata = conn.metadata(&stream.name).await.unwrap();
        assert_eq!(metadata.code, 1);
        assert!(metadata.leader.is_some(), "{metadata:?}");
        let missing = conn.metadata("no-such-stream-query-test").await.unwrap();
        assert_eq!((missing.code, missing.leader), (2, None));
        let refused = conn.stream_stats("no-such-stream-query-test").await;
        assert!(
            matches!(
                refused.as_ref().map_err(DeliveryError::response_code),
                Err(Some(ResponseCode::StreamDoesNotExist))
            ),
            "{refused:?}"
        );
        assert!(!conn.is_closed());
    }
}
