#!/usr/bin/env bash
# A local RabbitMQ 4.0.5 with the stream plugin, for demos and tests.
#
#   scripts/broker.sh up      start it (idempotent); returns when the stream ports answer
#   scripts/broker.sh down    stop it; leaves nothing running or mounted under the root (this also
#                             stops scripts/cluster.sh's nodes, which run in the same root)
#   scripts/broker.sh status  say what runs where (and where the TLS files are)
#   scripts/broker.sh restart stop the local node and start it again (failure tests use it); the
#                             cluster's nodes, epmd and the mounts stay
#
# If a broker already answers on BROKER_HOST:BROKER_PORT, `up` reuses it. Otherwise it runs
# Debian trixie's rabbitmq-server inside its own root made by mmdebstrap (Debian bookworm's 3.10
# cannot talk to the stream client 0.11). Nothing from trixie is installed into the host system.
# The root is cached in BROKER_ROOT, so a second `up` takes seconds.
#
# The local node also has a TLS stream listener on 127.0.0.1:BROKER_TLS_PORT (5551), with a
# throw-away CA made on first `up` in BROKER_ROOT/etc/rabbitmq/tls: ca.pem (what clients trust),
# server.pem and server-key.pem (the broker's, for localhost and 127.0.0.1), client.pem and
# client-key.pem (PKCS#8, a client certificate the broker accepts). A root made before TLS was
# added gets them on the next `up`, and its running node is restarted once to load them.
#
# Environment: BROKER_ROOT (default /var/lib/offset-tracking/broker-root), BROKER_HOST
# (localhost), BROKER_PORT (5552), BROKER_TLS_PORT (5551), BROKER_UP_TIMEOUT seconds (120).
set -euo pipefail

ROOT=${BROKER_ROOT:-/var/lib/offset-tracking/broker-root}
HOST=${BROKER_HOST:-localhost}
PORT=${BROKER_PORT:-5552}
UP_TIMEOUT=${BROKER_UP_TIMEOUT:-120}
TLS_PORT=${BROKER_TLS_PORT:-5551}
# The TLS files, as the node sees them (inside the root) and as the host sees them.
TLS_DIR_IN_ROOT=/etc/rabbitmq/tls
TLS_DIR=$ROOT$TLS_DIR_IN_ROOT
# Serialises up, down and restart (tests restart the broker while others bring it up).
LOCK_FILE=$ROOT.lock

log() { echo "broker: $*" >&2; }
die() { log "error: $*"; exit 1; }

port_answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null; }
tls_port_answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$TLS_PORT" 2>/dev/null; }
root_ready() { [ -f "$ROOT/.offset-tracking-ready" ]; }
proc_mounted() { mountpoint -q "$ROOT/proc"; }
# The lock's descriptor (9) is closed in the root: a daemon started there (the node, epmd) must
# not hold the lock for as long as it runs.
in_root() { chroot "$ROOT" "$@" 9>&-; }

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

# The TLS files `up` makes, in TLS_DIR.
TLS_FILES="ca.pem ca-key.pem server.pem server-key.pem client.pem client-key.pem"
tls_made() {
  local f
  for f in $TLS_FILES; do [ -s "$TLS_DIR/$f" ] || return 1; done
}

# A throw-away CA, the broker's certificate (localhost, 127.0.0.1) and a client certificate, made
# with the root's own openssl, so the host needs none. Keys are EC P-256 in PKCS#8 ("BEGIN PRIVATE
# KEY", the only format the Rust client reads). Made once; sets TLS_CHANGED=1 if it made them now.
TLS_CHANGED=0
make_tls() {
  tls_made && return 0
  log "making a throw-away CA and certificates in $TLS_DIR"
  rm -rf "$TLS_DIR"
  mkdir -p "$TLS_DIR"
  # X.509 v3 extensions as rustls requires them: a CA marked as one, the server's names in
  # subjectAltName (the common name is not looked at).
  cat >"$TLS_DIR/extensions.cnf" <<'EOF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  # shellcheck disable=SC2016 # expanded by the root's shell
  in_root sh -ec '
    cd "$1"
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
    key ca-key.pem
    openssl req -new -key ca-key.pem -subj "/CN=offset-tracking throw-away test CA" -out ca.csr
    openssl x509 -req -in ca.csr -key ca-key.pem -days 3650 \
      -extfile extensions.cnf -extensions ca -out ca.pem
    for who in server client; do
      key "$who-key.pem"
      openssl req -new -key "$who-key.pem" -subj "/CN=offset-tracking $who" -out "$who.csr"
      openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
        -extfile extensions.cnf -extensions "$who" -out "$who.pem"
    done
    rm -f ./*.csr ca.srl extensions.cnf
    # The node runs as rabbitmq; the client key is a throw-away test key, readable by tests.
    chown root:rabbitmq server-key.pem
    chmod 640 server-key.pem
    chmod 600 ca-key.pem
    chmod 644 ca.pem server.pem client.pem client-key.pem
  ' sh "$TLS_DIR_IN_ROOT" >/dev/null 2>&1 || die "could not make the TLS files in $TLS_DIR"
  tls_made || die "the TLS files in $TLS_DIR are incomplete"
  TLS_CHANGED=1
}

# Adds the TLS stream listener to rabbitmq.conf unless it is there; sets TLS_CHANGED=1 if it did.
configure_tls() {
  local conf=$ROOT/etc/rabbitmq/rabbitmq.conf
  grep -q '^stream\.listeners\.ssl\.' "$conf" && return 0
  log "adding the TLS stream listener 127.0.0.1:$TLS_PORT to $conf"
  [ -z "$(tail -c 1 "$conf")" ] || echo >>"$conf"
  cat >>"$conf" <<EOF
# TLS stream listener (scripts/broker.sh), throw-away certificates in $TLS_DIR_IN_ROOT
stream.listeners.ssl.1 = 127.0.0.1:$TLS_PORT
stream.advertised_tls_host = localhost
stream.advertised_tls_port = $TLS_PORT
ssl_options.cacertfile = $TLS_DIR_IN_ROOT/ca.pem
ssl_options.certfile = $TLS_DIR_IN_ROOT/server.pem
ssl_options.keyfile = $TLS_DIR_IN_ROOT/server-key.pem
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
EOF
  TLS_CHANGED=1
}

node_running() { root_ready && proc_mounted && in_root rabbitmqctl -q status >/dev/null 2>&1; }

up() {
  if port_answers && ! { root_ready && proc_mounted; }; then
    log "a broker already answers on $HOST:$PORT; reusing it"
    tls_port_answers \
      || log "nothing answers on $HOST:$TLS_PORT: TLS needs the local broker this script starts"
    return 0
  fi
  make_root
  make_tls
  configure_tls
  if [ "$TLS_CHANGED" = 1 ] && node_running; then
    log "the TLS set-up is new: restarting the local node once to load it"
    down
  fi
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
  until tls_port_answers; do
    [ $SECONDS -lt $deadline ] || die "the TLS stream port $HOST:$TLS_PORT does not answer after ${UP_TIMEOUT}s; see $ROOT/var/log/rabbitmq/"
    sleep 0.5
  done
  log "RabbitMQ $(in_root rabbitmqctl -q version 2>/dev/null) is up; streams on $HOST:$PORT, TLS streams on $HOST:$TLS_PORT (guest/guest)"
  log "TLS: the CA to trust is $TLS_DIR/ca.pem (client certificate: $TLS_DIR/client.pem, key: $TLS_DIR/client-key.pem)"
}

# The single node's server processes (beam), not scripts/cluster.sh's nodes (c1..c3@localhost),
# which run in the same root.
single_node_pids() {
  local real pid
  real=$(realpath -m "$ROOT")
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$real" ] || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '-s rabbit boot' || continue
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q '^RABBITMQ_NODENAME=c[0-9]@' && continue
    echo "$pid"
  done
}

# Stops the single node only: epmd, the mounts and the cluster's nodes stay (restart uses it).
stop_node() {
  log "stopping the local node"
  timeout 60 chroot "$ROOT" rabbitmqctl -q stop 9>&- >/dev/null 2>&1 || log "rabbitmqctl stop failed; killing the node"
  local pid
  for pid in $(single_node_pids); do kill -9 "$pid" 2>/dev/null || true; done
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
  if tls_port_answers; then echo "TLS stream port $HOST:$TLS_PORT: answering"; else echo "TLS stream port $HOST:$TLS_PORT: not answering"; fi
  if tls_made; then
    echo "TLS CA certificate: $TLS_DIR/ca.pem"
    echo "TLS client certificate: $TLS_DIR/client.pem"
    echo "TLS client key (PKCS#8): $TLS_DIR/client-key.pem"
  else
    echo "TLS CA certificate: not made (scripts/broker.sh up makes it)"
  fi
  local m; m=$(mounts_under_root | tr '\n' ' ')
  echo "mounted under root: ${m:-nothing}"
}

# Holds the lock for the rest of the script (up, down and restart one at a time).
take_lock() {
  mkdir -p "$(dirname "$LOCK_FILE")"
  exec 9>"$LOCK_FILE"
  flock -w $((UP_TIMEOUT + 60)) 9 || die "another scripts/broker.sh holds $LOCK_FILE"
}

case "${1:-}" in
  up) take_lock; up ;;
  down) take_lock; down ;;
  status) status ;;
  restart)
    take_lock
    root_ready && proc_mounted || die "no local broker runs from $ROOT: restart needs the one 'up' started"
    stop_node
    up
    ;;
  *) echo "usage: $0 up|down|status|restart" >&2; exit 2 ;;
esac
