#!/usr/bin/env bash
# A local RabbitMQ 4.0.5 with the stream plugin, for demos and tests.
#
#   scripts/broker.sh up      start it (idempotent); returns when the stream port answers
#   scripts/broker.sh down    stop it; leaves nothing running or mounted under the root
#   scripts/broker.sh status  say what runs where
#   scripts/broker.sh restart stop the local node and start it again (failure tests use it)
#
# If a broker already answers on BROKER_HOST:BROKER_PORT, `up` reuses it. Otherwise it runs
# Debian trixie's rabbitmq-server inside its own root made by mmdebstrap (Debian bookworm's 3.10
# cannot talk to the stream client 0.11). Nothing from trixie is installed into the host system.
# The root is cached in BROKER_ROOT, so a second `up` takes seconds.
#
# Environment: BROKER_ROOT (default /var/lib/offset-tracking/broker-root), BROKER_HOST
# (localhost), BROKER_PORT (5552), BROKER_UP_TIMEOUT seconds (120).
set -euo pipefail

ROOT=${BROKER_ROOT:-/var/lib/offset-tracking/broker-root}
HOST=${BROKER_HOST:-localhost}
PORT=${BROKER_PORT:-5552}
UP_TIMEOUT=${BROKER_UP_TIMEOUT:-120}

log() { echo "broker: $*" >&2; }
die() { log "error: $*"; exit 1; }

port_answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null; }
root_ready() { [ -f "$ROOT/.offset-tracking-ready" ]; }
proc_mounted() { mountpoint -q "$ROOT/proc"; }
in_root() { chroot "$ROOT" "$@"; }

# Every mount below the root, deepest first.
mounts_under_root() {
  local real
  real=$(realpath -m "$ROOT")
  awk -v r="$real" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

make_root() {
  root_ready && return 0
  command -v mmdebstrap >/dev/null || {
    log "installing mmdebstrap (host package, bookworm)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null \
      || die "could not install mmdebstrap: run 'apt-get install mmdebstrap' as root"
  }
  # A half-made root from an interrupted run: nothing may be mounted before it is removed.
  if [ -e "$ROOT" ]; then
    [ -z "$(mounts_under_root)" ] || die "$ROOT is half-made and has mounts under it; run '$0 down' first"
    rm -rf --one-file-system "$ROOT"
  fi
  mkdir -p "$(dirname "$ROOT")"
  log "creating a Debian trixie root with rabbitmq-server in $ROOT (about a minute)"
  mmdebstrap --quiet --variant=essential --include=rabbitmq-server,ca-certificates --mode=root \
    trixie "$ROOT" >&2 || die "mmdebstrap failed"
  in_root rabbitmq-plugins enable --offline rabbitmq_stream rabbitmq_stream_management >/dev/null \
    || die "could not enable the stream plugin"
  # Loopback only: this broker is for local demos and tests.
  cat >"$ROOT/etc/rabbitmq/rabbitmq.conf" <<EOF
loopback_users = none
listeners.tcp.1 = 127.0.0.1:5672
management.tcp.ip = 127.0.0.1
stream.listeners.tcp.1 = 127.0.0.1:$PORT
stream.advertised_host = localhost
stream.advertised_port = $PORT
EOF
  touch "$ROOT/.offset-tracking-ready"
}

node_running() { root_ready && proc_mounted && in_root rabbitmqctl -q status >/dev/null 2>&1; }

up() {
  if port_answers; then
    log "a broker already answers on $HOST:$PORT; reusing it"
    return 0
  fi
  make_root
  proc_mounted || mount -t proc proc "$ROOT/proc"
  if ! node_running; then
    log "starting rabbitmq-server in $ROOT"
    in_root rabbitmq-server -detached >/dev/null 2>&1 || die "rabbitmq-server -detached failed"
  fi
  # await_startup fails at once until the node has registered with epmd: poll it with a deadline.
  local deadline=$((SECONDS + UP_TIMEOUT))
  until in_root rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "the node did not start within ${UP_TIMEOUT}s; see $ROOT/var/log/rabbitmq/"
    sleep 1
  done
  until port_answers; do
    [ $SECONDS -lt $deadline ] || die "the stream port $HOST:$PORT does not answer after ${UP_TIMEOUT}s"
    sleep 0.5
  done
  log "RabbitMQ $(in_root rabbitmqctl -q version 2>/dev/null) is up; streams on $HOST:$PORT (guest/guest)"
}

down() {
  if ! [ -d "$ROOT" ]; then
    log "no broker root at $ROOT; nothing to stop"
    return 0
  fi
  if node_running; then
    log "stopping rabbitmq-server"
    in_root rabbitmqctl -q stop >/dev/null 2>&1 || log "rabbitmqctl stop failed; killing what is left"
  fi
  # epmd outlives the node and keeps files in the root open; so may a stuck beam. Kill every
  # process whose root is ours (not the host's epmd, if the host runs one).
  local real pid
  real=$(realpath -m "$ROOT")
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$real" ] && kill "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$real" ] && kill -9 "$pid" 2>/dev/null || true
  done
  local m
  for m in $(mounts_under_root); do umount "$m" || umount -l "$m"; done
  [ -z "$(mounts_under_root)" ] || die "still mounted under $ROOT: $(mounts_under_root | tr '\n' ' ')"
  log "stopped; nothing mounted under $ROOT"
}

status() {
  if port_answers; then echo "stream port $HOST:$PORT: answering"; else echo "stream port $HOST:$PORT: not answering"; fi
  if root_ready; then echo "broker root: $ROOT (ready)"; else echo "broker root: $ROOT (not made)"; fi
  if node_running; then
    echo "local node: running, RabbitMQ $(in_root rabbitmqctl -q version 2>/dev/null)"
  else
    echo "local node: not running"
  fi
  local m; m=$(mounts_under_root | tr '\n' ' ')
  echo "mounted under root: ${m:-nothing}"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart)
    root_ready && proc_mounted || die "no local broker runs from $ROOT: restart needs the one 'up' started"
    down
    up
    ;;
  *) echo "usage: $0 up|down|status|restart" >&2; exit 2 ;;
esac
