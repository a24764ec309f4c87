"""Unit tests of the pure load-generator pieces (streams.traffic) and the replay helpers."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from streams.replay import Checkpoint, Pacer, ReplayError, hot_order, is_current, parse_time, requests_for, start_offset, stop_offset
from streams.traffic import (
    DescriptionSeen, RequestSeen, TrafficModel, ZipfSampler, attribute, cdf_points, fallback_kind, geometric,
    lag_summary, lag_total, latency_summary, pace_due, parse_mix, per_second, percentile, render_markdown, summarize,
)

PRODUCTS = [(f"p-{i}", ["A", "B", "C", "D"][i % 4]) for i in range(200)]


def test_parse_mix_normalises_and_validates():
    assert parse_mix(None) == pytest.approx({"view": 0.7, "click": 0.2, "add_to_cart": 0.07, "purchase": 0.03})
    assert parse_mix("view=3, purchase=1") == {"view": 0.75, "purchase": 0.25}
    assert parse_mix({"click": 2}) == {"click": 1.0}
    for bad in ("view", "view=x", "fly=1", "view=-1", "view=0", "view=inf"):
        with pytest.raises(ValueError):
            parse_mix(bad)


def test_zipf_sampler_matches_its_pmf():
    z = ZipfSampler(50, 1.2)
    assert sum(z.pmf(k) for k in range(50)) == pytest.approx(1.0)
    rng = random.Random(3)
    c = Counter(z.sample(rng) for _ in range(40_000))
    assert c.most_common(1)[0][0] == 0
    for k in (0, 1, 5):
        assert c[k] / 40_000 == pytest.approx(z.pmf(k), rel=0.08)
    assert all(0 <= k < 50 for k in c)
    with pytest.raises(ValueError):
        ZipfSampler(0)


def test_geometric_mean_and_pacing():
    rng = random.Random(1)
    xs = [geometric(rng, 6.0) for _ in range(20_000)]
    assert min(xs) >= 1 and sum(xs) / len(xs) == pytest.approx(6.0, rel=0.05)
    assert geometric(rng, 0.5) == 1
    assert pace_due(100, 1.0, 0) == 100
    assert pace_due(100, 1.0, 100) == 0
    assert pace_due(100, 1.0, 150) == 0
    assert pace_due(10_000, 10.0, 0, burst=500) == 500
    assert pace_due(0, 5.0, 0) == 0


def test_traffic_is_deterministic_and_follows_the_mix():
    a = TrafficModel(PRODUCTS, 100, seed=5)
    b = TrafficModel(PRODUCTS, 100, seed=5)
    ea = [a.next_behavior(1000.0 + i * 0.01) for i in range(500)]
    eb = [b.next_behavior(1000.0 + i * 0.01) for i in range(500)]
    assert ea == eb
    m = TrafficModel(PRODUCTS, 100, seed=6, mix="view=0.5,click=0.3,purchase=0.2")
    kinds = Counter(m.next_behavior(1000.0).event for _ in range(20_000))
    assert kinds["view"] / 20_000 == pytest.approx(0.5, abs=0.02)
    assert kinds["purchase"] / 20_000 == pytest.approx(0.2, abs=0.02)
    assert set(kinds) == {"view", "click", "purchase"}


def test_popularity_is_skewed_and_not_tied_to_ids():
    m = TrafficModel(PRODUCTS, 300, seed=2, affinity=0.0)
    c = Counter(m.next_behavior(0.0).product_id for _ in range(30_000))
    top = [pid for pid, _ in c.most_common(10)]
    assert c.most_common(1)[0][1] > 10 * (30_000 / len(PRODUCTS)) / 4  # heavy head
    assert top != [f"p-{i}" for i in range(10)]  # a seeded permutation, not id order
    assert top[0] == m.by_rank[0][0]


def test_sessions_funnel_and_affinity():
    m = TrafficModel(PRODUCTS, 50, seed=9, concurrent_sessions=1, affinity=1.0, drift_period_s=1e9)
    seen_by_user: dict[str, set[str]] = {}
    for _ in range(3000):
        e = m.next_behavior(10.0)
        viewed = seen_by_user.setdefault(e.user_id, set())
        if e.event == "view":
            viewed.add(e.product_id)
            assert e.category == m.preferred_category(e.user_id, 10.0)  # affinity 1: always the preferred category
    assert m.sessions_started > 50  # sessions end and new ones start


def test_preferred_category_drifts_over_time():
    m = TrafficModel(PRODUCTS, 200, seed=1, drift_period_s=10.0, drift_prob=0.5)
    changed = sum(m.preferred_category(u, 0.0) != m.preferred_category(u, 100.0) for u in m.users)
    stable = sum(m.preferred_category(u, 0.0) == m.preferred_category(u, 0.0) for u in m.users)
    assert stable == 200
    assert 60 < changed < 200  # many users switch audience within 10 epochs, not all
    no_drift = TrafficModel(PRODUCTS, 50, seed=1, drift_prob=0.0)
    assert all(no_drift.preferred_category(u, 0.0) == no_drift.preferred_category(u, 1e6) for u in no_drift.users)


def test_search_events_have_no_product():
    m = TrafficModel(PRODUCTS, 10, seed=1, mix="search=1")
    e = m.next_behavior(0.0)
    assert e.event == "search" and e.product_id is None and e.query


def test_percentiles_and_series():
    xs = list(range(1, 101))
    assert percentile(xs, 50) == pytest.approx(50.5)
    assert percentile(xs, 99) == pytest.approx(99.01)
    assert percentile([], 50) is None and percentile([3.0], 95) == 3.0
    s = latency_summary([0.1, 0.2, 0.3])
    assert s["count"] == 3 and s["p50"] == pytest.approx(0.2) and s["max"] == 0.3
    assert latency_summary([])["p99"] is None
    assert cdf_points([3, 1, 2]) == ([1, 2, 3], [1 / 3, 2 / 3, 1.0])
    assert per_second([0.1, 0.5, 1.2, 2.9, 3.5, -1], 0.0, 3.0) == [2, 1, 1]
    assert lag_total({"a": 10, "b": 5}, {"a": 7}) == 8
    ls = lag_summary([(0, 0), (1, 5), (2, 3), (3, 0), (4, 2)])
    assert ls["max"] == 5 and ls["drained_at_s"] == 3 and ls["final"] == 2


def _d(pid, aud, written, src, source="generated", reasons=()):
    return DescriptionSeen(pid, aud, source, fallback_kind(source, reasons), "m1", src, written - 0.01, written)


def test_attribute_matches_records_to_requests():
    reqs = [
        RequestSeen("p1", ("default", "gift"), "product_change", 10.0, 9.5),
        RequestSeen("p1", ("default",), "audience_switch", 20.0, None),
        RequestSeen("p1", ("default",), "audience_switch", 20.5, None),  # coalesced with the one before
    ]
    descs = [_d("p1", "default", 11.0, 9.5), _d("p1", "gift", 11.0, 9.5), _d("p1", "default", 21.0, 9.5), _d("p2", "default", 5, 4)]
    out = {(d.product_id, d.audience, d.written_s): d for d in attribute(descs, reqs)}
    assert out[("p1", "default", 11.0)].reason == "product_change" and out[("p1", "default", 11.0)].trigger_s == 9.5
    assert out[("p1", "gift", 11.0)].reason == "product_change"
    assert out[("p1", "default", 21.0)].reason == "audience_switch" and out[("p1", "default", 21.0)].trigger_s == 20.0
    assert out[("p2", "default", 5)].reason == "unknown" and out[("p2", "default", 5)].trigger_s is None


def test_fallback_kind():
    assert fallback_kind("generated", ()) is None
    assert fallback_kind("fallback", ("fallback: gate failed: unsupported_number",)) == "gate"
    assert fallback_kind("fallback", ("fallback: generation failed: timeout",)) == "generation"


def test_summarize_and_markdown():
    descs = attribute(
        [_d("p1", "default", 3.0, 0.5), _d("p2", "default", 12.0, 11.0),
         _d("p3", "gift", 13.0, 11.5, "fallback", ("fallback: gate failed: x",))],
        [RequestSeen("p2", ("default",), "product_change", 11.2, 11.0), RequestSeen("p3", ("gift",), "audience_switch", 11.5, None)],
    )
    rep = summarize(
        descriptions=descs, behaviour_sent=1000, updates_sent=5, catalogue_sent=10, sent_times=[0.1] * 10 + [10.5] * 1005,
        t0=0.0, traffic_start=10.0, traffic_end=20.0, t_end=25.0, lag_samples=[(1.0, 4), (2.0, 0)],
        consumed_samples=[(1.0, 0), (2.0, 7)], params={"command": "descstream loadgen --x"},
    )
    assert rep["descriptions"]["total"] == 3 and rep["descriptions"]["during_traffic"] == 2
    assert rep["generations_per_1000_behaviour"] == pytest.approx(2.0)
    assert rep["gate"]["gate_rejected"] == 1 and rep["gate"]["rejection_rate"] == pytest.approx(1 / 3)
    assert rep["latency_s"]["steady_product_change"]["p50"] == pytest.approx(1.0)
    assert rep["latency_s"]["steady_audience_switch"]["p50"] == pytest.approx(1.5)
    assert rep["throughput"]["consumed_series"] == [7]
    assert rep["lag"]["max"] == 4
    json.dumps(rep)
    md = render_markdown(rep, "test machine", ["lag.png"])
    assert "p95" in md and "test machine" in md and "![lag.png](lag.png)" in md and "descstream loadgen --x" in md


# ------------------------------------------------------------------------------------------ replay helpers
def test_parse_time_formats():
    now = 1_800_000_000.0
    assert parse_time("now", now) == 1_800_000_000_000
    assert parse_time("-15m", now) == parse_time("15m", now) == parse_time("15m ago", now) == int((now - 900) * 1000)
    assert parse_time("2h", now) == int((now - 7200) * 1000)
    assert parse_time("1700000000", now) == 1_700_000_000_000
    assert parse_time("1700000000123", now) == 1_700_000_000_123
    assert parse_time("2026-01-01T00:00:00Z", now) == parse_time("2026-01-01T00:00:00", now) == 1_767_225_600_000
    with pytest.raises(ValueError):
        parse_time("yesterday-ish", now)


def test_start_and_stop_offsets():
    ans = lambda off, ts: SimpleNamespace(offset=off, timestamp=ts)  # noqa: E731
    assert start_offset(None, 0, 50, 1000) == 50  # nothing at/after the time
    assert start_offset(ans(20, 1500), 0, 50, 1000) == 20
    assert start_offset(ans(0, 10), 5, 50, 1000) == 5  # a lower bound, clamped to the log start
    assert stop_offset(None, 50, 2000) == 50
    assert stop_offset(ans(30, 2500), 50, 2000) == 30
    assert stop_offset(ans(0, 100), 50, 2000) == 50  # untrustworthy answer: read to the end, filter by time
    assert stop_offset(ans(30, 2500), 50, None) == 50


def test_is_current_requests_and_order():
    assert not is_current(None, 1)
    assert is_current((3, "m1", "generated"), 3) and not is_current((2, "m1", "generated"), 3)
    assert not is_current((3, "none", "fallback"), 3)
    assert is_current((3, "m1", "fallback"), 3, "m1") and not is_current((3, "m1", "generated"), 3, "m2")
    reqs = requests_for([("p1", "default"), ("p1", "gift"), ("p2", "default"), ("p1", "gift")], "replay", 30.0, {"p1": 4})
    assert [k for k, _ in reqs] == [b"p1", b"p2"]
    body = json.loads(reqs[0][1])
    assert body == {"product_id": "p1", "version": 4, "audiences": ["default", "gift"], "reason": "replay", "priority": 30.0}
    assert hot_order(["b", "a", "c", "d"], {"c": 5, "d": 5, "a": 1}) == ["c", "d", "a", "b"]


def test_checkpoint_roundtrip_and_mismatch(tmp_path: Path):
    path = tmp_path / "ck.json"
    ck = Checkpoint(path, "v2")
    ck.done.update({"p1", "p2"})
    ck.save()
    again = Checkpoint(path, "v2")
    assert again.done == {"p1", "p2"}
    assert Checkpoint(path, "v2", restart=True).done == set()
    with pytest.raises(ReplayError):
        Checkpoint(path, "v3")


def test_pacer():
    p = Pacer(rate=10.0, started=100.0)
    assert p.delay(5, now=100.0) == pytest.approx(0.5)
    assert p.delay(5, now=101.5) == 0.0
    assert Pacer(rate=0).delay(1000) == 0.0
