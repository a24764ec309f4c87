"""The generation batch logic in-process against real Redis: coalescing, skip, gate fallback, retries."""

from __future__ import annotations

import uuid

import pytest

from streams.generation_agent import GenerationWorker
from streams.redis_store import RedisStore
from streams.services import FakeGenerator, Gate, Services

from .test_redis_store import product

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_coalesce_skip_gate_and_failure_fallbacks(infra):
    store = RedisStore.from_settings(infra)
    ok, bad, down = (f"p-{uuid.uuid4().hex[:8]}" for _ in range(3))
    gen = FakeGenerator(fail_products=[down], unfaithful_products=[bad])
    w = GenerationWorker(infra, Services(infra, store, gen, gen, Gate.load()))
    for pid in (ok, bad, down):
        await store.upsert_products([(product(pid, 1), "fh", None)])
    reqs = [{"product_id": pid, "audiences": ["default", "outdoor_adventurers"], "priority": 1} for pid in (ok, bad, down)]
    written = await w.process(reqs + reqs)  # duplicates in one batch are coalesced
    assert len(written) == 6
    by = {(r.product_id, r.audience): r for r in written}
    assert by[(ok, "default")].source == "generated"
    assert by[(bad, "default")].source == "fallback" and "gate failed" in by[(bad, "default")].gate.reasons[0]
    assert by[(down, "default")].source == "fallback" and by[(down, "default")].model_version == "none"
    texts_before = gen.texts
    assert gen.texts == 4 + 2 * (infra.triton.max_retries + 1)  # ok+bad once; `down` retried then fell back
    again = await w.process(reqs)  # already current: only the failed one is retried
    assert gen.texts - texts_before == 2 * (infra.triton.max_retries + 1)
    assert again == []  # the fallback is equal-rank, not rewritten
    gen.fail.clear()
    again = await w.process(reqs)
    assert {(r.product_id, r.source) for r in again} == {(down, "generated")}
    await store.close()
