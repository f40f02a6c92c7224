#!/usr/bin/env bash
# A 3-node Kafka cluster on loopback (KRaft; each node broker+controller, a 3-voter quorum), for
# replication tests and chaos runs: each node is deploy/kafka/broker.sh with its own folder and ports,
# so the jars, JVM flags (C1 only) and pid/readiness handling are broker.sh's.
#
#   cluster.sh start             start every node (in parallel: a quorum needs two voters) and wait
#   cluster.sh stop              SIGTERM every node (controlled shutdown)
#   cluster.sh status            each node's state; exit 0 only if all three run
#   cluster.sh kill N            SIGKILL node N (1-3)
#   cluster.sh start-broker N    start node N again (after kill or stop-broker)
#   cluster.sh stop-broker N     SIGTERM node N
#   cluster.sh bootstrap         print the bootstrap list
#
# Env: KAFKA_CLUSTER_PORT (29092: node N listens on BASE+2(N-1), its controller on BASE+2(N-1)+1),
#      MAILSTREAM_RUN ($PWD/.run; data in $MAILSTREAM_RUN/cluster/node-N), KAFKA_HEAP (512m per node),
#      and broker.sh's others. Topics default to replication 3 and min.insync.replicas 2, the
#      production settings (docs/operations.md): a write acknowledged with acks=all is on two nodes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE=${KAFKA_CLUSTER_PORT:-29092}
RUN=${MAILSTREAM_RUN:-$PWD/.run}/cluster
NODES=(1 2 3)
unset KAFKA_BOOTSTRAP_SERVERS # broker.sh would only check an external cluster

say() { echo "cluster.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

port() { echo $((BASE + 2 * ($1 - 1))); }
voters() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("$n@127.0.0.1:$(($(port "$n") + 1))"); done
  (IFS=,; echo "${out[*]}")
}
bootstrap() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("127.0.0.1:$(port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# The cluster id is chosen once and kept, so a node formatted later joins the same cluster.
cluster_id() {
  mkdir -p "$RUN"
  if [[ ! -s $RUN/cluster.id ]]; then
    bash "$HERE/broker.sh" fetch >/dev/null 2>&1 || true
    local libs=${MAILSTREAM_CACHE:-$HOME/.cache/mailstream}/kafka-3.9.2/libs
    java -Xmx256m -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null >"$RUN/cluster.id"
  fi
  cat "$RUN/cluster.id"
}

node() {
  local n=$1 cmd=$2
  [[ $n =~ ^[123]$ ]] || die "node must be 1, 2 or 3, not '$n'"
  KAFKA_DIR=$RUN/node-$n KAFKA_NODE_ID=$n KAFKA_PORT=$(port "$n") KAFKA_CONTROLLER_PORT=$(($(port "$n") + 1)) \
    KAFKA_VOTERS=$(voters) KAFKA_CLUSTER_ID=$(cluster_id) KAFKA_REPLICATION=3 KAFKA_MIN_ISR=2 \
    KAFKA_HEAP=${KAFKA_HEAP:-512m} bash "$HERE/broker.sh" "$cmd" 2>&1 | sed "s/^/[node $n] /" >&2
  return "${PIPESTATUS[0]}"
}

cmd_start() {
  local n pids=() rc=0
  cluster_id >/dev/null # once, before the nodes race to pick one
  for n in "${NODES[@]}"; do node "$n" start & pids+=($!); done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  ((rc == 0)) || die "a node did not start (logs: $RUN/node-*/broker.log)"
  say "ready: KAFKA_BOOTSTRAP_SERVERS=$(bootstrap)"
}

cmd_stop() {
  local n pids=()
  for n in "${NODES[@]}"; do node "$n" stop & pids+=($!); done
  wait "${pids[@]}"
}

cmd_status() {
  local n rc=0
  for n in "${NODES[@]}"; do node "$n" status || rc=$?; done
  return "$rc"
}

case ${1:-} in
  start | stop | status) "cmd_$1" ;;
  kill) node "${2:-}" kill ;;
  start-broker) node "${2:-}" start ;;
  stop-broker) node "${2:-}" stop ;;
  bootstrap) bootstrap ;;
  *) echo "usage: $0 {start|stop|status|kill N|start-broker N|stop-broker N|bootstrap}" >&2; exit 2 ;;
esac
