"""A restart with a changed configuration loses nothing already queued (issue 3): the stages restore
their state from the changelogs and carry on under the new file."""

from __future__ import annotations

from datetime import timedelta

from mailstream.core.clock import ManualClock
from tests.unit.scheduler.test_queue_controls_simulation import START, Twin

OLD = {
    "egress": {
        "sources": [{"name": "night", "send_window": "22:00-23:00 UTC"}],  # closed at START (10:00)
        "pools": [{"name": "legacy", "entries": [{"name": "night"}]}],
    },
    "queues": {"egress_pool": "legacy"},
}


def egress(sources: list[dict[str, object]], entries: list[str]) -> dict[str, object]:
    return {
        "egress": {"sources": sources, "pools": [{"name": "warm", "entries": [{"name": n} for n in entries]}]},
        "queues": {"egress_pool": "warm"},
    }


NEW = {  # the pool and its source are gone; the default pool is another one
    "egress": {
        "sources": [{"name": "mail2", "daily_limit": 100}, {"name": "mail3", "daily_limit": 100}],
        "pools": [{"name": "warm", "entries": [{"name": "mail2"}, {"name": "mail3"}]}],
    },
    "queues": {"egress_pool": "warm", "retry_interval": "5m"},
}


def test_held_and_scheduled_mail_survive_a_restart_that_removes_their_pool() -> None:
    clock = ManualClock(START)
    before = Twin(OLD)
    held = before.submit(30, START)  # waits in stage 2 for a window that is closed
    later = before.submit(20, START, send_at=START + timedelta(hours=1))  # waits in stage 1
    before.run(clock, START + timedelta(minutes=5))
    assert before.sent == []
    assert before.statuses(held) == {"ready": 30}
    assert before.statuses(later) == {"scheduled": 20}

    after = Twin(NEW, bus=before.bus, changelogs=before.changelogs())
    after.run(clock, START + timedelta(hours=2))
    assert after.statuses(held + later) == {"delivered": 50}
    attempts = [(t.id, t.attempt) for t in after.sent]
    assert len(attempts) == len(set(attempts)) == 50, "each message sent once"
    assert {t.egress_source for t in after.sent} <= {"mail2", "mail3"}
    assert all(t.egress_pool == "warm" for t in after.sent)


def test_a_lower_daily_limit_after_a_restart_holds_what_is_over_it() -> None:
    clock = ManualClock(START)
    config = egress(sources=[{"name": "mail2", "daily_limit": 100}], entries=["mail2"])
    before = Twin(config)
    first = before.submit(60, START)
    before.run(clock, START + timedelta(minutes=5))
    assert before.statuses(first) == {"delivered": 60}

    lowered = egress(sources=[{"name": "mail2", "daily_limit": 80}], entries=["mail2"])
    after = Twin(lowered, bus=before.bus, changelogs=before.changelogs())
    rest = after.submit(40, clock())
    after.run(clock, clock() + timedelta(hours=1))
    assert after.statuses(rest) == {"delivered": 20, "ready": 20}, "the day's count carried over the restart"


def regrouped(shared: bool) -> dict[str, object]:
    """Pools "pool-a" and "pool-b" (their groups on partitions 6 and 5); sharing b1 merges them into
    pool-a's group, so pool-b's messages and b1's counters move to another partition."""
    entries_a = [{"name": "a1"}, {"name": "b1"}] if shared else [{"name": "a1"}]
    return {
        "egress": {
            "sources": [{"name": "a1"}, {"name": "b1", "daily_limit": 50}],
            "pools": [{"name": "pool-a", "entries": entries_a}, {"name": "pool-b", "entries": [{"name": "b1"}]}],
        },
        "queues": {"egress_pool": "pool-b"},
    }


def test_regrouping_pools_moves_held_mail_and_the_days_count_to_the_new_owner() -> None:
    clock = ManualClock(START)
    before = Twin(regrouped(shared=False))
    first = before.submit(60, START)
    before.run(clock, START + timedelta(minutes=5))
    assert before.statuses(first) == {"delivered": 50, "ready": 10}, "b1's cap holds back 10"

    after = Twin(regrouped(shared=True), bus=before.bus, changelogs=before.changelogs())
    more = after.submit(40, clock())
    after.run(clock, clock() + timedelta(hours=2))
    today = [t for t in before.sent + after.sent if t.egress_source == "b1"]
    assert len(today) == 50, "b1's count of the day followed its group to the new partition"
    assert after.statuses(first + more) == {"delivered": 50, "ready": 50}

    after.run(clock, START.replace(hour=0) + timedelta(days=1, minutes=30))  # past midnight UTC
    assert after.statuses(first + more) == {"delivered": 100}
    attempts = [(t.id, t.attempt) for t in before.sent + after.sent]
    assert len(attempts) == len(set(attempts)) == 100, "each message sent once"
