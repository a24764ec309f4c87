"""Replay against the real broker, Redis and a running worker (fake generator).

Scenario: a catalogue is processed; three products are updated inside a time window, one after it; then
the description cache is lost (every `ds:desc:*` deleted). Replaying the window must regenerate exactly
the descriptions of the three products updated in it, a second identical replay must write nothing, and
the worker group's committed offsets on the replayed topic must not move.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timezone

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from descstream.config import Settings
from models.audiences import audiences_for_category
from models.catalogue import generate_catalogue, mutate_product
from streams.loadgen import committed_offsets
from streams.redis_store import desc_key, is_record_field
from streams.replay import ReplayConfig, ReplayError, run_replay

from .conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _now_dt() -> datetime:
    return datetime.now(timezone.utc)


async def _send(settings: Settings, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    p = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all")
    await p.start()
    try:
        for k, v in items:
            await p.send_and_wait(topic, key=k, value=v)
    finally:
        await p.stop()


async def _offsets(settings: Settings, group: str, topic: str) -> tuple[dict, dict]:
    """(committed offsets of `group`, end offsets) for `topic`; reads only."""
    c = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        return await committed_offsets(c, tps), await c.end_offsets(tps)
    finally:
        await c.stop()


async def _snapshot(r: aioredis.Redis, pids: list[str]) -> dict[str, dict]:
    return {pid: await r.hgetall(desc_key(pid)) for pid in pids}


def _pb(p) -> bytes:
    return orjson.dumps(p.model_dump(mode="json"))


async def test_replay_window_regenerates_exactly_affected_and_is_idempotent(ops_worker):
    settings, worker = ops_worker
    topics = settings.topics
    r = aioredis.Redis.from_url(settings.redis.url)
    try:
        now = _now_dt()
        cat = [p.model_copy(update={"updated_at": now}) for p in generate_catalogue(6, seed=7, adversarial_rate=0.0)]
        pids = [p.product_id for p in cat]
        expected = {p.product_id: set(audiences_for_category(p.category)) for p in cat}
        await _send(settings, topics.products, [(p.product_id.encode(), _pb(p)) for p in cat])

        async def all_have(pid_list, version_of):
            for pid in pid_list:
                snap = await r.hgetall(desc_key(pid))
                auds = {k.decode() for k in snap if is_record_field(k)}
                if auds != expected[pid]:
                    return False
                for k in auds:
                    if orjson.loads(snap[k.encode()])["product_version"] < version_of[pid]:
                        return False
            return True

        await wait_for(lambda: all_have(pids, {pid: 1 for pid in pids}), timeout=90, what="catalogue descriptions")

        # Three updates inside the window, one after it.
        rng = random.Random(1)
        await asyncio.sleep(1.1)
        t1 = time.time()
        updated = [mutate_product(p, rng).model_copy(update={"updated_at": _now_dt()}) for p in cat[:3]]
        await _send(settings, topics.products, [(p.product_id.encode(), _pb(p)) for p in updated])
        await asyncio.sleep(1.1)
        t2 = time.time()
        await asyncio.sleep(0.2)
        late = mutate_product(cat[3], rng).model_copy(update={"updated_at": _now_dt()})
        await _send(settings, topics.products, [(late.product_id.encode(), _pb(late))])
        versions = {pid: 1 for pid in pids} | {p.product_id: 2 for p in updated} | {late.product_id: 2}
        await wait_for(lambda: all_have(pids, versions), timeout=60, what="updated descriptions")

        # The worker group has committed everything on the products topic (so "unchanged" is meaningful).
        # The worker group has committed everything on the products topic (so "unchanged" is meaningful).
        async def settled():
            committed, ends = await _offsets(settings, settings.worker.app_id, topics.products)
            return committed == {tp: e for tp, e in ends.items() if e > 0} and committed
        live_before = await wait_for(settled, timeout=30, what="live group committed the products topic")

        async def desc_stable():  # no live job in flight: the descriptions topic stays quiet for 2 s
            _, a = await _offsets(settings, "nobody", topics.descriptions)
            await asyncio.sleep(2.0)
            _, b = await _offsets(settings, "nobody", topics.descriptions)
            return b if a == b else None
        await wait_for(desc_stable, timeout=40, what="descriptions topic quiet")

        # Lose the description cache.
        await r.delete(*[desc_key(pid) for pid in pids])
        desc_end_0 = await wait_for(desc_stable, timeout=30, what="descriptions topic quiet")

        cfg = ReplayConfig.build(settings, topic="products", start=str(t1), end=str(t2), wait=60, progress=False)
        assert cfg.group != settings.worker.app_id and cfg.group.startswith("descstream-replay-")
        s1 = await run_replay(settings, cfg)
        affected = {p.product_id for p in updated}
        n_pairs = sum(len(expected[pid]) for pid in affected)
        assert s1["in_window"] == 3 and s1["rejected"] == 0, s1
        assert s1["to_regenerate"] == n_pairs and s1["regenerated"] == n_pairs and s1["pending"] == 0, s1
        assert s1["skipped_up_to_date"] == 0
        snap1 = await _snapshot(r, pids)
        for pid in pids:
            auds = {k.decode() for k in snap1[pid] if is_record_field(k)}
            assert auds == (expected[pid] if pid in affected else set()), (pid, auds)
        for pid in affected:
            assert orjson.loads(snap1[pid][b"default"])["product_version"] == 2

        # The worker publishes each written record to `descriptions` after the Redis write (Redis above is
        # the exact check; the topic must show the replay's records and nothing beyond them).
        desc_end_1 = await wait_for(desc_stable, timeout=30, what="descriptions topic quiet after the replay")
        assert 1 <= sum(desc_end_1.values()) - sum(desc_end_0.values()) <= n_pairs

        # Second identical replay: nothing requested, nothing written.
        cfg2 = ReplayConfig.build(settings, topic="products", start=str(t1), end=str(t2), wait=5, progress=False)
        s2 = await run_replay(settings, cfg2)
        assert s2["to_regenerate"] == 0 and s2["skipped_up_to_date"] == n_pairs and s2["regenerated"] == 0, s2
        await asyncio.sleep(1.5)
        assert await _snapshot(r, pids) == snap1
        _, desc_end_2 = await _offsets(settings, "nobody", topics.descriptions)
        assert desc_end_2 == desc_end_1

        # Live offsets on the replayed topic never moved; the replay committed only in its own group.
        live_after, _ = await _offsets(settings, settings.worker.app_id, topics.products)
        assert live_after == live_before
        own, _ = await _offsets(settings, cfg.group, topics.products)
        assert own, "the replay records its progress in its own group"

        # Dry run of the behaviour topic and a refused live group.
        with pytest.raises(ReplayError):
            ReplayConfig.build(settings, topic="products", start="-1h", group=settings.worker.app_id)
    finally:
        await r.aclose()


async def test_replay_behaviour_window(ops_worker):
    """Behaviour replay: the products touched in the window get their `default` (and the user's audience)
    variant back; a dry run only plans."""
    settings, worker = ops_worker
    topics = settings.topics
    r = aioredis.Redis.from_url(settings.redis.url)
    try:
        cat = [p.model_copy(update={"updated_at": _now_dt()}) for p in generate_catalogue(3, seed=11, adversarial_rate=0.0)]
        await _send(settings, topics.products, [(p.product_id.encode(), _pb(p)) for p in cat])

        async def has_default():
            return all([await r.hexists(desc_key(p.product_id), "default") for p in cat])
        await wait_for(has_default, timeout=90, what="catalogue descriptions")
        t1 = time.time()
        ev = {"user_id": "u-replay-1", "product_id": cat[0].product_id, "event": "view", "ts": _now_dt().isoformat()}
        bad = b"{not json"
        await _send(settings, topics.behavior, [(b"u-replay-1", orjson.dumps(ev)), (b"u-x", bad)])
        await asyncio.sleep(1.1)
        t2 = time.time()
        await r.delete(desc_key(cat[0].product_id), desc_key(cat[1].product_id))

        dry = await run_replay(settings, ReplayConfig.build(settings, topic="user-behavior", start=str(t1), end=str(t2),
                                                            dry_run=True, progress=False))
        assert dry["in_window"] == 2 and dry["rejected_invalid"] == 1, dry
        assert f"{cat[0].product_id}/default" in dry["plan"]
        assert not await r.exists(desc_key(cat[0].product_id)), "a dry run publishes nothing"

        s = await run_replay(settings, ReplayConfig.build(settings, topic="user-behavior", start=str(t1), end=str(t2),
                                                          wait=60, progress=False))
        assert s["regenerated"] == s["to_regenerate"] >= 1 and s["pending"] == 0, s
        assert await r.hexists(desc_key(cat[0].product_id), "default")
        assert not await r.exists(desc_key(cat[1].product_id)), "products not touched in the window stay as they are"
    finally:
        await r.aclose()
