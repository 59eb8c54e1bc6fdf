#!/usr/bin/env bash
# Runs every test of the workspace against a real broker: brings one up first (scripts/broker.sh
# reuses a broker already answering on localhost:5552, or starts a local RabbitMQ 4.0.5), and the
# local 3-node cluster the failover, consumer group and interop tests use (scripts/cluster.sh).
# Works on a fresh Debian machine as root. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/broker.sh up
# The cluster holds only what tests made (and deleted): when it cannot come back from its old data,
# a fresh one is made rather than failing the run. `up` has said what went wrong by then.
if ! scripts/cluster.sh up; then
  echo "== the cluster did not come up from its data: making a fresh one (scripts/cluster.sh reset)" >&2
  scripts/cluster.sh reset
  scripts/cluster.sh up
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace "$@"
