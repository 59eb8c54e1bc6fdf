//! Reaching the broker: environments and plain clients with a connect deadline, the stream's
//! creation, and the stored-offset query with the resume rule's three outcomes.

use std::future::Future;

use rabbitmq_stream_client::error::{ClientError, StreamCreateError};
use rabbitmq_stream_client::types::{ByteCapacity, ResponseCode};
use rabbitmq_stream_client::{Client, ClientOptions, Environment, TlsConfiguration};

use crate::config::{BrokerSettings, StreamSettings, TlsSettings};
use crate::error::{
    describe_client_error, describe_code, describe_tls_connect_error, Error, Result,
};

/// Runs a connection attempt under the configured deadline.
async fn within_deadline<T>(
    broker: &BrokerSettings,
    attempt: impl Future<Output = std::result::Result<T, ClientError>>,
) -> Result<T> {
    match tokio::time::timeout(broker.connect_timeout, attempt).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Error::Connect {
            endpoint: broker.endpoint(),
            reason: match &broker.tls {
                Some(tls) => describe_tls_connect_error(&err, tls, &broker.endpoint())
                    .unwrap_or_else(|| describe_client_error(&err)),
                // What a TLS listener does to a client that does not speak TLS.
                None if matches!(err, ClientError::ConnectionClosed) => format!(
                    "{}; or is {} a TLS listener (then set [broker.tls])?",
                    describe_client_error(&err),
                    broker.endpoint()
                ),
                None => describe_client_error(&err),
            },
        }),
        Err(_) => Err(Error::Connect {
            endpoint: broker.endpoint(),
            reason: format!(
                "no answer within {} (broker.connect_timeout)",
                humantime::format_duration(broker.connect_timeout)
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

/// An environment for building producers and consumers; fails fast with a clear reason when the
/// broker cannot be reached or refuses the credentials.
pub async fn environment(broker: &BrokerSettings, connection_name: &str) -> Result<Environment> {
    let builder = Environment::builder()
        .host(&broker.host)
        .port(broker.port)
        .username(&broker.username)
        .password(broker.password.expose())
        .virtual_host(&broker.virtual_host)
        .heartbeat(heartbeat_secs(broker))
        .tls(tls_configuration(broker.tls.as_ref())?)
        .client_provided_name(connection_name);
    within_deadline(broker, builder.build()).await
}

/// A plain client on a connection of its own (the tracker's store connection, admin queries).
pub async fn client(broker: &BrokerSettings, connection_name: &str) -> Result<Client> {
    let options = ClientOptions::builder()
        .host(&broker.host)
        .port(broker.port)
        .user(&broker.username)
        .password(broker.password.expose())
        .v_host(&broker.virtual_host)
        .heartbeat(heartbeat_secs(broker))
        .tls(tls_configuration(broker.tls.as_ref())?)
        .client_provided_name(connection_name.to_owned())
        .build();
    within_deadline(broker, Client::connect(options)).await
}

/// Creates the stream with the configured retention; an existing stream is fine.
pub async fn ensure_stream(
    environment: &Environment,
    broker: &BrokerSettings,
    stream: &StreamSettings,
) -> Result<()> {
    let mut creator = environment
        .stream_creator()
        .max_length(ByteCapacity::B(stream.max_length_bytes));
    if let Some(age) = stream.max_age {
        creator = creator.max_age(age);
    }
    if let Some(size) = stream.max_segment_size_bytes {
        creator = creator.max_segment_size(ByteCapacity::B(size));
    }
    match creator.create(&stream.name).await {
        Ok(()) => Ok(()),
        Err(StreamCreateError::Create {
            status: ResponseCode::StreamAlreadyExists,
            ..
        }) => Ok(()),
        Err(StreamCreateError::Create {
            stream: name,
            status: ResponseCode::PreconditionFailed,
        }) => {
            // The broker's answer when the stream exists with other arguments (retention):
            // use it as it is rather than refuse to work.
            let client = client(broker, "stream check").await?;
            let exists = stream_exists(&client, &name).await;
            let _ = client.close().await;
            if exists? {
                tracing::warn!(
                    stream = name,
                    "the stream exists with other settings than [stream] configures; using it as it is"
                );
                Ok(())
            } else {
                Err(Error::StreamCreate {
                    stream: name,
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
            stream: stream.name.clone(),
            reason: describe_client_error(&err),
        }),
    }
}

/// Whether the stream exists, asked over `client`'s connection.
pub async fn stream_exists(client: &Client, stream: &str) -> Result<bool> {
    let metadata = client
        .metadata(vec![stream.to_owned()])
        .await
        .map_err(|err| Error::Broker {
            what: "cannot read the stream's metadata",
            stream: stream.to_owned(),
            reason: describe_client_error(&err),
        })?;
    // A missing stream comes back with an error code and no known leader, so no entry at all.
    Ok(metadata
        .get(stream)
        .is_some_and(|m| m.response_code == ResponseCode::Ok))
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
