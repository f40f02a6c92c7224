#!/usr/bin/env bash
# Single-node Kafka (KRaft, broker+controller in one JVM) built from Maven Central jars,
# because the build machines have no Docker engine.
#
#   broker.sh fetch    download the broker jars into the cache (idempotent)
#   broker.sh start    write server.properties, format storage, start in background, wait until ready
#   broker.sh stop     SIGTERM, wait up to 30 s, then SIGKILL
#   broker.sh status   exit 0 if the broker runs and accepts connections
#   broker.sh wait     wait until a started broker is ready
#   broker.sh kill     SIGKILL (no controlled shutdown), for crash tests
#
# Env: KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093), MAILSTREAM_RUN ($PWD/.run),
#      MAILSTREAM_CACHE (~/.cache/mailstream), KAFKA_HEAP (1g), KAFKA_START_TIMEOUT (90),
#      KAFKA_JVM_OPTS (extra JVM flags, split on spaces). The broker runs C1-compiled only
#      (-XX:TieredStopAtLevel=1): on a 2-core machine a fresh broker's C2 compiler took ~40 % of
#      its CPU for minutes; see docs/performance.md.
# One node of a cluster (deploy/kafka/cluster.sh sets these): KAFKA_DIR ($MAILSTREAM_RUN/kafka),
#      KAFKA_NODE_ID (1), KAFKA_VOTERS (1@127.0.0.1:$KAFKA_CONTROLLER_PORT), KAFKA_CLUSTER_ID (random at
#      first format), KAFKA_REPLICATION (1: internal topics' and new topics' replicas) and KAFKA_MIN_ISR (1).
# If KAFKA_BOOTSTRAP_SERVERS is set, an external cluster is used: start/wait/status only
# check that it accepts TCP connections.
set -euo pipefail

KAFKA_VERSION=3.9.2 # keep in step with deploy/kafka/pom.xml
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${MAILSTREAM_CACHE:-$HOME/.cache/mailstream}
LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
RUN=${KAFKA_DIR:-${MAILSTREAM_RUN:-$PWD/.run}/kafka}
PORT=${KAFKA_PORT:-19092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
NODE_ID=${KAFKA_NODE_ID:-1}
VOTERS=${KAFKA_VOTERS:-$NODE_ID@127.0.0.1:$CONTROLLER_PORT}
REPLICATION=${KAFKA_REPLICATION:-1}
MIN_ISR=${KAFKA_MIN_ISR:-1}
HEAP=${KAFKA_HEAP:-1g}
TIMEOUT=${KAFKA_START_TIMEOUT:-90}
PIDFILE=$RUN/broker.pid
LOG=$RUN/broker.log
LOG_OPTS=(-Dlog4j.configuration="file:$HERE/log4j.properties" -Dkafka.logs.dir="$RUN/logs")

say() { echo "broker.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# True if something accepts TCP connections on host:port (bash's /dev/tcp, no nc needed).
tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# A live process (PID 1 here does not always reap zombies, so a zombie counts as dead).
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [[ $state != Z ]]
}

# Pid of our broker. The pid file may be stale and its pid reused by another process,
# so also require our command line.
broker_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $RUN/server.properties" || return 1
  echo "$pid"
}

cmd_fetch() {
  if [[ -d $LIBS ]]; then say "jars present in $LIBS"; return; fi
  command -v mvn >/dev/null || die "mvn not found (run scripts/bootstrap.sh)"
  say "downloading Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  # Copy into a temp dir and rename, so an interrupted download never looks complete.
  local tmp=$LIBS.tmp.$$
  rm -rf "$tmp"
  # Maven 3.8 prints stray ANSI resets even with -q -B; strip them.
  mvn -q -B -f "$HERE/pom.xml" package -Dkafka.libs.dir="$tmp" 2>&1 | sed $'s/\x1b\[[0-9;]*m//g' >&2 ||
    { rm -rf "$tmp"; die "mvn failed"; }
  mv "$tmp" "$LIBS"
  say "fetched $(ls "$LIBS" | wc -l) jars"
}

external_check() {
  local hostport=${KAFKA_BOOTSTRAP_SERVERS%%,*}
  tcp_open "${hostport%:*}" "${hostport##*:}" ||
    die "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS: cannot connect to $hostport"
  say "using external cluster KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS (reachable)"
}

write_properties() {
  # Settings from docs: loopback only, single replica unless one node of a cluster, few internal
  # partitions so the first consumer-group join is fast, and a log cleaner for compacted changelogs.
  cat >"$RUN/server.properties" <<EOF
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$VOTERS
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN/data
num.partitions=8
auto.create.topics.enable=true
default.replication.factor=$REPLICATION
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$REPLICATION
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$REPLICATION
transaction.state.log.min.isr=$MIN_ISR
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
EOF
}

cmd_start() {
  local pid p
  if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then external_check; return; fi
  if pid=$(broker_pid); then say "already running (pid $pid)"; wait_ready "$pid"; return; fi
  [[ -d $LIBS ]] || die "no broker jars in $LIBS (run: $0 fetch)"
  command -v java >/dev/null || die "java not found (run scripts/bootstrap.sh)"
  for p in "$PORT" "$CONTROLLER_PORT"; do
    ! tcp_open 127.0.0.1 "$p" || die "port $p is already in use (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
  done
  mkdir -p "$RUN/logs"
  write_properties
  if [[ ! -f $RUN/data/meta.properties ]]; then
    local cid=${KAFKA_CLUSTER_ID:-}
    [[ -n $cid ]] || cid=$(java -Xmx256m "${LOG_OPTS[@]}" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null)
    say "formatting storage in $RUN/data (cluster id $cid)"
    java -Xmx256m "${LOG_OPTS[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format \
      -t "$cid" -c "$RUN/server.properties" --ignore-formatted >>"$RUN/format.log" 2>&1 ||
      { tail -n 20 "$RUN/format.log" >&2; die "storage format failed"; }
  fi
  # A fresh log per start, so readiness is never read from a previous run's lines.
  [[ ! -f $LOG ]] || mv "$LOG" "$LOG.prev"
  say "starting Kafka $KAFKA_VERSION on 127.0.0.1:$PORT (controller $CONTROLLER_PORT), log $LOG"
  # JVM flags as in Kafka's kafka-server-start.sh / kafka-run-class.sh.
  nohup java -Xms"$HEAP" -Xmx"$HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 \
    -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true "${LOG_OPTS[@]}" ${KAFKA_JVM_OPTS:-} -cp "$LIBS/*" \
    kafka.Kafka "$RUN/server.properties" >"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDFILE"
  wait_ready "$pid"
}

# Wait for the "Kafka Server started" line and an open port; fail fast if the JVM dies.
wait_ready() {
  local pid=$1 start=$SECONDS
  while ((SECONDS - start < TIMEOUT)); do
    # Liveness only: right after the fork the cmdline is not yet java's (see broker_pid).
    alive "$pid" || { tail -n 40 "$LOG" >&2 2>/dev/null; die "broker process exited (log: $LOG)"; }
    if grep -q 'Kafka Server started' "$LOG" 2>/dev/null && tcp_open 127.0.0.1 "$PORT"; then
      say "ready: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$PORT (after $((SECONDS - start)) s)"
      return
    fi
    sleep 0.5
  done
  tail -n 40 "$LOG" >&2 2>/dev/null || true
  die "broker not ready after $TIMEOUT s (log: $LOG)"
}

cmd_wait() {
  if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then external_check; return; fi
  local pid
  pid=$(broker_pid) || die "broker not running (start it with: $0 start)"
  wait_ready "$pid"
}

cmd_stop() {
  local pid
  if ! pid=$(broker_pid); then say "not running"; rm -f "$PIDFILE"; return; fi
  say "stopping broker (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 60); do
    broker_pid >/dev/null || { rm -f "$PIDFILE"; say "stopped"; return; }
    sleep 0.5
  done
  say "no exit after 30 s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

cmd_kill() {
  local pid
  if ! pid=$(broker_pid); then say "not running"; rm -f "$PIDFILE"; return; fi
  say "SIGKILL broker (pid $pid)"
  kill -KILL "$pid"
  while alive "$pid"; do sleep 0.1; done
  rm -f "$PIDFILE"
}

cmd_status() {
  if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then external_check; return; fi
  local pid
  pid=$(broker_pid) || { say "stopped"; exit 3; }
  if tcp_open 127.0.0.1 "$PORT"; then
    say "running (pid $pid) on 127.0.0.1:$PORT"
  else
    say "process $pid alive but port $PORT not accepting connections (log: $LOG)"; exit 1
  fi
}

case ${1:-} in
  fetch | start | stop | status | wait | kill) "cmd_$1" ;;
  *) echo "usage: $0 {fetch|start|stop|status|wait|kill}" >&2; exit 2 ;;
esac
