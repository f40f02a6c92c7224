"""The replica's queue gauges are set from the read model's own metrics."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from prometheus_client import REGISTRY

from mailstream.config.model import Config
from mailstream.core.clock import ManualClock
from mailstream.ingest.read_model.service import ReadModel
from tests.infra.read_model_records import DOMAINS, T0, message, records


def test_refresh_sets_depth_by_status_oldest_age_and_health_of_the_top_domains(tmp_path: Path) -> None:
    config = Config.model_validate(
        {"ingest": {"read_model_db": str(tmp_path / "m.sqlite3"), "read_model_top_domains": 2}}
    )
    model = ReadModel(config, ManualClock(T0 + timedelta(hours=2)), "127.0.0.1:1")
    made = [message(i, random.Random(i)) for i in range(200)]
    model.projection.projector.apply(records(made))
    model.refresh_gauges()
    model.close()
    finals = [m.statuses[-1].status for m in made]
    assert REGISTRY.get_sample_value("mailstream_queue_messages", {"status": "bounced"}) == finals.count("bounced")
    oldest = min(m.accepted.received_at for m in made if m.statuses[-1].status in ("scheduled", "deferred"))
    age = REGISTRY.get_sample_value("mailstream_queue_oldest_message_age_seconds")
    assert age == (T0 + timedelta(hours=2) - oldest).total_seconds()
    scored = [
        d for d in DOMAINS if REGISTRY.get_sample_value("mailstream_domain_health_score", {"domain": d}) is not None
    ]
    assert len(scored) == 2
