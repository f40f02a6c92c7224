"""Weighted round robin spreads every destination over the pool's sources, not just the pool's total:
a pool-wide rotation would fall into step with the round robin over queues and send each domain
through the same source (the sending IPs would each see only some of the receivers)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from mailstream.core.clock import ManualClock
from tests.unit.scheduler.test_queue_controls_simulation import START, Twin

WINDOW = "11:00-20:00 UTC"  # opens an hour after START: a backlog over every queue is released together
CONFIG = {
    "egress": {
        "sources": [{"name": f"ip-{i}", "send_window": WINDOW} for i in (1, 2, 3)],
        "pools": [{"name": "main", "entries": [{"name": "ip-1", "weight": 2}, {"name": "ip-2"}, {"name": "ip-3"}]}],
    },
    "queues": {"egress_pool": "main"},
}
DOMAINS = [f"d{i}.example" for i in range(8)]


def test_each_domain_gets_every_source_in_the_pools_proportions() -> None:
    twin = Twin(CONFIG)
    for domain in DOMAINS:  # one scheduled queue per domain, all due at once
        for i in range(40):
            twin.submit(1, START, recipient=f"r{i}@{domain}", domain=domain, queue=f"spring:acme@{domain}")
    twin.run(ManualClock(START), START + timedelta(hours=1, minutes=3))
    assert len(twin.sent) == 320
    per_domain = {d: Counter(t.egress_source for t in twin.sent if t.domain == d) for d in DOMAINS}
    for domain, sources in per_domain.items():
        assert sources == {"ip-1": 20, "ip-2": 10, "ip-3": 10}, (domain, sources)
