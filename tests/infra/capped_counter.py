"""A capped counter on the TransactionalProcessor, run as a worker process by the exactly-once tests.

Inputs are keyed by scope, values are unique item ids. Each scope emits items to the output
topic only while its count is below the cap; the count is the changelogged state. Exact caps
and no duplicate after SIGKILL + rebalance are what the processor promises.

    python -m tests.infra.capped_counter --bootstrap HOST:PORT --group G --in T --out T --changelog T
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from datetime import UTC, datetime
from types import FrameType

from mailstream.events.processor import TransactionalProcessor, Writes
from mailstream.observability.logs import configure_logging, get_logger

log = get_logger(__name__)


class CappedCounter:
    """Per-scope count of emitted items, for the partitions this member owns."""

    def __init__(self, out_topic: str, cap: int, stall_after: int | None = None) -> None:
        self.out_topic = out_topic
        self.cap = cap
        self.counts: dict[int, dict[bytes, int]] = {}
        self.stall_after = stall_after
        self.emitted = 0

    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None:
        self.counts[partition] = {scope: int(v) for scope, v in state.items()}

    def revoked(self, partition: int) -> None:
        self.counts.pop(partition, None)

    def on_record(
        self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime, out: Writes
    ) -> None:
        if key is None:
            return
        counts = self.counts[partition]
        n = counts.get(key, 0)
        if n >= self.cap:
            return
        out.send(self.out_topic, key, value)
        out.put(partition, key, str(n + 1).encode())
        counts[key] = n + 1
        self.emitted += 1
        if self.emitted == self.stall_after:
            # Hang inside the open transaction, its records on their way to the broker, for a SIGKILL.
            log.warning("stalled_in_transaction", emitted=self.emitted)
            while True:
                time.sleep(1)

    def on_tick(self, now: datetime, out: Writes) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--in", dest="inputs", required=True, action="append")
    parser.add_argument("--out", required=True)
    parser.add_argument("--changelog", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--cap", type=int, default=150)
    parser.add_argument("--max-batch", type=int, default=500)
    parser.add_argument("--transaction-timeout-ms", type=int, default=10_000)
    parser.add_argument("--name", default="capped-counter")
    parser.add_argument(
        "--stall-after",
        type=int,
        default=None,
        help="hang inside the transaction after emitting this many items (to be killed)",
    )
    args = parser.parse_args(argv)

    configure_logging(args.name)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    TransactionalProcessor(
        bootstrap=args.bootstrap,
        group_id=args.group,
        inputs=args.inputs,
        changelog=args.changelog,
        partitions=args.partitions,
        handler=CappedCounter(args.out, args.cap, args.stall_after),
        clock=lambda: datetime.now(UTC),
        max_batch=args.max_batch,
        transaction_timeout_ms=args.transaction_timeout_ms,
        name=args.name,
    ).run(stop)


if __name__ == "__main__":
    main()
