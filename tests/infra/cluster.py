"""A private 3-node Kafka cluster (KRaft, each node broker+controller, a 3-voter quorum) on loopback.

For the replication tests and the chaos harness (bench/chaos.py, tests/chaos/): it must not import pytest.
The same jars, JVM flags and readiness check as `LocalBroker` (one per node, its own folder and free
ports), and the production replication defaults: topics created without a count get 3 replicas, and
`min.insync.replicas` is 2, so an `acks=all` write is acknowledged once two nodes have it and one node
may be down at any time without stopping or losing a write. `deploy/kafka/cluster.sh` starts the same
cluster from a shell.

The API (nodes are numbered 1-3, as node.id and in cluster.sh)::

    with LocalCluster(tmp / "cluster") as cluster:  # start(): all three, waits until they serve
        cluster.bootstrap                             # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
        cluster.kill(2)                               # SIGKILL node 2: no controlled shutdown
        cluster.restart(2)                            # start it again on its ports and data, wait until it serves
        cluster.wait_in_sync()                        # every partition's replicas all in sync again
    # stop(): SIGTERM every node

Kill one node at a time and call `wait_in_sync()` after its restart before killing the next: with two
nodes down, writes stop (NOT_ENOUGH_REPLICAS), by design. In a pytest session the `kafka_cluster`
fixture (tests/conftest.py) starts one for the tests that ask for it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.infra.broker import LocalBroker, _cluster_id, free_ports

NODES = (1, 2, 3)


class LocalCluster:
    """Three `LocalBroker` nodes sharing one cluster id and quorum, data under `workdir/node-N`."""

    def __init__(
        self,
        workdir: Path,
        *,
        heap: str = "512m",
        replication: int = 3,
        min_insync: int = 2,
        start_timeout: float = 90.0,
    ) -> None:
        self.workdir = Path(workdir)
        ports = free_ports(2 * len(NODES))
        voters = ",".join(f"{n}@127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(NODES))
        cluster_id = _cluster_id()
        self.nodes: dict[int, LocalBroker] = {}
        for i, n in enumerate(NODES):
            node = LocalBroker(
                self.workdir / f"node-{n}",
                port=ports[2 * i],
                controller_port=ports[2 * i + 1],
                heap=heap,
                start_timeout=start_timeout,
                extra_properties={
                    "node.id": str(n),
                    "controller.quorum.voters": voters,
                    "default.replication.factor": str(replication),
                    "min.insync.replicas": str(min_insync),
                    "offsets.topic.replication.factor": str(replication),
                    "transaction.state.log.replication.factor": str(replication),
                    "transaction.state.log.min.isr": str(min_insync),
                },
            )
            node.cluster_id = cluster_id
            self.nodes[n] = node

    @property
    def bootstrap(self) -> str:
        """Every node's listener: a client that finds one down asks the next."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    def start(self) -> str:
        """Start every node together (none is ready before a quorum of voters is up) and wait for all."""
        try:
            for node in self.nodes.values():
                node.start(wait=False)
            for node in self.nodes.values():
                node.wait_ready()
        except RuntimeError:
            self.stop()
            raise
        return self.bootstrap

    def kill(self, n: int) -> None:
        """SIGKILL node `n`."""
        self.nodes[n].kill()

    def restart(self, n: int) -> None:
        """Start node `n` again (after `kill` or `stop_node`) on its own ports and data; wait until it serves.
        It is then still catching up: `wait_in_sync` says when it holds every partition again."""
        node = self.nodes[n]
        node.stop()  # if it still runs
        node.start()

    def stop_node(self, n: int) -> None:
        """SIGTERM node `n`: a controlled shutdown that moves its leaderships first."""
        self.nodes[n].stop()

    def running(self) -> list[int]:
        return [n for n, node in self.nodes.items() if node.running]

    def wait_in_sync(self, timeout: float = 90.0) -> None:
        """Until every partition of every topic (internal ones too) has a leader and all its replicas in sync."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout
        lagging: list[str] = ["(no metadata yet)"]
        while time.monotonic() < deadline:
            try:
                topics = admin.list_topics(timeout=10).topics
            except KafkaException:  # while a node restarts: ask again
                time.sleep(0.5)
                continue
            lagging = [
                f"{name}[{p.id}] isr={p.isrs} replicas={p.replicas}"
                for name, topic in topics.items()
                for p in topic.partitions.values()
                if p.leader < 0 or sorted(p.isrs) != sorted(p.replicas)
            ]
            if not lagging:
                return
            time.sleep(0.5)
        raise RuntimeError(f"partitions not in sync after {timeout:.0f} s: {lagging[:10]}")

    def stop(self) -> None:
        """SIGTERM every node at once: stopped one after another, the last would wait for a lost quorum."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(LocalBroker.stop, self.nodes.values()))

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
