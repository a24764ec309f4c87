"""Behaviour agent: user-behavior events -> interest profiles -> audience (with hysteresis) -> Redis.

Per-event cost is kept close to Faust's own iteration cost:
- profiles are held in memory per partition and written *behind* to the RocksDB table (changelog) every
  `PROFILE_FLUSH_S` for the users that changed, one compact binary value per user (not per event);
- product features (category, price, embedding) come from Redis product meta through an in-process
  cache, so a hot product costs one Redis read per `FEATURE_TTL_S`;
- Redis is written only when a user's audience changes (or to refresh the user key's TTL).

Durability argument: the table changelog is at most `PROFILE_FLUSH_S` behind the stream. After a crash the
worker restarts from the last committed offset and the profile from the changelog; up to that window
of profile updates can be lost for users whose partition's offsets were already committed (profiles
are decayed aggregates, so the effect is a slightly smaller weight; the audience assignment is
re-derived on the next events). A clean restart loses nothing older than the window either.

On an audience change the agent requests the variants the user is likely to see next that are missing:
their recently viewed products and the hot products of their top categories, limited to products whose
category the new audience is relevant for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

import faust
import numpy as np
import orjson

from descstream.config import Settings
from descstream.schemas import DEFAULT_AUDIENCE, InvalidEvent, decode_behavior

from . import metrics
from .profile import AudienceModel, Profile, category_key, decode_embedding
from .services import Services
from .tables import raw_table, table_set
from .validation import dead_letter, event_coords

log = logging.getLogger(__name__)

PROFILE_FLUSH_S = 3.0
SWITCH_BATCH_S = 0.05
FEATURE_TTL_S = 60.0
MISSING_TTL_S = 2.0
HOT_PER_CATEGORY = 200
SWITCH_CANDIDATES = 8


class BehaviourState:
    """In-memory state of the behaviour agent in one worker process."""

    def __init__(self, settings: Settings, services: Services, model: AudienceModel):
        self.settings = settings
        self.services = services
        self.model = model
        self.profiles: dict[int, dict[str, Profile]] = defaultdict(dict)
        self.dirty: dict[int, set[str]] = defaultdict(set)
        self.last_event: dict[int, Any] = {}
        self.features: dict[str, tuple[float, str | None, float | None, np.ndarray | None] | None] = {}
        self.feature_at: dict[str, float] = {}
        self.hot: dict[str, dict[str, float]] = defaultdict(dict)

    async def features_for(self, pid: str, now: float):
        f = self.features.get(pid)
        at = self.feature_at.get(pid)
        if at is not None and now - at < (FEATURE_TTL_S if f is not None else MISSING_TTL_S):
            return f
        got = await self.services.store.get_features(pid)
        f = None if got is None else (now, got[0], got[1], decode_embedding(got[2]))
        self.features[pid] = f
        self.feature_at[pid] = now
        return f

    def bump_hot(self, ck: str, pid: str, w: float) -> None:
        h = self.hot[ck]
        h[pid] = h.get(pid, 0.0) + w
        if len(h) > 2 * HOT_PER_CATEGORY:
            keep = sorted(h.items(), key=lambda kv: kv[1], reverse=True)[:HOT_PER_CATEGORY]
            self.hot[ck] = dict(keep)

    def candidates(self, prof: Profile, audience: str) -> list[tuple[str, float]]:
        """(product, priority) the user is likely to see next: recent first, then hot in top categories."""
        out: dict[str, float] = {}
        for i, pid in enumerate(reversed(prof.recent)):
            out[pid] = 20.0 - i
        top = sorted(prof.cats.items(), key=lambda kv: kv[1], reverse=True)[:2]
        for ck, _ in top:
            hot = sorted(self.hot.get(ck, {}).items(), key=lambda kv: kv[1], reverse=True)[:5]
            for pid, score in hot:
                out.setdefault(pid, 10.0 + min(score, 9.0) / 10.0)
        res = []
        for pid, prio in out.items():
            f = self.features.get(pid)
            if f is not None and self.model.relevant(audience, f[1]):
                res.append((pid, prio))
        res.sort(key=lambda x: x[1], reverse=True)
        return res[:SWITCH_CANDIDATES]


def register(app: faust.App, settings: Settings, services: Services) -> None:
    from models.audiences import load_audiences

    topics = settings.topics
    behavior_topic = app.topic(topics.behavior, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    table = app.Table(
        "user-profiles", default=None, partitions=topics.partitions, key_type=bytes, value_type=bytes,
    )
    raw_table(table)
    model = AudienceModel(load_audiences())
    state = BehaviourState(settings, services, model)
    app.behaviour_state = state  # type: ignore[attr-defined]
    max_bytes = settings.worker.max_field_bytes * 2
    events_in = metrics.EVENTS_IN.labels(topic=topics.behavior)
    ok = metrics.BEHAVIOUR.labels(outcome="ok")
    unknown_product = metrics.BEHAVIOUR.labels(outcome="unknown_product")
    store = services.store

    async def audience_vectors() -> None:
        embedder = services.embedder
        if embedder is None or model.vectors:
            return
        try:
            names = model.names
            vecs = await embedder.embed([model.audiences[n].cares_about for n in names])
            vecs = np.asarray(vecs, dtype=np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
            model.vectors = {n: vecs[i] for i, n in enumerate(names)}
        except Exception as exc:  # the embedding term is optional
            log.warning("audience embeddings unavailable (%s); scoring without them", exc)

    switches: dict[str, tuple[Profile, str]] = {}

    def on_switch(uid: str, prof: Profile, new: str) -> None:
        """Queue the Redis write + variant requests; a background task sends them in batches, so an
        audience change costs the event loop a dict insert, not two Redis round trips and N sends."""
        metrics.AUDIENCE_SWITCHES.labels(to=new).inc()
        switches[uid] = (prof, new)

    async def drain_switches() -> None:
        if not switches:
            return
        batch = list(switches.items())
        switches.clear()
        now = time.time()
        await store.set_user_audiences((uid, new) for uid, (_p, new) in batch)
        for _uid, (prof, new) in batch:
            if prof.audience == new:
                prof.redis_at = now
        wanted: list[tuple[str, str, float]] = []
        seen: set[tuple[str, str]] = set()
        for _uid, (prof, new) in batch:
            if new == DEFAULT_AUDIENCE:
                continue
            for pid, prio in state.candidates(prof, new):
                if (pid, new) not in seen:
                    seen.add((pid, new))
                    wanted.append((pid, new, prio))
        if not wanted:
            return
        have = await store.stored_versions([(pid, aud) for pid, aud, _ in wanted])
        futs = []
        for (pid, aud, prio), stored in zip(wanted, have):
            if stored is not None:
                continue
            req = {"product_id": pid, "audiences": [aud], "reason": "audience_switch", "priority": prio, "version": 0}
            futs.append(await app.gen_topic.send(key=pid.encode(), value=orjson.dumps(req)))  # type: ignore[attr-defined]
        for fut in futs:
            await fut
        metrics.GEN_REQUESTS.labels(outcome="requested_switch").inc(len(futs))

    @app.task
    async def _switch_sender() -> None:
        while True:
            await asyncio.sleep(SWITCH_BATCH_S)
            try:
                await drain_switches()
            except Exception as exc:  # Redis/broker hiccup: the users' keys are re-written on later events
                log.warning("audience switch batch failed: %s", exc)

    @app.agent(behavior_topic, name="descstream-behaviour")
    async def behaviour(stream: faust.StreamT) -> None:
        await audience_vectors()
        profiles = state.profiles
        dirty = state.dirty
        last_event = state.last_event
        assign = model.assign
        user_ttl_half = settings.redis.user_ttl_s / 2 if settings.redis.user_ttl_s else float("inf")
        async for event in stream.events():
            events_in.inc()
            try:
                ev = decode_behavior(event.value, max_bytes)
            except InvalidEvent as exc:
                topic, part, off, key = event_coords(event)
                dl = dead_letter(topic=topic, partition=part, offset=off, key=key, value=event.value, reason=str(exc))
                await app.dlq_topic.send(key=key, value=orjson.dumps(dl.model_dump(mode="json")))  # type: ignore[attr-defined]
                continue
            part = event.message.partition
            uid = ev.user_id
            cache = profiles[part]
            prof = cache.get(uid)
            if prof is None:
                raw = table.get(uid.encode())
                prof = Profile.loads(raw) if raw else Profile()
                cache[uid] = prof
            now = time.time()
            ts = ev.ts.timestamp()
            cat = price = emb = None
            pid = ev.product_id
            if pid is not None:
                f = await state.features_for(pid, now)
                if f is None:
                    unknown_product.inc()
                else:
                    _, cat, price, emb = f
                    ck = category_key(cat)
                    if ck is not None:
                        state.bump_hot(ck, pid, 1.0)
            prof.update(ev.event, ts, pid, cat, price, emb, ev.query)
            dirty[part].add(uid)
            last_event[part] = event
            ok.inc()
            new = assign(prof)
            if new != prof.audience:
                prof.audience = new
                on_switch(uid, prof, new)
            elif prof.audience != DEFAULT_AUDIENCE and now - prof.redis_at > user_ttl_half and uid not in switches:
                switches[uid] = (prof, prof.audience)  # refresh TTL, or re-write after a crash

    def flush(partitions: Any = None) -> int:
        n = 0
        for part in list(state.dirty):
            if partitions is not None and part not in partitions:
                continue
            users = state.dirty.pop(part)
            ev = state.last_event.get(part)
            cache = state.profiles.get(part, {})
            if ev is None:
                continue
            for uid in users:
                prof = cache.get(uid)
                if prof is not None:
                    table_set(table, ev, uid.encode(), prof.dumps())
                    n += 1
        if n:
            metrics.PROFILE_FLUSHES.inc(n)
        return n

    app.flush_profiles = flush  # type: ignore[attr-defined]

    @app.timer(interval=PROFILE_FLUSH_S)
    async def _flush_profiles() -> None:
        flush()

    @app.on_partitions_assigned.connect
    async def _assigned(_app: Any, assigned: Any = None, **kw: Any) -> None:
        assigned = assigned if assigned is not None else kw.get("assigned", set())
        mine = {tp.partition for tp in assigned if tp.topic == topics.behavior}
        for part in list(state.profiles):
            if part not in mine:
                state.profiles.pop(part, None)
                state.dirty.pop(part, None)
                state.last_event.pop(part, None)
