"""The event filters and export formats of `events tail|export` (pure)."""

from __future__ import annotations

import csv
import io

from mailstream.events.fixtures import log_record
from mailstream.operator.event_log import CSV_FIELDS, EventFilter, csv_line, csv_values, summary


def test_the_filter_matches_tenant_type_and_recipient_domain() -> None:
    rec = log_record()  # a Delivery for acme to ann@example.com
    assert EventFilter().matches(rec)
    assert EventFilter("acme", frozenset({"Delivery", "Bounce"}), "EXAMPLE.com").matches(rec)
    assert not EventFilter(tenant="globex").matches(rec)
    assert not EventFilter(types=frozenset({"Bounce"})).matches(rec)
    assert not EventFilter(domain="example.org").matches(rec)


def test_a_csv_row_has_every_column_and_quotes_what_needs_it() -> None:
    rec = log_record().model_copy(update={"campaign": 'spring, "big"'})
    text = csv_line(list(CSV_FIELDS)) + csv_line(csv_values(rec))
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["type"] == "Delivery"
    assert row["id"] == "tx-1"
    assert row["campaign"] == 'spring, "big"'
    assert row["code"] == str(rec.response.code)
    assert row["response"] == rec.response.content
    assert row["bounce_classification"] == ""  # None is an empty cell


def test_a_summary_line_names_the_event_and_the_reply() -> None:
    line = summary(log_record())
    assert "Delivery" in line
    assert "tx-1 ann@example.com [spring:acme@example.com]" in line
    assert line.endswith(log_record().response.content)
