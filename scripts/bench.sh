#!/usr/bin/env bash
# Issue #5's benchmark: our producer and consumer + tracker against the raw stream client, on
# fresh streams of the local broker, in one run (references and ours interleaved).
#
#   scripts/bench.sh [MESSAGES] [BENCH OPTIONS...]
#
# MESSAGES per row (default 1000000). Options go to the bench binary (bench/, see `--help`), e.g.
#   scripts/bench.sh 1000000 --rss-messages 0         skip the 10 M-message peak RSS wave
#   scripts/bench.sh --tutorial-messages 50000        shorter tutorial-pattern row
#   scripts/bench.sh --no-credit-rows                 skip our consumer at initial_credits 1, 2, 4, 10
#   scripts/bench.sh --no-sub-entry-rows              skip the sub-entry waves (none, zstd) vs plain
#   scripts/bench.sh --no-batch-rows                  skip our producer at producer.batch_size 10, 100, 1000, 5000
#   scripts/bench.sh --no-io-rows                     skip the async handler (io_handler example)
#   scripts/bench.sh --no-latency-rows                skip the end-to-end latency rows
#   scripts/bench.sh --latency-quick                  latency rows of 2 s instead of 10 s
#                                                     (or --latency-seconds N)
#
# It builds the release binaries and the consumer's io_handler example, starts the broker if
# none answers (scripts/broker.sh up), installs GNU time for exact peak RSS figures if
# /usr/bin/time is missing, and runs target/release/bench. The last line printed is the `bench summary:` line.
set -euo pipefail

cd "$(dirname "$0")/.."

MESSAGES=1000000
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
  MESSAGES=$1
  shift
fi

log() { echo "bench.sh: $*" >&2; }

log "building release binaries"
cargo build --release --quiet -p producer -p consumer -p bench --bins
# The async-handler rows run the consumer crate's io_handler example.
cargo build --release --quiet -p consumer --examples

scripts/broker.sh up

if [ ! -x /usr/bin/time ]; then
  log "installing GNU time (for peak RSS)"
  if ! { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }; then
    log "could not install GNU time; peak RSS will be read from /proc/PID/status instead"
  fi
fi

exec "${CARGO_TARGET_DIR:-target}/release/bench" --messages "$MESSAGES" "$@"
