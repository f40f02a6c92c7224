#!/usr/bin/env bash
# Run the whole stack locally: Kafka broker, capture SMTP sink, ingest, scheduler, delivery, SMTP gateway, webhooks.
#
#   scripts/stack.sh [config.yaml]      (default: deploy/config/local.yaml)
#
# Nothing leaves this machine: the only smarthost is the capture sink (the config's `delivery.smarthost`,
# 127.0.0.1:2525), which writes every message it receives to $MAILSTREAM_RUN/mail/.
# Ctrl-C or SIGTERM stops everything, broker included, and exits 0 (a requested stop); it exits 1 when a
# service stopped by itself or the stack did not come up. A service still running MAILSTREAM_STOP_GRACE
# seconds (10) after its SIGTERM is killed, with any process it started.
# Env: MAILSTREAM_RUN (.run/stack: logs, mail, broker data), KAFKA_PORT / KAFKA_CONTROLLER_PORT (the broker's),
# MAILSTREAM_SKIP_BOOTSTRAP=1 (do not run scripts/bootstrap.sh first).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-deploy/config/local.yaml}

[[ ${MAILSTREAM_SKIP_BOOTSTRAP:-} == 1 ]] || bash scripts/bootstrap.sh
export MAILSTREAM_RUN=${MAILSTREAM_RUN:-$PWD/.run/stack}
grace=${MAILSTREAM_STOP_GRACE:-10}
mkdir -p "$MAILSTREAM_RUN"
pids=() # each service leads a process group of its own (setsid), so what it started stops with it

alive() { kill -0 -- "-$1" 2>/dev/null; }
stop_services() {
  local pid deadline=$((SECONDS + grace))
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
      echo "stack.sh: process group $pid still running ${grace}s after SIGTERM: SIGKILL" >&2
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
  wait "${pids[@]}" 2>/dev/null || true # reap; their exit codes are in the logs
}
# Runs once, however the script ends; errexit is off here, so a step that fails cannot skip the broker's stop.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  ((${#pids[@]})) && stop_services
  bash deploy/kafka/broker.sh stop
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' INT TERM # a requested stop; cleanup follows

py=.venv/bin/python
read -r port gateway_health submission ingress sink cert key < <($py -c "
from mailstream.config import load_config
c = load_config('$config')
ports = {x.mode: x.port for x in c.gateway.listeners}
tls = next((x.tls for x in c.gateway.listeners if x.tls.cert_file and x.tls.key_file), None)
print(c.ingest.port, c.gateway.web_port, ports.get('submission', 0), ports.get('ingress', 0),
      c.delivery.smarthost or '127.0.0.1:2525', tls.cert_file if tls else '-', tls.key_file if tls else '-')")
tls_ca=$(dirname "$cert")/ca.pem

bash deploy/kafka/broker.sh start
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${KAFKA_PORT:-19092}}

# The gateway's STARTTLS certificate where the config names it: a throwaway CA (ca.pem beside it) and a
# localhost certificate, made once.
if [[ $cert != - && ! -f $cert ]]; then
  mkdir -p "$(dirname "$cert")" "$(dirname "$key")"
  $py - "$cert" "$key" "$tls_ca" <<'PY'
import sys, trustme
ca = trustme.CA()
cert = ca.issue_cert("localhost", "127.0.0.1")
cert.private_key_and_cert_chain_pem.write_to_path(sys.argv[1])
cert.private_key_pem.write_to_path(sys.argv[2])
ca.cert_pem.write_to_path(sys.argv[3])
PY
fi
setsid $py -m mailstream.devtools.capture_sink --listen "$sink" --maildir "$MAILSTREAM_RUN/mail" \
  >"$MAILSTREAM_RUN/sink.log" 2>&1 </dev/null & pids+=($!)
for service in scheduler delivery ingest gateway webhooks; do
  setsid $py -m "mailstream.$service" --config "$config" >"$MAILSTREAM_RUN/$service.log" 2>&1 </dev/null & pids+=($!)
done

echo "stack.sh: waiting for the API on 127.0.0.1:$port ..." >&2
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "stack.sh: a service exited; logs in $MAILSTREAM_RUN" >&2; exit 1; }
  done
  sleep 0.5
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "stack.sh: API not ready" >&2; exit 1; }
for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$gateway_health/healthz" >/dev/null && break; sleep 0.5; done
curl -sf "http://127.0.0.1:$gateway_health/healthz" >/dev/null || { echo "stack.sh: gateway not ready" >&2; exit 1; }

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

Or hand it over SMTP: the submission listener on 127.0.0.1:$submission (STARTTLS, AUTH as acme-dev;
the test CA is $tls_ca) — with swaks (Debian package swaks):

  swaks --server 127.0.0.1:$submission --tls --tls-ca-path $tls_ca \\
    --auth PLAIN --auth-user acme-dev --auth-password dev-password-change-me \\
    --from news@acme.example --to ann@example.com --header 'Subject: Hello over SMTP'

or with Python's smtplib:

  python3 -c "import smtplib, ssl; s = smtplib.SMTP('127.0.0.1', $submission)
s.starttls(context=ssl.create_default_context(cafile='$tls_ca'))
s.login('acme-dev', 'dev-password-change-me')
print(s.sendmail('news@acme.example', ['ann@example.com'], 'Subject: Hello\\r\\n\\r\\nHi Ann.\\r\\n'))"

The DATA reply names the transaction ("250 2.0.0 delivered as <id>"). Other MTAs can send to
inbound.localhost through the ingress listener on 127.0.0.1:$ingress (no AUTH; any other domain: 550 5.7.1).

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "stack.sh: a service stopped; shutting down (logs in $MAILSTREAM_RUN)" >&2
exit 1
