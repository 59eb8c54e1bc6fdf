//! What the health checks cost the broker must not grow with partitions (issue #17): an idle
//! consumer on a super stream of 20 partitions runs its lag probe and idle check on every
//! partition, all on the process's long-lived query connection — it opens (almost) no connection
//! while it idles. Counted on the wire, by a proxy every connection of the process goes through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::connections::ConnectionCountingProxy;
use testkit::process::{our_binary, stderr_of, Running};
use testkit::streams::{unique, OwnedStream};

const PARTITIONS: u32 = 20;
/// Long enough for the consumer to create the partitions and subscribe to each.
const WARM_UP: Duration = Duration::from_secs(12);
/// Three rounds of lag probes and idle checks (every 5 s each).
const WINDOW: Duration = Duration::from_secs(15);
/// What the window may open, whatever the partitions: a query connection or a reconnect.
const BOUND: u64 = 3;

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_consumer_of_many_partitions_opens_no_connections_to_check_them() {
    let stream = OwnedStream::on_broker("qc", PARTITIONS).await;
    let name = unique("qc");
    let proxy = ConnectionCountingProxy::start();
    // QUERY_CONNECTION_CONSUMER runs another build instead (e.g. one from before the fix).
    let bin = std::env::var("QUERY_CONNECTION_CONSUMER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_consumer").to_owned());
    let mut cmd = our_binary(bin);
    cmd.env("OFFSET_TRACKING__STREAM__NAME", &stream.name)
        .env(
            "OFFSET_TRACKING__STREAM__PARTITIONS",
            PARTITIONS.to_string(),
        )
        .env("OFFSET_TRACKING__CONSUMER__NAME", &name)
        // The super stream is the consumer's to create (nothing publishes to it).
        .env("OFFSET_TRACKING__CONSUMER__CREATE_STREAM", "true")
        .env("OFFSET_TRACKING__BROKER__HOST", "127.0.0.1")
        .env("OFFSET_TRACKING__BROKER__PORT", proxy.port.to_string())
        // Every connection to the configured node: through the proxy.
        .env("OFFSET_TRACKING__BROKER__LOAD_BALANCER_MODE", "true");
    let mut running = Running::spawn(&mut cmd);

    tokio::time::sleep(WARM_UP).await;
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "the consumer ended during the warm-up"
    );
    let before = proxy.accepted();
    // Subscribing opened at least one connection per partition.
    assert!(before >= u64::from(PARTITIONS), "{before} connections");
    tokio::time::sleep(WINDOW).await;
    let opened = proxy.accepted() - before;
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "the consumer ended while idle"
    );

    running.signal("TERM");
    let out = running.finish(Duration::from_secs(60));
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        opened <= BOUND,
        "{opened} connections opened in {WINDOW:?} of idling on {PARTITIONS} partitions \
         (at most {BOUND}); stderr:\n{err}"
    );
}
