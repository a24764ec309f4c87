"""Fault injection under steady load, with real processes (see `faults.py` for the harness).

CI runs the short form (8 s outages, ~12 products, scaled by DESCSTREAM_RELIABILITY_SCALE);
`make reliability` (`python -m tests.reliability.run --full`) runs 30 s outages and writes the report.
Each scenario asserts: every expected (product, audience) description is present at the product's newest
version (0 lost), nothing older is left (0 stale), every stored text passes the gate against the stored
facts, and the worker is alive at the end (0 crashes).
"""

from __future__ import annotations

import asyncio

import pytest

from . import faults

D = faults.Durations.from_env()


def _check(res: faults.FaultResult) -> None:
    print(res.row())
    assert res.expected > 0 and res.inputs > 0, res.row()
    assert res.crashes == 0, res.detail
    assert res.lost == 0, res.detail.get("missing")
    assert res.stale == 0, res.detail.get("stale_items")
    assert res.found == res.expected
    assert res.detail["gate_failures"] == 0, res.detail.get("gate_items")


def test_worker_sigkill_mid_batch(rel_stack, tmp_path):
    _check(asyncio.run(faults.scenario_worker_kill(rel_stack, tmp_path, D)))


def test_triton_outage(rel_stack, tmp_path):
    res = asyncio.run(faults.scenario_triton_down(rel_stack, tmp_path, D))
    _check(res)
    assert res.detail["worker_alive_during_outage"]
    # fallbacks published meanwhile (model_version "none") are replaced by retries once Triton is back,
    # except those that exhausted their attempts (documented: they stay until the next request)
    assert res.detail["none_fallbacks_left"] <= (res.detail["gave_up"] or 0), res.detail


def test_redis_outage(rel_stack, tmp_path):
    res = asyncio.run(faults.scenario_redis_down(rel_stack, tmp_path, D))
    _check(res)


@pytest.mark.order("last")
def test_broker_restart(rel_stack, tmp_path):
    res = asyncio.run(faults.scenario_broker_restart(rel_stack, tmp_path, D))
    _check(res)
