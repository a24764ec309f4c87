"""The behaviour decoder's shortcut (`decode_behavior_fields`) agrees with the `BehaviorEvent` model."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from descstream.schemas import BehaviorFields, InvalidEvent, decode_behavior, decode_behavior_fields

IDS = st.one_of(
    st.sampled_from(["u-1", "p-123", "a.b:c_d-e", "x" * 128, "x" * 129, "", " u-1", "u 1", "ü-1", "u-1\n"]),
    st.text(max_size=12),
    st.integers(-(2**40), 2**40),
    st.none(),
)
KINDS = st.one_of(st.sampled_from(["view", "click", "add_to_cart", "purchase", "search", "View", "buy", ""]), st.none(), st.integers(-9, 9))
TIMES = st.one_of(
    st.sampled_from([
        "2026-11-28T10:00:00Z", "2026-11-28T10:00:00.5+01:00", "2026-11-28T10:00:00.123456-05:30",
        "2026-02-30T10:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28 10:00:00Z", "2026-11-28T10:00:00",
        "2026-11-28T10:00:00.1234567Z", "2026-11-28", "yesterday", "", "2026-11-28T10:00:60Z",
    ]),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.integers(min_value=0, max_value=2**33),
    st.none(),
)
QUERIES = st.one_of(st.none(), st.sampled_from(["cheap tent", "", "  kids  ", "a\x00b", "x" * 501]), st.integers(-9, 9))


def outcome(fn, raw: bytes):
    try:
        return fn(raw)
    except InvalidEvent as exc:
        return ("rejected", str(exc))


def via_model(raw: bytes):
    ev = decode_behavior(raw)
    return BehaviorFields(ev.user_id, ev.product_id, ev.event, ev.query, ev.ts.timestamp())


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {}, optional={"user_id": IDS, "product_id": IDS, "event": KINDS, "query": QUERIES, "ts": TIMES, "extra": st.integers(-(2**40), 2**40)}
    )
)
def test_shortcut_agrees_with_the_model(doc: dict) -> None:
    raw = orjson.dumps(doc)
    assert outcome(decode_behavior_fields, raw) == outcome(via_model, raw)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", b'{"user_id": "u-1"}', b"\xff\xfe", b"null"])
def test_shortcut_rejects_like_the_model(raw: bytes) -> None:
    assert outcome(decode_behavior_fields, raw) == outcome(via_model, raw)
    assert outcome(decode_behavior_fields, raw)[0] == "rejected"


def test_common_event_takes_the_shortcut_and_keeps_values() -> None:
    raw = orjson.dumps({"user_id": "u-1", "product_id": "p-9", "event": "add_to_cart", "query": None,
                        "ts": "2026-11-28T10:00:00Z"})
    got = decode_behavior_fields(raw)
    assert got == BehaviorFields("u-1", "p-9", "add_to_cart", None, 1795860000.0)
