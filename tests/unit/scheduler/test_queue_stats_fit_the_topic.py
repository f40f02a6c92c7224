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
    assert len(stage_keys := set(published)) == stats_records.SLOTS
    assert "0/acme" in stage_keys


def test_a_slot_a_smaller_layout_no_longer_needs_is_emptied() -> None:
    big = [fixtures.status_counts().model_copy(update={"campaign": _campaign(i)}) for i in range(CAMPAIGNS)]
    before = stats_records.split(0, "acme", tuple(big), (), NOW)
    after = stats_records.split(0, "acme", tuple(big[:10]), (), NOW)
    assert len(before) == len(after) == stats_records.SLOTS
    assert sum(bool(r.rows) for r in before) > 1
    assert [len(r.rows) for r in after] == [10] + [0] * (stats_records.SLOTS - 1)
    assert stats_records.key(0, "acme", 0) == "0/acme"
    assert stats_records.key(3, None, 2) == "3#2/"


def test_past_the_last_slot_what_does_not_fit_is_left_out() -> None:
    row = fixtures.status_counts()
    rows = tuple(row.model_copy(update={"campaign": f"c{i}"}) for i in range(40))
    records = stats_records.split(0, "acme", rows, (), NOW, budget=stats_records.row_size(row) * 2)
    assert len(records) == stats_records.SLOTS
    assert sum(len(r.rows) for r in records) == 2 * stats_records.SLOTS
