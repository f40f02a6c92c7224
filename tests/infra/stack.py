"""The whole pipeline as real processes: ingest, scheduler and delivery against one broker.

Each service runs as `python -m mailstream.<service> --config FILE`, exactly as in
production; only the ports, data folders and consumer-group names are made unique. A stack
can run several processes of each service (`Stack.replicas`) and set the topics' partition
count (`Stack.partitions`), for the scale-out benchmark.
"""

from __future__ import annotations

import copy
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


def free_port(avoid: set[int] | None = None) -> int:
    """A port the kernel considers free now, and not one of `avoid` (ports already handed out but not yet bound)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in (avoid or set()):
            return port


def stack_config(bootstrap: str, smarthost: tuple[str, int], workdir: Path, **overrides: Any) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    config: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap},
        "ingest": {
            "port": free_port(),
            "message_id_domain": "mailstream.test",
            "status_db": str(workdir / "status.sqlite3"),
            "read_model_db": str(workdir / "messages.sqlite3"),
            "api_keys": [
                {"key": ADMIN_KEY, "admin": True},
                {"key": ACME_KEY, "tenant": "acme"},
                {"key": GLOBEX_KEY, "tenant": "globex"},
            ],
        },
        "scheduler": {"app_id": f"mailstream-scheduler-{run_id}", "web_port": free_port()},
        "delivery": {
            "group_id": f"mailstream-delivery-{run_id}",
            "smarthost": f"{smarthost[0]}:{smarthost[1]}",
            "outbound": {"allow": [f"{smarthost[0]}:{smarthost[1]}"]},  # the default denies loopback
            "ehlo_domain": "mailstream.test",
            "metrics_port": free_port(),
            "connect_timeout": "5s",
            "command_timeout": "20s",
        },
        "queues": {"retry_interval": "20 minutes", "max_age": "7 days"},
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    return config


SERVICES = ("scheduler", "delivery", "ingest", "gateway", "webhooks")  # start order; the last two when configured


def service_of(instance: str) -> str:
    """ "ingest-2" -> "ingest": an instance is named after its service, replicas after the first get "-<n>"."""
    return instance.partition("-")[0]


@dataclass
class Stack:
    """The services as processes. `replicas` runs N processes of a service (default one each): the first is
    named after the service and uses `config` as it is; replica n ≥ 2 is "<service>-<n>" with ports of its
    own (and, for ingest, its own status database) but the same consumer groups, so Kafka spreads the
    partitions among them. `partitions` sets MAILSTREAM_PARTITIONS, the topics' partition count, for every
    service (None: inherit the environment's, default 8)."""

    config: dict[str, Any]
    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    partitions: int | None = None
    _configs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def api(self) -> str:
        return self.api_of("ingest")

    @property
    def apis(self) -> list[str]:
        """Every ingest replica's base URL: a client spreads its requests across them."""
        return [self.api_of(name) for name in self.instances("ingest")]

    @property
    def bootstrap(self) -> str:
        return str(self.config["kafka"]["bootstrap_servers"])

    def api_of(self, instance: str) -> str:
        return f"http://127.0.0.1:{self.instance_config(instance)['ingest']['port']}"

    def instances(self, service: str | None = None) -> list[str]:
        """Instance names of one service, or of all in start order."""
        services = [service] if service else [s for s in SERVICES if self.configured(s)]
        return [s if n == 1 else f"{s}-{n}" for s in services for n in range(1, self.replicas.get(s, 1) + 1)]

    @property
    def has_gateway(self) -> bool:
        return bool(self.config.get("gateway", {}).get("listeners"))

    def configured(self, service: str) -> bool:
        """The gateway runs with listeners, webhooks with a section of its own (its endpoints may come by API)."""
        return {"gateway": self.has_gateway, "webhooks": "webhooks" in self.config}.get(service, True)

    def instance_config(self, instance: str) -> dict[str, Any]:
        """The configuration one instance runs with: `config` for the first of a service; a replica's own
        ports are picked once and kept, so a restarted replica comes back where it was."""
        service = service_of(instance)
        if instance == service:
            return self.config
        if instance not in self._configs:
            config = copy.deepcopy(self.config)
            # gateway replicas share the SMTP ports (SO_REUSEPORT)
            port_key = {
                "ingest": "port",
                "scheduler": "web_port",
                "delivery": "metrics_port",
                "gateway": "web_port",
                "webhooks": "web_port",
            }[service]
            config[service][port_key] = free_port(avoid=self._ports())
            if service == "ingest":
                n = instance.rpartition("-")[2]
                config["ingest"]["status_db"] = str(self.workdir / f"status-{n}.sqlite3")
                config["ingest"]["read_model_db"] = str(self.workdir / f"messages-{n}.sqlite3")
            self._configs[instance] = config
        return self._configs[instance]

    def _ports(self) -> set[int]:
        keys = (
            ("ingest", "port"),
            ("scheduler", "web_port"),
            ("delivery", "metrics_port"),
            ("gateway", "web_port"),
            ("webhooks", "web_port"),
        )
        return {int(c[s][k]) for c in (self.config, *self._configs.values()) for s, k in keys if k in c.get(s, {})}

    def _config_file(self, instance: str) -> Path:
        name = "mailstream.yaml" if instance == service_of(instance) else f"mailstream-{instance}.yaml"
        path = self.workdir / name
        path.write_text(yaml.safe_dump(self.instance_config(instance)))
        return path

    def start(self) -> Stack:
        for instance in self.instances():
            self.start_service(instance, wait=False)
        self._wait_ready(90.0, list(self.procs))
        return self

    def start_service(self, service: str, *, wait: bool = True) -> None:
        """Start (or restart) one instance: a service name, or a replica's name such as "ingest-2"."""
        env = {**os.environ, "MAILSTREAM_LOG_LEVEL": "INFO"}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the file says which broker
        if self.partitions is not None:
            env["MAILSTREAM_PARTITIONS"] = str(self.partitions)
        with (self.workdir / f"{service}.log").open("ab") as log:  # the child keeps its own descriptor
            self.procs[service] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    f"mailstream.{service_of(service)}",
                    "--config",
                    str(self._config_file(service)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
            )
        if wait:
            self._wait_ready(90.0, [service])

    def kill(self, service: str) -> None:
        """SIGKILL: no shutdown hooks, no consumer-group leave, nothing flushed."""
        proc = self.procs[service]
        proc.kill()
        proc.wait()

    def _probe(self, instance: str) -> str:
        config, service = self.instance_config(instance), service_of(instance)
        if service == "ingest":
            return f"{self.api_of(instance)}/readyz"
        if service == "delivery":
            return f"http://127.0.0.1:{config['delivery']['metrics_port']}/healthz"
        if service in ("gateway", "webhooks"):
            return f"http://127.0.0.1:{config[service]['web_port']}/healthz"
        return f"http://127.0.0.1:{config['scheduler']['web_port']}/healthz"

    def _wait_ready(self, timeout: float, services: list[str]) -> None:
        deadline = time.monotonic() + timeout
        pending = {name: self._probe(name) for name in services}
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
            raise RuntimeError(
                f"not ready after {timeout}s: {sorted(pending)}\n" + "\n".join(self.log_tail(n) for n in pending)
            )

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

    def inject(self, key: str, recipients: list[str], **metadata: str) -> dict[str, Any]:
        """One plain message from sender@acme.test to `recipients` through POST /api/inject/v1; its 200 answer."""
        with self.client(key) as client:
            r = client.post(
                "/api/inject/v1",
                json={
                    "envelope_sender": "sender@acme.test",
                    "recipients": [{"email": rcpt} for rcpt in recipients],
                    "metadata": metadata,
                    "content": {"subject": "s", "text_body": "t"},
                },
            )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_status(self, tx_id: str, want: set[str], timeout: float = 60.0, key: str = ADMIN_KEY) -> dict[str, Any]:
        """Long-poll the transaction until its status is one of `want`."""
        deadline = time.monotonic() + timeout
        version = -1
        body: dict[str, Any] = {}
        with self.client(key) as client:
            while time.monotonic() < deadline:
                r = client.get(
                    f"/api/transactions/{tx_id}", params={"wait": 5}, headers={"If-None-Match": f'"{version}"'}
                )
                if r.status_code == 200:
                    body = r.json()
                    version = body["version"]
                    if body["status"] in want:
                        return body
                elif r.status_code == 404:
                    time.sleep(0.2)
        raise AssertionError(
            f"{tx_id} did not reach {want} in {timeout}s; last seen {body}\n"
            + "\n".join(self.log_tail(s) for s in self.procs)
        )


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


def transaction_ids(answer: dict[str, Any]) -> list[str]:
    """The ids of an inject answer's transactions, in the order of its recipients."""
    return [str(t["id"]) for t in answer["transactions"]]
