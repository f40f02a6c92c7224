"""Adaptive shaping through both scheduler stages (the in-memory twin): rules on replies act on a path or on a
tenant's queues for their duration, then lapse by themselves; the actions survive a restart."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from mailstream.core.clock import ManualClock
from mailstream.events import fixtures
from mailstream.events.records import DeliveryResponse, DeliveryTask, ShapingControl, SmtpResponse
from mailstream.events.serde import decode, encode
from mailstream.events.topics import DELIVERY, RESPONSES, SHAPING, route_key
from tests.unit.scheduler.test_queue_controls_simulation import START, Twin

TRY_LATER = SmtpResponse(code=421, enhanced_code="4.7.0", content="try later")
RULE = {"name": "try-later", "codes": [421], "enhanced_codes": ["4.7.*"], "regex": "try later"}


def config(*rules: dict[str, Any], pool: list[str] | None = None) -> dict[str, Any]:
    entries = [{"name": n} for n in (pool or ["mail2"])]
    return {
        "egress": {
            "sources": [{"name": "mail2"}, {"name": "mail3"}],
            "pools": [{"name": "warm", "entries": entries}],
        },
        "queues": {"egress_pool": "warm", "retry_interval": "1h"},
        "shaping": {"rules": list(rules)},
    }


class ShapedTwin(Twin):
    """Answers 421 4.7.0 while `failing` (for the sources named in it), else 250."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failing: set[str] = set()
        self.sent_at: dict[str, datetime] = {}

    def deliver(self, now: datetime) -> None:
        fresh = self.bus.read(DELIVERY.name, self._tasks_read)
        self._tasks_read += len(fresh)
        for record in fresh:
            task = decode(record.value, DeliveryTask)
            self.sent.append(task)
            refused = task.egress_source in self.failing
            if not refused:
                self.sent_at[task.id] = now
            answer = DeliveryResponse(
                id=task.id,
                attempt=task.attempt,
                attempt_id=task.attempt_id,
                queue=task.queue,
                outcome="TRANSIENT" if refused else "DELIVERED",
                response=TRY_LATER if refused else fixtures.OK_250,
                egress_source=task.egress_source,
                egress_path=task.egress_path,
                started_at=now,
                completed_at=now,
            )
            self.bus.send(RESPONSES.name, route_key(task.tenant, task.queue).encode(), encode(answer))

    def shaping(self) -> dict[str, ShapingControl]:
        return {r.key.decode(): decode(r.value, ShapingControl) for r in self.bus.read(SHAPING.name) if r.key}


def test_a_421_suspends_the_path_for_the_rules_duration_then_mail_flows_again() -> None:
    clock = ManualClock(START)
    twin = ShapedTwin(config({**RULE, "action": "suspend_path", "duration": "10m"}))
    twin.failing = {"mail2"}
    [first] = twin.submit(1, START)
    twin.run(clock, START + timedelta(minutes=2))  # stage 2 reads the report in the next step
    assert twin.statuses([first]) == {"deferred": 1}
    [control] = twin.shaping().values()
    assert (control.id, control.path) == ("try-later|mail2->example.com", "mail2->example.com")
    assert control.reason == str(TRY_LATER)
    assert control.until == START + timedelta(minutes=10)
    assert (twin.egress_stage.shaping_count(), twin.queue_stage.shaping_count()) == (1, 0)  # the metrics' counts

    twin.failing = set()
    later = twin.submit(3, clock())
    twin.run(clock, START + timedelta(minutes=9, seconds=30))
    assert twin.statuses(later) == {"ready": 3}  # held by stage 2: the path is suspended
    assert len(twin.sent) == 1
    twin.run(clock, START + timedelta(minutes=12))
    assert twin.statuses(later) == {"delivered": 3}
    assert min(twin.sent_at[t] for t in later) >= START + timedelta(minutes=10)
    assert twin.egress_stage.shaping_count() == 0  # ended, and forgotten
    assert not any(k.startswith(b"a:") for state in twin.changelogs()[1].values() for k in state)


def test_a_suspended_path_survives_a_restart_of_both_stages() -> None:
    clock = ManualClock(START)
    cfg = config({**RULE, "action": "suspend_path", "duration": "10m"})
    twin = ShapedTwin(cfg)
    twin.failing = {"mail2"}
    twin.submit(1, START)
    twin.run(clock, START + timedelta(minutes=2))
    again = ShapedTwin(cfg, bus=twin.bus, changelogs=twin.changelogs())
    later = again.submit(2, clock())
    again.run(clock, START + timedelta(minutes=9))
    assert again.statuses(later) == {"ready": 2}
    again.run(clock, START + timedelta(minutes=11))
    assert again.statuses(later) == {"delivered": 2}


def test_a_suspended_path_sends_the_pools_mail_through_its_other_sources() -> None:
    clock = ManualClock(START)
    twin = ShapedTwin(config({**RULE, "action": "suspend_path", "duration": "1h"}, pool=["mail2", "mail3"]))
    twin.failing = {"mail2"}
    twin.submit(4, START)
    twin.run(clock, START + timedelta(minutes=2))
    twin.failing = set()
    later = twin.submit(6, clock())
    twin.run(clock, START + timedelta(minutes=10))
    assert twin.statuses(later) == {"delivered": 6}
    assert {t.egress_source for t in twin.sent if t.id in later} == {"mail3"}


def test_limit_path_lowers_the_paths_rate_for_its_duration() -> None:
    clock = ManualClock(START)
    twin = ShapedTwin(config({**RULE, "action": "limit_path", "max_message_rate": "1/min", "duration": "30m"}))
    twin.failing = {"mail2"}
    twin.submit(1, START)
    twin.run(clock, START + timedelta(seconds=10), step=timedelta(seconds=5))
    twin.failing = set()
    later = twin.submit(5, clock())
    twin.run(clock, clock() + timedelta(minutes=3), step=timedelta(seconds=5))
    assert twin.statuses(later)["delivered"] in (3, 4)  # one a minute (GCRA: the first at once)
    [control] = twin.shaping().values()
    assert control.max_message_rate == "1/m"  # the throttle spec, as ThrottleSpec writes it
    twin.run(clock, clock() + timedelta(minutes=3), step=timedelta(seconds=5))
    assert twin.statuses(later) == {"delivered": 5}


def test_a_threshold_rule_fires_on_the_nth_reply_only() -> None:
    clock = ManualClock(START)
    twin = ShapedTwin(config({**RULE, "action": "suspend_path", "duration": "1h", "trigger": "3/10min"}))
    twin.failing = {"mail2"}
    twin.submit(2, START)
    twin.run(clock, START + timedelta(minutes=2))
    assert twin.shaping() == {}  # two replies: not yet
    twin.submit(1, clock())
    twin.run(clock, START + timedelta(minutes=4))
    [control] = twin.shaping().values()
    assert control.until is not None
    assert control.until > clock()


def test_suspend_tenant_suspends_the_tenants_queues_for_the_domain_then_lifts_itself() -> None:
    clock = ManualClock(START)
    twin = ShapedTwin(config({**RULE, "action": "suspend_tenant", "duration": "15m"}))
    twin.failing = {"mail2"}
    [first] = twin.submit(1, START)
    twin.run(clock, START + timedelta(minutes=1))
    assert twin.statuses([first]) == {"suspended": 1}  # the message that got the reply, too
    twin.failing = set()
    same = twin.submit(2, clock(), campaign="autumn", queue="autumn:acme@example.com")
    other = twin.submit(2, clock(), domain="other.test", queue="spring:acme@other.test")
    globex = twin.submit(2, clock(), tenant="globex", queue="spring:globex@example.com")
    twin.run(clock, START + timedelta(minutes=10))
    assert twin.statuses(same) == {"suspended": 2}
    assert twin.statuses(other + globex) == {"delivered": 4}
    [stats] = [s for s in twin.stats().values() if s.tenant == "acme" and s.suspensions]
    [suspension] = stats.suspensions
    assert (suspension.tenant, suspension.domain, suspension.issued_by) == ("acme", "example.com", "shaping:try-later")
    assert suspension.reason == f"shaping rule try-later: {TRY_LATER}"
    assert suspension.until == START + timedelta(minutes=15)
    assert twin.queue_stage.shaping_count() == 1
    twin.run(clock, START + timedelta(minutes=17))
    assert twin.statuses(same) == {"delivered": 2}
    assert twin.queue_stage.shaping_count() == 0
    assert twin.statuses([first]) == {"deferred": 1}  # its own retry (1h) still holds


def test_slow_campaign_slows_the_campaigns_queues_only() -> None:
    clock = ManualClock(START)
    twin = ShapedTwin(config({**RULE, "action": "slow_campaign", "max_message_rate": "1/min", "duration": "1h"}))
    twin.failing = {"mail2"}
    twin.submit(1, START)  # campaign spring (the fixture's)
    twin.run(clock, START + timedelta(seconds=10), step=timedelta(seconds=5))
    twin.failing = set()
    spring = twin.submit(5, clock())
    autumn = twin.submit(5, clock(), campaign="autumn", queue="autumn:acme@example.com")
    twin.run(clock, clock() + timedelta(minutes=2), step=timedelta(seconds=5))
    assert twin.statuses(autumn) == {"delivered": 5}
    assert twin.statuses(spring)["delivered"] <= 3
    twin.run(clock, clock() + timedelta(minutes=5), step=timedelta(seconds=5))
    assert twin.statuses(spring) == {"delivered": 5}
    [control] = twin.shaping().values()
    assert (control.tenant, control.campaign, control.domain) == ("acme", "spring", "example.com")


def test_an_operators_state_on_the_same_scope_is_left_as_set() -> None:
    clock = ManualClock(START)
    twin = ShapedTwin(config({**RULE, "action": "suspend_tenant", "duration": "15m"}))
    twin.command(START, "drain", issued_by="tenant:acme", tenant="acme", domain="example.com", reason="moving")
    twin.failing = {"mail2"}
    twin.submit(1, START, domain="other.test", queue="spring:acme@other.test")
    twin.run(clock, START + timedelta(minutes=1))
    [stats] = [s for s in twin.stats().values() if s.tenant == "acme" and s.suspensions]
    assert [(s.state, s.reason) for s in stats.suspensions] == [("draining", "moving")]
