"""The `mailstream` operator commands as an operator runs them: a subprocess with MAILSTREAM_URL and
MAILSTREAM_API_KEY pointing at a running pipeline (broker, ingest, scheduler, delivery, SMTP sink). Messages
injected over HTTP are found by `messages` with filters and shown by `inspect`; `stats`, `servers`, `queues`
answer; a suspension made with `suspend` shows in `queues` and `suspensions` until `resume`, and both in
`audit`; `cancel` and `bounce` end queued mail only once confirmed (--yes); `rebind` moves a campaign's queued mail
to another queue, `set-priority` and `retry` act on messages by id and `purge` ends the rebound mail, each printing
the QueueOperationResult counted by the scheduler (and `operation` reads it again); suppressions are added, listed and
removed; `events tail` prints a Delivery as it happens and `events export` writes a CSV with a header; a wrong key
exits with the auth code."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from mailstream.operator.client import EXIT_AUTH, EXIT_NOT_FOUND
from tests.infra.stack import ACME_KEY, ADMIN_KEY, Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RUN = uuid.uuid4().hex[:8]
CAMPAIGN = f"cli-{RUN}"


@pytest.fixture(scope="module")
def cli_stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(kafka_bootstrap, sink.address, tmp_path_factory.mktemp("cli")) as s:
        yield s


def env_for(stack: Stack, key: str) -> dict[str, str]:
    return {
        **os.environ,
        "MAILSTREAM_URL": stack.api,
        "MAILSTREAM_API_KEY": key,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "MAILSTREAM_CLI_CONFIG": "/nonexistent/cli.toml",  # not the developer's own file
        "COLUMNS": "200",
    }


def mailstream(stack: Stack, *args: str, key: str = ADMIN_KEY, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailstream", *args],
        env=env_for(stack, key),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def json_of(stack: Stack, *args: str, key: str = ADMIN_KEY) -> Any:
    done = mailstream(stack, *args, "--json", key=key)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def until(probe: Callable[[], Any], timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def inject(stack: Stack, *recipients: str, campaign: str = CAMPAIGN, **metadata: str) -> list[str]:
    with stack.client(ACME_KEY) as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "ops@acme.test",
                "recipients": [{"email": rcpt} for rcpt in recipients],
                "metadata": {"campaign": campaign, **metadata},
                "content": {"subject": f"operator cli {RUN}", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    return [str(t["id"]) for t in r.json()["transactions"]]


@pytest.fixture(scope="module")
def delivered(cli_stack: Stack) -> list[str]:
    ids = inject(cli_stack, *(f"cli-{RUN}-{n}@example.com" for n in range(3)))
    for tx in ids:
        cli_stack.wait_status(tx, {"delivered"})
    return ids


def test_messages_finds_the_injected_ones_by_filter_and_pages_through_them(
    cli_stack: Stack, delivered: list[str]
) -> None:
    def found() -> list[str]:
        page = json_of(cli_stack, "messages", "--campaign", CAMPAIGN, "--status", "delivered,bounced")
        return sorted(m["id"] for m in page["messages"]) if len(page["messages"]) == 3 else []

    assert until(found) == sorted(delivered)
    one = json_of(cli_stack, "messages", "--recipient", f"cli-{RUN}-1@example.com", "--tenant", "acme")
    assert [m["id"] for m in one["messages"]] == [delivered[1]]
    paged = json_of(
        cli_stack, "messages", "--campaign", CAMPAIGN, "--limit", "1", "--all", "--sort", "recipient", "--asc"
    )
    assert [m["recipient"] for m in paged["messages"]] == [f"cli-{RUN}-{n}@example.com" for n in range(3)]
    first = json_of(cli_stack, "messages", "--campaign", CAMPAIGN, "--limit", "2")
    assert len(first["messages"]) == 2
    assert first["next_cursor"]
    table = mailstream(cli_stack, "messages", "--search", RUN, "--status", "delivered")
    assert table.returncode == 0, table.stderr
    assert all(tx in table.stdout for tx in delivered), table.stdout


def test_inspect_shows_the_message_with_its_attempts(cli_stack: Stack, delivered: list[str]) -> None:
    until(lambda: mailstream(cli_stack, "inspect", delivered[0]).returncode == 0)
    detail = until(lambda: (d := json_of(cli_stack, "inspect", delivered[0]))["attempts"] and d)
    assert detail["status"] == "delivered"
    assert [a["outcome"] for a in detail["attempts"]] == ["DELIVERED"]
    shown = mailstream(cli_stack, "inspect", delivered[0])
    assert shown.returncode == 0
    assert delivered[0] in shown.stdout
    assert "DELIVERED" in shown.stdout
    missing = mailstream(cli_stack, "inspect", "no-such-message")
    assert missing.returncode == EXIT_NOT_FOUND
    assert "Not found" in missing.stderr


def test_stats_servers_and_queues_answer(cli_stack: Stack, delivered: list[str]) -> None:
    metrics = until(lambda: (m := json_of(cli_stack, "stats", "--campaign", CAMPAIGN))["total_messages"] == 3 and m)
    assert metrics["messages_by_status"].get("delivered") == 3
    assert "example.com" in metrics["domain_health_scores"]
    assert isinstance(json_of(cli_stack, "servers"), list)
    rows = until(lambda: [q for q in json_of(cli_stack, "queues")["queues"] if q["campaign"] == CAMPAIGN])
    assert rows
    assert rows[0]["tenant"] == "acme"
    assert rows[0]["state"] == "active"
    for command in ("stats", "servers", "queues"):
        done = mailstream(cli_stack, command)
        assert done.returncode == 0, done.stderr


def test_suspend_shows_in_queues_and_suspensions_until_resume(cli_stack: Stack, delivered: list[str]) -> None:
    scope = ("--tenant", "acme", "--campaign", CAMPAIGN)
    done = mailstream(cli_stack, "suspend", *scope, "--reason", "cli test", "--duration", "1h", "--yes")
    assert done.returncode == 0, done.stderr

    def held() -> list[dict[str, Any]]:
        return [s for s in json_of(cli_stack, "suspensions")["data"] if s.get("campaign") == CAMPAIGN]

    [control] = until(held)
    assert control["reason"] == "cli test"
    assert control["tenant"] == "acme"
    [row] = [q for q in json_of(cli_stack, "queues")["queues"] if q["campaign"] == CAMPAIGN]
    assert row["state"] == "suspended"
    assert mailstream(cli_stack, "resume", *scope, "--yes").returncode == 0
    assert until(lambda: not held())

    def audited() -> list[dict[str, Any]]:  # both operations, newest first, filtered by the scope they named
        page = json_of(cli_stack, "audit", "--scope", f"campaign={CAMPAIGN}", "--result", "accepted", "--since", "1h")
        return [e for e in page["data"] if e["operation"] in ("suspend", "resume")]

    resumed, suspended = until(lambda: (found := audited()) and len(found) == 2 and found)
    assert (suspended["operation"], suspended["reason"], suspended["admin"]) == ("suspend", "cli test", True)
    assert resumed["operation"] == "resume"
    assert suspended["scope"] == {"tenant": "acme", "campaign": CAMPAIGN}
    table = mailstream(cli_stack, "audit", "--operation", "suspend", "--scope", f"campaign={CAMPAIGN}")
    assert table.returncode == 0, table.stderr
    assert "cli test" in table.stdout
    assert f"campaign={CAMPAIGN}" in table.stdout


def test_cancel_and_bounce_end_queued_mail_after_confirmation(cli_stack: Stack) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    [one] = inject(cli_stack, f"cancel-{RUN}@example.com", send_at=later)
    held = inject(cli_stack, f"b1-{RUN}@example.com", f"b2-{RUN}@example.com", campaign=f"bounce-{RUN}", send_at=later)
    for tx in (one, *held):
        cli_stack.wait_status(tx, {"scheduled"})
    refused = mailstream(cli_stack, "cancel", one)  # no --yes and no one to answer: nothing is done
    assert refused.returncode == 1
    assert "Aborted" in refused.stderr
    answer = json_of(cli_stack, "cancel", one, "--reason", "cli cancel", "--yes")
    assert answer["cancel_requested"] is True
    assert cli_stack.wait_status(one, {"cancelled", "delivered"})["status"] == "cancelled"
    scope = ("--tenant", "acme", "--campaign", f"bounce-{RUN}")
    bounced = json_of(cli_stack, "bounce", *scope, "--reason", "cli bounce", "--duration", "1s", "--yes")
    assert bounced["operation"] == "cancel"
    assert bounced["scope"] == {"tenant": "acme", "campaign": f"bounce-{RUN}"}
    for tx in held:
        assert cli_stack.wait_status(tx, {"cancelled", "delivered"})["final_reason"] == "cancelled: cli bounce"


def rebound_to(stack: Stack, tx: str, queue: str) -> dict[str, Any] | None:
    status = stack.wait_status(tx, {"scheduled"})
    return status if status["queue"] == queue else None


def test_rebind_set_priority_retry_and_purge_act_on_queued_mail(cli_stack: Stack) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    held = inject(cli_stack, f"o1-{RUN}@example.com", f"o2-{RUN}@example.com", campaign=f"ops-{RUN}", send_at=later)
    for tx in held:
        cli_stack.wait_status(tx, {"scheduled"})
    moved = f"moved-{RUN}:acme@example.com"
    scope = ("--tenant", "acme", "--campaign", f"ops-{RUN}")
    unconfirmed = mailstream(cli_stack, "rebind", *scope, "--to-queue", moved)
    assert (unconfirmed.returncode, "Aborted" in unconfirmed.stderr) == (1, True)
    assert cli_stack.wait_status(held[0], {"scheduled"})["queue"] == f"ops-{RUN}:acme@example.com"

    rebound = json_of(cli_stack, "rebind", *scope, "--to-queue", moved, "--reason", "cli rebind", "--yes")
    assert (rebound["operation"], rebound["affected_messages"], rebound["errors"]) == ("rebind", 2, [])
    assert (rebound["done"], rebound["success"]) == (True, True)
    for tx in held:  # the new status version reaches ingest's view soon after the result
        status = until(partial(rebound_to, cli_stack, tx, moved))
        assert (status["queue"], status["campaign"]) == (moved, f"moved-{RUN}")
    again = json_of(cli_stack, "operation", rebound["id"])
    assert (again["id"], again["affected_messages"]) == (rebound["id"], 2)

    ids = [arg for tx in held for arg in ("--id", tx)]
    raised = mailstream(cli_stack, "set-priority", "9", *ids, key=ACME_KEY)  # the table, with a tenant's key
    assert raised.returncode == 0, raised.stderr
    assert "affected_messages" in raised.stdout
    assert "2" in raised.stdout.split("affected_messages", 1)[1].splitlines()[0]
    unchanged = json_of(cli_stack, "set-priority", "9", *ids)
    assert unchanged["affected_messages"] == 0  # the scheduler has them at 9 already

    [deferred] = inject(cli_stack, f"defer-{RUN}@example.com", campaign=f"retry-{RUN}")
    assert cli_stack.wait_status(deferred, {"deferred"})["num_attempts"] == 1  # the next try is 20 minutes away
    retried = json_of(cli_stack, "retry", "--id", deferred)
    assert (retried["affected_messages"], retried["affected_queues"]) == (1, [f"retry-{RUN}:acme@example.com"])
    assert until(lambda: cli_stack.wait_status(deferred, {"deferred"})["num_attempts"] == 2, timeout=30)

    purged = json_of(
        cli_stack, "purge", "--tenant", "acme", "--campaign", f"moved-{RUN}", "--reason", "cli purge", "--yes"
    )
    assert purged["affected_messages"] == 2
    for tx in held:
        done = cli_stack.wait_status(tx, {"cancelled"})
        assert done["final_reason"] == "cancelled: purged: cli purge"
    late = json_of(cli_stack, "retry", "--id", held[0])
    assert (late["affected_messages"], late["errors"], late["success"]) == (
        0,
        [f"{held[0]} is already cancelled"],
        False,
    )


def test_suppressions_add_list_remove(cli_stack: Stack) -> None:
    address = f"supp-{RUN}@example.com"
    added = json_of(cli_stack, "suppressions", "add", address, "--tenant", "acme", "--reason", "asked")
    assert [e["address"] for e in added] == [address]

    def listed() -> list[dict[str, Any]]:
        return list(json_of(cli_stack, "suppressions", "list", "--tenant", "acme", "--search", f"supp-{RUN}"))

    [entry] = until(listed)
    assert entry["reason"] == "asked"
    assert entry["source"] == "api"
    removed = mailstream(cli_stack, "suppressions", "remove", address, "--tenant", "acme", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert until(lambda: listed() == [])


def test_events_tail_prints_a_delivery_as_it_happens(cli_stack: Stack) -> None:
    args = ["events", "tail", "--tenant", "acme", "--type", "Delivery", "--domain", "tail.example", "--max", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailstream", *args, "--json"],
        env=env_for(cli_stack, ADMIN_KEY),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert "following" in proc.stderr.readline()
        [tx] = inject(cli_stack, f"tail-{RUN}@tail.example")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    [event] = [json.loads(line) for line in out.splitlines()]
    assert event["id"] == tx
    assert event["type"] == "Delivery"
    assert event["tenant"] == "acme"


def test_ctrl_c_stops_events_tail_cleanly(cli_stack: Stack) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailstream", "events", "tail"],
        env=env_for(cli_stack, ADMIN_KEY),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert "following" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_events_export_writes_csv_with_a_header(cli_stack: Stack, delivered: list[str], tmp_path: Path) -> None:
    target = tmp_path / "events.csv"
    done = mailstream(cli_stack, "events", "export", "--since", "30m", "--format", "csv", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert "exported" in done.stderr
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert rows
    assert list(rows[0])[:3] == ["timestamp", "type", "id"]
    assert {r["id"] for r in rows if r["type"] == "Delivery"} >= set(delivered)
    assert {r["campaign"] for r in rows if r["id"] in delivered} == {CAMPAIGN}
    jsonl = mailstream(cli_stack, "events", "export", "--offset", "0", "--tenant", "acme", "--type", "Delivery")
    assert jsonl.returncode == 0, jsonl.stderr
    assert {json.loads(line)["id"] for line in jsonl.stdout.splitlines()} >= set(delivered)


def test_a_wrong_key_exits_with_the_auth_code_and_never_prints_the_key(cli_stack: Stack) -> None:
    wrong = "not-a-key-0123456789"
    done = mailstream(cli_stack, "messages", key=wrong)
    assert done.returncode == EXIT_AUTH
    assert "401" in done.stderr
    assert wrong not in done.stderr + done.stdout
