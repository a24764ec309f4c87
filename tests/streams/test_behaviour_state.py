"""The behaviour agent's in-process state against a real Redis (`streams.behaviour_agent.BehaviourState`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pytest

from descstream.schemas import ProductUpsert
from streams.behaviour_agent import BehaviourState
from streams.profile import AudienceModel, encode_embedding
from streams.redis_store import RedisStore

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)


async def test_feature_warm_up_fills_the_cache_in_batches(infra):
    """At start the agent caches product features in pipelined batches (so a restarted worker does not stall
    on one round trip per product); deleted products are cached as missing; a limit is respected."""
    from models.audiences import load_audiences

    store = RedisStore.from_settings(infra)
    try:
        tag = uuid.uuid4().hex[:6]
        pids = [f"wf-{tag}-{i}" for i in range(7)]
        emb = encode_embedding(np.random.default_rng(0).standard_normal(384))
        await store.upsert_products([
            (ProductUpsert(product_id=p, version=1, updated_at=T0, title=f"Tent {i}", category="Outdoor > Camping > Tents",
                           price=10.0 + i), f"fh{i}", emb)
            for i, p in enumerate(pids)
        ])
        await store.delete_product(pids[-1], 2, T0)
        state = BehaviourState(infra, SimpleNamespace(store=store), AudienceModel(load_audiences()))
        n = await state.warm_features(10_000, batch=3)
        assert n >= len(pids)  # the shared Redis holds other tests' products too
        for i, p in enumerate(pids[:-1]):
            ck, cat, logp, vec = state.features[p]
            assert cat == "Outdoor > Camping > Tents" and ck == "Outdoor > Camping"
            assert logp == pytest.approx(np.log(10.0 + i)) and vec.shape == (384,)
            assert state.feature_until[p] > 0
        assert state.features[pids[-1]] is None  # deleted: cached as missing, like a per-product fetch
        limited = BehaviourState(infra, SimpleNamespace(store=store), AudienceModel(load_audiences()))
        assert await limited.warm_features(3) == 3 and len(limited.features) == 3
        assert await limited.warm_features(0) == 0
    finally:
        await store.close()
