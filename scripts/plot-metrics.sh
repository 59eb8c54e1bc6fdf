#!/usr/bin/env bash
# Renders docs/dashboard.png: the series of dashboards/offset-tracking.json drawn from a real run
# (a producer publishing, a consumer paused, then catching up), scraped from the consumer's
# /metrics once a second. Grafana is not needed: matplotlib (from PyPI, in a venv under
# target/tmp) draws them. Needs the broker: scripts/broker.sh up.
#
#   scripts/plot-metrics.sh [--out docs/dashboard.png] [--seconds 60] [--pause-at 15] [--pause-for 15] [--rate 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tmp/plot-venv
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    python3 -m venv "$venv" || { echo "plot-metrics: needs python3 with venv (apt-get install python3-venv)" >&2; exit 1; }
    "$venv/bin/pip" install --quiet 'matplotlib>=3.8'
fi
cargo build --quiet -p producer --bin producer
cargo build --quiet -p consumer --example io_handler
mkdir -p docs
exec "$venv/bin/python" scripts/plot-metrics.py --bin-dir target/debug "$@"
