"""The order of a domain's mail exchangers (RFC 5321 §5.1) and the null MX (RFC 7505)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from mailstream.core.mx_plan import order_exchangers


def test_lower_preference_first_and_names_normalised() -> None:
    records = [(20, "B.example.com."), (10, "a.example.com."), (30, "c.example.com")]
    assert order_exchangers(records, random.Random(1)) == ("a.example.com", "b.example.com", "c.example.com")


def test_equal_preferences_are_shuffled_by_the_given_random_source() -> None:
    records = [(10, f"mx{i}.example.com.") for i in range(6)]
    orders = {order_exchangers(records, random.Random(seed)) for seed in range(20)}
    assert len(orders) > 1
    assert all(o is not None and sorted(o) == [f"mx{i}.example.com" for i in range(6)] for o in orders)


def test_null_mx_refuses_mail_and_a_stray_dot_among_others_is_dropped() -> None:
    assert order_exchangers([(0, ".")], random.Random(0)) is None
    assert order_exchangers([(0, "."), (10, "mx.example.com.")], random.Random(0)) == ("mx.example.com",)


def test_duplicates_are_tried_once() -> None:
    assert order_exchangers([(10, "mx.example.com."), (10, "MX.example.com")], random.Random(0)) == ("mx.example.com",)


@given(
    st.lists(
        st.tuples(st.integers(0, 65535), st.from_regex(r"[a-z]{1,8}\.test\.?", fullmatch=True)), min_size=1, max_size=12
    ),
    st.integers(),
)
def test_each_host_once_in_order_of_its_best_preference(records: list[tuple[int, str]], seed: int) -> None:
    order = order_exchangers(records, random.Random(seed))
    assert order is not None
    best: dict[str, int] = {}
    for pref, host in records:
        best[host.rstrip(".")] = min(best.get(host.rstrip("."), pref), pref)
    assert sorted(order) == sorted(best)
    assert [best[h] for h in order] == sorted(best[h] for h in order)
