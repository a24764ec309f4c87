"""The generation batch logic in-process against real Redis: coalescing, skip, gate fallback, retries."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from models import gate as model_gate
from streams.generation_agent import GenerationWorker, now_ms
from streams.redis_store import RedisStore
from streams.services import FakeGenerator, Gate, Services

from .test_redis_store import product

pytestmark = pytest.mark.asyncio(loop_scope="session")


def worker(infra, store, gen, **kw) -> GenerationWorker:
    return GenerationWorker(infra, Services(infra, store, gen, gen, Gate.load()), **kw)


async def test_coalesce_skip_gate_and_failure_fallbacks(infra):
    store = RedisStore.from_settings(infra)
    ok, bad, down = (f"p-{uuid.uuid4().hex[:8]}" for _ in range(3))
    gen = FakeGenerator(fail_products=[down], unfaithful_products=[bad])
    w = worker(infra, store, gen)
    for pid in (ok, bad, down):
        await store.upsert_products([(product(pid, 1), "fh", None)])
    reqs = [{"product_id": pid, "audiences": ["default", "outdoor_adventurers"], "priority": 1} for pid in (ok, bad, down)]
    written = await w.process(reqs + reqs)  # duplicates in one batch are coalesced
    assert len(written) == 6
    by = {(r.product_id, r.audience): r for r in written}
    assert by[(ok, "default")].source == "generated"
    # gate rejection: the fallback carries the model version and the gate's reasons
    rej = by[(bad, "default")]
    assert rej.source == "fallback" and rej.model_version == gen.model_version and "gate failed" in rej.gate.reasons[0]
    # generation failure: fallback at once (nothing is ever missing) + a retry scheduled, not a blocking loop
    failed = by[(down, "default")]
    assert failed.source == "fallback" and failed.model_version == "none"
    assert "generation failed (attempt 1/" in failed.gate.reasons[0]
    for rec in written:
        assert model_gate.judge(product(rec.product_id, 1), rec.audience, rec.text).passed, rec.text
    assert gen.texts == 6  # one call per job
    assert sorted((r["product_id"], r["audiences"][0], r["attempt"]) for r in w.outbox) == [
        (down, "default", 1), (down, "outdoor_adventurers", 1)]
    assert all(r["not_before_ms"] > now_ms() for r in w.outbox)
    w.outbox.clear()
    before = gen.texts
    again = await w.process(reqs)  # already current (gate rejections are final): only the failed ones retry
    assert gen.texts - before == 2 and again == []  # an equal-rank fallback is not rewritten
    gen.fail.clear()
    again = await w.process(reqs)
    assert {(r.product_id, r.source) for r in again} == {(down, "generated")}
    await store.close()


async def test_fallback_first_then_replaced_when_generator_recovers(infra):
    """Fails twice, then succeeds: the fallback is published at once and replaced by generated text
    through re-enqueued requests (attempt count + not-before time), as the agent would loop them."""
    store = RedisStore.from_settings(infra)
    pid = f"p-{uuid.uuid4().hex[:8]}"
    gen = FakeGenerator(fail_times={pid: 2})
    w = worker(infra, store, gen, retry_base_s=0.2, retry_max_s=1.0, park_max_s=0.5)
    await store.upsert_products([(product(pid, 1), "fh", None)])
    written = await w.handle([{"product_id": pid, "audiences": ["default"], "priority": 100, "reason": "product_change"}])
    assert [r.source for r in written] == ["fallback"]
    assert (await store.get_record(pid)).source == "fallback"
    seen = ["fallback"]
    waits: list[float] = []
    for _ in range(10):
        if not w.outbox:
            break
        batch, w.outbox = w.outbox, []
        assert all(r["reason"] == "retry" for r in batch)
        t0 = asyncio.get_running_loop().time()
        written = await w.handle(batch)  # waits (parks) until the retry is due, never runs it early
        waits.append(asyncio.get_running_loop().time() - t0)
        seen += [r.source for r in written]
    rec = await store.get_record(pid)
    assert rec.source == "generated" and rec.model_version == gen.model_version
    # 2 failures -> the 2nd fallback equals the stored one (not newer, not rewritten); then generated text
    assert seen == ["fallback", "generated"]
    assert gen.texts == 3 and not w.outbox
    assert len(waits) == 2 and waits[0] >= 0.15 and waits[1] >= 0.3  # backoff 0.2 s, then 0.4 s
    await store.close()


async def test_retries_are_bounded(infra):
    store = RedisStore.from_settings(infra)
    pid = f"p-{uuid.uuid4().hex[:8]}"
    gen = FakeGenerator(fail_products=[pid])
    w = worker(infra, store, gen, max_attempts=3, retry_base_s=0.01, retry_max_s=0.05, park_max_s=0.2)
    await store.upsert_products([(product(pid, 1), "fh", None)])
    await w.handle([{"product_id": pid, "audiences": ["default"], "priority": 1}])
    rounds = 0
    while w.outbox and rounds < 20:
        batch, w.outbox = w.outbox, []
        await w.handle(batch)
        rounds += 1
    assert gen.texts == 3 and rounds == 2 and not w.outbox
    rec = await store.get_record(pid)
    assert rec.source == "fallback" and rec.model_version == "none"
    assert model_gate.judge(product(pid, 1), "default", rec.text).passed
    # a fresh request (e.g. a product change or an audience switch) starts a new budget
    gen.fail.clear()
    assert [r.source for r in await w.handle([{"product_id": pid, "audiences": ["default"], "priority": 1}])] == ["generated"]
    await store.close()


async def test_parked_retries_are_resent_not_processed_early(infra):
    store = RedisStore.from_settings(infra)
    gen = FakeGenerator()
    w = worker(infra, store, gen, park_max_s=0.05)
    req = {"product_id": "p-later", "audiences": ["default"], "attempt": 2, "not_before_ms": now_ms() + 60_000}
    assert await w.handle([req]) == []
    assert w.outbox == [req] and gen.texts == 0
    await store.close()


async def test_backfill_requests_upgrade_descriptions_to_the_new_model(infra):
    """Model upgrade: fake-1 wrote the text; a fake-2 worker rewrites it only for backfill requests that
    name fake-2, skips pairs fake-2 already wrote, and a worker on another model skips them."""
    store = RedisStore.from_settings(infra)
    pid = f"p-{uuid.uuid4().hex[:8]}"
    await store.upsert_products([(product(pid, 1), "fh", None)])
    auds = ["default", "outdoor_adventurers"]
    old = worker(infra, store, FakeGenerator())
    assert len(await old.process([{"product_id": pid, "audiences": auds, "reason": "product_change"}])) == 2
    before = await store.get_records(pid)
    assert {r.model_version for r in before.values()} == {"fake-1"}

    gen2 = FakeGenerator(model_version="fake-2")
    new = worker(infra, store, gen2)
    # a plain request from the new model generates but cannot rewrite the same stamp (no upgrade flag)
    assert await new.process([{"product_id": pid, "audiences": auds, "reason": "audience_switch"}]) == []
    backfill = {"product_id": pid, "audiences": auds, "reason": "backfill", "priority": 1, "model_version": "fake-2"}
    written = await new.process([backfill])
    assert {(r.audience, r.model_version, r.source) for r in written} == {(a, "fake-2", "generated") for a in auds}
    after = await store.get_records(pid)
    assert all(after[a].product_version == 1 and after[a].source_event_time == before[a].source_event_time for a in auds)
    # done: a repeated backfill request is skipped without generating
    texts = gen2.texts
    assert await new.process([backfill, backfill]) == [] and gen2.texts == texts
    # a worker still on the old model skips upgrade requests it cannot serve (and never writes back)
    old_texts = old.services.generator.texts
    again = dict(backfill, model_version="fake-3")
    assert await old.process([again]) == [] and old.services.generator.texts == old_texts
    assert {r.model_version for r in (await store.get_records(pid)).values()} == {"fake-2"}
    await store.close()


async def test_backfill_retry_keeps_upgrade_and_settings_defaults(infra):
    store = RedisStore.from_settings(infra)
    pid = f"p-{uuid.uuid4().hex[:8]}"
    await store.upsert_products([(product(pid, 1), "fh", None)])
    w1 = worker(infra, store, FakeGenerator())
    await w1.process([{"product_id": pid, "audiences": ["default"]}])
    gen2 = FakeGenerator(model_version="fake-2", fail_times={pid: 1})
    w2 = worker(infra, store, gen2, retry_base_s=0.05, park_max_s=0.5)
    # defaults come from WorkerSettings
    ws = infra.worker
    assert (w1.max_attempts, w1.retry_base_s, w1.retry_max_s, w1.park_max_s) == (
        ws.generation_max_attempts, ws.generation_retry_base_s, ws.generation_retry_max_s, ws.generation_park_max_s)
    req = {"product_id": pid, "audiences": ["default"], "reason": "backfill", "model_version": "fake-2"}
    assert await w2.handle([req]) == []  # generation failed: the "none" fallback never replaces fake-1's text
    assert (await store.get_record(pid)).model_version == "fake-1"
    assert [(r["reason"], r["model_version"], r["attempt"]) for r in w2.outbox] == [("retry", "fake-2", 1)]
    batch, w2.outbox = w2.outbox, []
    written = await w2.handle(batch)
    assert [(r.model_version, r.source) for r in written] == [("fake-2", "generated")]
    await store.close()
