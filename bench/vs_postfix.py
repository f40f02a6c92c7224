"""mailstream side by side with Postfix, in one run on one machine: Postfix first and last, mailstream in between,
with the same message size, concurrency and sink (Postfix's smtp-sink).

Run from the repo root, as root (Postfix's master starts as root):
    flock /tmp/mailstream-heavy.lock .venv/bin/python -m bench.vs_postfix --messages 2000 --concurrency 16 --size 2048

Scenarios (--scenarios, comma-separated; Postfix, when listed, runs first and last whatever its place):
  postfix   smtp-source -s C -m N -l SIZE → a private Postfix relaying to smtp-sink
  http1     mailstream over HTTP, 1 recipient per request
  http100   mailstream over HTTP, 100 recipients per request
  smtp      mailstream over SMTP: smtp-source -s C -m N -l SIZE → the gateway's ingress listener, with
            cut-through's default wait (the DATA reply waits for the first delivery attempt)
  smtp-ct0  the same with gateway.cut_through_wait: 0s (250 as soon as the message is durable)
Scale-out: --ingest N --scheduler N --delivery N --gateway N processes of each service, --partitions P per keyed
topic (the gateway processes share the listener's port: SO_REUSEPORT).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench import http_inject, postfix_mta, smtp_inject
from bench.harness import Load, SmtpSink, Tools, add_load_options, fs_type
from mailstream.config.gateway import GatewayConfig
from mailstream.events.topics import PARTITIONS
from tests.infra import postfix_mta as private_postfix
from tests.infra.broker import LocalBroker
from tests.infra.stack import Stack, stack_config

SCENARIOS = ("postfix", "http1", "http100", "smtp", "smtp-ct0")
HTTP_BATCH = {"http1": 1, "http100": 100}
CUT_THROUGH = {"smtp": None, "smtp-ct0": "0s"}  # gateway.cut_through_wait per SMTP scenario (None: the default)
# mailstream's defaults, not the tests' fail-fast 5 s / 20 s, matching Postfix's smtp_connect_timeout (30 s)
# and its 300 s command timeouts: on a loaded 2-core machine a 5 s connect-and-greeting can time out.
DELIVERY_TIMEOUTS = {"connect_timeout": "30s", "command_timeout": "5m"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_load_options(
        p,
        messages_help="messages (= recipients = transactions) per run",
        concurrency_help="smtp-source sessions and HTTP requests in flight",
        timeout_help="seconds to wait for the last delivery of a run",
    )
    p.add_argument("--warmup", type=int, default=64, help="unmeasured messages sent before each run (0: none)")
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from {','.join(SCENARIOS)} (default: all)"
    )
    p.add_argument("--ingest", type=int, default=1, help="ingest processes (the bench spreads requests over them)")
    p.add_argument("--scheduler", type=int, default=1, help="scheduler processes")
    p.add_argument("--delivery", type=int, default=1, help="delivery processes")
    p.add_argument("--gateway", type=int, default=1, help="gateway processes, sharing the SMTP port")
    p.add_argument(
        "--tenants",
        type=int,
        default=1,
        help="spread mailstream's requests over this many tenants, each with its own egress pool and "
        "source (default 1: one key per topic, so one partition does all the work)",
    )
    p.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="partitions per keyed topic (MAILSTREAM_PARTITIONS for the services; default 8)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the figure block")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown or not args.scenarios:
        p.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    for name in ("messages", "concurrency", "size", "ingest", "scheduler", "delivery", "gateway", "tenants"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.partitions is not None and args.partitions < 1:
        p.error("--partitions must be at least 1")
    return args


def ok(figures: dict[str, Any]) -> bool:
    return bool(figures["delivered"] == figures["messages"] and not figures["failed"] and not figures["missing"])


def run_mailstream(
    args: argparse.Namespace, tools: Tools, workdir: Path, load: Load, placed: dict[str, int]
) -> list[dict[str, Any]]:
    """Starts a broker (unless KAFKA_BOOTSTRAP_SERVERS), a sink and the stack once, runs the HTTP (and SMTP)
    scenarios in order, each after its warm-up, and stops everything. `placed` receives how many partitions of
    each keyed topic the tenants' keys reach."""
    runs: list[dict[str, Any]] = []
    wanted = [s for s in args.scenarios if s != "postfix"]
    if not wanted:
        return runs
    with contextlib.ExitStack() as cleanup:  # stops stack, sink and broker (in that order), always
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = LocalBroker(workdir / "broker")
            cleanup.callback(broker.stop)
            bootstrap = broker.start()
        sink = SmtpSink(tools, workdir / "sink.out")
        cleanup.callback(sink.stop)
        smarthost = f"{sink.address[0]}:{sink.address[1]}"
        tenants = http_inject.spread_tenants(args.tenants, args.partitions or PARTITIONS, smarthost)
        placed.update(http_inject.placement(tenants, args.partitions or PARTITIONS, smarthost))
        overrides = http_inject.tenant_config(tenants)
        overrides["delivery"] = DELIVERY_TIMEOUTS
        if CUT_THROUGH.keys() & set(wanted):  # one tenant receives the bench's recipient domain over SMTP
            overrides["gateway"] = smtp_inject.gateway_section(tenants[0] if tenants else "bench", load.concurrency)
        config = stack_config(bootstrap, sink.address, workdir, **overrides)
        stack = Stack(
            config,
            workdir,
            partitions=args.partitions,
            replicas={
                "ingest": args.ingest,
                "scheduler": args.scheduler,
                "delivery": args.delivery,
                "gateway": args.gateway,
            },
        )
        cleanup.callback(stack.stop)
        stack.start()
        for n, scenario in enumerate(wanted):
            if scenario in CUT_THROUGH:
                runs.append(run_smtp(args, tools, stack, sink, load, scenario))
                continue
            batch = HTTP_BATCH[scenario]
            shaped = Load(load.messages, load.concurrency, load.size, batch, load.timeout, tenants)
            warm: dict[str, Any] | None = None
            if args.warmup:
                warm = http_inject.measure(
                    stack, replace(shaped, messages=args.warmup), sink, tag=f"w{n}-", count_bytes=False
                )
            figures = http_inject.measure(stack, shaped, sink, tag=f"m{n}-")
            figures["warmup"] = (
                None
                if warm is None
                else {k: warm[k] for k in ("messages", "delivered", "failed", "missing", "failures")}
            )
            runs.append({"scenario": scenario, "system": "mailstream", **figures})
            if not ok(figures) or (warm is not None and not ok(warm)):
                print(
                    f"{scenario}: not every message ended delivered; service logs:\n"
                    + "\n".join(stack.log_tail(s, 15) for s in stack.procs),
                    file=sys.stderr,
                )
    return runs


def run_smtp(
    args: argparse.Namespace, tools: Tools, stack: Stack, sink: SmtpSink, load: Load, scenario: str
) -> dict[str, Any]:
    """smtp-source through the gateway with the scenario's cut-through wait (the gateways restart to change it)."""
    wait = CUT_THROUGH[scenario]
    smtp_inject.set_cut_through(stack, wait)
    warm = (
        smtp_inject.measure(stack, tools, replace(load, messages=args.warmup), sink, count_bytes=False)
        if args.warmup
        else None
    )
    figures = smtp_inject.measure(stack, tools, load, sink)
    figures["warmup"] = (
        None if warm is None else {k: warm[k] for k in ("messages", "delivered", "failed", "missing", "failures")}
    )
    default = GatewayConfig.model_fields["cut_through_wait"].default.total_seconds()
    figures["cut_through_wait"] = wait or f"{default:g}s (the default)"
    if not ok(figures) or (warm is not None and not ok(warm)):
        print(
            f"{scenario}: not every message ended delivered; service logs:\n"
            + "\n".join(stack.log_tail(s, 15) for s in stack.procs),
            file=sys.stderr,
        )
    return {"scenario": scenario, "system": "mailstream", **figures}


def run_peer(tools: Tools, load: Load, warmup: int, n: int) -> dict[str, Any]:
    figures = postfix_mta.run_postfix(tools, load, warmup=warmup)
    return {"scenario": f"postfix#{n}", "system": "postfix", **figures}


def run(args: argparse.Namespace) -> dict[str, Any]:
    tools = Tools.find()
    if tools is None:
        raise RuntimeError("Postfix smtp-sink/smtp-source not found: run scripts/bootstrap.sh to install them")
    load = Load(args.messages, args.concurrency, args.size, 1, args.timeout)
    skipped: dict[str, str] = {}
    peer = "postfix" in args.scenarios
    if peer and (reason := private_postfix.unavailable_reason()) is not None:
        print(f"postfix: SKIPPED, {reason}; no ratio can be given", file=sys.stderr)
        skipped["postfix"], peer = reason, False
    started_load = os.getloadavg()
    placed: dict[str, int] = {}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mailstream-vs-postfix-") as tmp:
        workdir = Path(tmp)
        if peer:
            runs.append(run_peer(tools, load, args.warmup, 1))
        runs += run_mailstream(args, tools, workdir, load, placed)
        if peer:
            runs.append(run_peer(tools, load, args.warmup, 2))
        temp_fs = fs_type(workdir)
    peers = [r["delivered_per_s"] for r in runs if r["system"] == "postfix"]
    mean = sum(peers) / len(peers) if peers else None
    for r in runs:
        r["ratio_to_postfix"] = r["delivered_per_s"] / mean if mean else None
        r["ok"] = ok(r) and (r["warmup"] is None or ok(r["warmup"]))
    return {
        "settings": {
            "messages": args.messages,
            "size": args.size,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "timeout_s": args.timeout,
            "scenarios": args.scenarios,
            "ingest": args.ingest,
            "scheduler": args.scheduler,
            "delivery": args.delivery,
            "gateway": args.gateway,
            "partitions": args.partitions or PARTITIONS,
            "tenants": args.tenants,
            "partitions_reached": placed,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "temp_fs": temp_fs,
            "load_average_start": started_load,
            "load_average_end": os.getloadavg(),
            "postfix": private_postfix.version(),
            "kafka": os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "private broker (tests.infra.broker.LocalBroker)",
        },
        "postfix_tuning": postfix_mta.tuning(args.concurrency, "[127.0.0.1]:<sink port>") if peer else None,
        "postfix_mean_delivered_per_s": mean,
        "skipped": skipped,
        "runs": runs,
        "ok": bool(runs) and all(r["ok"] for r in runs),  # nothing measured is not a pass
    }


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def report(result: dict[str, Any]) -> str:
    s, m = result["settings"], result["machine"]
    start_load, end_load = (" ".join(f"{x:.2f}" for x in m[k]) for k in ("load_average_start", "load_average_end"))
    lines = [
        f"vs_postfix    {s['messages']} x {s['size']} B per run, concurrency {s['concurrency']}, warm-up {s['warmup']} "
        f"per run; mailstream: ingest {s['ingest']}, scheduler {s['scheduler']}, delivery {s['delivery']}, "
        f"gateway {s['gateway']}, "
        f"partitions {s['partitions']}, tenants {s['tenants']} (partitions their keys reach: "
        + (", ".join(f"{t} {n}" for t, n in s["partitions_reached"].items()) or "-")
        + ")",
        f"machine       {m['cpus']} CPUs, load average {start_load} at start, {end_load} at end; "
        f"temp fs {m['temp_fs']}; "
        f"Postfix {m['postfix']}; Kafka {m['kafka']}",
        "",
        f"{'run':<11} {'rcpt/req':>8} {'dlvd/s':>8} {'ratio':>6} {'acc/s':>8} {'p50 s':>7} {'p99 s':>7} {'lat':>5} "
        f"{'sys CPU%':>8} {'sys MB':>7} {'kafka B/msg':>11}  outcome",
    ]
    for r in result["runs"]:
        lat = r.get("delivered_latency_s") or r["sink_latency_s"]
        kb = r.get("kafka_bytes_per_msg")
        outcome = (
            "ok" if r["ok"] else (f"FAILED: delivered {r['delivered']}, failed {r['failed']}, missing {r['missing']}")
        )
        lines.append(
            f"{r['scenario']:<11} {r['batch']:>8} {r['delivered_per_s']:>8.1f} {_num(r['ratio_to_postfix'], '.3f'):>6} "
            f"{r['accepted_per_s']:>8.1f} {_num(lat['p50'], '.3f'):>7} {_num(lat['p99'], '.3f'):>7} "
            f"{'exact' if 'delivered_latency_s' in r else 'est.':>5} "
            f"{r['system_cpu_percent']:>8.0f} {r['system_peak_rss_mb']:>7.0f} "
            f"{_num(kb['all'] if kb else None, '.0f'):>11}  {outcome}"
        )
    mean = result["postfix_mean_delivered_per_s"]
    lines.append(f"postfix mean  {_num(mean, '.1f')} delivered/s (ratio = delivered/s ÷ this)")
    lines += [f"skipped       {k}: {v}" for k, v in result["skipped"].items()]
    lines += [
        "",
        "dlvd/s: first submit → the last message counted at the smtp-sink. p50/p99: submit → delivered; "
        "mailstream: exact per transaction (200 → delivered status read); postfix: estimated (k-th accepted "
        "DATA → k-th arrival at the sink). sys: the system under test only (mailstream: services + broker; "
        "postfix: its daemons), CPU % of the run's wall time (200 % = both cores), RSS summed per process. "
        "smtp rows: acc/s counts DATA replies (after cut-through's wait), p50/p99 run from the gateway's "
        "created_at to the delivered status read (exact).",
    ]
    for r in result["runs"]:
        lines += [
            "",
            f"--- {r['scenario']} ({r['system']}, {r['batch']} rcpt/request): wall {r['wall_s']:.1f} s, "
            f"submitted {r['submitted']}, delivered {r['delivered']}, at the sink {r['sink_received']} "
            f"over at most {r.get('peak_sink_sessions', 0):.0f} connections at once",
        ]
        if r["system"] == "mailstream":
            lines += _latencies(r)
            lines.append("  stage p50   " + ", ".join(f"{k} {v:.2f} s" for k, v in r["stage_p50_s"].items()))
            kb = r["kafka_bytes_per_msg"]
            lines.append(
                f"  kafka bytes {kb['mail']:.0f} B/msg in mail.* records ({kb['ratio_mail']:.2f} x size), "
                f"{kb['all']:.0f} B/msg with the scheduler changelogs ({kb['ratio_all']:.2f} x size)"
                + (" PARTIAL RUN" if kb["partial"] else "")
            )
            lines += [f"    {t:<54} {b:7.0f} B/msg" for t, b in kb["by_topic"].items()]
        else:
            lines.append(f"  maillog     {r['maillog_status']}")
        lines.append(f"  {'process':<26} n  peak RSS   CPU %")
        lines += [
            f"    {k:<23} {r['process_count'][k]:>3} {v:6.0f} MB {r['cpu_percent'].get(k, 0):6.0f} %"
            for k, v in r["peak_rss_mb"].items()
        ]
        lines += [f"  failure     {f}" for f in r["failures"]]
    if result["postfix_tuning"]:
        lines += ["", "postfix main.cf, changed from the defaults:"]
        lines += [f"  {k}  ({why})" for k, why in result["postfix_tuning"].items()]
    return "\n".join(lines)


def _latencies(r: dict[str, Any]) -> list[str]:
    dl = r["delivered_latency_s"]
    confirmed = f"  confirmed/s {r['confirmed_per_s']:.1f} (to the last delivered status read)"
    if "smtp_transaction_s" in r:
        return [
            confirmed,
            f"  cut-through wait {r['cut_through_wait']}; SMTP transaction "
            f"{r['smtp_transaction_s']:.3f} s on average (concurrency × time to the last DATA reply ÷ messages)",
            f"  created→dlvd p50 {dl['p50']:.3f} s  p99 {dl['p99']:.3f} s (exact)",
        ]
    sub, sk = r["submit_latency_s"], r["sink_latency_s"]
    return [
        confirmed,
        f"  submit lat  p50 {sub['p50'] * 1000:.0f} ms  p99 {sub['p99'] * 1000:.0f} ms (per request)",
        f"  submit→dlvd p50 {dl['p50']:.3f} s  p99 {dl['p99']:.3f} s (exact); at the sink, estimated as for "
        f"postfix: p50 {_num(sk['p50'], '.3f')} s  p99 {_num(sk['p99'], '.3f')} s",
    ]


def finite(value: Any) -> Any:
    """`value` with NaN (a percentile of nothing) as null, so that --json prints strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except (RuntimeError, httpx.HTTPError, OSError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(finite(result), allow_nan=False) if args.json else report(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
