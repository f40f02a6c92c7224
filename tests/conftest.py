"""Shared fixtures: a real Kafka broker and Postfix's smtp-sink.

Kafka backend, in order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` (scripts/test.sh, docker compose, a real cluster): must accept
   TCP connections, otherwise the run fails loudly — a typo must not turn into skips.
2. java + the jars from ``deploy/kafka/broker.sh fetch``: a private broker for this session.
3. nothing: skip locally, but fail under ``CI=true`` or ``MAILSTREAM_REQUIRE_BROKER=1`` so a
   CI run that skipped every integration test cannot pass.
The chosen backend is printed in the pytest header.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `python -m pytest` from the repo root puts it on sys.path; bare `pytest` does not.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.infra.broker import LocalBroker, tcp_reachable, unavailable_reason  # noqa: E402
from tests.infra.cluster import LocalCluster  # noqa: E402
from tests.infra.postfix import find_postfix_tool  # noqa: E402
from tests.infra.schema_registry import private_registry  # noqa: E402
from tests.infra.schema_registry import unavailable_reason as no_registry_reason  # noqa: E402


def _broker_required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("MAILSTREAM_REQUIRE_BROKER") == "1"


def _kafka_backend() -> tuple[str, str]:
    """("external" | "local" | "none", human-readable detail). Starts nothing."""
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if servers:
        return "external", servers
    reason = unavailable_reason()
    if reason is None:
        return "local", "private broker from Maven Central jars"
    return "none", reason


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too so they exist whatever pyproject.toml declares; skip duplicates.
    declared = {line.split(":")[0].strip() for line in config.getini("markers")}
    for line in (
        "integration: needs a real Kafka broker (kafka_bootstrap fixture)",
        "e2e: end-to-end scenario across several services",
        "slow: takes more than a few seconds",
    ):
        if line.split(":")[0] not in declared:
            config.addinivalue_line("markers", line)


def pytest_report_header(config: pytest.Config) -> list[str]:
    kind, detail = _kafka_backend()
    if kind == "external":
        state = "reachable" if tcp_reachable(detail) else "UNREACHABLE"
        kafka = f"KAFKA_BOOTSTRAP_SERVERS={detail} ({state})"
    elif kind == "local":
        kafka = detail
    else:
        kafka = f"NONE — {detail}; Kafka tests will {'FAIL' if _broker_required() else 'be skipped'}"
    sink = find_postfix_tool("smtp-sink")
    return [f"kafka backend: {kafka}", f"smtp-sink: {sink or 'not found'}"]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers ("host:port") of a running Kafka broker."""
    kind, detail = _kafka_backend()
    if kind == "external":
        if not tcp_reachable(detail):
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={detail} is set but not reachable", pytrace=False)
        yield detail
    elif kind == "local":
        broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
        try:
            broker.start()
        except RuntimeError as exc:
            pytest.fail(f"could not start a local Kafka broker: {exc}", pytrace=False)
        try:
            yield broker.bootstrap
        finally:
            broker.stop()
    elif _broker_required():
        pytest.fail(f"no Kafka broker available: {detail}", pytrace=False)
    else:
        pytest.skip(f"no Kafka broker available: {detail}")


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A private 3-node cluster (tests/infra/cluster.py), whatever KAFKA_BOOTSTRAP_SERVERS says: its tests
    kill and restart nodes. Skipped (failed in CI) without java and the jars, as `kafka_bootstrap`."""
    reason = unavailable_reason()
    if reason is not None:
        if _broker_required():
            pytest.fail(f"cannot start a Kafka cluster: {reason}", pytrace=False)
        pytest.skip(f"cannot start a Kafka cluster: {reason}")
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start a local Kafka cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real Confluent-compatible schema registry (Apicurio's /apis/ccompat/v7): SCHEMA_REGISTRY_URL
    (scripts/test.sh starts one), else a private one when deploy/schema-registry/registry.sh has built it; skipped
    otherwise, failed in CI like a missing broker."""
    url = os.environ.get("SCHEMA_REGISTRY_URL")
    if url:
        yield url
        return
    reason = no_registry_reason()
    if reason is not None:
        if _broker_required():
            pytest.fail(f"no schema registry: {reason}", pytrace=False)
        pytest.skip(f"no schema registry: {reason}")
    with private_registry(tmp_path_factory.mktemp("schema-registry")) as started:
        yield started


@pytest.fixture(scope="session")
def smtp_sink_bin() -> Path:
    """Path of Postfix's smtp-sink (run it with ``-u nobody`` when root)."""
    path = find_postfix_tool("smtp-sink")
    if path is None:
        msg = "Postfix smtp-sink not installed (run scripts/bootstrap.sh)"
        if _broker_required():  # same rule: CI must have every real part
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def chromium() -> tuple[Path, Path]:
    """(browser, driver): Debian's chromium and chromedriver, for the dashboard's browser test. Skipped without them
    locally; in CI (which bootstraps them) their absence fails, like a missing broker."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        msg = "chromium and chromium-driver not installed (run scripts/bootstrap.sh browser as root)"
        if _broker_required():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return Path(browser), Path(driver)
