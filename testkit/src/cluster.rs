//! The local 3-node cluster (`scripts/cluster.sh up`, node N's stream port on 556N): its ports and
//! settings, a connection to it or a loud failure saying how to start it, the script (to kill and
//! start nodes, or ask one), the lock the tests that stop nodes take turns with, and which node
//! leads a stream.

use rabbitmq_stream_client::Environment;
use shared::config::BrokerSettings;
use shared::connection;

/// The stream ports of the 3-node cluster `scripts/cluster.sh` runs (node N on 556N).
pub const CLUSTER_PORTS: [u16; 3] = [5561, 5562, 5563];

/// The cluster as our programs reach it: every node, starting with node `first` (1, 2 or 3).
pub fn cluster_hosts(first: u8) -> String {
    let first = usize::from(first.clamp(1, 3)) - 1;
    (0..3)
        .map(|i| format!("localhost:{}", CLUSTER_PORTS[(first + i) % 3]))
        .collect::<Vec<_>>()
        .join(",")
}

/// The cluster's settings, for the tests' own connections.
pub fn cluster_broker() -> BrokerSettings {
    BrokerSettings {
        hosts: cluster_hosts(1).split(',').map(str::to_owned).collect(),
        ..BrokerSettings::default()
    }
}

/// Connects to the cluster or panics with how to start it: tests never skip silently.
pub async fn require_cluster() -> Environment {
    for port in CLUSTER_PORTS {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "these tests need the local 3-node cluster, but nothing answers on localhost:{port}: \
             start it with `scripts/cluster.sh up` (or run everything with `scripts/test.sh`)"
        );
    }
    connection::environment(&cluster_broker(), "test")
        .await
        .unwrap()
}

/// Runs `scripts/cluster.sh ARGS` and returns its stdout; panics with its output if it fails.
pub fn cluster_script(args: &[&str]) -> String {
    crate::run_script("cluster.sh", args, "")
}

/// Serialises the tests that stop cluster nodes (each test binary runs its tests on threads).
pub async fn cluster_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The node (1, 2 or 3) leading `stream` now, as the running node `ask` sees it.
pub fn stream_leader(stream: &str, ask: u8) -> Option<u8> {
    let out = cluster_script(&[
        "ctl",
        &ask.to_string(),
        "-q",
        "list_queues",
        "name",
        "leader",
    ]);
    out.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some(stream))
            .then(|| fields.next())
            .flatten()
            .and_then(|leader| leader.strip_prefix('c'))
            .and_then(|n| n.split('@').next())
            .and_then(|n| n.parse().ok())
    })
}
