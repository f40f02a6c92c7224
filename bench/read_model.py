"""The message read model at size: fill it through the projection, then time filtered, sorted pages.

    .venv/bin/python bench/read_model.py                    # 1,000,000 messages (the lead's run)
    .venv/bin/python bench/read_model.py --messages 20000   # a quick check that it works

The messages are synthetic (tests/infra/read_model_records.py: four tenants, six domains, 70 % delivered, 15 %
bounced, the rest waiting; tags and subjects), encoded as the topics carry them and applied by the projection's
own code in its batch size, so the fill rate printed is the projection's (decode, rows, SQLite). Each query kind
then runs `--repeat` times through the API's query path (filter to SQL, page, cursor) and prints p50/p95/p99;
the target is p95 <= 200 ms at 1,000,000 messages.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailstream.config.scheduling import QueueDefaults
from mailstream.ingest.read_model.projection import Projector
from mailstream.ingest.read_model.query import Cursor, QueueFilter
from mailstream.ingest.read_model.rows import QueueResolver
from mailstream.ingest.read_model.store import MessageStore
from tests.infra.read_model_records import T0, message, records

BATCH = 2000  # the projection's batch size


def fill(store: MessageStore, count: int) -> float:
    """Rows per second through the projector, generation excluded."""
    projector = Projector(store, QueueResolver(QueueDefaults()))
    rng = random.Random(1)
    spent, done, offsets = 0.0, 0, {"mail.accepted": 0, "mail.status": 0}
    while done < count:
        chunk = [message(i, rng) for i in range(done, min(count, done + BATCH // 3))]
        batch = []
        for topic, _, _, value in records(chunk):
            batch.append((topic, 0, offsets[topic], value))
            offsets[topic] += 1
        started = time.perf_counter()
        projector.apply(batch)
        spent += time.perf_counter() - started
        done += len(chunk)
        if done % 100_000 < len(chunk):
            print(f"  {done:>9,} messages, {done / spent:,.0f} messages/s", flush=True)
    started = time.perf_counter()
    store.optimize()
    spent += time.perf_counter() - started
    return count / spent


def page(store: MessageStore, f: QueueFilter, sort: str, order: str, depth: int = 0) -> Callable[[], int]:
    """One page's query; with `depth`, the page that many pages down (its cursor found first, untimed)."""
    cursor: Cursor | None = None
    for _ in range(depth):
        rows = store.page(f, sort, order, 50, cursor)
        if len(rows) <= 50:
            break
        cursor = Cursor(sort, order, rows[49][sort], rows[49]["seq"])

    def run() -> int:
        return len(store.page(f, sort, order, 50, cursor))

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30, help="runs of each query kind")
    parser.add_argument("--db", type=Path, help="SQLite file (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="read-model-bench-") as tmp:
        store = MessageStore(args.db or Path(tmp) / "messages.sqlite3", query_timeout=60)
        print(f"filling {args.messages:,} messages through the projection ...", flush=True)
        rate = fill(store, args.messages)
        end = T0 + timedelta(seconds=args.messages)
        day = timedelta(seconds=args.messages // 10)
        kinds: dict[str, Callable[[], int]] = {
            "tenant + status, by created desc": page(
                store, QueueFilter(tenant_id="acme", status=("bounced",)), "created_at", "desc"
            ),
            "tenant + 2 statuses, by size asc": page(
                store, QueueFilter(tenant_id="globex", status=("scheduled", "deferred")), "size_bytes", "asc"
            ),
            "domain + date range, by created asc": page(
                store,
                QueueFilter(domains=("gmail.test",), created_after=end - 2 * day, created_before=end - day),
                "created_at",
                "asc",
            ),
            "search recipient, by created desc": page(
                store, QueueFilter(search_query=f"user{args.messages // 2}@"), "created_at", "desc"
            ),
            "search subject, by created desc": page(store, QueueFilter(search_query="invoice"), "created_at", "desc"),
            "search + tenant, by priority desc": page(
                store, QueueFilter(search_query="password", tenant_id="initech"), "priority", "desc"
            ),
            "all, by size desc": page(store, QueueFilter(), "size_bytes", "desc"),
            "all, by priority asc": page(store, QueueFilter(), "priority", "asc"),
            "all, by recipient asc": page(store, QueueFilter(), "recipient", "asc"),
            "tags + status, by attempts desc": page(
                store, QueueFilter(tags=("vip",), status=("delivered",)), "num_attempts", "desc"
            ),
            "tenant, 200 pages deep (cursor)": page(
                store, QueueFilter(tenant_id="umbrella"), "created_at", "desc", depth=20
            ),
            "all by domain, 200 pages deep": page(store, QueueFilter(), "domain", "asc", depth=200),
            "min attempts + size range": page(
                store, QueueFilter(min_attempts=2, min_size_bytes=40_000), "scheduled_at", "asc"
            ),
        }
        print(f"\nprojection: {rate:,.0f} messages/s ({args.messages:,} messages, their accepted and status records)\n")
        print(f"{'query (50 a page)':<40} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
        worst = 0.0
        for name, run in kinds.items():
            times, rows = [], 0
            for _ in range(args.repeat):
                started = time.perf_counter()
                rows = run()
                times.append((time.perf_counter() - started) * 1000)
            cuts = statistics.quantiles(times, n=100, method="inclusive")
            worst = max(worst, cuts[94])
            print(f"{name:<40} {min(rows, 50):>5} {cuts[49]:>8.1f} {cuts[94]:>8.1f} {cuts[98]:>8.1f}")
        print(f"\nworst p95: {worst:.1f} ms (target <= 200 ms)")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
