"""HTTP inject → Kafka → scheduler → delivery → Postfix smtp-sink, against smtp-source → smtp-sink as the peer.

Run from the repo root:  .venv/bin/python -m bench.inject_to_sink --messages 2000 --concurrency 16 --size 2048

The raw-SMTP ceiling of the machine; `bench.vs_postfix` compares with Postfix as a real MTA instead.
Both measure mailstream with `bench.http_inject`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import http_inject
from bench.harness import Load, SmtpSink, Tools, add_load_options, run_smtp_source, smtp_sink
from tests.infra.broker import LocalBroker
from tests.infra.stack import Stack, stack_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_load_options(
        p,
        messages_help="recipients (= transactions) to send",
        concurrency_help="parallel HTTP requests and smtp-source sessions",
        timeout_help="seconds to wait for every delivery",
    )
    p.add_argument("--batch", type=int, default=1, help="recipients per inject request")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the figure block")
    return p.parse_args(argv)


def run_peer(tools: Tools, workdir: Path, load: Load) -> float:
    """smtp-source → its own smtp-sink, same count, size and parallelism: the raw-SMTP ceiling (msgs/s)."""
    with smtp_sink(tools, workdir / "peer-sink.out") as sink:
        started = time.time()
        run_smtp_source(tools, sink.port, load, timeout=120)
        sink.arrivals.wait_for(load.messages, time.time() + 10)
        return float(load.messages) / (time.time() - started)


def report(f: dict[str, Any]) -> str:
    sub, dl, kb = f["submit_latency_s"], f["delivered_latency_s"], f["kafka_bytes_per_msg"]
    return "\n".join(
        [
            f"messages      {f['messages']} x {f['size']} B (raw, {f['batch']} rcpt/request), "
            f"concurrency {f['concurrency']}, wall {f['wall_s']:.1f} s",
            f"outcome       delivered {f['delivered']}, failed {f['failed']}, missing {f['missing']}, "
            f"smtp-sink counted {f['sink_received']}",
            f"msgs/s        accepted {f['accepted_per_s']:.1f}  delivered {f['delivered_per_s']:.1f} (at the sink), "
            f"{f['confirmed_per_s']:.1f} (status read)  peer smtp-source {f['peer_msgs_per_s']:.0f}  "
            f"ratio delivered/peer {f['ratio_to_peer']:.4f}",
            f"submit lat    p50 {sub['p50'] * 1000:.0f} ms  p99 {sub['p99'] * 1000:.0f} ms  (per request)",
            f"submit→dlvd   p50 {dl['p50']:.2f} s  p99 {dl['p99']:.2f} s  max {dl['max']:.2f} s  (local read time)",
            "stage p50     " + ", ".join(f"{k} {v:.2f} s" for k, v in f["stage_p50_s"].items()),
            f"kafka bytes   {kb['mail']:.0f} B/msg in mail.* records = {kb['ratio_mail']:.2f} x size; "
            f"with the scheduler changelogs {kb['all']:.0f} B/msg = {kb['ratio_all']:.2f} x size "
            "(key+value; invariant ≤ 1.3)" + (" PARTIAL RUN" if kb["partial"] else ""),
            *(f"  {t:<56} {b:7.0f} B/msg" for t, b in kb["by_topic"].items()),
            "process       peak RSS   CPU % of wall (200 % = both cores)",
            *(f"  {k:<11} {v:6.0f} MB   {f['cpu_percent'].get(k, 0):5.0f} %" for k, v in f["peak_rss_mb"].items()),
            *(f"failure       {x}" for x in f["failures"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = Tools.find()
    if tools is None:
        print("Postfix smtp-sink/smtp-source not found: run scripts/bootstrap.sh to install them", file=sys.stderr)
        return 2
    load = Load(args.messages, args.concurrency, args.size, args.batch, args.timeout)
    with tempfile.TemporaryDirectory(prefix="mailstream-bench-") as tmp:
        workdir = Path(tmp)
        try:
            with contextlib.ExitStack() as cleanup:  # stops stack, sink and broker (in that order), always
                bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
                if not bootstrap:
                    broker = LocalBroker(workdir / "broker")
                    cleanup.callback(broker.stop)
                    bootstrap = broker.start()
                peer = run_peer(tools, workdir, load)
                sink = SmtpSink(tools, workdir / "sink.out")
                cleanup.callback(sink.stop)
                stack = Stack(stack_config(bootstrap, sink.address, workdir), workdir)
                cleanup.callback(stack.stop)
                stack.start()
                figures = http_inject.measure(stack, load, sink)
                if figures["missing"] or figures["failed"]:
                    print(
                        f"{figures['missing']} of {figures['submitted']} transactions still undelivered after "
                        f"--timeout {args.timeout:.0f} s, {figures['failed']} failed; service logs:\n"
                        + "\n".join(stack.log_tail(s, 15) for s in stack.procs),
                        file=sys.stderr,
                    )
        except (RuntimeError, httpx.HTTPError, subprocess.SubprocessError) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
    figures |= {"peer_msgs_per_s": peer, "ratio_to_peer": figures["delivered_per_s"] / peer}
    print(json.dumps(figures) if args.json else report(figures))
    return 0 if figures["missing"] == 0 and figures["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
