"""scripts/stack.sh stopped with SIGTERM (as Ctrl-C would) exits 0 and leaves nothing behind: no service, no
capture sink, no broker JVM, every port free; a service that does not stop is killed after the grace period.

The script runs with its state under a temporary MAILSTREAM_RUN and a copy of deploy/config/local.yaml on free
ports, its broker's too (never the KAFKA_PORT of the suite's broker, which scripts/test.sh exports)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.stack import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _config(tmp: Path, ports: dict[str, int]) -> Path:
    config: dict[str, Any] = yaml.safe_load((REPO / "deploy/config/local.yaml").read_text())
    sink = f"127.0.0.1:{ports['sink']}"
    config["ingest"].update(
        port=ports["ingest"], status_db=str(tmp / "status.sqlite3"), read_model_db=str(tmp / "messages.sqlite3")
    )
    config["scheduler"]["web_port"] = ports["scheduler"]
    config["delivery"].update(smarthost=sink, outbound={"allow": [sink]}, metrics_port=ports["delivery"])
    config["gateway"]["web_port"] = ports["gateway"]
    for listener in config["gateway"]["listeners"]:
        listener["port"] = ports[listener["mode"]]
        if "tls" in listener:
            listener["tls"].update(cert_file=str(tmp / "run/tls/cert.pem"), key_file=str(tmp / "run/tls/key.pem"))
    config["webhooks"]["web_port"] = ports["webhooks"]
    path = tmp / "stack.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _ours(tmp: Path) -> list[str]:
    """Command lines of the processes that name the test's directory: services, sink, broker."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(tmp) in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _group(pgid: int) -> list[str]:
    """What is left of a process group, but zombies (dead, waiting for their parent to read their status)."""
    left = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) == pgid and stat[0] != "Z":
                left.append(f"{proc.name} {stat[0]}: {(proc / 'cmdline').read_bytes()[:200]!r}")
        except (OSError, IndexError):
            continue
    return left


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _started(tmp: Path, grace: int) -> tuple[subprocess.Popen[bytes], dict[str, int], Path]:
    ports: dict[str, int] = {}
    for name in ("sink", "ingest", "scheduler", "delivery", "gateway", "submission", "ingress", "webhooks"):
        ports[name] = free_port(avoid=set(ports.values()))
    # Free ones always: scripts/test.sh exports KAFKA_PORT / KAFKA_CONTROLLER_PORT of the suite's own broker.
    ports["kafka"] = free_port(avoid=set(ports.values()))
    ports["controller"] = free_port(avoid=set(ports.values()))
    env = {
        **os.environ,
        "MAILSTREAM_RUN": str(tmp / "run"),
        "MAILSTREAM_SKIP_BOOTSTRAP": "1",
        "MAILSTREAM_STOP_GRACE": str(grace),
        "KAFKA_PORT": str(ports["kafka"]),
        "KAFKA_CONTROLLER_PORT": str(ports["controller"]),
        "KAFKA_HEAP": "512m",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    out = tmp / "stack.out"
    with out.open("wb") as sink:
        script = subprocess.Popen(
            ["bash", "scripts/stack.sh", str(_config(tmp, ports))],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own, as a shell gives a foreground job
        )
    deadline = time.monotonic() + 180
    while b"Press Ctrl-C to stop." not in out.read_bytes():
        assert script.poll() is None, f"stack.sh exited {script.returncode}:\n{out.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"stack.sh not ready:\n{out.read_text()[-3000:]}"
        time.sleep(0.5)
    return script, ports, out


def _stopped(script: subprocess.Popen[bytes], tmp: Path, ports: dict[str, int], out: Path, within: float) -> None:
    try:
        rc = script.wait(within)
    except subprocess.TimeoutExpired:
        os.killpg(script.pid, signal.SIGKILL)
        raise AssertionError(f"stack.sh still running {within}s after SIGTERM:\n{out.read_text()[-3000:]}") from None
    assert rc == 0, out.read_text()[-3000:]
    deadline = time.monotonic() + 5  # a process that was killed may still be tearing down
    while (_group(script.pid) or _ours(tmp)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group(script.pid) == [], "a process of stack.sh's group outlived it"
    assert _ours(tmp) == [], "a process of the stack outlived stack.sh"
    assert [name for name, port in ports.items() if not _free(port)] == []


def test_sigterm_stops_every_service_and_the_broker(tmp_path: Path) -> None:
    script, ports, out = _started(tmp_path, grace=10)
    assert len(_ours(tmp_path)) >= 7, "sink, five services and the broker"
    script.send_signal(signal.SIGTERM)
    _stopped(script, tmp_path, ports, out, within=60)
    assert "stopped" in out.read_text()  # broker.sh stop's word


def test_a_service_that_does_not_stop_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    script, ports, out = _started(tmp_path, grace=3)
    [ingest] = [int(line.split(":")[0]) for line in _ours(tmp_path) if "mailstream.ingest" in line]
    os.kill(ingest, signal.SIGSTOP)  # deaf to SIGTERM until killed
    script.send_signal(signal.SIGTERM)
    _stopped(script, tmp_path, ports, out, within=60)
    assert "still running 3s after SIGTERM: SIGKILL" in out.read_text()
