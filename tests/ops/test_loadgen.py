"""A short loadgen run against the real broker, Redis and a worker (fake generator): the report has the
figures, the plots and the markdown; then backfill planning/resume on the data it left behind."""

from __future__ import annotations

import json

import pytest

from streams.loadgen import LoadgenConfig, run_loadgen
from streams.replay import BackfillConfig, run_backfill

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_loadgen_short_run_writes_report(ops_worker, tmp_path):
    settings, worker = ops_worker
    out = tmp_path / "loadgen"
    cfg = LoadgenConfig(products=24, users=20, rate=40, duration=4, update_rate=2, seed=3, out=out,
                        warmup=40, drain=20, drift_period_s=2.0, progress=False, command="descstream loadgen (test)")
    rep = await run_loadgen(settings, cfg)
    assert rep["sent"]["catalogue"] == 24
    assert 140 <= rep["sent"]["behaviour"] <= 161 and rep["sent"]["product_updates"] >= 7
    assert rep["descriptions"]["total"] > 24, worker.tail()  # at least the catalogue's default descriptions
    lat = rep["latency_s"]
    assert lat["all"]["p50"] is not None and lat["all"]["p50"] <= lat["all"]["p95"] <= lat["all"]["p99"]
    assert lat["steady"]["count"] >= 1 and lat["steady"]["p99"] < 30
    assert rep["descriptions"]["by_reason"].get("product_change", 0) >= 1
    assert rep["generations_per_1000_behaviour"] is not None
    assert rep["gate"]["rejection_rate"] is not None
    assert rep["lag"]["samples"] >= 5 and rep["lag"]["max"] is not None and rep["lag"]["final"] == 0
    assert rep["throughput"]["in"]["mean_per_s"] > 20
    assert rep["redis_descriptions"] >= rep["descriptions"]["distinct_pairs"]
    for name in ("report.json", "report.md", "latency_cdf.png", "throughput.png", "lag.png", "records.jsonl"):
        assert (out / name).stat().st_size > 100, name
    assert (out / "latency_cdf.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "report.json").read_text())
    assert saved["latency_s"]["all"]["p95"] == pytest.approx(lat["all"]["p95"])
    md = (out / "report.md").read_text()
    for text in ("p50", "p95", "p99", "per 1,000 behaviour events", "Consumer lag", "![lag.png](lag.png)"):
        assert text in md


async def test_backfill_plans_hot_first_and_resumes(ops_worker, tmp_path):
    """Runs after the loadgen test (same module worker and Redis data)."""
    settings, _ = ops_worker
    ck = tmp_path / "ck.json"
    none = await run_backfill(settings, BackfillConfig(model_version="fake-1", checkpoint=ck, dry_run=True, progress=False))
    assert none["stale_descriptions"] == 0  # everything was written by the fake generator's fake-1

    plan = await run_backfill(settings, BackfillConfig(model_version="fake-2", checkpoint=ck, dry_run=True, progress=False))
    assert plan["to_process"] == plan["stale_products"] > 0
    counts = [int(line.split("(")[1].split(" ")[0]) for line in plan["plan"]]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0  # hot products first
    assert not ck.exists()

    first = await run_backfill(settings, BackfillConfig(model_version="fake-2", checkpoint=ck, batch=2, wait=0.5,
                                                        max_products=2, progress=False))
    assert first["requested"] >= 2 and json.loads(ck.read_text())["done"]
    again = await run_backfill(settings, BackfillConfig(model_version="fake-2", checkpoint=ck, dry_run=True, progress=False))
    assert again["already_done"] == 2 and again["to_process"] == plan["to_process"] - 2
