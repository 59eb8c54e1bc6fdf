//! Opening connections: environments (for producers and consumers) and plain clients (stores,
//! queries), each to the first of the configured nodes that answers, under a deadline.

use std::future::Future;

use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::{Client, ClientOptions, Environment, TlsConfiguration};

use super::close_within;
use super::tls::{describe_tls_connect_error, tls_configuration};
use crate::config::{BrokerSettings, Endpoint};
use crate::error::{describe_connect_error, Error, Result};

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
                    .unwrap_or_else(|| describe_connect_error(&err)),
                // What a TLS listener does to a client that does not speak TLS.
                None if matches!(err, ClientError::ConnectionClosed) => format!(
                    "{}; or is {endpoint_text} a TLS listener (then set [broker.tls])?",
                    describe_connect_error(&err),
                ),
                None => describe_connect_error(&err),
            },
            endpoint: endpoint_text,
            source: Some(Box::new(err)),
        }),
        Err(_) => Err(Error::Connect {
            endpoint: endpoint_text,
            reason: format!(
                "no answer within {} (broker.connect_timeout)",
                humantime::format_duration(broker.connect_timeout)
            ),
            source: None,
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
            Err(Error::Connect {
                endpoint,
                reason,
                source,
            }) => {
                if several {
                    tracing::info!("{what}: {endpoint} did not answer ({reason}); trying the next");
                }
                failures.push((endpoint, reason, source));
            }
            Err(other) => return Err(other),
        }
    }
    let reason = failures
        .iter()
        .map(|(endpoint, reason, _)| format!("{endpoint}: {reason}"))
        .collect::<Vec<_>>()
        .join("; ");
    let several = failures.len() > 1;
    let (endpoint, single_reason, source) = failures.pop().unwrap_or_default();
    Err(if several {
        Error::Connect {
            endpoint: broker.endpoint(),
            reason: format!("none of the broker.hosts answered: {reason}"),
            source,
        }
    } else {
        Error::Connect {
            endpoint,
            reason: single_reason,
            source,
        }
    })
}

fn heartbeat_secs(broker: &BrokerSettings) -> u32 {
    u32::try_from(broker.heartbeat.as_secs()).unwrap_or(u32::MAX)
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
                close_within("a node check connection", client.close()).await;
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
