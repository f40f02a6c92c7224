#!/usr/bin/env bash
# A Confluent-compatible schema registry for tests and the local stack: Apicurio Registry with in-memory storage,
# built once from its Maven Central jars into a runnable Quarkus application (deploy/schema-registry/pom.xml),
# because the build machines have no Docker engine and the registry ships no runnable jar there.
#
#   registry.sh fetch    build the application into the cache (idempotent; a few minutes the first time)
#   registry.sh start    start it in the background on loopback, wait until its API answers
#   registry.sh stop     SIGTERM, wait up to 20 s, then SIGKILL
#   registry.sh status   exit 0 if it runs and answers
#
# Env: SCHEMA_REGISTRY_PORT (18081), MAILSTREAM_RUN ($PWD/.run), MAILSTREAM_CACHE (~/.cache/mailstream),
#      SCHEMA_REGISTRY_START_TIMEOUT (90). Prints the Confluent-compatible URL for kafka.schema_registry.url:
#      http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7 . Schemas live in memory: a restart forgets them.
set -euo pipefail

APICURIO_VERSION=2.4.2.Final # keep in step with pom.xml
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${MAILSTREAM_CACHE:-$HOME/.cache/mailstream}
APP=$CACHE/apicurio-registry-$APICURIO_VERSION
RUN=${MAILSTREAM_RUN:-$PWD/.run}/schema-registry
PORT=${SCHEMA_REGISTRY_PORT:-18081}
TIMEOUT=${SCHEMA_REGISTRY_START_TIMEOUT:-90}
PIDFILE=$RUN/registry.pid
LOG=$RUN/registry.log
API=/apis/ccompat/v7

say() { echo "registry.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [[ $state != Z ]]
}

registry_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-Dmailstream.run=$RUN" || return 1
  echo "$pid"
}

# The HTTP status of GET path on loopback (bash's /dev/tcp: no curl needed), or nothing.
http_status() {
  timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT && printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' '$1' >&3 &&
    head -n 1 <&3" 2>/dev/null | awk '{print $2}'
}

cmd_fetch() {
  if [[ -f $APP/registry-runner.jar ]]; then say "application present in $APP"; return; fi
  command -v mvn >/dev/null || die "mvn not found (run scripts/bootstrap.sh)"
  command -v javac >/dev/null || die "javac not found (run scripts/bootstrap.sh java)"
  say "building Apicurio Registry $APICURIO_VERSION from Maven Central jars into $APP (once)"
  local tmp=$APP.tmp.$$ jar props
  rm -rf "$tmp"
  mkdir -p "$tmp/src/main/resources"
  cp "$HERE/pom.xml" "$tmp/"
  cp -r "$HERE/src/main/java" "$tmp/src/main/"
  mvn -q -B -f "$tmp/pom.xml" dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION" \
    -DoutputDirectory="$tmp/app" 2>&1 | sed $'s/\x1b\[[0-9;]*m//g' >&2 || { rm -rf "$tmp"; die "mvn failed"; }
  jar=$tmp/app/apicurio-registry-app-$APICURIO_VERSION.jar
  props=$tmp/src/main/resources/application.properties
  # Quarkus reads the build-time settings (H2 in memory, legacy-jar) from the application's own resources, and
  # indexes only jars that carry a Jandex index, which the registry's does not: both are said here.
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("application.properties"))' \
    "$jar" >"$props" || { rm -rf "$tmp"; die "no application.properties in $jar"; }
  printf '%s\n' "quarkus.index-dependency.registry-app.group-id=io.apicurio" \
    "quarkus.index-dependency.registry-app.artifact-id=apicurio-registry-app" >>"$props"
  mvn -q -B -f "$tmp/pom.xml" package -DskipTests 2>&1 | sed $'s/\x1b\[[0-9;]*m//g' >&2 ||
    { rm -rf "$tmp"; die "mvn failed"; }
  mkdir "$APP.new.$$"
  mv "$tmp/target/schema-registry-1-runner.jar" "$APP.new.$$/registry-runner.jar"
  mv "$tmp/target/lib" "$APP.new.$$/lib" # the runner's manifest names lib/
  rm -rf "$tmp"
  mv "$APP.new.$$" "$APP" # whole or not at all: an interrupted build never looks complete
  say "built $APP"
}

cmd_start() {
  local pid
  if pid=$(registry_pid); then say "already running (pid $pid)"; wait_ready "$pid"; return; fi
  [[ -f $APP/registry-runner.jar ]] || die "no registry in $APP (run: $0 fetch)"
  command -v java >/dev/null || die "java not found (run scripts/bootstrap.sh)"
  [[ -z $(http_status /) ]] || die "port $PORT is already in use (set SCHEMA_REGISTRY_PORT)"
  mkdir -p "$RUN"
  [[ ! -f $LOG ]] || mv "$LOG" "$LOG.prev"
  say "starting Apicurio Registry $APICURIO_VERSION on 127.0.0.1:$PORT, log $LOG"
  # C1 only and a small heap, as the broker: on 2 cores C2 would take a core for minutes.
  HTTP_PORT=$PORT nohup java -Xms128m -Xmx384m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dquarkus.http.host=127.0.0.1 -Dmailstream.run="$RUN" -jar "$APP/registry-runner.jar" >"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDFILE"
  wait_ready "$pid"
}

wait_ready() {
  local pid=$1 start=$SECONDS
  while ((SECONDS - start < TIMEOUT)); do
    alive "$pid" || { tail -n 40 "$LOG" >&2 2>/dev/null; die "registry process exited (log: $LOG)"; }
    if [[ $(http_status "$API/subjects") == 200 ]]; then
      say "ready: kafka.schema_registry.url http://127.0.0.1:$PORT$API (after $((SECONDS - start)) s)"
      return
    fi
    sleep 0.5
  done
  tail -n 40 "$LOG" >&2 2>/dev/null || true
  die "registry not ready after $TIMEOUT s (log: $LOG)"
}

cmd_stop() {
  local pid
  if ! pid=$(registry_pid); then say "not running"; rm -f "$PIDFILE"; return; fi
  say "stopping registry (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 40); do
    registry_pid >/dev/null || { rm -f "$PIDFILE"; say "stopped"; return; }
    sleep 0.5
  done
  say "no exit after 20 s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

cmd_status() {
  local pid
  pid=$(registry_pid) || { say "stopped"; exit 3; }
  [[ $(http_status "$API/subjects") == 200 ]] || { say "process $pid alive but not answering (log: $LOG)"; exit 1; }
  say "running (pid $pid): http://127.0.0.1:$PORT$API"
}

case ${1:-} in
  fetch | start | stop | status) "cmd_$1" ;;
  *) echo "usage: $0 {fetch|start|stop|status}" >&2; exit 2 ;;
esac
