"""The chaos run's Kafka: one broker, or a 3-node cluster whose nodes are killed one at a time."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from tests.infra.broker import LocalBroker


class Brokers(Protocol):
    @property
    def bootstrap(self) -> str: ...

    def names(self) -> list[str]: ...

    def kill(self, name: str) -> None: ...

    def restart(self, name: str) -> None: ...

    def stop(self) -> None: ...


class SingleBroker:
    """One broker+controller on fixed ports, so clients find it again after a restart on its data."""

    def __init__(self, workdir: Path) -> None:
        self._broker = LocalBroker(workdir, start_timeout=120.0)
        self._restarts = 0

    @property
    def bootstrap(self) -> str:
        return self._broker.bootstrap

    def start(self) -> SingleBroker:
        self._broker.start()
        return self

    def names(self) -> list[str]:
        return ["broker"]

    def kill(self, name: str) -> None:
        self._broker.kill()

    def restart(self, name: str) -> None:
        self._restarts += 1  # start() truncates its log: keep the killed one's for the post-mortem
        log = self._broker.log_path
        if log.exists():
            shutil.copy(log, log.with_name(f"broker.{self._restarts}.log"))
        self._broker.start()

    def stop(self) -> None:
        self._broker.stop()


class ClusterBrokers:
    """`tests.infra.cluster.LocalCluster` (replication 3, min.insync.replicas 2): a killed node is restarted and
    waited for until every partition is in sync again, so the next kill never takes a second replica away."""

    def __init__(self, workdir: Path) -> None:
        from tests.infra.cluster import LocalCluster

        self._cluster = LocalCluster(workdir, start_timeout=120.0)

    @property
    def bootstrap(self) -> str:
        return self._cluster.bootstrap

    def start(self) -> ClusterBrokers:
        self._cluster.start()
        return self

    def names(self) -> list[str]:
        return [f"broker-{n}" for n in self._cluster.nodes]

    def kill(self, name: str) -> None:
        self._cluster.kill(int(name.rpartition("-")[2]))

    def restart(self, name: str) -> None:
        self._cluster.restart(int(name.rpartition("-")[2]))
        self._cluster.wait_in_sync(timeout=180.0)

    def stop(self) -> None:
        self._cluster.stop()
