#!/usr/bin/env bash
# Connections a consumer process opens per minute to the broker while it sits idle on a super
# stream of many partitions (issue #17): the lag probe and the idle check of every partition run
# all the time, so what they open is what grows with partitions.
#
#   scripts/connections-per-minute.sh [CONSUMER_BINARY] [PARTITIONS] [WINDOW_SECONDS]
#
# Defaults: target/debug/consumer, 100 partitions, a 60 s window after a 20 s warm-up. Creates a
# super stream of its own (unique name), runs one consumer process on it under `strace -f -e
# connect` and counts the connect() calls to the broker's stream port in the window — exactly this
# process's connections, whatever else talks to the broker. Also prints the broker-wide
# `churn_rates.connection_created` delta of the management API over the same window (it includes
# every other client of the broker). Prints the per-minute figure last, alone on its line.
# Deletes the super stream at the end. Needs strace, curl and the broker (`scripts/broker.sh up`).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/target/debug/consumer}"
PARTITIONS="${2:-100}"
WINDOW="${3:-60}"
WARMUP="${WARMUP:-20}"
PORT="${STREAM_PORT:-5552}"
MGMT="${MGMT:-http://localhost:15672}"
AUTH="${AUTH:-guest:guest}"

command -v strace >/dev/null || { echo "needs strace" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no consumer binary at $BIN (cargo build -p consumer)" >&2; exit 2; }

NAME="cpm-$$-$(date +%s)"
WORK="$(mktemp -d)"
TRACE="$WORK/trace"
PID=""

cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    # The consumer (strace's child) first, then strace.
    for child in $(pgrep -P "$PID" || true); do kill -TERM "$child" 2>/dev/null || true; done
    sleep 1
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  for i in $(seq 0 $((PARTITIONS - 1))); do
    curl -s -o /dev/null -u "$AUTH" -X DELETE "$MGMT/api/queues/%2F/$NAME-$i" || true
  done
  curl -s -o /dev/null -u "$AUTH" -X DELETE "$MGMT/api/exchanges/%2F/$NAME" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

created() {
  curl -s -u "$AUTH" "$MGMT/api/overview" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["churn_rates"]["connection_created"])'
}

connects() {
  # One line per connect() to the stream port, by any thread of the process.
  grep -c "sin_port=htons($PORT)" "$TRACE" 2>/dev/null || true
}

# Runs "$@" as the consumer on the super stream, in place of the calling (sub)shell.
run_consumer() {
  OFFSET_TRACKING__STREAM__NAME="$NAME" \
  OFFSET_TRACKING__STREAM__PARTITIONS="$PARTITIONS" \
  OFFSET_TRACKING__CONSUMER__NAME="$NAME" \
  OFFSET_TRACKING__CONSUMER__CREATE_STREAM=true \
  RUST_LOG="${RUST_LOG:-warn}" \
    exec "$@" >"$WORK/out" 2>"$WORK/err"
}

# The consumer creates the super stream (stream.partitions). Creating 100 partitions at once, the
# stream client 0.11 sometimes panics in its Metadata decoder ("mid > len") while partitions still
# have no leader: create them in a run of their own (retried), and measure on a settled stream.
for attempt in 1 2 3; do
  (run_consumer timeout 40 "$BIN") || true
  curl -s -u "$AUTH" "$MGMT/api/exchanges/%2F/$NAME" | grep -q '"name"' && break
  echo "creating the super stream: attempt $attempt failed; again" >&2
done
sleep 5

# Every partition idles (no messages come): its lag probe and idle check run. $PID is strace's
# (the subshell execs it), which passes the TERM of the clean-up on to the consumer.
run_consumer strace -f -qq -e trace=connect -e signal=none -o "$TRACE" "$BIN" &
PID=$!

sleep "$WARMUP"
kill -0 "$PID" 2>/dev/null || { echo "the consumer ended early:" >&2; tail -20 "$WORK/err" >&2; exit 1; }
start_connects=$(connects)
start_created=$(created)
sleep "$WINDOW"
kill -0 "$PID" 2>/dev/null || { echo "the consumer ended early:" >&2; tail -20 "$WORK/err" >&2; exit 1; }
end_connects=$(connects)
end_created=$(created)

opened=$((end_connects - start_connects))
per_minute=$(((opened * 60 + WINDOW / 2) / WINDOW))
echo "consumer $BIN, $PARTITIONS partitions, ${WINDOW}s window after ${WARMUP}s warm-up:" >&2
echo "  connections this process opened: $opened (broker-wide connection_created: $((end_created - start_created)))" >&2
echo "connections per minute: $per_minute"
