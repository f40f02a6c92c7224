"""mailstream driven over SMTP, as Postfix is in `bench.postfix_mta`: smtp-source → the gateway's ingress
listener → the pipeline → smtp-sink, followed on mail.status until each transaction is delivered (or failed).

smtp-source learns no transaction ids, so a run's transactions are the ones mail.status reports created after
its first submit (the bench runs one load at a time). Used by `bench.vs_postfix`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import TopicPartition

from bench import http_inject
from bench.harness import PEER_RECIPIENT, Load, ProcessSampler, SmtpSink, Tools, pct, run_smtp_source
from mailstream.events.records import TransactionStatus
from mailstream.events.serde import decode
from mailstream.events.topics import STATUS
from tests.infra.stack import Stack, free_port
from tests.infra.topics import topic_offsets

RECIPIENT_DOMAIN = PEER_RECIPIENT.rpartition("@")[2]


def gateway_section(tenant: str, concurrency: int) -> dict[str, Any]:
    """One ingress listener receiving the bench's recipient domain for `tenant` (no AUTH: smtp-source has none,
    and a submission listener without AUTH is not allowed); the cut-through wait is mailstream's default."""
    return {
        "hostname": "gateway.bench.test",
        "message_id_domain": "gateway.bench.test",
        "web_port": free_port(),
        "listeners": [
            {
                "name": "ingress",
                "port": free_port(),
                "mode": "ingress",
                "max_connections_per_client": max(50, 2 * concurrency),
            }
        ],
        "ingress_domains": [{"domain": RECIPIENT_DOMAIN, "tenant": tenant}],
    }


def ingress_port(stack: Stack) -> int:
    return int(stack.config["gateway"]["listeners"][0]["port"])


def set_cut_through(stack: Stack, wait: str | None) -> None:
    """Restarts the gateway processes with `cut_through_wait` = `wait` (None: the default) unless they run with
    it already; they share the listener's port (SO_REUSEPORT), so the others serve while one restarts."""
    for instance in stack.instances("gateway"):
        section = stack.instance_config(instance)["gateway"]
        if section.get("cut_through_wait") == wait:
            continue
        if wait is None:
            section.pop("cut_through_wait", None)
        else:
            section["cut_through_wait"] = wait
        proc = stack.procs[instance]
        proc.terminate()
        proc.wait(60)
        stack.start_service(instance)


def measure(stack: Stack, tools: Tools, load: Load, sink: SmtpSink, *, count_bytes: bool = True) -> dict[str, Any]:
    """One run of `load` through the gateway; `sink` is the stack's smarthost (its arrivals time the deliveries)."""
    before = topic_offsets(stack.bootstrap, http_inject.record_prefixes(stack))
    consumer = http_inject.kafka_consumer(stack.bootstrap)  # at mail.status's end offsets before the first submit
    consumer.assign([TopicPartition(t, p, high) for (t, p), high in before.items() if t == STATUS.name])
    sink_base = sink.received
    sampler = ProcessSampler(
        names={p.pid: name for name, p in stack.procs.items()}, gauges={"sink_sessions": sink.sessions}
    ).start()
    done: dict[str, tuple[TransactionStatus, float]] = {}  # tx id → (record, local time read)
    start = time.time()
    finished = 0.0
    with ThreadPoolExecutor(1) as pool:
        source = pool.submit(run_smtp_source, tools, ingress_port(stack), load)
        try:
            while True:
                if not finished and source.done():
                    finished = time.time()
                    if source.exception() is not None:
                        break
                if finished and (len(done) >= load.messages or time.time() > finished + load.timeout):
                    break
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is not None or msg.value() is None:
                        continue
                    status = decode(msg.value(), TransactionStatus)
                    if status.created_at.timestamp() < start:
                        continue  # a warm-up's late record
                    failed = status.status in http_inject.FAILED and status.id not in done
                    if status.status == "delivered" or failed:
                        done[status.id] = (status, time.time())
        finally:
            consumer.close()
            sampler.stop()
        submits = source.result()  # smtp-source's own failure (a refused DATA) is raised here
    wall = time.time() - start
    delivered = [entry for entry in done.values() if entry[0].status == "delivered"]
    lat = [seen - s.created_at.timestamp() for s, seen in delivered]
    arrivals = sink.arrivals.times[sink_base : sink_base + len(delivered)]
    data_wall = (submits.times[-1] - start) if submits.times else float("nan")
    figures: dict[str, Any] = {
        "messages": load.messages,
        "size": load.size,
        "concurrency": load.concurrency,
        "batch": 1,
        "submitted": submits.count,
        "delivered": len(delivered),
        "failed": len(done) - len(delivered),
        "missing": load.messages - len(done),
        "sink_received": sink.received - sink_base,
        "wall_s": wall,
        "failures": [http_inject.failure_summary(s) for s, _ in done.values() if s.status != "delivered"][:5],
        "accepted_per_s": submits.count / data_wall if submits.times else 0.0,
        "delivered_per_s": len(arrivals) / (arrivals[-1] - start) if arrivals else 0.0,
        "confirmed_per_s": len(delivered) / (max(seen for _, seen in delivered) - start) if delivered else 0.0,
        # Little's law: each of the `concurrency` sessions sends its messages one after another
        "smtp_transaction_s": load.concurrency * data_wall / submits.count if submits.count else float("nan"),
        "delivered_latency_s": {
            "p50": pct(lat, 0.5),
            "p99": pct(lat, 0.99),
            "max": max(lat, default=float("nan")),
            "method": "exact: the gateway's created_at in the status - local read time of "
            "the delivered mail.status record",
        },
        "stage_p50_s": http_inject.stages(delivered),
        **sampler.figures(wall, lambda label: label.startswith((*http_inject.SERVICES_AND_BROKER, "gateway"))),
    }
    if count_bytes:
        figures["kafka_bytes_per_msg"] = http_inject.kafka_bytes(
            stack, before, submits.count, load.size, partial=bool(figures["missing"])
        )
    return figures
