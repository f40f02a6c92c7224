#!/usr/bin/env bash
# THE test command: bootstrap, lint, type-check, then pytest against a real Kafka broker.
#
#   scripts/test.sh [pytest args]        (default: -q tests)
#
# Starts a throwaway broker on free ports (data in .run/test/<pid>/kafka, removed after the run) unless
# KAFKA_BOOTSTRAP_SERVERS points at an existing cluster, and a schema registry unless SCHEMA_REGISTRY_URL names
# one; stops them on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh

echo "test.sh: ruff check . && ruff format --check ." >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check . # one layout: `ruff format` writes it
echo "test.sh: mypy" >&2
.venv/bin/mypy         # the mailstream package (pyproject.toml)
.venv/bin/mypy tests bench examples
echo "test.sh: lint-imports" >&2
.venv/bin/lint-imports --no-cache --no-logo # the import contracts in pyproject.toml: a pure core, independent services
echo "test.sh: scripts/check_wheel.sh" >&2
bash scripts/check_wheel.sh # the wheel, installed in a new virtualenv, runs outside the checkout
echo "test.sh: scripts/check_deploy.sh" >&2
bash scripts/check_deploy.sh # every Kubernetes overlay rendered and validated offline, the compose files
echo "test.sh: scripts/check_image.sh" >&2
bash scripts/check_image.sh # deploy/Containerfile built with buildah, each service's command run in the image

# In CI a missing broker or smtp-sink must fail the run, not skip (see tests/conftest.py).
if [[ ${CI:-} == true ]]; then export MAILSTREAM_REQUIRE_BROKER=1; fi

STOP=() # run on exit, last started first
on_exit() { local i; for ((i = ${#STOP[@]} - 1; i >= 0; i--)); do eval "${STOP[i]}" || true; done; }
trap on_exit EXIT
trap 'exit 130' INT TERM # make the EXIT trap run on Ctrl-C / kill too

if [[ -z ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
  # One folder per run, so two runs on one machine never share (or wipe) each other's broker.
  export MAILSTREAM_RUN=$PWD/.run/test/$$
  rm -rf "$MAILSTREAM_RUN" # fresh cluster: no topics or groups left from a previous run
  # Free ports, so a developer's local stack on 19092/19093 can keep running.
  read -r KAFKA_PORT KAFKA_CONTROLLER_PORT < <(.venv/bin/python -c '
from tests.infra.broker import free_ports
print(*free_ports(2))')
  export KAFKA_PORT KAFKA_CONTROLLER_PORT
  STOP+=('bash deploy/kafka/broker.sh stop; rm -rf "$MAILSTREAM_RUN"')
  bash deploy/kafka/broker.sh start
  export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
else
  bash deploy/kafka/broker.sh start # only checks that the cluster is reachable
fi

# A Confluent-compatible schema registry (Apicurio, in memory) for the kafka.schema_registry tests, on a free port.
if [[ -z ${SCHEMA_REGISTRY_URL:-} ]]; then
  read -r SCHEMA_REGISTRY_PORT < <(.venv/bin/python -c '
from tests.infra.broker import free_ports
print(*free_ports(1))')
  export SCHEMA_REGISTRY_PORT
  STOP+=('bash deploy/schema-registry/registry.sh stop')
  bash deploy/schema-registry/registry.sh start
  export SCHEMA_REGISTRY_URL=http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7
fi

(($#)) || set -- -q tests
rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if ((rc == 5)); then
  echo "test.sh: WARNING: pytest collected no tests" >&2
  rc=0
fi
exit "$rc"
