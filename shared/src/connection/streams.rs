//! Streams on the broker: creating what is configured (plain or super stream), whether a stream
//! exists and has a leader, a super stream's partitions, and the lost-quorum diagnosis.

use rabbitmq_stream_client::error::{ClientError, StreamCreateError};
use rabbitmq_stream_client::types::{ByteCapacity, ResponseCode, StreamCreator};
use rabbitmq_stream_client::{Client, Environment};

use super::{client, close_within, nodes_answering};
use crate::config::{BrokerSettings, Endpoint, StreamSettings};
use crate::error::{describe_client_error, Error, Result};

/// The stream creator with every `[stream]` argument: retention, segment size, replication.
fn stream_creator(environment: &Environment, stream: &StreamSettings) -> StreamCreator {
    let mut creator = environment
        .stream_creator()
        .max_length(ByteCapacity::B(stream.max_length_bytes));
    if let Some(age) = stream.max_age {
        creator = creator.max_age(age);
    }
    if let Some(size) = stream.max_segment_size_bytes {
        creator = creator.max_segment_size(ByteCapacity::B(size));
    }
    if let Some(size) = stream.initial_cluster_size {
        // The protocol's name for the queue argument x-initial-cluster-size.
        creator
            .options
            .insert("initial-cluster-size".to_owned(), size.to_string());
    }
    creator
}

/// The streams to consume or publish to: `[stream.name]` for a plain stream, the partitions
/// `name-0` … in the super stream's order with `stream.partitions`. Creates what is missing with
/// the configured arguments; an existing stream is used as it is (a warning if its arguments
/// differ). A super stream whose partition count differs from `stream.partitions`, or a plain
/// stream where a super stream is configured (or the reverse), is a configuration error.
pub async fn ensure_stream(
    environment: &Environment,
    broker: &BrokerSettings,
    stream: &StreamSettings,
) -> Result<Vec<String>> {
    let admin = client(broker, "stream check").await?;
    let result = ensure_stream_with(environment, &admin, stream).await;
    close_within("a stream check connection", admin.close()).await;
    let streams = result?;
    // A fresh connection for every few streams: the stream client 0.11 decodes a response
    // before all of it has arrived, and panics ("mid > len") when a Metadata response straddles
    // its 8 KiB read buffer — which one connection asking about 100 partitions reaches.
    for batch in streams.chunks(STREAMS_PER_CHECK_CONNECTION) {
        let admin = client(broker, "stream check").await?;
        let checked = async {
            for name in batch {
                await_available(&admin, name, broker.connect_timeout).await?;
            }
            Ok(())
        }
        .await;
        close_within("a stream check connection", admin.close()).await;
        checked?;
    }
    Ok(streams)
}

/// How many streams one stream-check connection is asked about (see [`ensure_stream`]).
const STREAMS_PER_CHECK_CONNECTION: usize = 16;

/// Waits up to `limit` for `stream` to have a leader: on a cluster, a stream just created (or one
/// whose leader just failed) has none for a moment, and the client calls that "does not exist".
/// Still without one after `limit`, it goes on with a warning: publishing and consuming retry.
async fn await_available(admin: &Client, stream: &str, limit: std::time::Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut warned = false;
    loop {
        match stream_state(admin, stream).await? {
            StreamState::Available { .. } => return Ok(()),
            StreamState::Missing => {
                return Err(Error::StreamNotFound {
                    stream: stream.to_owned(),
                })
            }
            StreamState::Unavailable if tokio::time::Instant::now() > deadline => {
                tracing::warn!("stream {stream} has no leader yet; going on");
                return Ok(());
            }
            StreamState::Unavailable => {
                if !warned {
                    tracing::info!("stream {stream} has no leader yet; waiting for one");
                    warned = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn ensure_stream_with(
    environment: &Environment,
    admin: &Client,
    stream: &StreamSettings,
) -> Result<Vec<String>> {
    let name = stream.name.as_str();
    let existing_partitions = partitions(admin, name).await?;
    if stream.partitions == 0 {
        if let Some(found) = existing_partitions {
            return Err(Error::Config(format!(
                "stream.partitions: '{name}' is a super stream of {} partitions on the broker; \
                 set stream.partitions = {0}",
                found.len()
            )));
        }
        create_or_use(
            stream_creator(environment, stream).create(name).await,
            admin,
            name,
        )
        .await?;
        return Ok(vec![name.to_owned()]);
    }
    let wanted = stream.partitions as usize;
    let found = match existing_partitions {
        Some(found) => found,
        None => {
            if stream_exists(admin, name).await? {
                return Err(Error::Config(format!(
                    "stream.partitions: '{name}' is a plain stream on the broker, not a super \
                     stream; set stream.partitions = 0 or use another stream.name"
                )));
            }
            let created = stream_creator(environment, stream)
                .create_super_stream(name, wanted, None)
                .await;
            create_or_use(created, admin, name).await?;
            tracing::info!(
                stream = name,
                "created a super stream of {wanted} partitions"
            );
            partitions(admin, name).await?.unwrap_or_default()
        }
    };
    if found.len() != wanted {
        let (has, list) = (found.len(), found.join(", "));
        return Err(Error::Config(format!(
            "stream.partitions = {wanted}, but the super stream '{name}' has {has} partitions on \
             the broker ({list}); set stream.partitions = {has} or use another stream.name"
        )));
    }
    // Each partition's existence is checked by the caller (`await_available`: a missing one is
    // `StreamNotFound`).
    Ok(found)
}

/// The outcome of a create call: created, or already there (used as it is).
async fn create_or_use(
    created: std::result::Result<(), StreamCreateError>,
    admin: &Client,
    name: &str,
) -> Result<()> {
    match created {
        Ok(()) => Ok(()),
        Err(StreamCreateError::Create {
            status: ResponseCode::StreamAlreadyExists,
            ..
        }) => Ok(()),
        Err(StreamCreateError::Create {
            stream,
            status: ResponseCode::PreconditionFailed,
        }) => {
            // The broker's answer when the stream exists with other arguments (retention):
            // use it as it is rather than refuse to work.
            if stream_exists(admin, &stream).await? {
                tracing::warn!(
                    stream,
                    "the stream exists with other settings than [stream] configures; using it as it is"
                );
                Ok(())
            } else {
                Err(Error::StreamCreate {
                    stream,
                    code: ResponseCode::PreconditionFailed,
                })
            }
        }
        Err(StreamCreateError::Create { stream, status }) => Err(Error::StreamCreate {
            stream,
            code: status,
        }),
        Err(StreamCreateError::Client(err)) => Err(Error::Broker {
            what: "cannot create the stream",
            stream: name.to_owned(),
            reason: describe_client_error(&err),
            source: Some(Box::new(err)),
        }),
    }
}

/// The partitions of the super stream `name`, in routing order; `None` if there is no such
/// super stream.
pub async fn partitions(client: &Client, name: &str) -> Result<Option<Vec<String>>> {
    let response = client
        .partitions(name.to_owned())
        .await
        .map_err(|err| Error::Broker {
            what: "cannot read the super stream's partitions",
            stream: name.to_owned(),
            reason: describe_client_error(&err),
            source: Some(Box::new(err)),
        })?;
    Ok((response.is_ok() && !response.streams.is_empty()).then_some(response.streams))
}

/// Whether a stream can be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// It exists and has a leader. A leader alone may still be unable to take messages: see
    /// [`quorum_lost`].
    Available {
        /// How many of its replicas are online.
        replicas: usize,
    },
    /// It exists, but has no leader now: its leader's node is down, or a majority of its nodes
    /// (the quorum) is.
    Unavailable,
    /// There is no such stream (never created, or deleted).
    Missing,
}

/// Why a stream whose leader is up cannot take new messages, as far as a client can tell: its
/// leader has no replica online and most of the configured `broker.hosts` do not answer. The
/// broker's metadata lists only the replicas online, and a leader elected just before most nodes
/// went down stays the leader, without the quorum its writes need. `None` when that is not so,
/// or cannot be known (one configured host).
pub async fn quorum_lost(broker: &BrokerSettings, state: StreamState) -> Result<Option<String>> {
    if state != (StreamState::Available { replicas: 0 }) || broker.endpoints().len() < 2 {
        return Ok(None);
    }
    let (answering, configured) = nodes_answering(broker).await?;
    Ok((answering <= configured / 2).then(|| {
        format!(
            "its leader has no replica online and only {answering} of the {configured} \
             broker.hosts answer: a replicated stream takes no new messages then (lost quorum)"
        )
    }))
}

/// Why a stream that exists cannot be used now.
pub const NO_LEADER: &str = "the stream has no leader now: its leader's node is down, or most of \
                             its nodes are (lost quorum)";

/// Whether the stream exists, asked over `client`'s connection (an unavailable one exists).
pub async fn stream_exists(client: &Client, stream: &str) -> Result<bool> {
    Ok(stream_state(client, stream).await? != StreamState::Missing)
}

/// The nodes that hold a stream, as they advertise themselves: its leader and the replicas
/// online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// The leader's node.
    pub leader: Endpoint,
    /// The nodes of the replicas online.
    pub replicas: Vec<Endpoint>,
}

/// Where `stream` is now, asked over `client`'s connection. A stream without a leader is
/// [`Error::Unavailable`] (for `what`), a missing one [`Error::StreamNotFound`].
pub async fn stream_members(client: &Client, stream: &str, what: &'static str) -> Result<Members> {
    let metadata = read_metadata(client, stream).await?;
    let endpoint = |broker: &rabbitmq_stream_client::types::Broker| Endpoint {
        host: broker.host.clone(),
        port: u16::try_from(broker.port).unwrap_or_default(),
    };
    if let Some(found) = metadata
        .get(stream)
        .filter(|m| m.response_code == ResponseCode::Ok)
    {
        return Ok(Members {
            leader: endpoint(&found.leader),
            replicas: found.replicas.iter().map(endpoint).collect(),
        });
    }
    Err(match stream_state(client, stream).await? {
        StreamState::Missing => Error::StreamNotFound {
            stream: stream.to_owned(),
        },
        // Available by now: it just got a leader; the caller's retry will find it.
        _ => Error::Unavailable {
            what,
            stream: stream.to_owned(),
        },
    })
}

async fn read_metadata(
    client: &Client,
    stream: &str,
) -> Result<std::collections::HashMap<String, rabbitmq_stream_client::types::StreamMetadata>> {
    client
        .metadata(vec![stream.to_owned()])
        .await
        .map_err(|err| Error::Broker {
            what: "cannot read the stream's metadata",
            stream: stream.to_owned(),
            reason: describe_client_error(&err),
            source: Some(Box::new(err)),
        })
}

/// The stream's [`StreamState`], asked over `client`'s connection.
pub async fn stream_state(client: &Client, stream: &str) -> Result<StreamState> {
    let metadata = read_metadata(client, stream).await?;
    if let Some(found) = metadata
        .get(stream)
        .filter(|m| m.response_code == ResponseCode::Ok)
    {
        return Ok(StreamState::Available {
            replicas: found.replicas.len(),
        });
    }
    // The client drops metadata entries without a leader, missing and unavailable streams
    // alike; an offset query tells them apart (the broker looks the leader up first).
    match client.query_offset("stream check".to_owned(), stream).await {
        Err(ClientError::RequestError(ResponseCode::StreamDoesNotExist)) => {
            Ok(StreamState::Missing)
        }
        Err(ClientError::RequestError(ResponseCode::StreamNotAvailable)) => {
            Ok(StreamState::Unavailable)
        }
        Ok(_) | Err(ClientError::RequestError(ResponseCode::OffsetNotFound)) => {
            Ok(StreamState::Available { replicas: 0 })
        }
        // RabbitMQ 4.0 drops the connection on this query when the stream's quorum is lost
        // (a missing stream gets a clean answer).
        Err(ClientError::ConnectionClosed) => Ok(StreamState::Unavailable),
        Err(err) => Err(Error::Broker {
            what: "cannot check the stream",
            stream: stream.to_owned(),
            reason: describe_client_error(&err),
            source: Some(Box::new(err)),
        }),
    }
}
