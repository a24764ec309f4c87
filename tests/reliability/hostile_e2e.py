"""End-to-end run of the hostile corpus through a real worker (shared by the test and the report runner)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson

from descstream.config import Settings
from descstream.stack import LocalStack

from . import hostile
from .faults import Worker, isolated, wait_ready

_CLAIMS = [re.compile(p) for p in hostile.CLAIM_PATTERNS]


def facts_text(facts: dict) -> str:
    parts = [facts.get("title") or "", facts.get("brand") or "", facts.get("category") or "", str(facts.get("price") or "")]
    for k, v in (facts.get("attributes") or {}).items():
        parts += [k, k.replace("_", " "), str(v)]
    return "\n".join(parts).lower()


def injected_claims(text: str, facts: dict, planted: tuple[str, ...] = ()) -> list[str]:
    """Claims in `text` that are not in the product's listed facts (seller text is not a fact): the
    verifier's `injection` and `invented` errors, the corpus's claim patterns and the planted phrases."""
    from descstream.schemas import ProductUpsert
    from models.verifier import verify

    low = text.lower()
    ft = facts_text(facts)
    bad = []
    for rx in _CLAIMS:
        for m in rx.finditer(low):
            if m.group(0) not in ft:
                bad.append(m.group(0))
    for phrase in planted:
        p = phrase.lower().strip()
        if len(p) >= 8 and p in low and p not in ft:
            bad.append(p[:60])
    try:
        product = ProductUpsert.model_validate({"product_id": "check", "version": 1, "updated_at": "2026-01-01T00:00:00Z",
                                                **{k: v for k, v in facts.items() if k not in ("product_id", "version")}})
    except ValueError:
        return bad
    bad += [f"{e.type}: {e.span}" for e in verify(product, "default", text).errors if e.type in ("injection", "invented")]
    return bad


@dataclass
class HostileResult:
    messages: int = 0
    must_reject: int = 0
    dlq: int = 0
    dlq_matched: int = 0
    dlq_unexpected: list = field(default_factory=list)
    dlq_missing: int = 0
    dlq_bad_letters: list = field(default_factory=list)
    products_expected: int = 0
    products_current: int = 0
    products_lost: list = field(default_factory=list)
    records: int = 0
    generated: int = 0  # records whose text the model wrote (the rest are the template fallback)
    gate_failures: list = field(default_factory=list)
    injected_published: list = field(default_factory=list)
    sentinel_ok: bool = False
    worker_alive: bool = False
    produce_s: float = 0.0
    settle_s: float = 0.0

    def row(self) -> dict:
        return dict(self.__dict__)


async def _produce(settings: Settings, msgs: list[hostile.HostileMessage]) -> list[tuple[str, int, int]]:
    from aiokafka import AIOKafkaProducer

    topic_of = {hostile.PRODUCTS: settings.topics.products, hostile.BEHAVIOR: settings.topics.behavior}
    p = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", max_request_size=4 * 1024 * 1024, linger_ms=5)
    await p.start()
    coords: list[tuple[str, int, int]] = []
    try:
        for i in range(0, len(msgs), 200):
            futs = [await p.send(topic_of[m.topic], key=m.key, value=m.value) for m in msgs[i : i + 200]]
            for f in futs:
                md = await f
                coords.append((md.topic, md.partition, md.offset))
    finally:
        await p.stop()
    return coords


async def _read_dlq(settings: Settings, want: int, timeout: float) -> list[dict]:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(settings.topics.dead_letter, **settings.kafka.aiokafka_kwargs(), auto_offset_reset="earliest",
                         group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024)
    await c.start()
    letters: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500)
            got = [orjson.loads(m.value) for ms in batch.values() for m in ms]
            letters += got
            if len(letters) >= want:
                # keep reading briefly: more letters than expected would be a failure too
                quiet_until = quiet_until or time.monotonic() + 2.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        await c.stop()
    return letters


async def run_hostile_e2e(stack: LocalStack, run_dir: Path, n: int, seed: int = 1, pool: int = 25,
                          settle_timeout: float = 240.0) -> HostileResult:
    import redis.asyncio as aioredis

    from descstream.schemas import ProductUpsert
    from models.audiences import audiences_for_category
    from models.gate import judge
    from streams.cli import create_topics_async
    from streams.redis_store import desc_key, is_record_field, meta_key

    settings = isolated(stack.settings, run_dir, tag=f"hostile-{uuid.uuid4().hex[:6]}")
    await create_topics_async(settings)
    worker = Worker(settings, run_dir / "worker-hostile.log")
    worker.start()
    res = HostileResult()
    try:
        await wait_ready(settings, worker)
        msgs = hostile.generate(n, seed=seed, pool=pool)
        res.messages = len(msgs)
        res.must_reject = sum(m.must_reject for m in msgs)
        t0 = time.monotonic()
        coords = await _produce(settings, msgs)
        res.produce_s = round(time.monotonic() - t0, 1)

        # a valid sentinel at the very end: the worker is alive *and* still processing
        sentinel = f"sentinel-{uuid.uuid4().hex[:6]}"
        ev = {"op": "upsert", "product_id": sentinel, "version": 1, "updated_at": datetime.now(timezone.utc).isoformat(),
              "title": "Sentinel Desk Lamp", "category": "Home > Lighting", "brand": "Lumina", "price": 30.0,
              "attributes": {"colour": "white"}, "description": "The last message."}
        await _produce(settings, [hostile.HostileMessage(hostile.PRODUCTS, sentinel.encode(), orjson.dumps(ev), "accept", "sentinel")])

        r = aioredis.Redis.from_url(settings.redis.url, **settings.redis.client_kwargs())
        newest = hostile.newest_accepted(msgs)
        res.products_expected = len(newest)
        t1 = time.monotonic()
        try:
            deadline = t1 + settle_timeout
            pending = dict(newest)
            while time.monotonic() < deadline:
                res.sentinel_ok = res.sentinel_ok or bool(await r.hexists(desc_key(sentinel), "default"))
                for pid, m in list(pending.items()):
                    v = await r.hget(meta_key(pid), "v")
                    rec = await r.hget(desc_key(pid), "default")
                    if v is not None and int(v) == m.version and rec is not None and orjson.loads(rec)["product_version"] == m.version:
                        del pending[pid]
                if res.sentinel_ok and not pending:
                    break
                if not worker.alive():
                    break
                await asyncio.sleep(1.0)
            res.settle_s = round(time.monotonic() - t1, 1)
            res.products_current = len(newest) - len(pending)
            res.products_lost = [(pid, m.version, m.kind) for pid, m in pending.items()][:20]

            # every published text: gate passes against the stored facts; no injected claim
            for pid in newest:
                raw_facts = await r.hget(meta_key(pid), "facts")
                descs = await r.hgetall(desc_key(pid))
                if raw_facts is None:
                    continue
                facts = ProductUpsert.model_validate_json(raw_facts)
                fdict = orjson.loads(raw_facts)
                planted = tuple(x for m in msgs if m.product_id == pid for x in m.injected)
                for k, val in descs.items():
                    if not is_record_field(k):
                        continue
                    rec = orjson.loads(val)
                    res.records += 1
                    res.generated += rec.get("source") == "generated"
                    aud = k.decode()
                    if not rec["gate"]["passed"] or not judge(facts, aud, rec["text"]).passed:
                        # classify: a leftover variant from an older version whose audience is no longer
                        # relevant for the current category (never regenerated, never removed) vs. other
                        relevant = aud in audiences_for_category(facts.category)
                        kind = "stale_irrelevant_variant" if (rec["product_version"] < facts.version and not relevant) else "other"
                        res.gate_failures.append((pid, aud, kind, rec["product_version"], facts.version, rec["text"][:160]))
                    bad = injected_claims(rec["text"], fdict, planted)
                    if bad:
                        res.injected_published.append((pid, aud, rec["product_version"], facts.version, bad, rec["text"][:160]))
        finally:
            await r.aclose()

        # dead letters: exactly the must-reject messages, each with reason, original bytes and coordinates
        letters = await _read_dlq(settings, res.must_reject, timeout=60.0)
        res.dlq = len(letters)
        expected_coords = {c: m for c, m in zip(coords, msgs) if m.must_reject}
        seen = set()
        for dl in letters:
            c = (dl.get("topic"), dl.get("partition"), dl.get("offset"))
            m = expected_coords.get(c)
            if m is None:
                res.dlq_unexpected.append((c, dl.get("reason", "")[:120]))
                continue
            if c in seen:
                res.dlq_unexpected.append((c, "duplicate"))
                continue
            seen.add(c)
            ok = bool(dl.get("reason")) and base64.b64decode(dl["value_b64"]) == (m.value or b"") and dl.get("rejected_at")
            if ok:
                res.dlq_matched += 1
            else:
                res.dlq_bad_letters.append((c, m.kind))
        res.dlq_missing = len(set(expected_coords) - seen)
        res.worker_alive = worker.alive()
    finally:
        worker.stop()
    return res
