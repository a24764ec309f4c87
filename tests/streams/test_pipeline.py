"""End to end: a real Faust worker subprocess (`python -m streams.cli worker --generator fake`) against a real
broker and Redis. One worker serves the module's tests in order (start-up and group joins are the slow
part); the last test SIGKILLs it and checks that profiles survive through the table changelog."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import urllib.request
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.audiences import audiences_for_category
from streams.cli import create_topics_async
from streams.reader import get_descriptions
from streams.profile import Profile
from streams.redis_store import RedisStore, desc_key

from .conftest import WorkerProc, changelog_profiles, isolated, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)

TENT = "p-tent"
PHONES = "p-phones"
MUG = "p-mug"


def upsert(pid: str, version: int, title: str, category: str | None, price: float, **attrs) -> dict:
    return {
        "op": "upsert", "product_id": pid, "version": version,
        "updated_at": (T0 + timedelta(minutes=version)).isoformat(), "title": title, "category": category,
        "brand": "NorthPeak", "price": price, "currency": "USD", "attributes": attrs, "description": f"Seller text for {title}.",
    }


def behaviour(uid: str, pid: str | None, event: str, query: str | None = None, minute: int = 0) -> dict:
    return {"user_id": uid, "product_id": pid, "event": event, "query": query,
            "ts": (T0 + timedelta(seconds=minute)).isoformat()}


class Pipeline:
    def __init__(self, settings, tmp):
        self.settings = settings
        self.tmp = tmp
        self.worker: WorkerProc | None = None
        self.producer: AIOKafkaProducer | None = None
        self.store = RedisStore.from_settings(settings)

    def start_worker(self) -> None:
        self.worker = WorkerProc(self.settings, self.tmp / "worker.log")

    async def send(self, topic: str, key: str, value) -> None:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        await self.producer.send_and_wait(topic, key=key.encode(), value=raw)

    def metric(self, name: str, **labels) -> float:
        url = f"http://127.0.0.1:{self.settings.worker.metrics_port}/metrics"
        try:
            text = urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            return -1.0
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            m = re.match(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
            if not m:
                continue
            lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
            if all(lab.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
        return total


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pipe(infra, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    settings = isolated(infra, tmp)
    await create_topics_async(settings)
    p = Pipeline(settings, tmp)
    p.producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all")
    await p.producer.start()
    p.start_worker()
    try:
        yield p
    finally:
        if p.worker:
            p.worker.kill()
        await p.producer.stop()
        await p.store.close()


async def desc(pipe, pid, aud="default"):
    return await pipe.store.get_record(pid, aud)


async def test_products_and_behaviour_to_audience_descriptions(pipe):
    t = pipe.settings.topics
    await pipe.send(t.products, TENT, upsert(TENT, 1, "Ridge 2 Tent", "Outdoor > Camping > Tents", 149.0, weight="1.6 kg", color="forest green"))
    await pipe.send(t.products, PHONES, upsert(PHONES, 1, "Pulse ANC Headphones", "Electronics > Audio > Headphones", 199.0, battery_life="30 h"))
    await pipe.send(t.products, MUG, upsert(MUG, 1, "Stoneware Mug", "Home > Kitchen > Mugs", 12.0, capacity="350 ml"))
    for pid, cat in ((TENT, "Outdoor > Camping > Tents"), (PHONES, "Electronics > Audio > Headphones"), (MUG, "Home > Kitchen > Mugs")):
        want = set(audiences_for_category(cat))

        async def have(pid=pid, want=want):
            return want <= set(await pipe.store.get_records(pid))

        try:
            await wait_for(have, timeout=90, what=f"all variants of {pid}")
        except AssertionError:
            print(pipe.worker.tail())
            raise
    rec = await desc(pipe, TENT, "outdoor_adventurers")
    assert rec.source == "generated" and rec.product_version == 1 and rec.text.startswith("[outdoor_adventurers] Ridge 2 Tent")

    for i in range(4):
        await pipe.send(t.behavior, "u-1", behaviour("u-1", TENT, "view", minute=i))

    async def outdoor():
        return await pipe.store.get_user_audience("u-1") == "outdoor_adventurers"

    await wait_for(outdoor, what="u-1 assigned outdoor_adventurers")
    out = await get_descriptions(pipe.store, "u-1", [TENT, MUG, "p-unknown"])
    assert out[TENT]["audience"] == "outdoor_adventurers" and out[TENT]["source"] == "generated"
    assert out[MUG]["audience"] == "default"  # the outdoor audience is not relevant for mugs
    assert out["p-unknown"]["source"] == "missing"


async def test_audience_switch_generates_missing_variants(pipe):
    t = pipe.settings.topics
    # the tech variant of the headphones is gone (e.g. expired): the switch must bring it back
    await pipe.store.r.hdel(desc_key(PHONES), "tech_enthusiasts", "tech_enthusiasts@v", "tech_enthusiasts@s")
    for i in range(3):
        await pipe.send(t.behavior, "u-1", behaviour("u-1", PHONES, "purchase", minute=10 + i))

    async def tech():
        return await pipe.store.get_user_audience("u-1") == "tech_enthusiasts"

    await wait_for(tech, what="u-1 switched to tech_enthusiasts")

    async def variant():
        return await desc(pipe, PHONES, "tech_enthusiasts")

    rec = await wait_for(variant, what="missing tech variant regenerated")
    assert rec.source == "generated"
    assert pipe.metric("descstream_audience_switches_total", to="tech_enthusiasts") >= 1
    # the switch's generation request carries the triggering behaviour event's time (loadgen latency)
    event_ms = {int((T0 + timedelta(seconds=10 + i)).timestamp() * 1000) for i in range(3)}
    switch = [r for r in await read_all(pipe.settings, t.generation_requests)
              if r.get("reason") == "audience_switch" and r["product_id"] == PHONES and "tech_enthusiasts" in r["audiences"]]
    assert switch and all(r.get("source_ms") in event_ms for r in switch), switch


async def read_all(settings, topic: str) -> list[dict]:
    """Every JSON value on `topic` up to its current end (group-less read, commits nothing)."""
    from aiokafka import TopicPartition

    c = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            await c._client.force_metadata_update()  # noqa: SLF001
            parts = c.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        assert tps, f"topic {topic} has no partitions"
        ends = await c.end_offsets(tps)
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out: list[dict] = []
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            for tp, msgs in (await c.getmany(*todo, timeout_ms=1000)).items():
                out += [orjson.loads(m.value) for m in msgs if m.offset < ends[tp]]
            todo = {tp for tp in todo if await c.position(tp) < ends[tp]}
        return out
    finally:
        await c.stop()


async def test_product_update_replaces_text_and_duplicates_cost_nothing(pipe):
    t = pipe.settings.topics
    await pipe.send(t.products, TENT, upsert(TENT, 2, "Ridge 2 Tent", "Outdoor > Camping > Tents", 129.0, weight="1.5 kg", color="forest green"))

    async def v2():
        r = await desc(pipe, TENT)
        return r if r and r.product_version == 2 else None

    rec = await wait_for(v2, what="tent v2 default")
    assert "1.5 kg" in rec.text
    auds = audiences_for_category("Outdoor > Camping > Tents")

    async def all_v2():
        recs = await pipe.store.get_records(TENT)
        return all(recs.get(a) and recs[a].product_version == 2 for a in auds)

    await wait_for(all_v2, what="all tent variants at v2")
    await asyncio.sleep(0.5)
    calls = pipe.metric("descstream_generator_calls_total")
    assert calls > 0
    # duplicates of the same event, a duplicate generation request and an old version replayed
    for _ in range(3):
        await pipe.send(t.products, TENT, upsert(TENT, 2, "Ridge 2 Tent", "Outdoor > Camping > Tents", 129.0, weight="1.5 kg", color="forest green"))
    await pipe.send(t.generation_requests, TENT, {"product_id": TENT, "version": 2, "audiences": auds, "reason": "product_change", "priority": 100})
    await pipe.send(t.products, TENT, upsert(TENT, 1, "Ridge 2 Tent", "Outdoor > Camping > Tents", 149.0, weight="1.6 kg", color="forest green"))
    # a marker product proves the worker got past them
    await pipe.send(t.products, "p-marker", upsert("p-marker", 1, "Marker Lamp", "Home > Lighting", 20.0))
    await wait_for(lambda: desc(pipe, "p-marker"), what="marker processed")
    await asyncio.sleep(1.0)
    assert pipe.metric("descstream_generator_calls_total") == calls + len(audiences_for_category("Home > Lighting"))
    rec = await desc(pipe, TENT)
    assert rec.product_version == 2 and "1.5 kg" in rec.text


async def test_bad_messages_go_to_dlq_and_processing_continues(pipe):
    t = pipe.settings.topics
    await pipe.send(t.products, "p-bad", b"{not json")
    await pipe.send(t.products, "p-bad", orjson.dumps({"op": "upsert", "product_id": "p-bad", "version": -1}))
    await pipe.send(t.behavior, "u-bad", orjson.dumps({"user_id": "u-bad", "event": "teleport", "ts": "x"}))
    await pipe.send(t.products, "p-after", upsert("p-after", 1, "After Lamp", "Home > Lighting", 25.0))
    await wait_for(lambda: desc(pipe, "p-after"), what="product after the bad ones")
    consumer = AIOKafkaConsumer(t.dead_letter, **pipe.settings.kafka.aiokafka_kwargs(), auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        letters = []
        deadline = asyncio.get_running_loop().time() + 20
        while len(letters) < 3 and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                letters += [orjson.loads(m.value) for m in msgs]
    finally:
        await consumer.stop()
    assert len(letters) == 3
    by_topic = {}
    for dl in letters:
        by_topic.setdefault(dl["topic"], []).append(dl)
    assert len(by_topic[t.products]) == 2 and len(by_topic[t.behavior]) == 1
    assert base64.b64decode(by_topic[t.products][0]["value_b64"]) == b"{not json"
    assert "invalid JSON" in by_topic[t.products][0]["reason"]
    assert all(dl["offset"] >= 0 for dl in letters)
    assert pipe.metric("descstream_dead_letters_total") == 3


async def test_delete_is_versioned(pipe):
    t = pipe.settings.topics
    await pipe.send(t.products, MUG, {"op": "delete", "product_id": MUG, "version": 5, "updated_at": T0.isoformat()})

    async def gone():
        return await pipe.store.r.exists(desc_key(MUG)) == 0

    await wait_for(gone, what="mug descriptions removed")
    await pipe.send(t.products, MUG, upsert(MUG, 3, "Stoneware Mug", "Home > Kitchen > Mugs", 12.0, capacity="350 ml"))
    await pipe.send(t.products, "p-marker2", upsert("p-marker2", 1, "Marker Two", "Home > Lighting", 21.0))
    await wait_for(lambda: desc(pipe, "p-marker2"), what="marker2")
    await asyncio.sleep(0.5)
    assert await pipe.store.r.exists(desc_key(MUG)) == 0
    out = await get_descriptions(pipe.store, "u-1", [MUG])
    assert out[MUG]["source"] == "deleted"


async def changelog_profile(pipe, uid: str) -> Profile | None:
    """The latest value of `uid` in the `user-profiles` table changelog (what a restarted worker restores)."""
    return (await changelog_profiles(pipe.settings)).get(uid)


async def test_profiles_survive_worker_kill(pipe):
    """SIGKILL right after the events were processed (no grace period, no flush timer to wait for):
    after the restart the profile reflects every event exactly once."""
    t = pipe.settings.topics
    before = pipe.metric("descstream_behaviour_total", outcome="ok")
    for i in range(2):  # two events: below MIN_EVENTS, still default
        await pipe.send(t.behavior, "u-2", behaviour("u-2", TENT, "view", minute=100 + i))

    async def processed():
        return pipe.metric("descstream_behaviour_total", outcome="ok") >= before + 2

    await wait_for(processed, what="2 behaviour events processed")
    pipe.worker.kill()  # SIGKILL
    assert await pipe.store.get_user_audience("u-2") is None
    pipe.start_worker()
    await pipe.send(t.behavior, "u-2", behaviour("u-2", TENT, "view", minute=110))

    async def outdoor():
        return await pipe.store.get_user_audience("u-2") == "outdoor_adventurers"

    try:
        await wait_for(outdoor, timeout=90, what="u-2 outdoor after restart (profile kept 2 events)")
    except AssertionError:
        print(pipe.worker.tail())
        raise

    async def exact():
        prof = await changelog_profile(pipe, "u-2")
        return prof if prof is not None and prof.n >= 3 else None

    prof = await wait_for(exact, timeout=30, what="u-2 profile in the changelog")
    assert prof.n == 3, prof  # nothing lost, nothing counted twice (replays are skipped by offset)
    assert prof.recent == [TENT] and prof.audience == "outdoor_adventurers"
    assert pipe.metric("descstream_profile_flushes_total") >= 1


async def test_graceful_stop_flushes_profiles_before_it_commits(pipe):
    """SIGTERM with updates still in the write-behind buffer: Faust waits for unacknowledged events on
    shutdown, the agent's own flusher writes the profile and acknowledges them, so the worker exits
    cleanly (no hang) and the changelog holds the profile before any restart."""
    t = pipe.settings.topics
    before = pipe.metric("descstream_behaviour_total", outcome="ok")
    for i in range(4):
        await pipe.send(t.behavior, "u-3", behaviour("u-3", PHONES, "click", minute=200 + i))

    async def processed():
        return pipe.metric("descstream_behaviour_total", outcome="ok") >= before + 4

    await wait_for(processed, what="4 behaviour events processed")
    proc = pipe.worker.proc
    os.killpg(proc.pid, signal.SIGTERM)
    rc = await asyncio.to_thread(proc.wait, 60)  # a hang here would mean unacknowledged events never drain
    pipe.worker.fh.close()
    assert rc == 0, pipe.worker.tail()
    prof = await changelog_profile(pipe, "u-3")
    assert prof is not None and prof.n == 4, prof
    pipe.start_worker()  # leave a running worker for any later test
