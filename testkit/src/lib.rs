//! The workspace's integration-test kit, a dev-dependency (never published, never in a shipped
//! binary; the `bench` measuring tool uses its sub-entry writer): tests run against a real RabbitMQ — the local broker of `scripts/broker.sh up` or the
//! 3-node cluster of `scripts/cluster.sh up` — and fail loudly, saying how to start it, when it is
//! not there. They never skip.
//!
//! # Modules
//!
//! | module | what lives there |
//! |---|---|
//! | [`broker`] | the local broker's settings, [`broker::require_broker`], a raw client, restarting it |
//! | [`tls`] | the broker's TLS listener and throw-away CA files, a CA that signed nothing of it |
//! | [`cluster`] | the cluster's ports, [`cluster::require_cluster`], `scripts/cluster.sh`, the lock the node-stopping tests take turns with, a stream's leader |
//! | [`streams`] | unique names, [`streams::TestStream`] and [`streams::OwnedStream`] deleted on drop, the producer's wave, the offsets a run processed |
//! | [`process`] | our binaries: building and locating them, running them under a deadline, [`process::Running`] in the background, kill loops, their output |
//! | [`proxy`] | [`proxy::StoreCountingProxy`], counting the offset stores that cross the wire; it can be cut and restored |
//! | [`connections`] | [`connections::ConnectionCountingProxy`], counting the connections a process opens |
//! | [`summary`] | a run's typed summary ([`shared::summary::RunSummary`]) from its output |
//! | [`peer`] | writers of sub-entry batches: [`peer::sub_entries::SubEntryPublisher`] (ours, every codec, unknown codec codes) and Python `rstream` ([`peer::rstream`]) |
//! | [`oracle`] | reading a stream back with the `delivery` crate's subscription (the raw client panics on sub-entries) |
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod broker;
pub mod cluster;
pub mod connections;
pub mod oracle;
pub mod peer;
pub mod process;
pub mod proxy;
pub mod streams;
pub mod summary;
pub mod tls;

use std::path::Path;
use std::process::Command;

/// The workspace's root directory: where `scripts/` is and where cargo builds.
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Runs `scripts/<script> ARGS` to completion and returns its stdout; panics with its output if it
/// fails, `why` saying what the failing test needed.
pub(crate) fn run_script(script: &str, args: &[&str], why: &str) -> String {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run scripts/{script}: {err}"));
    assert!(
        out.status.success(),
        "`scripts/{script} {}` failed{why}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
