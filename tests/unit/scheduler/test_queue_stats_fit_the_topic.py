"""A tenant with thousands of campaigns and controls: stage 1 publishes its counts in records that each fit
mail.queue-stats (one record grew past the topic's 1 MiB, which the processor could never commit), and
the capacity report over them still counts every campaign and control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailstream.config.model import parse_config
from mailstream.events import fixtures
from mailstream.events.processor import Output
from mailstream.events.records import QueueStats, StatusCounts
from mailstream.events.serde import decode, encode
from mailstream.events.topics import QUEUE_STATE, QUEUE_STATS
from mailstream.ingest.queue_report import stats_report
from mailstream.scheduler import stats_records
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_keys import Control, Totals
from mailstream.scheduler.queue_stage import QueueStage

CONFIG = parse_config({}, env={})
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CAMPAIGNS = 5000
CONTROLS = 2000


def _campaign(i: int) -> str:
    return f"autumn-newsletter-{i:05d}-" + "x" * 80  # names as long as the ones people give campaigns


def _state() -> dict[bytes, bytes]:
    """Stage 1's changelog of a tenant with `CAMPAIGNS` campaigns finished, `CONTROLS` of them suspended."""
    state: dict[bytes, bytes] = {}
    for i in range(CAMPAIGNS):
        row = ("acme", _campaign(i), "")
        counts = StatusCounts(
            tenant="acme", campaign=_campaign(i), egress_pool="", counts={"delivered": 3, "bounced": 1}
        )
        state[Totals(row).key()] = encode(counts)
    for i in range(CONTROLS):
        control = fixtures.suspension().model_copy(
            update={"id": f"cmd-{i}", "campaign": _campaign(i), "reason": "complaints: " + "r" * 400, "until": None}
        )
        state[Control("state", f"acme/{_campaign(i)}").key()] = encode(control)
    return state


def _published(out: Output) -> dict[str, bytes]:
    latest: dict[str, bytes] = {}
    for w in out.writes:
        if w.topic == QUEUE_STATS.name and w.value is not None:
            latest[w.key.decode()] = w.value
    return latest


def test_every_record_fits_the_topic_and_the_report_counts_everything() -> None:
    stage = QueueStage(Policies(CONFIG), snapshot_every=timedelta(seconds=2))
    stage.assigned(0, _state())
    out = Output(QUEUE_STATE.name)
    stage.on_tick(NOW, out)
    published = _published(out)
    sizes = sorted(len(v) for v in published.values())
    assert sizes[-1] < QUEUE_STATS.max_message_bytes // 2, sizes[-1]
    records = [decode(v, QueueStats) for v in published.values()]
    assert sum(len(r.rows) for r in records) == CAMPAIGNS
    assert sum(len(r.suspensions) for r in records) == CONTROLS
    assert sum(len(v) for v in published.values()) > QUEUE_STATS.max_message_bytes, "one record would not fit"
    report = stats_report(records, CONFIG.egress, {}, NOW, tenant="acme")
    assert len(report["campaigns"]) == CAMPAIGNS
    assert len(report["suspensions"]) == CONTROLS
    assert report["total_sent"] == 3 * CAMPAIGNS
    assert set(published) == {stats_records.key(0, "acme", n) for n in range(stats_records.SLOTS)}


def test_a_slot_a_smaller_layout_no_longer_needs_is_emptied_once() -> None:
    stage = QueueStage(Policies(CONFIG), snapshot_every=timedelta(seconds=2))
    state = _state()
    stage.assigned(0, state)
    out = Output(QUEUE_STATE.name)
    stage.on_tick(NOW, out)
    used = [k for k, v in _published(out).items() if decode(v, QueueStats).rows]
    assert len(used) > 1
    # Fewer campaigns now (a restart with less state, say): the slots no longer used are published empty.
    small = {k: v for k, v in state.items() if not k.startswith(b"z:")}
    small = dict(list(small.items())[:10])
    stage.assigned(0, small)
    out = Output(QUEUE_STATE.name)
    stage.on_tick(NOW + timedelta(seconds=3), out)
    now_published = {k: decode(v, QueueStats) for k, v in _published(out).items()}
    assert set(now_published) == {stats_records.key(0, "acme", n) for n in range(stats_records.SLOTS)}
    assert [len(now_published[stats_records.key(0, "acme", n)].rows) for n in range(3)] == [10, 0, 0]
    out = Output(QUEUE_STATE.name)
    stage.on_tick(NOW + timedelta(seconds=6), out)
    assert _published(out) == {}, "nothing changed: nothing published, the empty slots included"
    assert stats_records.key(0, "acme", 0) == "0/acme"
    assert stats_records.key(3, None, 2) == "3#2/"


def test_past_the_last_slot_what_does_not_fit_is_left_out() -> None:
    row = fixtures.status_counts()
    rows = tuple(row.model_copy(update={"campaign": f"c{i}"}) for i in range(40))
    records = stats_records.split(0, "acme", rows, (), NOW, budget=stats_records.row_size(row) * 2)
    assert len(records) == stats_records.SLOTS
    assert sum(len(r.rows) for r in records) == 2 * stats_records.SLOTS
