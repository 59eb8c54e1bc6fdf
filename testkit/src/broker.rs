//! The local broker the tests run against (`scripts/broker.sh up`: localhost:5552, guest/guest):
//! its settings, a connection to it or a loud failure saying how to start it, a raw client, the
//! root the script runs it from, and restarting it.

use std::path::PathBuf;

use rabbitmq_stream_client::{Client, Environment};
use shared::config::BrokerSettings;
use shared::connection;

/// The broker the tests use: the defaults (localhost:5552, guest/guest).
pub fn broker() -> BrokerSettings {
    BrokerSettings::default()
}

/// Connects to the test broker or panics with how to start one: tests never skip silently.
pub async fn require_broker() -> Environment {
    let broker = broker();
    match connection::environment(&broker, "test").await {
        Ok(env) => env,
        Err(err) => panic!(
            "these tests need a RabbitMQ stream broker at {}: {err}\n\
             start one with `scripts/broker.sh up` (or run everything with `scripts/test.sh`)",
            broker.endpoint()
        ),
    }
}

/// A raw client on its own connection to the test broker (after [`require_broker`]'s check).
pub async fn raw_client() -> Client {
    require_broker().await;
    client_to(&broker()).await
}

/// A raw client on its own connection to `broker`; panics naming the broker if it cannot connect.
pub(crate) async fn client_to(broker: &BrokerSettings) -> Client {
    connection::client(broker, "test")
        .await
        .unwrap_or_else(|err| panic!("no client connection to {}: {err}", broker.endpoint()))
}

/// The root `scripts/broker.sh` runs the local broker from (`BROKER_ROOT`, as for the script).
pub fn broker_root() -> PathBuf {
    std::env::var_os("BROKER_ROOT")
        .map(Into::into)
        .unwrap_or_else(|| "/var/lib/offset-tracking/broker-root".into())
}

/// Stops the local broker and starts it again with `scripts/broker.sh restart`; every connection
/// to it is cut. Panics if the broker is not the local one that script runs.
pub fn restart_broker() {
    crate::run_script(
        "broker.sh",
        &["restart"],
        " (failure tests need the local broker it runs)",
    );
}
