"""The command lines: `mailstream --help` answers, and the scheduler refuses the retired --data-dir."""

from __future__ import annotations

import sys

import pytest

from mailstream import cli
from mailstream.scheduler.__main__ import main as scheduler_main


def test_mailstream_help_lists_the_services(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["mailstream", "--help"])
    assert cli.main() == 0
    out = capsys.readouterr().out
    for service in ("ingest", "scheduler", "delivery", "capture-sink"):
        assert service in out


def test_mailstream_without_a_service_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["mailstream"])
    assert cli.main() == 2
    assert capsys.readouterr().err.startswith("usage: mailstream")


def test_scheduler_refuses_data_dir(capsys: pytest.CaptureFixture[str]) -> None:
    """State lives in Kafka: the flag did nothing, so it is gone rather than silently accepted."""
    with pytest.raises(SystemExit) as exited:
        scheduler_main(["--data-dir", "/var/lib/mailstream"])
    assert exited.value.code == 2  # argparse: refused before the configuration or Kafka is touched
    assert "--data-dir" in capsys.readouterr().err


def test_mailstream_help_lists_the_operator_commands_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["mailstream", "--help"])
    assert cli.main() == 0
    out = capsys.readouterr().out
    for command in ("hash-api-key", "queues", "messages", "inspect", "stats", "servers", "suspend", "resume"):
        assert command in out
    for command in ("bounce", "cancel", "suppressions", "events"):
        assert command in out


def test_an_operator_command_without_a_reachable_api_exits_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAILSTREAM_URL", "http://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.setenv("MAILSTREAM_CLI_CONFIG", "/nonexistent/cli.toml")
    monkeypatch.setattr(sys, "argv", ["mailstream", "servers"])
    assert cli.main() == 6
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
