#!/usr/bin/env bash
# A local 3-node RabbitMQ 4.0.5 stream cluster, for failover demos and tests.
#
#   scripts/cluster.sh up              start the three nodes and cluster them (idempotent);
#                                      returns when all three run, are clustered and their
#                                      stream ports answer
#   scripts/cluster.sh down [--purge]  stop the three nodes, keeping their data (the next `up`
#                                      is fast); --purge also deletes it, so the next `up`
#                                      makes a fresh cluster
#   scripts/cluster.sh reset           the same as `down --purge`
#   scripts/cluster.sh status          which nodes run, cluster membership, stream ports, where
#                                      the stream coordinator runs; exits 0 only if all three
#                                      run, are clustered, their stream ports answer and none
#                                      lost its stream coordinator member
#   scripts/cluster.sh kill NODE       kill -9 of one node's server process (failure tests)
#   scripts/cluster.sh start NODE      start one killed or stopped node again; returns when it
#                                      runs
#   scripts/cluster.sh ctl NODE ARGS...      rabbitmqctl ARGS against that node
#   scripts/cluster.sh streams NODE ARGS...  rabbitmq-streams ARGS against that node
#
# NODE is 1, 2 or 3 (c1, c2, c3 and c1@localhost... are accepted too). Node N is cN@localhost:
# streams on 127.0.0.1:556N (advertised as localhost:556N), AMQP on 127.0.0.1:568N, Erlang
# distribution on 127.0.0.1:2568N, stream replication on ports 6N00-6N99; user guest/guest.
#
# A stream's leader and replicas, as any node sees them (one line per stream: name, leader node,
# member nodes; ask any running node):
#   scripts/cluster.sh ctl 1 -q --no-table-headers list_queues name leader members
# The column `online` (members whose replica runs) asks the stream coordinator: while that has no
# member on the stream leader's node, the command prints a {:badrpc, ...} line instead, with exit
# status 0.
#
# `up` and `start` also repair the stream coordinator when a node has lost its member of it (that
# happens to a node killed within a second or so of the first stream's declaration; see
# coordinator_view below).
#
# The nodes run beside the single broker of scripts/broker.sh, in the Debian trixie root it makes
# (`up` runs `scripts/broker.sh up` first if that root is not made yet, which also starts the single
# broker on 5552). They share its epmd, but nothing else: their own config, data and logs in
# BROKER_ROOT/var/lib/offset-tracking-cluster/cN, and their own Erlang cookie in
# BROKER_ROOT/var/lib/offset-tracking-cluster (their HOME). `down` never touches the single broker
# nor epmd; `scripts/broker.sh down`, though, kills everything running in the root, these nodes too.
#
# Environment: BROKER_ROOT (default /var/lib/offset-tracking/broker-root), CLUSTER_UP_TIMEOUT
# seconds (120).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${BROKER_ROOT:-/var/lib/offset-tracking/broker-root}
UP_TIMEOUT=${CLUSTER_UP_TIMEOUT:-120}
HOST=localhost
NODES="1 2 3"
# The cluster's folder, as the nodes see it (inside the root) and as the host sees it.
BASE_IN_ROOT=/var/lib/offset-tracking-cluster
BASE=$ROOT$BASE_IN_ROOT
# Inside the root. Not /usr/sbin: Debian's wrappers there switch user with su, which resets HOME
# (the node would read the single broker's cookie), and rabbitmq-streams is only here.
BIN=/usr/lib/rabbitmq/bin
# Serialises up, down, reset, kill and start (not scripts/broker.sh's lock: both may run at once).
LOCK_FILE=$ROOT.cluster.lock

log() { echo "cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

root_ready() { [ -f "$ROOT/.offset-tracking-ready" ]; }
proc_mounted() { mountpoint -q "$ROOT/proc"; }
stream_port_answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/556$1" 2>/dev/null; }

# 1, 2 or 3 from a NODE argument (1, c1, c1@localhost).
parse_node() {
  local n=${1:-}
  n=${n%@localhost}
  n=${n#c}
  case "$n" in
    1 | 2 | 3) echo "$n" ;;
    *) die "NODE must be 1, 2 or 3 (or c1, c2, c3), not '${1:-}'" ;;
  esac
}

# The rabbitmq user of the root (RUID, RGID) and its plugins folder (PLUGINS_DIR, inside the root).
RUID='' RGID='' PLUGINS_DIR=''
load_root() {
  root_ready || die "no broker root at $ROOT: run '$0 up' (it makes one with scripts/broker.sh)"
  local ids d
  ids=$(awk -F: '$1 == "rabbitmq" { print $3 ":" $4 }' "$ROOT/etc/passwd")
  [ -n "$ids" ] || die "no rabbitmq user in $ROOT/etc/passwd"
  RUID=${ids%:*}
  RGID=${ids#*:}
  for d in "$ROOT"/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins; do
    [ -d "$d" ] && PLUGINS_DIR=${d#"$ROOT"}
  done
  [ -n "$PLUGINS_DIR" ] || die "no RabbitMQ plugins folder under $ROOT/usr/lib/rabbitmq/lib"
}

# The environment of node N's server and of every CLI command aimed at it: HOME holds the cluster's
# cookie, and every file the node reads or writes is its own (nothing shared in /etc/rabbitmq).
# The CLI needs the plugins settings too, or rabbitmq-streams' commands are "not found".
node_env() {
  local n=$1 d=$BASE_IN_ROOT/c$1
  NODE_ENV=(
    HOME="$BASE_IN_ROOT"
    PATH=/usr/sbin:/usr/bin:/sbin:/bin
    LANG=C.UTF-8
    LC_ALL=C.UTF-8
    RABBITMQ_NODENAME="c$n@localhost"
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
    RABBITMQ_CONFIG_FILES="$d/conf.d"
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf"
    RABBITMQ_MNESIA_BASE="$d/mnesia"
    RABBITMQ_LOG_BASE="$d/log"
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
    RABBITMQ_PLUGINS_DIR="$PLUGINS_DIR"
    RABBITMQ_DIST_PORT="2568$n"
  )
}

# Runs a command in the root as the rabbitmq user, with node N's environment and nothing else.
# The lock's descriptor (9) is closed in the root: a daemon started there (the node, epmd) must not
# hold the lock for as long as it runs.
as_node() {
  local n=$1
  shift
  node_env "$n"
  chroot --userspec="$RUID:$RGID" --groups="$RGID" "$ROOT" env -i "${NODE_ENV[@]}" "$@" 9>&-
}
ctl() {
  local n=$1
  shift
  as_node "$n" "$BIN/rabbitmqctl" "$@"
}
# rabbitmqctl with a deadline of T seconds (a node that hangs must not hang the script).
ctl_within() {
  local t=$1 n=$2
  shift 2
  as_node "$n" timeout "$t" "$BIN/rabbitmqctl" "$@"
}
streams() {
  local n=$1
  shift
  as_node "$n" "$BIN/rabbitmq-streams" "$@"
}

# Writes FILE with CONTENT (and a newline) unless it holds that already.
put() {
  [ -f "$1" ] && [ "$(cat "$1")" = "$2" ] && return 0
  printf '%s\n' "$2" >"$1"
}

# The cluster's folder: the cookie (made once) and each node's config, data and log folders.
prepare() {
  mkdir -p "$BASE"
  chown "$RUID:$RGID" "$BASE"
  chmod 750 "$BASE"
  if ! [ -s "$BASE/.erlang.cookie" ]; then
    log "making the cluster's Erlang cookie in $BASE"
    (
      umask 077
      od -An -tx1 -N20 /dev/urandom | tr -d ' \n' | tr a-f A-F >"$BASE/.erlang.cookie"
    )
  fi
  chown "$RUID:$RGID" "$BASE/.erlang.cookie"
  chmod 400 "$BASE/.erlang.cookie"
  local n d
  for n in $NODES; do
    d=$BASE/c$n
    mkdir -p "$d/conf.d" "$d/mnesia" "$d/log"
    chown "$RUID:$RGID" "$d" "$d/mnesia" "$d/log"
    put "$d/rabbitmq.conf" "# Node c$n@localhost of the local stream cluster (made by scripts/cluster.sh, loopback only)
loopback_users = none
listeners.tcp.1 = 127.0.0.1:568$n
distribution.listener.interface = 127.0.0.1
stream.listeners.tcp.1 = 127.0.0.1:556$n
stream.advertised_host = localhost
stream.advertised_port = 556$n
stream.replication.port_range.min = 6${n}00
stream.replication.port_range.max = 6${n}99"
    put "$d/advanced.config" "[]."
    put "$d/rabbitmq-env.conf" "# Empty on purpose: the node's environment comes from scripts/cluster.sh."
    put "$d/enabled_plugins" "[rabbitmq_stream]."
  done
}

# The PIDs of node N's server (space-separated): the processes in the root with
# RABBITMQ_NODENAME=cN@localhost in their environment and `-s rabbit boot` on their command line.
# Never by process name: rabbitmqctl is a beam.smp too, and so is the single broker.
server_pids() {
  local want="RABBITMQ_NODENAME=c$1@localhost" real p e args envs found=()
  real=$(realpath -m "$ROOT")
  for p in /proc/[0-9]*; do
    mapfile -d '' -t args 2>/dev/null <"$p/cmdline" || continue
    [[ " ${args[*]} " == *" -s rabbit boot "* ]] || continue
    [ "$(readlink "$p/root" 2>/dev/null)" = "$real" ] || continue
    mapfile -d '' -t envs 2>/dev/null <"$p/environ" || continue
    for e in "${envs[@]}"; do
      if [ "$e" = "$want" ]; then
        found+=("${p#/proc/}")
        break
      fi
    done
  done
  echo "${found[*]}"
}

# Node N's boot state as the node says it (ready, booting, stopped...), or "unreachable".
boot_state() {
  local s
  s=$(ctl_within 30 "$1" -q eval 'rabbit_boot_state:get().' 2>/dev/null) || s=unreachable
  echo "${s:-unreachable}"
}

# The cluster as node N sees it: sets VIEW_MEMBERS and VIEW_RUNNING (node names, space-separated).
# Fails if the node does not answer.
VIEW_MEMBERS='' VIEW_RUNNING=''
cluster_view() {
  local out
  VIEW_MEMBERS='' VIEW_RUNNING=''
  out=$(ctl_within 30 "$1" -q cluster_status --formatter json 2>/dev/null) || return 1
  VIEW_MEMBERS=$(json_node_list disk_nodes "$out")
  VIEW_RUNNING=$(json_node_list running_nodes "$out")
  [ -n "$VIEW_MEMBERS" ]
}
# The names in a list of node names in cluster_status' JSON, e.g. "disk_nodes":["c1@localhost",...].
json_node_list() {
  local list
  list=$(printf '%s' "$2" | tr -d '\n' | sed -n "s/.*\"$1\":\[\([^]]*\)\].*/\1/p")
  printf '%s' "$list" | tr -d '" ' | tr ',' '\n' | sort | tr '\n' ' ' | sed 's/ $//'
}
has_node() { [[ " $1 " == *" $2 "* ]]; }

# Starts node N's server in the background (rabbitmq-server -detached returns at once); returns
# once its process is there.
launch() {
  local n=$1
  log "starting c$n@localhost"
  as_node "$n" "$BIN/rabbitmq-server" -detached >"$BASE/c$n/log/start.out" 2>&1 \
    || die "rabbitmq-server -detached failed for c$n@localhost: $(cat "$BASE/c$n/log/start.out")"
  for _ in $(seq 100); do
    [ -z "$(server_pids "$n")" ] || return 0
    sleep 0.1
  done
  die "no process of c$n@localhost after rabbitmq-server -detached; see $BASE/c$n/log/"
}

# Waits until each of the nodes NODES... runs with its app started, or DEADLINE (in SECONDS)
# passes. await_startup fails at once until a node has registered with epmd: poll it. All of them
# are watched together because, after a full stop, a node waits for its peers: a peer whose process
# ended while starting must be started again, or the others wait for it until the deadline (seen in
# CI: c3 failed to boot, c1 and c2 waited for it, and `up` blamed c1). A node is started again twice
# at most. That failure is RabbitMQ's: Mnesia, merging the schema from a peer, writes to its default
# directory "/Mnesia.cN@localhost" instead of the configured one and the boot fails (eacces). It
# happened in 3 of 24 starts of all three here, to c1 or c3; setting Mnesia's directory on the VM's
# command line did not prevent it; the second start always worked.
await_nodes() {
  local deadline=$1 n pending
  shift
  pending=" $* "
  local -A relaunches=()
  while [ -n "${pending// /}" ]; do
    for n in $pending; do
      if ctl "$n" -q await_startup --timeout 2 >/dev/null 2>&1; then
        pending=${pending/ $n / }
      elif [ -z "$(server_pids "$n")" ]; then
        [ "${relaunches[$n]:-0}" -lt 2 ] \
          || die "c$n@localhost stopped while starting, ${relaunches[$n]} times; see $BASE/c$n/log/c$n@localhost.log"
        relaunches[$n]=$((${relaunches[$n]:-0} + 1))
        log "c$n@localhost stopped while starting (see $BASE/c$n/log/c$n@localhost.log); starting it again"
        launch "$n"
      fi
    done
    [ -n "${pending// /}" ] || break
    # shellcheck disable=SC2086 # one node per word
    [ $SECONDS -lt "$deadline" ] \
      || die "$(printf 'c%s@localhost ' $pending)did not start within ${UP_TIMEOUT}s; see their logs in $BASE/cN/log/ (a node started alone after a full stop waits for its peers: '$0 up' starts all three)"
    sleep 1
  done
}

# Makes node N's server run and start its app, without waiting for it: launches a node that does
# not run; a node whose process runs with its app stopped (rabbitmqctl stop_app) gets start_app in
# the background (its PID is added to STARTERS: wait for it). A node that runs is left alone.
STARTERS=()
kick_node() {
  local n=$1
  if [ -z "$(server_pids "$n")" ]; then
    launch "$n"
    return 0
  fi
  # A running node answers await_startup at once.
  ctl "$n" -q await_startup --timeout 1 >/dev/null 2>&1 && return 0
  if [ "$(boot_state "$n")" = stopped ]; then
    log "c$n@localhost runs with its app stopped: start_app"
    ctl "$n" -q start_app >/dev/null 2>&1 &
    STARTERS+=($!)
  fi
}
wait_starters() {
  local pid
  for pid in "${STARTERS[@]}"; do wait "$pid" || true; done
  STARTERS=()
}

# Joins each of the given nodes (2, 3) to c1@localhost unless c1 has it as a member. c1 must run.
ensure_joined() {
  local n members
  cluster_view 1 || die "c1@localhost does not answer cluster_status"
  members=$VIEW_MEMBERS
  for n in "$@"; do
    has_node "$members" "c$n@localhost" || join "$n"
  done
}
join() {
  local n=$1 out
  cluster_view "$n" || die "c$n@localhost does not answer cluster_status"
  if has_node "$VIEW_MEMBERS" c1@localhost; then
    die "c$n@localhost has c1@localhost as a member but not the other way round; '$0 reset' then '$0 up' makes a fresh cluster"
  fi
  log "joining c$n@localhost to c1@localhost"
  out=$(ctl "$n" -q stop_app 2>&1) || die "stop_app on c$n@localhost failed: $out"
  out=$(ctl "$n" -q join_cluster c1@localhost 2>&1) || die "join_cluster on c$n@localhost failed: $out"
  out=$(ctl "$n" -q start_app 2>&1) || die "start_app on c$n@localhost failed: $out"
}

# The stream coordinator (a Ra cluster over the three nodes, started when the first stream is
# declared) as node N sees it: sets COORD_HAS (running nodes where it runs) and COORD_LOST (running
# nodes where it neither runs nor is registered). A node killed with -9 within a second or so of
# that first declaration restarts without its member and never gets it back by itself: the
# coordinator then runs on two nodes only, and one more kill leaves streams without leader
# elections. Fails if node N does not answer.
COORD_HAS='' COORD_LOST=''
coordinator_view() {
  local out
  # shellcheck disable=SC2016 # Erlang, not shell
  out=$(ctl_within 30 "$1" -q eval '
    Running = rabbit_nodes:list_running(),
    Has = [N || N <- Running, is_pid(rpc:call(N, erlang, whereis, [rabbit_stream_coordinator]))],
    Lost = case Has of
             [] -> [];
             _ -> [N || N <- Running -- Has,
                        rpc:call(N, ra_directory, uid_of, [coordination, rabbit_stream_coordinator]) =:= undefined]
           end,
    Names = fun(Ns) -> lists:join(" ", [atom_to_list(N) || N <- lists:sort(Ns)]) end,
    io:format("has ~s~nlost ~s~n", [Names(Has), Names(Lost)]).' 2>/dev/null) || return 1
  COORD_HAS=$(printf '%s\n' "$out" | sed -n 's/^has //p')
  COORD_LOST=$(printf '%s\n' "$out" | sed -n 's/^lost //p')
}

# Gives a node that lost its stream coordinator member (see coordinator_view) a new one: removes the
# lost member from the coordinator, whose leader then adds the node back by itself (seen: ~35 s).
# Node N must run.
repair_coordinator() {
  local n=$1 deadline=$2 lost m via out
  coordinator_view "$n" || die "c$n@localhost does not answer"
  [ -n "$COORD_LOST" ] || return 0
  lost=$COORD_LOST
  via=${COORD_HAS%% *}
  via=${via#c}
  via=${via%@localhost}
  for m in $lost; do
    log "the stream coordinator has lost its member on $m (killed right after the first stream was declared): removing it so that RabbitMQ adds it again (up to ~40 s)"
    out=$(ctl_within 60 "$via" -q eval \
      "ra:remove_member({rabbit_stream_coordinator, node()}, {rabbit_stream_coordinator, '$m'})." 2>&1) \
      || die "could not remove $m from the stream coordinator: $out"
  done
  until coordinator_back "$n" "$lost"; do
    [ $SECONDS -lt "$deadline" ] || die "the stream coordinator did not get its member on $lost back"
    sleep 1
  done
  log "the stream coordinator runs on $COORD_HAS again"
}

# Whether the stream coordinator, as node N sees it, runs on each of the nodes LOST again.
coordinator_back() {
  local m
  coordinator_view "$1" || return 1
  [ -z "$COORD_LOST" ] || return 1
  for m in $2; do has_node "$COORD_HAS" "$m" || return 1; done
}

await_stream_port() {
  local n=$1 deadline=$2
  until stream_port_answers "$n"; do
    [ $SECONDS -lt "$deadline" ] \
      || die "the stream port $HOST:556$n of c$n@localhost does not answer; see $BASE/c$n/log/"
    sleep 0.5
  done
}

# Makes the root (with scripts/broker.sh) if it is not made yet, and mounts its proc.
ensure_root() {
  if ! root_ready; then
    log "no broker root at $ROOT yet: making it with scripts/broker.sh up (which also starts the single broker)"
    "$HERE/broker.sh" up 9>&- || die "scripts/broker.sh up failed"
    root_ready || die "scripts/broker.sh up made no root at $ROOT (it reuses a broker that already answers on its port instead); the cluster needs that root: stop that broker, or point BROKER_ROOT at a root scripts/broker.sh made"
  fi
  load_root
  proc_mounted || mount -t proc proc "$ROOT/proc"
}

up() {
  ensure_root
  prepare
  local n deadline=$((SECONDS + UP_TIMEOUT)) report
  if report=$(status 2>/dev/null); then
    log "already up"
    echo "$report" >&2
    return 0
  fi
  # All at once: after a full stop, a node started alone waits for its peers.
  for n in $NODES; do kick_node "$n"; done
  # shellcheck disable=SC2086 # one node per word
  await_nodes "$deadline" $NODES
  wait_starters
  ensure_joined 2 3
  for n in $NODES; do await_stream_port "$n" "$deadline"; done
  repair_coordinator 1 "$deadline"
  status >&2 || die "the cluster is not complete after 'up'"
}

start_node() {
  local n=$1 others=0 m
  ensure_root
  prepare
  local deadline=$((SECONDS + UP_TIMEOUT))
  for m in $NODES; do [ "$m" = "$n" ] || [ -z "$(server_pids "$m")" ] || others=$((others + 1)); done
  [ $others -gt 0 ] || log "warning: no other node runs; c$n@localhost may wait for its peers ('$0 up' starts all three)"
  kick_node "$n"
  await_nodes "$deadline" "$n"
  wait_starters
  if [ "$n" != 1 ] && [ -n "$(server_pids 1)" ]; then ensure_joined "$n"; fi
  await_stream_port "$n" "$deadline"
  repair_coordinator "$n" "$deadline"
  log "c$n@localhost is running; streams on $HOST:556$n"
}

kill_node() {
  local n=$1 pids
  [ -d "$ROOT" ] || die "no broker root at $ROOT"
  pids=$(server_pids "$n")
  if [ -z "$pids" ]; then
    log "c$n@localhost is not running; nothing to kill"
    return 0
  fi
  # shellcheck disable=SC2086 # one PID per word
  kill -9 $pids
  for _ in $(seq 100); do
    [ -n "$(server_pids "$n")" ] || break
    sleep 0.1
  done
  [ -z "$(server_pids "$n")" ] || die "c$n@localhost (PID $pids) survived kill -9"
  log "killed c$n@localhost (PID $pids)"
}

down() {
  local purge=$1 n pids
  if ! [ -d "$ROOT" ]; then
    log "no broker root at $ROOT; nothing to stop"
    return 0
  fi
  if [ -n "$(server_pids 1)$(server_pids 2)$(server_pids 3)" ]; then
    load_root
    for n in $NODES; do
      [ -n "$(server_pids "$n")" ] || continue
      log "stopping c$n@localhost"
      ctl_within 60 "$n" -q stop >/dev/null 2>&1 &
    done
    wait
    # What rabbitmqctl stop left (a node that did not answer).
    for _ in $(seq 50); do
      [ -n "$(server_pids 1)$(server_pids 2)$(server_pids 3)" ] || break
      sleep 0.2
    done
    for n in $NODES; do
      pids=$(server_pids "$n")
      [ -z "$pids" ] && continue
      log "c$n@localhost did not stop: kill -9 $pids"
      # shellcheck disable=SC2086 # one PID per word
      kill -9 $pids 2>/dev/null || true
    done
  fi
  if [ "$purge" = 1 ]; then
    log "deleting the cluster's data in $BASE"
    rm -rf --one-file-system "$BASE"
    log "stopped; the next '$0 up' makes a fresh cluster"
  else
    log "stopped; data kept in $BASE ('$0 reset' deletes it)"
  fi
}

# Prints the cluster's state on stdout; fails unless all three nodes run, are members of one
# cluster, and their stream ports answer.
status() {
  local n pids ok=1 viewer='' state port
  if ! root_ready; then
    echo "broker root: $ROOT (not made; '$0 up' makes it)"
    return 1
  fi
  load_root
  for n in $NODES; do
    if [ -n "$(server_pids "$n")" ] && cluster_view "$n"; then
      viewer=$n
      break
    fi
  done
  for n in $NODES; do
    pids=$(server_pids "$n")
    if [ -z "$pids" ]; then
      state="not running"
      ok=0
    elif has_node "$VIEW_RUNNING" "c$n@localhost"; then
      state="running (PID $pids)"
    else
      state="process runs (PID $pids), app not running"
      ok=0
    fi
    if [ -z "$viewer" ]; then
      state="$state, membership unknown"
      ok=0
    elif has_node "$VIEW_MEMBERS" "c$n@localhost"; then
      state="$state, cluster member"
    else
      state="$state, not a member"
      ok=0
    fi
    if stream_port_answers "$n"; then port=answering; else port="not answering" ok=0; fi
    echo "c$n@localhost: $state; streams $HOST:556$n $port"
  done
  if [ -n "$viewer" ]; then
    echo "cluster as c$viewer@localhost sees it: members ${VIEW_MEMBERS:-none}; running ${VIEW_RUNNING:-none}"
    if coordinator_view "$viewer"; then
      echo "stream coordinator: ${COORD_HAS:+runs on }${COORD_HAS:-not started yet (no stream declared so far)}"
      if [ -n "$COORD_LOST" ]; then
        echo "stream coordinator: its member on $COORD_LOST is lost ('$0 up' or 'start' repairs it)"
        ok=0
      fi
    fi
  else
    echo "cluster: no node answers"
  fi
  echo "data, config and logs: $BASE/c{1,2,3}"
  if [ $ok = 1 ]; then
    echo "cluster: all three nodes up"
  else
    echo "cluster: not complete"
    return 1
  fi
}

# Holds the lock for the rest of the script (up, down, reset, kill and start one at a time).
take_lock() {
  mkdir -p "$(dirname "$LOCK_FILE")"
  exec 9>"$LOCK_FILE"
  flock -w $((UP_TIMEOUT + 60)) 9 || die "another scripts/cluster.sh holds $LOCK_FILE"
}

usage() {
  echo "usage: $0 up | down [--purge] | reset | status | kill NODE | start NODE | ctl NODE ARGS... | streams NODE ARGS...   (NODE: 1, 2 or 3)" >&2
  exit 2
}

[ "$(id -u)" = 0 ] || die "run as root (the nodes run in a chroot)"
case "${1:-}" in
  up) take_lock; up ;;
  down)
    case "${2:-}" in
      "") take_lock; down 0 ;;
      --purge) take_lock; down 1 ;;
      *) usage ;;
    esac
    ;;
  reset) take_lock; down 1 ;;
  status) status ;;
  kill) [ $# = 2 ] || usage; N=$(parse_node "$2"); take_lock; kill_node "$N" ;;
  start) [ $# = 2 ] || usage; N=$(parse_node "$2"); take_lock; start_node "$N" ;;
  ctl | streams)
    [ $# -ge 2 ] || usage
    N=$(parse_node "$2")
    load_root
    "$1" "$N" "${@:3}"
    ;;
  *) usage ;;
esac
