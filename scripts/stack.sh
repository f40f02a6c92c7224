#!/usr/bin/env bash
# Run the whole stack locally: Kafka broker, capture SMTP sink, ingest, scheduler, delivery.
#
#   scripts/stack.sh [config.yaml]      (default: deploy/config/local.yaml)
#
# Nothing leaves this machine: the only smarthost is the capture sink on 127.0.0.1:2525,
# which writes every message it receives to .run/stack/mail/. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-deploy/config/local.yaml}

bash scripts/bootstrap.sh
export MAILSTREAM_RUN=$PWD/.run/stack
mkdir -p "$MAILSTREAM_RUN"
pids=()
cleanup() {
  trap - EXIT INT TERM
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null && wait "${pids[@]}" 2>/dev/null
  bash deploy/kafka/broker.sh stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash deploy/kafka/broker.sh start
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${KAFKA_PORT:-19092}}

py=.venv/bin/python
$py -m mailstream.devtools.capture_sink --listen 127.0.0.1:2525 --maildir "$MAILSTREAM_RUN/mail" \
  >"$MAILSTREAM_RUN/sink.log" 2>&1 & pids+=($!)
for service in scheduler delivery ingest; do
  $py -m "mailstream.$service" --config "$config" >"$MAILSTREAM_RUN/$service.log" 2>&1 & pids+=($!)
done

port=$($py -c "from mailstream.config import load_config; print(load_config('$config').ingest.port)")
echo "stack.sh: waiting for the API on 127.0.0.1:$port ..." >&2
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "stack.sh: a service exited; logs in $MAILSTREAM_RUN" >&2; exit 1; }
  done
  sleep 0.5
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "stack.sh: API not ready" >&2; exit 1; }

cat <<MSG

mailstream is running (logs in $MAILSTREAM_RUN/*.log, captured mail in $MAILSTREAM_RUN/mail/).
Submit a message:

  curl -s -H 'Authorization: Bearer dev-acme-key-change-me' -H 'Content-Type: application/json' \\
    http://127.0.0.1:$port/api/inject/v1 -d '{
      "envelope_sender": "bounces@acme.example",
      "recipients": [{"email": "ann@example.com", "name": "Ann"}],
      "metadata": {"campaign": "welcome"},
      "content": {"from": {"email": "news@acme.example", "name": "Acme"},
                  "subject": "Hello {{ name }}", "text_body": "Welcome, {{ name }}!"}}'

Then follow it with the id from "transactions":

  curl -s -H 'Authorization: Bearer dev-acme-key-change-me' http://127.0.0.1:$port/api/transactions/<id>

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "stack.sh: a service stopped; shutting down (logs in $MAILSTREAM_RUN)" >&2
