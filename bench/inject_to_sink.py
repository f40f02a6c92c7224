"""HTTP inject → Kafka → scheduler → delivery → Postfix smtp-sink, against smtp-source as the peer.

Run from the repo root:  .venv/bin/python -m bench.inject_to_sink --messages 2000 --concurrency 16 --size 2048
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from confluent_kafka import Consumer, TopicPartition

from mailstream.events.records import TransactionStatus
from mailstream.events.serde import decode
from mailstream.events.topics import STATUS
from tests.infra.broker import LocalBroker, tcp_reachable
from tests.infra.postfix import find_postfix_tool
from tests.infra.stack import ADMIN_KEY, Stack, free_port, stack_config
from tests.infra.topics import bytes_written, topic_offsets

FAILED = {"bounced", "deferred", "expired", "cancelled"}  # deferred counts: its retry is 20 minutes away


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=2000, help="recipients (= transactions) to send")
    p.add_argument("--concurrency", type=int, default=16, help="parallel HTTP requests and smtp-source sessions")
    p.add_argument("--size", type=int, default=2048, help="message size in bytes (headers included)")
    p.add_argument("--batch", type=int, default=1, help="recipients per inject request")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every delivery")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the figure block")
    return p.parse_args(argv)


@contextlib.contextmanager
def smtp_sink(tool: Path, port: int, out: Path) -> Iterator[None]:
    """Postfix smtp-sink on 127.0.0.1:`port` with counters (-c) to `out` and a large backlog; no -M limit."""
    user = ["-u", "nobody"] if os.geteuid() == 0 else []  # as root smtp-sink refuses to run without -u
    with out.open("wb") as log:
        proc = subprocess.Popen([str(tool), *user, "-c", f"127.0.0.1:{port}", "4096"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 5
        while not tcp_reachable(f"127.0.0.1:{port}", timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink did not start: {out.read_text(errors='replace')}")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_peer(source: Path, sink_tool: Path, workdir: Path, args: argparse.Namespace) -> float:
    """smtp-source → its own smtp-sink, same count, size and parallelism: the raw-SMTP ceiling (msgs/s)."""
    port = free_port()
    with smtp_sink(sink_tool, port, workdir / "peer-sink.out"):
        started = time.monotonic()
        subprocess.run([str(source), "-s", str(args.concurrency), "-m", str(args.messages), "-l", str(args.size),
                        "-f", "peer@bench.test", "-t", "rcpt@example.com", "-M", "peer.bench.test",
                        f"127.0.0.1:{port}"], check=True, timeout=120, capture_output=True)
        return float(args.messages) / (time.monotonic() - started)


def inject_body(first: int, batch: int, size: int) -> dict[str, Any]:
    """One request with raw content of exactly `size` bytes, unique per request (bodies are not shared)."""
    head = (f"From: bench@mailstream.test\r\nTo: list@example.com\r\nSubject: bench {first}\r\nMessage-ID: "
            f"<bench-{first}-{time.time_ns()}@mailstream.test>\r\nDate: Sun, 22 Nov 2026 08:00:00 +0000\r\n\r\n")
    pad = max(size - len(head), 0)
    return {"envelope_sender": "bench@mailstream.test", "template_dialect": "Static",
            "recipients": [{"email": f"r{first + i}@example.com"} for i in range(batch)],
            "content": head + ("x" * 78 + "\r\n") * (pad // 80) + "y" * (pad % 80)}


def kafka_consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}",
                     "enable.auto.commit": False, "log_level": 3})


@dataclass
class Run:
    """What one measured run collects; filled by the coroutines below, all on one event loop."""

    submitted: dict[str, float] = field(default_factory=dict)  # tx id → local time its 200 came back
    submit_latency: list[float] = field(default_factory=list)  # per request
    done: dict[str, tuple[TransactionStatus, float]] = field(default_factory=dict)  # tx id → (record, read at)
    peak_rss: dict[str, int] = field(default_factory=dict)  # process label → bytes
    cpu: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # pid → (label, first, last CPU s)
    start: float = 0.0
    end: float = 0.0
    submitting: bool = True


async def submit_all(api: str, args: argparse.Namespace, run: Run) -> None:
    firsts = iter(range(0, args.messages, args.batch))
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60.0,
                                 limits=httpx.Limits(max_connections=args.concurrency)) as client:
        async def worker() -> None:
            for first in firsts:
                body = inject_body(first, min(args.batch, args.messages - first), args.size)
                sent = time.time()
                r = await client.post("/api/inject/v1", json=body)
                run.submit_latency.append(time.time() - sent)
                r.raise_for_status()
                run.submitted.update((tx["id"], sent + run.submit_latency[-1]) for tx in r.json()["transactions"])

        run.start = time.time()
        try:
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        finally:
            run.end, run.submitting = time.time(), False


async def watch_status(consumer: Consumer, run: Run, timeout: float) -> None:
    """Reads mail.status until every submitted transaction is delivered or failed, or `timeout` after submit;
    samples the processes once per read (every 0.2 s at most)."""
    loop, me = asyncio.get_running_loop(), psutil.Process()
    while run.submitting or (not run.submitted.keys() <= run.done.keys() and time.time() < run.end + timeout):
        sample_processes(run, me)
        for msg in await loop.run_in_executor(None, consumer.consume, 500, 0.2):
            if msg.error() is None and msg.value() is not None:
                status = decode(msg.value(), TransactionStatus)
                if status.status == "delivered" or (status.status in FAILED and status.id not in run.done):
                    run.done[status.id] = (status, time.time())


def sample_processes(run: Run, me: psutil.Process) -> None:
    """Peak RSS and CPU seconds so far of this process and its children (services, broker, sink)."""
    for proc in [me, *me.children(recursive=True)]:
        try:
            cmd, cpu = proc.cmdline(), sum(proc.cpu_times()[:2])
            service = next((s for s in ("ingest", "scheduler", "delivery") if f"mailstream.{s}" in cmd), None)
            name = "bench" if proc is me else service or ("broker" if "kafka.Kafka" in cmd else Path(cmd[0]).name)
            run.peak_rss[name] = max(run.peak_rss.get(name, 0), proc.memory_info().rss)
            run.cpu[proc.pid] = (name, run.cpu.get(proc.pid, (name, cpu))[1], cpu)
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
            continue


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def stages(delivered: list[tuple[TransactionStatus, float]]) -> dict[str, float]:
    """Median seconds per stage, from the timestamps the services wrote into the delivered status."""
    rows = [(s.attempts[-1], s, seen) for s, seen in delivered]
    parts = {  # delivery stamps started_at before it fetches the body, so "attempt" = body read + SMTP
        "accepted→attempt": [(a.started_at - s.created_at).total_seconds() for a, s, _ in rows],
        "attempt (body read + SMTP)": [(a.completed_at - a.started_at).total_seconds() for a, _, _ in rows],
        "attempt→status": [(s.updated_at - a.completed_at).total_seconds() for a, s, _ in rows],
        "status→bench read": [seen - s.updated_at.timestamp() for _, s, seen in rows]}
    return {name: pct(values, 0.5) for name, values in parts.items()}


def measure(stack: Stack, bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    prefixes = ("mail.", stack.config["scheduler"]["app_id"])
    before = topic_offsets(bootstrap, prefixes)
    consumer, run = kafka_consumer(bootstrap), Run()  # mail.status is assigned at its end offsets before any submit
    consumer.assign([TopicPartition(t, p, high) for (t, p), high in before.items() if t == STATUS.name])

    async def load() -> None:  # if a submit fails, asyncio.run cancels the watcher
        await asyncio.gather(submit_all(stack.api, args, run), watch_status(consumer, run, args.timeout))
    try:
        asyncio.run(load())
    finally:
        consumer.close()
    wall = time.time() - run.start
    done = [run.done[tx] for tx in run.submitted if tx in run.done]
    delivered = {tx: run.done[tx] for tx in run.submitted if tx in run.done and run.done[tx][0].status == "delivered"}
    lat = [seen - run.submitted[tx] for tx, (_, seen) in delivered.items()]
    time.sleep(1.0)  # let the last status and changelog writes land before counting bytes
    written = bytes_written(bootstrap, before, topic_offsets(bootstrap, prefixes))
    n = max(len(run.submitted), 1)  # = delivered in a complete run; partial runs undercount delivery-side writes
    per_msg = {t: b / n for t, b in sorted(written.items()) if b}
    mail, total = sum(b for t, b in per_msg.items() if t.startswith("mail.")), sum(per_msg.values())
    cpu = {name: 100 * sum(b - a for n, a, b in run.cpu.values() if n == name) / wall for name in run.peak_rss}
    return {
        "messages": args.messages, "size": args.size, "concurrency": args.concurrency, "batch": args.batch,
        "submitted": len(run.submitted), "delivered": len(delivered),
        "failed": len(done) - len(delivered), "missing": len(run.submitted) - len(done), "wall_s": wall,
        "accepted_per_s": len(run.submitted) / (run.end - run.start),
        "delivered_per_s": len(delivered) / (max(s for _, s in delivered.values()) - run.start) if delivered else 0,
        "submit_latency_s": {"p50": pct(run.submit_latency, 0.5), "p99": pct(run.submit_latency, 0.99)},
        "delivered_latency_s": {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": max(lat, default=float("nan")),
                                "clock": "local read time of the delivered mail.status record - local 200 time"},
        "stage_p50_s": stages(list(delivered.values())),
        "kafka_bytes_per_msg": {"mail": mail, "all": total, "by_topic": per_msg,
                                "ratio_mail": mail / args.size, "ratio_all": total / args.size},
        "peak_rss_mb": {k: v / 2**20 for k, v in sorted(run.peak_rss.items())},
        "cpu_percent": cpu,
    }


def report(f: dict[str, Any]) -> str:
    sub, dl, kb = f["submit_latency_s"], f["delivered_latency_s"], f["kafka_bytes_per_msg"]
    return "\n".join([
        f"messages      {f['messages']} x {f['size']} B (raw, {f['batch']} rcpt/request), "
        f"concurrency {f['concurrency']}, wall {f['wall_s']:.1f} s",
        f"outcome       delivered {f['delivered']}, failed {f['failed']}, missing {f['missing']}, "
        f"smtp-sink counted {f['sink_received']}",
        f"msgs/s        accepted {f['accepted_per_s']:.1f}  delivered {f['delivered_per_s']:.1f}  "
        f"peer smtp-source {f['peer_msgs_per_s']:.0f}  ratio delivered/peer {f['ratio_to_peer']:.4f}",
        f"submit lat    p50 {sub['p50'] * 1000:.0f} ms  p99 {sub['p99'] * 1000:.0f} ms  (per request)",
        f"submit→dlvd   p50 {dl['p50']:.2f} s  p99 {dl['p99']:.2f} s  max {dl['max']:.2f} s  (local read time)",
        "stage p50     " + ", ".join(f"{k} {v:.2f} s" for k, v in f["stage_p50_s"].items()),
        f"kafka bytes   {kb['mail']:.0f} B/msg on mail.* = {kb['ratio_mail']:.2f} x size; with scheduler "
        f"changelog {kb['all']:.0f} B/msg = {kb['ratio_all']:.2f} x size (key+value; invariant ≤ 1.3)"
        + (" PARTIAL RUN" if f["missing"] else ""),
        *(f"  {t:<56} {b:7.0f} B/msg" for t, b in kb["by_topic"].items()),
        "process       peak RSS   CPU % of wall (200 % = both cores)",
        *(f"  {k:<11} {v:6.0f} MB   {f['cpu_percent'].get(k, 0):5.0f} %" for k, v in f["peak_rss_mb"].items()),
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sink_tool, source_tool = find_postfix_tool("smtp-sink"), find_postfix_tool("smtp-source")
    if sink_tool is None or source_tool is None:
        print("Postfix smtp-sink/smtp-source not found: run scripts/bootstrap.sh to install them", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mailstream-bench-") as tmp:
        workdir = Path(tmp)
        try:
            with contextlib.ExitStack() as cleanup:  # stops stack, sink and broker (in that order), always
                bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
                if not bootstrap:
                    broker = LocalBroker(workdir / "broker")
                    cleanup.callback(broker.stop)
                    bootstrap = broker.start()
                peer = run_peer(source_tool, sink_tool, workdir, args)
                port = free_port()
                cleanup.enter_context(smtp_sink(sink_tool, port, workdir / "sink.out"))
                stack = Stack(stack_config(bootstrap, ("127.0.0.1", port), workdir), workdir)
                cleanup.callback(stack.stop)
                stack.start()
                figures = measure(stack, bootstrap, args)
                if figures["missing"] or figures["failed"]:
                    print(f"{figures['missing']} of {figures['submitted']} transactions still undelivered after "
                          f"--timeout {args.timeout:.0f} s, {figures['failed']} failed; service logs:\n"
                          + "\n".join(stack.log_tail(s, 15) for s in stack.procs), file=sys.stderr)
        except (RuntimeError, httpx.HTTPError, subprocess.SubprocessError) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
        counters = (workdir / "sink.out").read_text(errors="replace").split()  # smtp-sink -c: "mesg=N\r" ...
        mesg = [int(w[5:]) for w in counters if w[:5] == "mesg=" and w[5:].isdigit()]
        figures |= {"sink_received": max(mesg, default=0), "peer_msgs_per_s": peer,
                    "ratio_to_peer": figures["delivered_per_s"] / peer}
    print(json.dumps(figures) if args.json else report(figures))
    return 0 if figures["missing"] == 0 and figures["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
