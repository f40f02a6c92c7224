"""A private single-node Kafka broker (KRaft) run from the Maven Central jars.

Used by ``tests/conftest.py`` and by the bench scripts, so it must not import pytest.
The jars are fetched by ``deploy/kafka/broker.sh fetch`` (``scripts/bootstrap.sh`` runs it);
this module only runs them. It mirrors ``broker.sh start`` but with free ports and a
throwaway directory, so several test sessions can run side by side.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

KAFKA_VERSION = "3.9.2"  # keep in step with deploy/kafka/pom.xml and broker.sh
REPO_ROOT = Path(__file__).resolve().parents[2]
LOG4J_PROPERTIES = REPO_ROOT / "deploy" / "kafka" / "log4j.properties"
STARTED_MESSAGE = "Kafka Server started"

# Same flags as Kafka's kafka-server-start.sh / kafka-run-class.sh.
_JVM_FLAGS = [
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    # C1 only: on 2 cores a fresh broker's C2 compiler took ~40 % of its CPU for minutes (docs/performance.md).
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
]


def default_libs_dir() -> Path:
    """Where ``broker.sh fetch`` puts the jars."""
    cache = os.environ.get("MAILSTREAM_CACHE") or str(Path.home() / ".cache" / "mailstream")
    return Path(cache) / f"kafka-{KAFKA_VERSION}" / "libs"


def unavailable_reason(libs: Path | None = None) -> str | None:
    """Why a LocalBroker cannot run here, or None if it can."""
    libs = libs or default_libs_dir()
    if shutil.which("java") is None:
        return "java not found on PATH"
    if not libs.is_dir():
        return f"no Kafka jars in {libs} (run: deploy/kafka/broker.sh fetch)"
    return None


def free_ports(count: int) -> list[int]:
    """Distinct ports the kernel considers free right now (racy, but fine on loopback).

    All sockets stay bound until every port is picked, so the ports differ."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def tcp_reachable(bootstrap: str, timeout: float = 3.0) -> bool:
    """True if the first host:port of a bootstrap list accepts a TCP connection."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    A leading '-' would be parsed as an option by StorageTool, so avoid it."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        if not cid.startswith("-"):
            return cid


class LocalBroker:
    """Start/stop one Kafka broker+controller JVM on 127.0.0.1 with data in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        libs: Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "1g",
        start_timeout: float = 60.0,
        extra_properties: dict[str, str] | None = None,
        format_args: list[str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.libs = libs or default_libs_dir()
        picked = free_ports(2)
        self.port = port or picked[0]
        self.controller_port = controller_port or picked[1]
        self.heap = heap
        self.start_timeout = start_timeout
        self.extra_properties = extra_properties or {}
        self.format_args = format_args or []  # e.g. --add-scram: users that exist from the first start
        self.log_path = self.workdir / "broker.log"
        self.cluster_id = _cluster_id()  # one per broker, so start() after stop() finds its data formatted as it was
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> dict[str, str]:
        # Same settings as broker.sh (see docs there): loopback, one replica,
        # few internal partitions, no initial rebalance delay, a log cleaner.
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "8",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
        }
        props.update(self.extra_properties)
        return props

    def _java(self, main: str, *args: str, heap: list[str]) -> list[str]:
        return [
            "java",
            *heap,
            f"-Dlog4j.configuration=file:{LOG4J_PROPERTIES}",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}",
            "-cp",
            f"{self.libs}/*",  # java expands dir/* itself
            main,
            *args,
        ]

    def start(self, *, wait: bool = True) -> str:
        """Format storage, launch the broker and (unless `wait` is false: a cluster's nodes start together, as
        none is ready before a quorum is) wait for it; return the bootstrap address."""
        if self._proc is not None:
            return self.bootstrap
        reason = unavailable_reason(self.libs)
        if reason:
            raise RuntimeError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self._properties().items()))
        fmt_args = ["format", "-t", self.cluster_id, "-c", str(config), "--ignore-formatted", *self.format_args]
        fmt = subprocess.run(
            self._java("kafka.tools.StorageTool", *fmt_args, heap=["-Xmx256m"]),
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka StorageTool format failed:\n{fmt.stdout}{fmt.stderr}")
        heap = [f"-Xms{self.heap}", f"-Xmx{self.heap}"]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self._java("kafka.Kafka", str(config), heap=[*heap, *_JVM_FLAGS]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready()
        return self.bootstrap

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(self) -> None:
        """Until the broker logs that it started and accepts connections; RuntimeError if it exits or times out."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"Kafka broker exited during start-up:\n{self.log_tail()}")
            if STARTED_MESSAGE in self.log_path.read_text(errors="replace") and tcp_reachable(self.bootstrap):
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"Kafka broker not ready after {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown, nothing flushed beyond what the OS has."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after 30 s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
