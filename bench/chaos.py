"""The chaos run, long form: the real stack under repeated SIGKILLs, and a table of what became of the mail.

    .venv/bin/python -m bench.chaos --messages 10000 --kills 20 --seed 7 [--cluster]

Starts a private broker (or with --cluster a 3-node cluster, replication 3, min.insync.replicas 2, one node
killed at a time), a recording SMTP sink and the stack (ingest, scheduler, delivery, gateway); submits the
messages over HTTP (batches with Idempotency-Key) and SMTP (the gateway's submission listener) while a
seeded thread kills each service and the broker in turn at random moments, restarting each after a short
random delay. Then it waits for every accepted message to end and counts (tests/infra/chaos/tally.py).
The same seed replays the same kill order and delays. Exits 1 if anything was lost or sent twice by the
pipeline. Run it under the shared lock (flock -o /tmp/mailstream-heavy.lock ...): it loads the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from tests.infra.chaos.run import SERVICES, ChaosRun, ChaosSettings, Outcome
from tests.infra.chaos.tally import table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--kills", type=int, default=20, help="kills in all, each service and the broker in turn")
    p.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    p.add_argument("--cluster", action="store_true", help="a 3-node cluster; one node killed at a time")
    p.add_argument("--settle", type=float, default=300.0, help="seconds for the accepted mail to end")
    p.add_argument("--only", nargs="+", default=(), help="kill only these: a service, broker or broker-<n>")
    p.add_argument("--keep", action="store_true", help="keep the run's folder (logs) even when all is well")
    return p.parse_args(argv)


def verdict(outcome: Outcome) -> list[str]:
    """Every finding, worded for the report; empty when nothing was lost or sent twice by the pipeline."""
    r = outcome.report
    found = [f"lost: {x}" for x in r.lost[:20]]
    found += [f"sent again after its answer: {x}" for x in r.pipeline_duplicates[:20]]
    found += [f"redelivered under a new attempt: {x}" for x in r.redelivered[:20]]
    found += [f"HTTP recipient created twice: {x}" for x in r.http_created_twice[:20]]
    if r.in_flight_duplicates > r.unanswered_at_kills:
        found.append(f"{r.in_flight_duplicates} in-flight duplicates, above the bound {r.unanswered_at_kills}")
    return found + outcome.exits + [f"unexpected answer: {x}" for x in outcome.unexpected[:20]]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's SIGTERM still stops what it started
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    settings = ChaosSettings(
        args.messages, args.kills, seed, cluster=args.cluster, settle=args.settle, only=tuple(args.only)
    )
    workdir = Path(tempfile.mkdtemp(prefix="mailstream-chaos-"))
    load = os.getloadavg()
    outcome = ChaosRun(settings, workdir).run()
    names = SERVICES + (["broker-1", "broker-2", "broker-3"] if args.cluster else ["broker"])
    print(
        f"\nseed {seed}, {'3-node cluster' if args.cluster else 'one broker'}, load average before "
        f"{load[0]:.1f}, after {os.getloadavg()[0]:.1f}\n"
    )
    print(table(outcome.report, names))
    findings = verdict(outcome)
    for line in findings:
        print(f"FINDING {line}")
    if findings or args.keep:
        print(f"\nlogs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
