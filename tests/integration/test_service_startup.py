"""Services refuse a bad configuration before contacting Kafka, and say which key is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("service", ["ingest", "scheduler", "delivery", "webhooks"])
def test_bad_configuration_is_refused_at_start(service: str, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    # An unroutable broker: if the service tried Kafka before validating, it would hang, not exit 2.
    config.write_text("kafka:\n  bootstrap_servers: 192.0.2.1:9\nqueues:\n  max_age: forever\n  colour: blue\n")
    done = subprocess.run(
        [sys.executable, "-m", f"mailstream.{service}", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    assert "queues.max_age" in done.stderr
    assert "queues.colour" in done.stderr


def test_unreachable_cluster_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text("kafka:\n  bootstrap_servers: 127.0.0.1:1\n")
    done = subprocess.run(
        [sys.executable, "-m", "mailstream.delivery", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in done.stderr
