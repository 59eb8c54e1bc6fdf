//! Reaching the broker: environments and plain clients with a connect deadline, the stream's
//! creation, and the stored-offset query with the resume rule's three outcomes.

use std::future::Future;

use rabbitmq_stream_client::error::{ClientError, StreamCreateError};
use rabbitmq_stream_client::types::{ByteCapacity, ResponseCode, StreamCreator};
use rabbitmq_stream_client::{Client, ClientOptions, Environment, TlsConfiguration};

use crate::config::{BrokerSettings, Endpoint, StreamSettings, TlsSettings};
use crate::error::{
    describe_client_error, describe_code, describe_tls_connect_error, Error, Result,
};

/// Runs a connection attempt to `endpoint` under the configured deadline.
async fn within_deadline<T>(
    broker: &BrokerSettings,
    endpoint: &Endpoint,
    attempt: impl Future<Output = std::result::Result<T, ClientError>>,
) -> Result<T> {
    let endpoint_text = endpoint.to_string();
    match tokio::time::timeout(broker.connect_timeout, attempt).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Error::Connect {
            reason: match &broker.tls {
                Some(tls) => describe_tls_connect_error(&err, tls, &endpoint_text)
                    .unwrap_or_else(|| describe_client_error(&err)),
                // What a TLS listener does to a client that does not speak TLS.
                None if matches!(err, ClientError::ConnectionClosed) => format!(
                    "{}; or is {endpoint_text} a TLS listener (then set [broker.tls])?",
                    describe_client_error(&err),
                ),
                None => describe_client_error(&err),
            },
            endpoint: endpoint_text,
        }),
        Err(_) => Err(Error::Connect {
            endpoint: endpoint_text,
            reason: format!(
                "no answer within {} (broker.connect_timeout)",
                humantime::format_duration(broker.connect_timeout)
            ),
        }),
    }
}

/// Connects with `connect` to the first endpoint that answers, in the configured order, and says
/// which one when there is a choice. When none answers, the error names each and why.
async fn first_answering<T, F, Fut>(broker: &BrokerSettings, what: &str, connect: F) -> Result<T>
where
    F: Fn(Endpoint) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let endpoints = broker.endpoints();
    let several = endpoints.len() > 1;
    let mut failures = Vec::new();
    for endpoint in endpoints {
        match connect(endpoint.clone()).await {
            Ok(value) => {
                if several {
                    tracing::info!("{what}: using {endpoint}");
                }
                return Ok(value);
            }
            Err(err @ Error::Config(_)) => return Err(err),
            Err(Error::Connect { endpoint, reason }) => {
                if several {
                    tracing::info!("{what}: {endpoint} did not answer ({reason}); trying the next");
                }
                failures.push((endpoint, reason));
            }
            Err(other) => return Err(other),
        }
    }
    match failures.len() {
        1 => {
            let (endpoint, reason) = failures.remove(0);
            Err(Error::Connect { endpoint, reason })
        }
        _ => Err(Error::Connect {
            endpoint: broker.endpoint(),
            reason: format!(
                "none of the broker.hosts answered: {}",
                failures
                    .iter()
                    .map(|(endpoint, reason)| format!("{endpoint}: {reason}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
    }
}

fn heartbeat_secs(broker: &BrokerSettings) -> u32 {
    u32::try_from(broker.heartbeat.as_secs()).unwrap_or(u32::MAX)
}

/// The client's TLS configuration for `[broker.tls]`: off when absent; the CA file (and the client
/// certificate) when given. `trust_everything` is the client's "enabled without roots", which
/// verifies neither the broker's certificate, nor its name, nor even the handshake's signature:
/// it warns, once per process.
pub fn tls_configuration(tls: Option<&TlsSettings>) -> Result<TlsConfiguration> {
    let Some(tls) = tls else {
        return Ok(TlsConfiguration::default());
    };
    let mut builder = TlsConfiguration::builder().enable(true);
    if let Some(ca_file) = &tls.ca_file {
        builder = builder.add_root_certificates(ca_file);
    } else if tls.trust_everything {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "broker.tls.trust_everything = true: the broker's certificate is NOT verified, \
                 anyone on the way can pose as the broker; for development only, set \
                 broker.tls.ca_file instead"
            )
        });
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
        builder = builder.add_client_certificates_keys(cert, key);
    }
    builder
        .build()
        .map_err(|why| Error::Config(format!("broker.tls: {why}")))
}

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
        })
}

/// An environment for building producers and consumers, on the first of the configured nodes
/// that answers; fails fast with a clear reason when none can be reached or the credentials are
/// refused. Build a new one to go on after that node is lost.
pub async fn environment(broker: &BrokerSettings, connection_name: &str) -> Result<Environment> {
    let tls = tls_configuration(broker.tls.as_ref())?;
    first_answering(broker, connection_name, |endpoint| {
        let builder = Environment::builder()
            .host(&endpoint.host)
            .port(endpoint.port)
            .username(&broker.username)
            .password(broker.password.expose())
            .virtual_host(&broker.virtual_host)
            .heartbeat(heartbeat_secs(broker))
            .tls(tls.clone())
            .load_balancer_mode(broker.load_balancer_mode)
            .client_provided_name(connection_name);
        async move { within_deadline(broker, &endpoint, builder.build()).await }
    })
    .await
}

/// A plain client on a connection of its own (the tracker's store connection, admin queries),
/// to the first of the configured nodes that answers.
pub async fn client(broker: &BrokerSettings, connection_name: &str) -> Result<Client> {
    let tls = tls_configuration(broker.tls.as_ref())?;
    first_answering(broker, connection_name, |endpoint| {
        connect_client(broker, tls.clone(), endpoint, connection_name)
    })
    .await
}

async fn connect_client(
    broker: &BrokerSettings,
    tls: TlsConfiguration,
    endpoint: Endpoint,
    connection_name: &str,
) -> Result<Client> {
    let options = ClientOptions::builder()
        .host(&endpoint.host)
        .port(endpoint.port)
        .user(&broker.username)
        .password(broker.password.expose())
        .v_host(&broker.virtual_host)
        .heartbeat(heartbeat_secs(broker))
        .tls(tls)
        .client_provided_name(connection_name.to_owned())
        .build();
    within_deadline(broker, &endpoint, Client::connect(options)).await
}

/// How many of the configured `broker.hosts` answer now, of how many: all are tried at once.
pub async fn nodes_answering(broker: &BrokerSettings) -> Result<(usize, usize)> {
    let tls = tls_configuration(broker.tls.as_ref())?;
    let endpoints = broker.endpoints();
    let tries = endpoints.iter().map(|endpoint| async {
        let client = connect_client(broker, tls.clone(), endpoint.clone(), "node check").await;
        match client {
            Ok(client) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await;
                true
            }
            Err(_) => false,
        }
    });
    let answering = futures::future::join_all(tries)
        .await
        .into_iter()
        .filter(|answered| *answered)
        .count();
    Ok((answering, endpoints.len()))
}

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
    let result = async {
        let streams = ensure_stream_with(environment, &admin, stream).await?;
        for name in &streams {
            await_available(&admin, name, broker.connect_timeout).await?;
        }
        Ok(streams)
    }
    .await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, admin.close()).await;
    result
}

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
    for partition in &found {
        if !stream_exists(admin, partition).await? {
            return Err(Error::StreamNotFound {
                stream: partition.clone(),
            });
        }
    }
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
        })?;
    Ok((response.is_ok() && !response.streams.is_empty()).then_some(response.streams))
}

/// How long closing an admin connection may take before we stop waiting for the broker.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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

/// Runs `attempt` again while it fails with [`Error::Unavailable`] (a stream without a leader for
/// the moment: just created, or failing over), for up to `limit`; any other outcome is returned.
pub async fn patiently<T, F, Fut>(limit: std::time::Duration, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match attempt().await {
            Err(err @ Error::Unavailable { .. })
                if tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::info!(
                    "{err}; trying again in {}",
                    humantime::format_duration(pause)
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
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
    let reason = match failure {
        BuildFailure::Missing => {
            let state = async {
                let admin = client(broker, "stream check").await?;
                let state = stream_state(&admin, stream).await;
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, admin.close()).await;
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
        BuildFailure::Refused(code) => describe_code(&code),
        BuildFailure::Client(err) => describe_client_error(&err),
        BuildFailure::Other(reason) => reason,
    };
    Error::Broker {
        what,
        stream: stream.to_owned(),
        reason,
    }
}

/// Whether the stream exists, asked over `client`'s connection (an unavailable one exists).
pub async fn stream_exists(client: &Client, stream: &str) -> Result<bool> {
    Ok(stream_state(client, stream).await? != StreamState::Missing)
}

/// The stream's [`StreamState`], asked over `client`'s connection.
pub async fn stream_state(client: &Client, stream: &str) -> Result<StreamState> {
    let metadata = client
        .metadata(vec![stream.to_owned()])
        .await
        .map_err(|err| Error::Broker {
            what: "cannot read the stream's metadata",
            stream: stream.to_owned(),
            reason: describe_client_error(&err),
        })?;
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
        }),
    }
}

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
        }),
        Err(err) => Err(Error::QueryOffset {
            consumer: consumer.to_owned(),
            stream: stream.to_owned(),
            reason: describe_client_error(&err),
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
        })?;
    let deadline = tokio::time::Instant::now() + wait.saturating_mul(5);
    let mut seen = None;
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(wait, consumer.next()).await {
        seen = Some(delivery.offset());
        if !to_end || tokio::time::Instant::now() > deadline {
            break;
        }
    }
    let _ = tokio::time::timeout(wait, consumer.handle().close()).await;
    Ok(seen)
}
