//! Connections of our own delivery path ([`delivery`]): how to reach a node with the configured
//! credentials, heartbeat, deadline and TLS — one place for the consumer's subscriptions, its
//! offset scans, `config --check`'s probe and the benchmark.

use std::sync::Arc;

use delivery::ConnectOptions;

use crate::config::{BrokerSettings, Endpoint};

/// How to connect to `node` with `broker`'s credentials, heartbeat and connect timeout, over
/// `tls` when set, naming the connection `connection_name` in the broker's management UI.
pub fn delivery_options(
    broker: &BrokerSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    node: &Endpoint,
    connection_name: &str,
) -> ConnectOptions {
    ConnectOptions {
        host: node.host.clone(),
        port: node.port,
        username: broker.username.clone(),
        password: broker.password.expose().to_owned(),
        virtual_host: broker.virtual_host.clone(),
        heartbeat: broker.heartbeat,
        connect_timeout: broker.connect_timeout,
        tls,
        connection_name: Some(connection_name.to_owned()),
    }
}
