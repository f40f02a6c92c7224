"""The short chaos run: the real stack (broker, ingest, scheduler, delivery, gateway, a recording sink) takes
mail over HTTP and SMTP while each service and the broker is SIGKILLed at a random moment and restarted.
Nothing accepted is lost, and nothing is sent twice but an attempt that was in flight at a delivery kill.

The long form with a table is `python -m bench.chaos`; a failure here prints the seed to replay with it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.infra.broker import unavailable_reason
from tests.infra.chaos.run import SERVICES, ChaosRun, ChaosSettings
from tests.infra.chaos.tally import table

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SEED = int(os.environ.get("MAILSTREAM_CHAOS_SEED") or random.randrange(1_000_000))


def test_a_stack_killed_again_and_again_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true" or os.environ.get("MAILSTREAM_REQUIRE_BROKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    settings = ChaosSettings(
        messages=700, kills=len(SERVICES) + 1, seed=SEED, settle=90.0, gap=(2.0, 5.0), give_up=60.0
    )
    outcome = ChaosRun(settings, tmp_path).run()
    r = outcome.report
    replay = f"seed {SEED} (MAILSTREAM_CHAOS_SEED={SEED}), logs in {tmp_path}\n{table(r, [*SERVICES, 'broker'])}"
    print(replay)
    assert set(r.kills) == {*SERVICES, "broker"}, replay
    assert not outcome.exits, "\n".join(outcome.exits)
    assert r.accepted >= 0.95 * r.submitted, replay
    assert not r.lost, f"lost {r.lost[:10]}; {replay}"
    assert not r.pipeline_duplicates, f"sent again after their answer: {r.pipeline_duplicates[:10]}; {replay}"
    assert not r.redelivered, f"at the sink under two attempt ids: {r.redelivered[:10]}; {replay}"
    assert not r.http_created_twice, f"retried HTTP requests created twice: {r.http_created_twice[:10]}; {replay}"
    assert r.in_flight_duplicates <= r.unanswered_at_kills, replay
    assert r.untraced == 0, replay
    assert not outcome.unexpected, f"{outcome.unexpected[:10]}; {replay}"
