"""Postfix as a real MTA, the peer of `bench.vs_postfix`: a private, loopback-only instance
(`tests.infra.postfix_mta.PostfixMta`) that accepts mail from smtp-source on a free port and relays every
message to the bench's smtp-sink, queue and data directories under a temporary folder of its own.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import Load, ProcessSampler, Tools, rank_latency, run_smtp_source, smtp_sink
from tests.infra.postfix_mta import PostfixMta


def tuning(concurrency: int, relay: str) -> dict[str, str]:
    """The main.cf settings that differ from Postfix's defaults, each with why (README: what was tuned)."""
    limit = max(20, concurrency)
    return {
        f"default_destination_concurrency_limit = {limit}": "at least the bench concurrency (Postfix's default "
        "is 20): every delivery goes to one next hop, the sink, so this bounds Postfix's SMTP client connections",
        f"default_process_limit = {max(100, 3 * concurrency)}": "room for one smtpd per smtp-source session, "
        "the smtp clients and cleanup (default 100)",
        f"smtp_connection_cache_destinations = {relay}": "reuse SMTP connections to the sink, as mailstream's "
        "delivery reuses connections per egress path (default: only on demand, when a backlog forms)",
        "smtpd_peername_lookup = no": "no reverse DNS for 127.0.0.1 on every connection (mailstream does none)",
        "smtp_tls_security_level = none, smtpd_tls_security_level = none": "plaintext both ways, like the "
        "runs through mailstream (smtp-sink offers no STARTTLS)",
        "maillog_file = <tmp>/log/maillog": "Postfix's normal per-message logging, to a file (no syslog "
        "here); the bench reads the delivery statuses from it",
    }


def run_postfix(tools: Tools, load: Load, *, warmup: int = 0) -> dict[str, Any]:
    """smtp-source → private Postfix → smtp-sink, `load.messages` after `warmup` unmeasured ones; delivered/s is
    counted at the sink from the first submit to the last arrival. Everything lives in a temporary folder of
    its own (readable by the postfix user, unlike a private temp folder), removed when Postfix has stopped."""
    root = Path(tempfile.mkdtemp(prefix="mailstream-postfix-"))
    try:
        with smtp_sink(tools, root / "sink.out") as sink:
            mta = PostfixMta(root, sink.address, load.concurrency)
            mta.start()
            try:
                if warmup:
                    run_smtp_source(tools, mta.port, load, messages=warmup)
                    sink.arrivals.wait_for(warmup, time.time() + load.timeout)
                base = sink.received
                warm = (
                    {"messages": warmup, "delivered": base, "failed": 0, "missing": warmup - base, "failures": []}
                    if warmup
                    else None
                )
                master = mta.master_pid()
                sampler = ProcessSampler(
                    roots={master: "postfix/"} if master else {}, gauges={"sink_sessions": sink.sessions}
                ).start()
                start = time.time()
                try:
                    submits = run_smtp_source(tools, mta.port, load)
                    sink.arrivals.wait_for(base + load.messages, time.time() + load.timeout)
                finally:
                    sampler.stop()
                arrivals = sink.arrivals.times[base : base + load.messages]
                end = arrivals[-1] if len(arrivals) == load.messages else time.time()
                outcomes = mta.wait_outcomes(warmup + len(arrivals))
                log_tail = mta.log_tail(10)
            finally:
                mta.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    unsent = {status: n for status, n in outcomes.items() if status != "sent"}
    delivered = len(arrivals)
    return {
        "messages": load.messages,
        "size": load.size,
        "concurrency": load.concurrency,
        "batch": 1,
        "submitted": submits.count,
        "delivered": delivered,
        "failed": sum(unsent.values()),
        "missing": load.messages - delivered - sum(unsent.values()),
        "sink_received": delivered,
        "maillog_status": dict(outcomes),
        "wall_s": end - start,
        "failures": [f"{n} x status={s}" for s, n in unsent.items()] + ([] if not unsent else [log_tail]),
        "warmup": warm,
        "accepted_per_s": submits.count / (submits.times[-1] - start) if submits.times else 0.0,
        "delivered_per_s": delivered / (arrivals[-1] - start) if arrivals else 0.0,
        "sink_latency_s": rank_latency(submits.times, arrivals),
        **sampler.figures(end - start, lambda label: label.startswith("postfix/")),
    }
