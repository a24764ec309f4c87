"""Model-upgrade backfill end to end: real broker + Redis, a worker subprocess with the fake generator.

Descriptions are written by model "fake-1"; the worker is restarted as "fake-2" (`WorkerSettings.
fake_model_version`); `backfill --model-version fake-2` must then regenerate every cached description not
yet produced by fake-2, hottest products first; interrupted (`--limit`) and resumed, it finishes without
redoing finished products; a second run writes nothing; replayed old events never overwrite newer text.

The module uses its own Redis database: a backfill scans every `ds:desc:*` key, and the other ops
modules' products must neither be counted nor upgraded here.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
import redis.asyncio as aioredis

from descstream.config import Settings
from descstream.schemas import DescriptionRecord
from models.audiences import audiences_for_category
from models.catalogue import generate_catalogue, mutate_product
from streams.redis_store import RedisStore, desc_key, is_record_field
from streams.replay import BackfillConfig, run_backfill

from .conftest import Worker, isolated, wait_for
from .test_replay import _offsets, _pb, _send

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REDIS_DB = 7


def _with_db(settings: Settings, db: int, model: str) -> Settings:
    data = settings.model_dump()
    u = urlsplit(settings.redis.url)
    data["redis"]["url"] = urlunsplit(u._replace(path=f"/{db}"))
    data["worker"]["fake_model_version"] = model
    return Settings(**data)


@pytest.fixture(scope="module")
def bf(ops_infra: Settings, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ops-backfill")
    settings = _with_db(isolated(ops_infra, tmp), REDIS_DB, "fake-1")
    from streams.loadgen import ensure_topics

    async def prepare() -> None:
        r = aioredis.Redis.from_url(settings.redis.url)
        try:
            await r.flushdb()
        finally:
            await r.aclose()
        await ensure_topics(settings)

    asyncio.run(prepare())
    state = {"settings": settings, "tmp": tmp, "worker": Worker(settings, tmp / "worker-fake-1.log")}
    try:
        yield state
    finally:
        state["worker"].stop()
        shutil.rmtree(tmp / "worker-data", ignore_errors=True)


async def _records(r: aioredis.Redis, pid: str) -> dict[str, dict]:
    raw = await r.hgetall(desc_key(pid))
    return {k.decode(): orjson.loads(v) for k, v in raw.items() if is_record_field(k)}


async def _backfill_requests(settings: Settings) -> Counter[str]:
    """product -> number of backfill requests on the generation-requests topic (group-less read)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = settings.topics.generation_requests
    c = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            await c._client.force_metadata_update()  # noqa: SLF001
            parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = await c.end_offsets(tps)
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out: Counter[str] = Counter()
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            for tp, msgs in (await c.getmany(*todo, timeout_ms=1000)).items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        req = orjson.loads(m.value)
                        if req.get("reason") == "backfill":
                            out[req["product_id"]] += 1
            todo = {tp for tp in todo if await c.position(tp) < ends[tp]}
        return out
    finally:
        await c.stop()


async def test_model_upgrade_backfill_hot_first_resumable_idempotent(bf, tmp_path):
    settings: Settings = bf["settings"]
    topics = settings.topics
    r = aioredis.Redis.from_url(settings.redis.url)
    try:
        now = datetime.now(timezone.utc)
        cat = [p.model_copy(update={"updated_at": now}) for p in generate_catalogue(6, seed=21, adversarial_rate=0.0)]
        pids = [p.product_id for p in cat]
        expected = {p.product_id: set(audiences_for_category(p.category)) for p in cat}
        await _send(settings, topics.products, [(p.product_id.encode(), _pb(p)) for p in cat])
        # one product gets a seller update (v2) before the upgrade: its old v1 event is replayed at the end
        upd = mutate_product(cat[0], random.Random(5)).model_copy(update={"updated_at": datetime.now(timezone.utc)})
        await _send(settings, topics.products, [(upd.product_id.encode(), _pb(upd))])
        versions = {pid: 1 for pid in pids} | {upd.product_id: 2}

        async def all_written(model: str):
            for pid in pids:
                recs = await _records(r, pid)
                if set(recs) != expected[pid]:
                    return False
                if any(x["model_version"] != model or x["product_version"] != versions[pid] for x in recs.values()):
                    return False
            return True

        await wait_for(lambda: all_written("fake-1"), timeout=120, what="fake-1 descriptions")
        before = {pid: await _records(r, pid) for pid in pids}

        # Hotness: distinct behaviour counts per product, one event per user (no audience switches).
        hot = {pids[i]: n for i, n in zip((3, 5, 0, 2, 4, 1), (5, 4, 3, 2, 1, 0))}
        order = sorted(pids, key=lambda p: (-hot[p], p))
        evs, n = [], 0
        for pid, k in hot.items():
            for _ in range(k):
                n += 1
                ev = {"user_id": f"u-bf-{n}", "product_id": pid, "event": "view", "ts": datetime.now(timezone.utc).isoformat()}
                evs.append((f"u-bf-{n}".encode(), orjson.dumps(ev)))
        await _send(settings, topics.behavior, evs)

        # Upgrade the model: restart the worker as fake-2.
        bf["worker"].stop()
        s2 = _with_db(settings, REDIS_DB, "fake-2")
        bf["worker"] = Worker(s2, bf["tmp"] / "worker-fake-2.log")

        ck = tmp_path / "backfill.json"
        plan = await run_backfill(s2, BackfillConfig(model_version="fake-2", checkpoint=ck, dry_run=True, progress=False))
        n_pairs = sum(len(a) for a in expected.values())
        assert plan["stale_products"] == 6 and plan["stale_descriptions"] == n_pairs, plan
        assert [line.split(" ")[0] for line in plan["plan"]] == order, plan["plan"]  # hot products first

        # Interrupted after 3 products (2 batches: 2 + 1); the first batch also waits for the worker to start.
        first = await run_backfill(s2, BackfillConfig(model_version="fake-2", checkpoint=ck, batch=2, wait=120,
                                                      max_products=3, progress=False))
        done1 = order[:3]
        want1 = sum(len(expected[p]) for p in done1)
        assert first["requested"] == want1 and first["upgraded"] == want1 and first["not_upgraded"] == 0, (first, bf["worker"].tail())
        assert sorted(orjson.loads(ck.read_bytes())["done"]) == sorted(done1)
        for pid in pids:
            recs = await _records(r, pid)
            models = {x["model_version"] for x in recs.values()}
            assert models == ({"fake-2"} if pid in done1 else {"fake-1"}), (pid, recs)
        snap_done = {pid: await r.hgetall(desc_key(pid)) for pid in done1}

        # Resumed: finishes the rest, never re-requests (or rewrites) the finished products.
        second = await run_backfill(s2, BackfillConfig(model_version="fake-2", checkpoint=ck, batch=2, wait=60,
                                                       progress=False))
        rest = order[3:]
        want2 = sum(len(expected[p]) for p in rest)
        assert second["already_done"] == 3 and second["to_process"] == 3, second
        assert second["requested"] == want2 and second["upgraded"] == want2, second
        assert second["processed_total"] == 6
        await wait_for(lambda: all_written("fake-2"), timeout=30, what="every description from fake-2")
        assert {pid: await r.hgetall(desc_key(pid)) for pid in done1} == snap_done
        assert await _backfill_requests(s2) == Counter({pid: 1 for pid in pids})  # each product requested once
        after = {pid: await _records(r, pid) for pid in pids}
        for pid in pids:  # same stamp (product version, source event time), new model, generated text
            for aud, rec in after[pid].items():
                old = before[pid][aud]
                assert (rec["product_version"], rec["source_event_time"]) == (old["product_version"], old["source_event_time"])
                assert rec["source"] == "generated" and rec["model_version"] == "fake-2"

        async def desc_quiet():
            _, a = await _offsets(s2, "nobody", topics.descriptions)
            await asyncio.sleep(1.5)
            _, b = await _offsets(s2, "nobody", topics.descriptions)
            return b if a == b else None

        desc_end = await wait_for(desc_quiet, timeout=30, what="descriptions topic quiet")
        snap = {pid: await r.hgetall(desc_key(pid)) for pid in pids}

        # A second backfill (fresh checkpoint) finds nothing stale and writes nothing.
        again = await run_backfill(s2, BackfillConfig(model_version="fake-2", checkpoint=tmp_path / "again.json",
                                                      batch=2, wait=5, progress=False))
        assert again["stale_descriptions"] == 0 and again["to_process"] == 0 and again["requested"] == 0, again

        # Replayed old events: the v1 upsert of the updated product, its old v1 generation request, and a
        # stale backfill request for the previous model. None of them may overwrite the newer text.
        old_req = {"product_id": upd.product_id, "version": 1, "audiences": sorted(expected[upd.product_id]),
                   "reason": "product_change", "priority": 100.0}
        old_bf = dict(old_req, reason="backfill", priority=1.0, model_version="fake-1")
        await _send(settings, topics.products, [(cat[0].product_id.encode(), _pb(cat[0]))])
        await _send(settings, topics.generation_requests,
                    [(upd.product_id.encode(), orjson.dumps(old_req)), (upd.product_id.encode(), orjson.dumps(old_bf))])

        async def consumed():
            for topic in (topics.products, topics.generation_requests):
                committed, ends = await _offsets(s2, settings.worker.app_id, topic)
                if committed != {tp: e for tp, e in ends.items() if e > 0}:
                    return False
            return True

        await wait_for(consumed, timeout=60, what="the worker consumed the replayed events")
        assert await wait_for(desc_quiet, timeout=30, what="descriptions topic quiet") == desc_end
        assert {pid: await r.hgetall(desc_key(pid)) for pid in pids} == snap

        # And straight at the CAS: the old model's record for the old version, even flagged as an upgrade.
        store = RedisStore.from_settings(s2)
        try:
            stale = DescriptionRecord.model_validate(
                before[upd.product_id]["default"] | {"product_version": 1, "source_event_time": cat[0].updated_at.isoformat()})
            assert await store.publish_codes([stale], upgrade=True) == [-2]
            same = DescriptionRecord.model_validate(before[upd.product_id]["default"])  # fake-1, same stamp
            assert await store.publish_codes([same]) == [0]
        finally:
            await store.close()
        assert (await _records(r, upd.product_id))["default"]["model_version"] == "fake-2"
    finally:
        await r.aclose()
