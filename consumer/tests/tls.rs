//! TLS to the broker's TLS stream listener (the local broker's 127.0.0.1:5551, with the throw-away
//! CA `scripts/broker.sh up` makes): the listener sends clients to itself, not to the plain port;
//! the producer and the consumer publish and consume a wave over it; a CA that did not sign the
//! broker's certificate fails at once with a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shared::connection;
use testkit::process::{
    assert_ok, our_binary, run_with_deadline, stderr_of, stdout_of, workspace_binary,
};
use testkit::streams::{unique, TestStream};
use testkit::tls::{broker_tls, tls_broker, unrelated_ca, TLS_PORT};

const LIMIT: Duration = Duration::from_secs(60);

/// The producer binary (built now: it belongs to another package), publishing `count` messages
/// to `stream` over TLS, trusting `ca_file`, with the settings given as environment variables.
fn producer_over_tls(stream: &str, count: u64, ca_file: &Path) -> Command {
    let producer = workspace_binary(env!("CARGO_BIN_EXE_consumer"), "producer");
    let mut cmd = our_binary(producer);
    cmd.env("OFFSET_TRACKING__BROKER__PORT", TLS_PORT.to_string())
        .env("OFFSET_TRACKING__BROKER__TLS__CA_FILE", ca_file)
        .env("OFFSET_TRACKING__STREAM__NAME", stream)
        .env(
            "OFFSET_TRACKING__PRODUCER__MESSAGE_COUNT",
            count.to_string(),
        );
    cmd
}

/// The consumer binary as `name` on `stream` from the first message, over TLS with `[broker.tls]`
/// written in a configuration file (`--config`), the local broker's client certificate included.
fn consumer_over_tls(stream: &str, name: &str, dir: &Path) -> Command {
    let tls = broker_tls();
    let config = dir.join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\nport = {TLS_PORT}\n\n[broker.tls]\nca_file = {:?}\n\
             client_cert_file = {:?}\nclient_key_file = {:?}\n\n\
             [stream]\nname = {stream:?}\n\n[consumer]\nname = {name:?}\noffset = \"first\"\n",
            tls.ca_file, tls.client_cert_file, tls.client_key_file
        ),
    )
    .unwrap();
    let mut cmd = our_binary(env!("CARGO_BIN_EXE_consumer"));
    cmd.arg("--config").arg(&config);
    cmd
}

#[tokio::test]
async fn the_tls_listener_sends_clients_to_itself_not_to_the_plain_port() {
    let stream = TestStream::new("tls-metadata").await;
    let client = connection::client(&tls_broker(), "test tls")
        .await
        .unwrap_or_else(|err| {
            panic!("no TLS connection to localhost:{TLS_PORT} (run `scripts/broker.sh up`): {err}")
        });
    let metadata = client.metadata(vec![stream.name.clone()]).await.unwrap();
    let _ = client.close().await;
    let leader = &metadata[&stream.name].leader;
    // Producers and consumers connect to the leader as advertised: over TLS that must be the TLS
    // port (stream.advertised_tls_port), or they would speak TLS to the plain listener.
    assert_eq!(
        (leader.host.as_str(), leader.port),
        ("localhost", u32::from(TLS_PORT))
    );
}

#[tokio::test]
async fn producer_and_consumer_work_over_tls() {
    let stream = TestStream::new("tls-wave").await;
    let dir = tempfile::tempdir().unwrap();
    let count = 1_000;

    let out = run_with_deadline(
        &mut producer_over_tls(&stream.name, count, &broker_tls().ca_file),
        LIMIT,
    );
    assert_ok(&out);
    assert_eq!(
        stdout_of(&out),
        format!("Publishing {count} messages\nMessages confirmed: True\n")
    );

    // What the producer wrote, read back over the plain listener.
    let log = stream.read_all().await;
    assert_eq!(log.len(), count as usize);
    let (first, last) = (log[0].0, log[log.len() - 1].0);
    assert_eq!(
        log[log.len() - 1].1,
        format!("marker{}", count - 1).into_bytes()
    );

    let name = unique("tls-consumer");
    let out = run_with_deadline(
        &mut consumer_over_tls(&stream.name, &name, dir.path()),
        LIMIT,
    );
    assert_ok(&out);
    assert_eq!(
        stdout_of(&out),
        format!(
            "Started consuming\nFirst message received\n\
             Done consuming first_offset: {first} last_offset: {last}\n"
        )
    );
    // The tracker stored the marker's offset over its own TLS connection.
    assert_eq!(stream.stored_offset(&name).await, Some(last));
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_brokers_certificate_is_a_clear_error() {
    let stream = TestStream::new("tls-wrong-ca").await;
    let dir = tempfile::tempdir().unwrap();
    let wrong_ca = unrelated_ca(dir.path());

    let mut consumer = our_binary(env!("CARGO_BIN_EXE_consumer"));
    consumer
        .env("OFFSET_TRACKING__BROKER__PORT", TLS_PORT.to_string())
        .env("OFFSET_TRACKING__BROKER__TLS__CA_FILE", &wrong_ca)
        .env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env("OFFSET_TRACKING__CONSUMER__NAME", unique("tls-wrong-ca"));
    let producer = &mut producer_over_tls(&stream.name, 10, &wrong_ca);

    for (what, cmd) in [("producer", producer), ("consumer", &mut consumer)] {
        let started = Instant::now();
        let out = run_with_deadline(cmd, Duration::from_secs(30));
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("TLS handshake failed")
                && err.contains("not signed by the CA")
                && err.contains(&*wrong_ca.to_string_lossy()),
            "{what}: the error does not say TLS, the CA and its file: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        // No retry loop, no waiting for broker.connect_timeout (10 s): the handshake fails at once.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} took {:?}",
            started.elapsed()
        );
    }
    assert!(stream.read_all().await.is_empty(), "nothing was published");
}
