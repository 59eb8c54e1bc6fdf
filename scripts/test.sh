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
if [ "$#" -gt 0 ]; then
  echo "== cargo test $*"
  exec cargo test --workspace "$@"
fi

# The 3-node cluster's tests (`on_three_nodes_…`, about 2¾ minutes, mostly waiting for nodes to
# die, elect and come back) run in a lane of their own, beside the single-broker tests: they use
# other brokers and other ports. Their output follows the rest's.
echo "== cargo test (the cluster's tests in a lane of their own)"
cargo test --workspace --no-run --quiet
lanes=target/test-lanes
mkdir -p "$lanes"
( if cargo test -p consumer --test cluster on_three_nodes_ >"$lanes/cluster.log" 2>&1; then
    echo 0
  else
    echo 1
  fi >"$lanes/cluster.status" ) &
cluster_lane=$!
status=0
cargo test --workspace -- --skip on_three_nodes_ || status=$?
wait "$cluster_lane" || true
echo "== the cluster's tests"
cat "$lanes/cluster.log"
cluster_status=$(cat "$lanes/cluster.status" 2>/dev/null || echo 1)
if [ "$status" -ne 0 ] || [ "$cluster_status" -ne 0 ]; then
  echo "== failed: single-broker tests exit $status, cluster tests exit $cluster_status" >&2
  exit 1
fi
