"""End to end through the real Triton path: a worker subprocess with `--generator triton` against the
session `stack` (Tansu + redis-server + tritonserver serving `serving/model_repository`, tiny models).

The tiny generator has random weights, so its text is gibberish: the faithfulness gate must reject it and
the worker must publish the faithful fallback, stamped with the Triton model version and the gate's
reasons. The embedder (`text_embedder`) and tagger (`product_tagger`) are exercised by the product agent.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from descstream.schemas import ProductUpsert
from models import gate as model_gate
from models.audiences import audiences_for_category
from streams.cli import create_topics_async
from streams.redis_store import RedisStore, meta_key

from .conftest import WorkerProc, isolated, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
TENT, UNTAGGED = "p-tri-tent", "p-tri-untagged"


def upsert(pid: str, title: str, category: str | None, price: float, **attrs) -> dict:
    return {"op": "upsert", "product_id": pid, "version": 1, "updated_at": T0.isoformat(), "title": title,
            "category": category, "brand": "NorthPeak", "price": price, "currency": "USD", "attributes": attrs,
            "description": f"Seller text for {title}."}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def triton_pipe(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("triton-path")
    settings = isolated(
        stack, tmp,
        worker={"broker_session_timeout_s": 6.0, "broker_heartbeat_interval_s": 0.5, "broker_rebalance_timeout_s": 3.0,
                "batch_size": 8, "batch_timeout_s": 0.2},
        topics={"partitions": 2},
        models={"max_new_tokens": 24},
        triton={"timeout_s": 60.0},
    )
    await create_topics_async(settings)
    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all")
    await producer.start()
    store = RedisStore.from_settings(settings)
    worker = WorkerProc(settings, tmp / "worker.log", generator="triton")
    try:
        yield settings, producer, store, worker
    finally:
        worker.kill()
        await producer.stop()
        await store.close()


async def test_triton_generation_gate_embeddings_and_tags(triton_pipe):
    settings, producer, store, worker = triton_pipe
    t = settings.topics
    products = {
        TENT: upsert(TENT, "Ridge 2 Tent", "Outdoor > Camping > Tents", 149.0, weight="1.6 kg", color="forest green"),
        UNTAGGED: upsert(UNTAGGED, "Pulse Wireless Headphones", None, 199.0, battery_life="30 h"),
    }
    for pid, p in products.items():
        await producer.send_and_wait(t.products, key=pid.encode(), value=orjson.dumps(p))

    async def tagged():
        cat = await store.r.hget(meta_key(UNTAGGED), "cat")
        return cat.decode() if cat else None

    try:
        category = await wait_for(tagged, timeout=120, what="product_tagger category for the untagged product")
        expected = {TENT: set(audiences_for_category("Outdoor > Camping > Tents")), UNTAGGED: set(audiences_for_category(category))}

        async def all_records():
            got = {pid: await store.get_records(pid) for pid in expected}
            return got if all(expected[pid] <= set(got[pid]) for pid in expected) else None

        records = await wait_for(all_records, timeout=180, what=f"every (product, audience) record: {expected}")
        # behaviour on the (now known) tent: the behaviour agent uses its category and Triton embedding
        for i in range(4):
            ev = {"user_id": "u-tri", "product_id": TENT, "event": "view", "ts": (T0 + timedelta(seconds=i)).isoformat()}
            await producer.send_and_wait(t.behavior, key=b"u-tri", value=orjson.dumps(ev))
        await wait_for(lambda: _audience(store, "u-tri"), timeout=60, what="u-tri assigned an audience")
    except AssertionError:
        print(worker.tail())
        raise

    assert await store.get_user_audience("u-tri") == "outdoor_adventurers"
    for pid, by_aud in records.items():
        meta = (await store.get_meta_many([pid]))[0]
        # the embedding from text_embedder: 384 float16, unit norm
        emb = np.frombuffer(meta.embedding, dtype=np.float16).astype(np.float32)
        assert emb.shape == (384,) and abs(float(np.linalg.norm(emb)) - 1.0) < 0.01
        facts: ProductUpsert = meta.facts
        assert facts.category == meta.category  # the tagged category is part of the facts it was written for
        for aud, rec in by_aud.items():
            assert "desc_generator" in rec.model_version, rec  # Triton answered (not the "none" failure fallback)
            assert rec.product_version == 1
            verdict = model_gate.judge(facts, aud, rec.text)
            assert verdict.passed, (pid, aud, rec.text, verdict.reasons)
            # also faithful to the product exactly as the seller sent it
            sent = ProductUpsert.model_validate(products[pid])
            assert model_gate.judge(sent, aud, rec.text).passed, (pid, aud, rec.text)
            if settings.models.mode == "tiny":  # random weights: gibberish, rejected, fallback published
                assert rec.source == "fallback", rec
                assert rec.gate.reasons and all(r.startswith("fallback: gate failed: ") for r in rec.gate.reasons), rec.gate
            else:
                assert rec.source == "generated" or rec.gate.reasons


async def _audience(store: RedisStore, uid: str):
    return await store.get_user_audience(uid)
