"""The whole pipeline as real processes: ingest, scheduler and delivery against one broker.

Each service runs as `python -m mailstream.<service> --config FILE`, exactly as in
production; only the ports, data folders and consumer-group names are made unique.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.infra.broker import LocalBroker, unavailable_reason

ADMIN_KEY = "test-admin-key-0123456789"
ACME_KEY = "test-acme-key-0123456789"
GLOBEX_KEY = "test-globex-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_config(bootstrap: str, smarthost: tuple[str, int], workdir: Path, **overrides: Any) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    config: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap},
        "ingest": {
            "port": free_port(), "message_id_domain": "mailstream.test",
            "status_db": str(workdir / "status.sqlite3"),
            "api_keys": [{"key": ADMIN_KEY, "admin": True}, {"key": ACME_KEY, "tenant": "acme"},
                         {"key": GLOBEX_KEY, "tenant": "globex"}],
        },
        "scheduler": {"app_id": f"mailstream-scheduler-{run_id}", "web_port": free_port()},
        "delivery": {"group_id": f"mailstream-delivery-{run_id}", "smarthost": f"{smarthost[0]}:{smarthost[1]}",
                     "ehlo_domain": "mailstream.test",
                     "metrics_port": free_port(), "connect_timeout": "5s", "command_timeout": "20s"},
        "queues": {"retry_interval": "20 minutes", "max_age": "7 days"},
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    return config


@dataclass
class Stack:
    config: dict[str, Any]
    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.config['ingest']['port']}"

    @property
    def bootstrap(self) -> str:
        return str(self.config["kafka"]["bootstrap_servers"])

    def start(self) -> Stack:
        (self.workdir / "mailstream.yaml").write_text(yaml.safe_dump(self.config))
        for service in ("scheduler", "delivery", "ingest"):
            self.start_service(service, wait=False)
        self._wait_ready(90.0, list(self.procs))
        return self

    def start_service(self, service: str, *, wait: bool = True) -> None:
        env = {**os.environ, "MAILSTREAM_LOG_LEVEL": "INFO"}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the file says which broker
        log = (self.workdir / f"{service}.log").open("ab")
        self.procs[service] = subprocess.Popen(
            [sys.executable, "-m", f"mailstream.{service}", "--config", str(self.workdir / "mailstream.yaml")],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        if wait:
            self._wait_ready(90.0, [service])

    def kill(self, service: str) -> None:
        """SIGKILL: no shutdown hooks, no consumer-group leave, nothing flushed."""
        proc = self.procs[service]
        proc.kill()
        proc.wait()

    def _wait_ready(self, timeout: float, services: list[str]) -> None:
        probes = {
            "ingest": f"{self.api}/readyz",
            "delivery": f"http://127.0.0.1:{self.config['delivery']['metrics_port']}/healthz",
            "scheduler": f"http://127.0.0.1:{self.config['scheduler']['web_port']}/healthz",
        }
        deadline = time.monotonic() + timeout
        pending = {name: url for name, url in probes.items() if name in services}
        while pending and time.monotonic() < deadline:
            for name, url in list(pending.items()):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited early:\n{self.log_tail(name)}")
                try:
                    if httpx.get(url, timeout=1.0).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        if pending:
            raise RuntimeError(f"not ready after {timeout}s: {sorted(pending)}\n"
                               + "\n".join(self.log_tail(n) for n in pending))

    def log_tail(self, service: str, lines: int = 40) -> str:
        text = (self.workdir / f"{service}.log").read_text(errors="replace").splitlines()
        return f"--- {service} ---\n" + "\n".join(text[-lines:])

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def client(self, key: str = ADMIN_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers={"Authorization": f"Bearer {key}"}, timeout=30.0)

    def wait_status(self, tx_id: str, want: set[str], timeout: float = 60.0, key: str = ADMIN_KEY) -> dict[str, Any]:
        """Long-poll the transaction until its status is one of `want`."""
        deadline = time.monotonic() + timeout
        version = -1
        body: dict[str, Any] = {}
        with self.client(key) as client:
            while time.monotonic() < deadline:
                r = client.get(f"/api/transactions/{tx_id}", params={"wait": 5},
                               headers={"If-None-Match": f'"{version}"'})
                if r.status_code == 200:
                    body = r.json()
                    version = body["version"]
                    if body["status"] in want:
                        return body
                elif r.status_code == 404:
                    time.sleep(0.2)
        raise AssertionError(f"{tx_id} did not reach {want} in {timeout}s; last seen {body}\n"
                             + "\n".join(self.log_tail(s) for s in self.procs))


@contextmanager
def private_bootstrap(shared: str, workdir: Path) -> Iterator[str]:
    """A broker of the stack's own when one can be started, else the shared one.

    A new stack's consumer groups start from the beginning of the topics, so on a shared
    broker they would first replay every earlier stack's records.
    """
    if unavailable_reason() is not None:
        yield shared
        return
    with LocalBroker(workdir / "kafka") as broker:
        yield broker.bootstrap


@contextmanager
def running_stack(bootstrap: str, smarthost: tuple[str, int], workdir: Path, **overrides: Any) -> Iterator[Stack]:
    """A started stack on its own broker, stopped on exit; one that cannot start fails the test with its logs."""
    with private_bootstrap(bootstrap, workdir) as own:
        yield from _started(Stack(stack_config(own, smarthost, workdir, **overrides), workdir))


def _started(stack: Stack) -> Iterator[Stack]:
    try:
        stack.start()
    except RuntimeError as exc:
        stack.stop()
        import pytest
        pytest.fail(str(exc), pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()
