"""Behaviour agent: user-behavior events -> interest profiles -> audience (with hysteresis) -> Redis.

Built so the per-event cost stays close to Faust's own iteration cost (`make bench` measures it): the
agent iterates events one by one on a `noack()` stream (Faust's cheapest path; `take()` batching costs
more per event) and per event only keeps the message. The messages received since the last round are
applied together when the round starts (`apply_pending`, at most `audience_interval_s` later; one tight
loop is several times cheaper than the same work spread between Faust's per-message steps). Each one
- is decoded by the schema's checked shortcut (`decode_behavior_fields`; bad ones go to the dead-letter
  topic),
- finds its product's features (category key, log price, embedding) in an in-process cache filled from
  Redis product meta (a product costs one Redis read per `FEATURE_TTL_S`, fetched for the whole round in
  one round trip; at start up to `WorkerSettings.feature_warmup_products` are loaded in pipelined batches),
- updates its user's profile in memory (profiles live per partition) and marks it dirty.
Prometheus counts are published in bulk.

Write-behind. Every `WorkerSettings.audience_interval_s` the events waiting are applied and the users
they updated are re-scored (steps 1-2); everything is flushed every `profile_flush_interval_s`, once `profile_flush_max_events`
events wait, or when no event came for `IDLE_FLUSH_S` (steps 1-4; the agent loop does this when events
arrive, a plain asyncio task when the topic is quiet or Faust waits for unacknowledged events on
shutdown/rebalance):
1. each dirty user is re-scored once (audience assignment with hysteresis, `streams.profile`);
2. users whose audience changed (or whose Redis key is older than half its TTL) are written to Redis in
   one command (`redis_store.USERS_AND_CHECK`), which also checks which candidate variants exist; missing
   ones are requested;
3. each dirty profile is written to the RocksDB table `user-profiles` once (one changelog record per
   user per flush, however many events it took);
4. only then are the flushed events acknowledged. Faust flushes the producer (changelog records,
   requests) before it commits their offsets.

Durability (at-least-once, updates applied exactly once): a committed offset never covers an event
whose profile update is not in the changelog. A crash loses only unacknowledged events, which are
redelivered; the profile stores the offset of the last event applied to it (a user's events all come
from one partition, in order), so redelivered events already in the restored profile are skipped
(`descstream_behaviour_total{outcome="replayed"}`). The intervals are the price: under steady traffic an
audience switch reaches Redis up to `audience_interval_s` after the event, a crash replays up to
`profile_flush_interval_s` of events, and how much the write-behind saves depends on how many events a
user sends per interval (`make bench` reports table writes and switches per event).

On an audience change the agent requests the variants the user is likely to see next that are missing:
their recently viewed products and the hot products of their top categories, limited to products whose
category the new audience is relevant for. A variant seen in Redis or requested in the last `KNOWN_VARIANT_TTL_S` is
not checked or requested again (the generation agent would coalesce it anyway; this keeps switch storms off the topic).
Each request carries ``source_ms``, the time (ms) of the user's latest behaviour event before the switch,
so `descstream loadgen` measures event time -> Redis write for switches as it does for product changes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections import defaultdict
from typing import Any

import faust
import numpy as np
import orjson

from descstream.config import Settings
from descstream.schemas import DEFAULT_AUDIENCE, InvalidEvent, decode_behavior_fields

from . import metrics
from .fatal import crash_worker
from .profile import WEIGHTS, AudienceModel, Profile, category_key, decode_embedding
from .services import Services
from .tables import raw_table, table_get, table_set_many
from .validation import dead_letter, message_coords, send_dead_letter

log = logging.getLogger(__name__)

FEATURE_TTL_S = 60.0
IDLE_FLUSH_S = 0.25  # no event for this long: flush (and score) now instead of at the interval
# How often the idle flusher looks: finely, so the last events before a pause are acknowledged ~0.25-0.3 s
# after them rather than up to 0.5 s (a look is a lock and a few comparisons). Not a shorter IDLE_FLUSH_S:
# on a loaded machine the consumer stalls for 0.1 s now and then, and every spurious idle flush writes
# every dirty profile (measured: 0.15-0.2 table writes/event instead of 0.12 with 0.1 s).
IDLE_CHECK_S = 0.05
MISSING_TTL_S = 2.0
HOT_PER_CATEGORY = 200
SWITCH_CANDIDATES = 8
KNOWN_VARIANT_TTL_S = 60.0  # a variant seen in Redis, or requested, is not checked or requested again for this long

# (category key, category, log(price) or None, unit embedding or None)
Features = tuple[str | None, str | None, float | None, np.ndarray | None]


_frozen = False


def freeze_startup_heap() -> None:
    """`gc.freeze()` once per process, when the agent starts: everything allocated so far (modules, Faust,
    aiokafka, the audience model...) lives for the whole process, and the full collections that the
    write-behind provokes (messages held until the flush survive into the oldest generation) no longer
    re-scan it. A larger gen-0 threshold then makes the held messages cross fewer young collections.
    Measured per 50k-event bench run (worker lifetime, start-up included): GC 0.86 s (7 full collections
    of ~85 ms) -> ~0.5 s with the freeze -> ~0.3 s with the threshold too (plain Faust: ~0.3 s)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 10)  # default (700, 10, 10)


class BehaviourState:
    """In-memory state of the behaviour agent in one worker process."""

    def __init__(self, settings: Settings, services: Services, model: AudienceModel):
        self.settings = settings
        self.services = services
        self.model = model
        self.profiles: dict[int, dict[str, Profile]] = defaultdict(dict)
        self.features: dict[str, Features | None] = {}
        self.feature_until: dict[str, float] = {}  # product -> monotonic time its cached features go stale
        self.hot: dict[str, dict[str, float]] = defaultdict(dict)
        self.known_variants: dict[tuple[str, str], float] = {}  # (product, audience) -> seen or requested at
        self.hot_top_cache: dict[str, list[tuple[str, float]]] = {}
        # write-behind. to_score: user -> (profile, time (s) of its latest event), updated since the last
        # scoring round; dirty: partition -> user -> profile, updated since the last table flush
        self.to_score: dict[str, tuple[Profile, float]] = {}
        self.dirty: dict[int, dict[str, Profile]] = {}
        self.part_event: dict[int, Any] = {}  # partition -> one of its events (binds table reads and writes)
        # messages (not events) consumed, not yet acknowledged; the first `applied` of them are applied
        self.pending: list[Any] = []
        self.applied = 0
        self.generation = 0  # bumped on every partition assignment
        self.last_flush = self.last_score = self.last_event = time.monotonic()
        self.counts = [0, 0, 0, 0]  # events, ok, unknown product, replayed: published in bulk
        self.lock = asyncio.Lock()  # the agent loop and the idle-flush timer never interleave
        self.flusher: asyncio.Future | None = None

    async def fetch_features(self, pids: list[str], mono: float) -> None:
        rows = await self.services.store.get_features_many(pids)
        for pid, got in zip(pids, rows):
            if got is None:
                self.features[pid] = None
                self.feature_until[pid] = mono + MISSING_TTL_S
            else:
                cat, price, emb = got
                logp = math.log(price) if price is not None and price > 0 else None
                self.features[pid] = (category_key(cat), cat, logp, decode_embedding(emb))
                self.feature_until[pid] = mono + FEATURE_TTL_S

    async def warm_features(self, limit: int, batch: int = 500) -> int:
        """Fill the feature cache with up to `limit` products at start, `batch` per pipelined round trip.

        Without it every product the agent meets first costs one blocking Redis round trip (~150 us of CPU
        in redis-py, plus the wait) - just when a restarted worker has lag to catch up on. Returns how many
        products were cached (deleted/unknown ones are cached as missing, as `fetch_features` does)."""
        if limit <= 0:
            return 0
        pids = await self.services.store.product_ids(limit)
        mono = time.monotonic()
        for i in range(0, len(pids), batch):
            await self.fetch_features(pids[i:i + batch], mono)
        return len(pids)

    def trim_hot(self, ck: str) -> None:
        """Keep the HOT_PER_CATEGORY hottest products of a category (called when it holds twice that)."""
        keep = sorted(self.hot[ck].items(), key=lambda kv: kv[1], reverse=True)[:HOT_PER_CATEGORY]
        self.hot[ck] = dict(keep)

    def hot_top(self, ck: str) -> list[tuple[str, float]]:
        """The 5 hottest products of a category; computed once per scoring round (`hot_top_cache` is
        cleared by the agent before each round)."""
        top = self.hot_top_cache.get(ck)
        if top is None:
            top = self.hot_top_cache[ck] = sorted(self.hot.get(ck, {}).items(), key=lambda kv: kv[1], reverse=True)[:5]
        return top

    def candidates(self, prof: Profile, audience: str) -> list[tuple[str, float]]:
        """(product, priority) the user is likely to see next: recent first, then hot in top categories."""
        out: dict[str, float] = {}
        for i, pid in enumerate(reversed(prof.recent)):
            out[pid] = 20.0 - i
        top = sorted(prof.cats.items(), key=lambda kv: kv[1], reverse=True)[:2]
        for ck, _ in top:
            for pid, score in self.hot_top(ck):
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
    worker = settings.worker
    behavior_topic = app.topic(topics.behavior, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    table = app.Table(
        "user-profiles", default=None, partitions=topics.partitions, key_type=bytes, value_type=bytes,
    )
    raw_table(table)
    model = AudienceModel(load_audiences())
    state = BehaviourState(settings, services, model)
    app.behaviour_state = state  # type: ignore[attr-defined]
    max_bytes = worker.max_field_bytes * 2
    flush_every = worker.profile_flush_interval_s
    score_every = worker.audience_interval_s
    flush_max = worker.profile_flush_max_events
    events_in = metrics.EVENTS_IN.labels(topic=topics.behavior)
    ok_counter = metrics.BEHAVIOUR.labels(outcome="ok")
    unknown_counter = metrics.BEHAVIOUR.labels(outcome="unknown_product")
    replayed_counter = metrics.BEHAVIOUR.labels(outcome="replayed")
    acked_counter = metrics.BEHAVIOUR_ACKED
    batch_hist = metrics.BATCH_SIZE.labels(agent="behaviour")
    store = services.store
    user_ttl_half = settings.redis.user_ttl_s / 2 if settings.redis.user_ttl_s else float("inf")
    gen_topic_name = topics.generation_requests

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

    async def write_switches(changed: dict[str, tuple[Profile, bool, int]], now: float) -> None:
        """Redis audience keys + which candidate variants exist (one script call), then requests
        for the missing variants of switched users. `changed`: user -> (profile, switched, time in ms of
        the user's latest event). The sends are not awaited one by one: Faust flushes the producer (its
        buffer and the Kafka producer's) before it commits the acknowledged offsets."""
        wanted: list[tuple[str, str, float, int]] = []
        seen: set[tuple[str, str]] = set()
        known = state.known_variants
        for prof, switched, src_ms in changed.values():
            new = prof.audience
            if not switched or new == DEFAULT_AUDIENCE:
                continue
            for pid, prio in state.candidates(prof, new):
                key = (pid, new)
                if key in seen:
                    continue
                seen.add(key)
                at = known.get(key)
                if at is not None and now - at <= KNOWN_VARIANT_TTL_S:
                    continue
                wanted.append((pid, new, prio, src_ms))
        have = await store.set_user_audiences_and_check(
            [(uid, prof.audience) for uid, (prof, _sw, _ms) in changed.items()], [(pid, aud) for pid, aud, _, _ in wanted]
        )
        for prof, _sw, _ms in changed.values():
            prof.redis_at = now
        if len(known) > 100_000:
            known.clear()
        n = 0
        producer = None
        for (pid, aud, prio, src_ms), exists in zip(wanted, have):
            known[(pid, aud)] = now
            if exists:
                continue
            req = {"product_id": pid, "audiences": [aud], "reason": "audience_switch", "priority": prio, "version": 0,
                   "source_ms": src_ms}
            if producer is None:
                producer = await app.maybe_start_producer()
            # the transport producer, not `Topic.send`: the same record, partitioned by key like every other
            # request, without a FutureMessage and its callbacks per record (~1,400 per 50k-event bench run)
            await producer.send(gen_topic_name, pid.encode(), orjson.dumps(req), None, None, None)
            n += 1
        if n:
            metrics.GEN_REQUESTS.labels(outcome="requested_switch").inc(n)

    async def score() -> None:
        """Re-score the users updated since the last round; write switches (and TTL refreshes) to Redis and
        request missing variants. Called with `state.lock` held."""
        await apply_pending()
        to_score, state.to_score = state.to_score, {}
        state.last_score = time.monotonic()
        state.hot_top_cache.clear()
        now = time.time()
        changed: dict[str, tuple[Profile, bool, int]] = {}
        items = list(to_score.items())
        assigned = model.assign_many([prof for _uid, (prof, _ts) in items])
        for (uid, (prof, ts)), new in zip(items, assigned):
            if new != prof.audience:
                prof.audience = new
                changed[uid] = (prof, True, int(ts * 1000))
                metrics.AUDIENCE_SWITCHES.labels(to=new).inc()
            elif new != DEFAULT_AUDIENCE and now - prof.redis_at > user_ttl_half:
                changed[uid] = (prof, False, 0)  # refresh the key's TTL (or re-write it after a crash)
        if changed:
            # Redis outages are retried inside RedisStore; anything else crashes the worker before the
            # events are acknowledged, so the replay re-derives the switch (and its requests).
            await write_switches(changed, now)

    async def flush() -> None:
        """Score, then write every dirty profile to the table, then acknowledge (see module docstring).
        Called with `state.lock` held."""
        await score()  # before the table writes: a crash in between re-derives the switches on replay
        # events that arrived while `score` awaited Redis: applied now, so that every message acknowledged
        # below is in a profile written below (`apply_pending` returns with nothing left unapplied, and no
        # await separates that from the swap)
        await apply_pending()
        dirty, state.dirty = state.dirty, {}
        pending, state.pending = state.pending, []
        state.applied = 0
        state.last_flush = time.monotonic()
        n_written = 0
        part_event = state.part_event
        for part, users in dirty.items():
            table_set_many(table, part_event[part], ((uid.encode(), prof.dumps()) for uid, prof in users.items()))
            n_written += len(users)
        if n_written:
            metrics.PROFILE_FLUSHES.inc(n_written)
        ack_messages(pending)
        acked_counter.inc(len(pending))
        batch_hist.observe(len(pending))

    def ack_messages(messages: list[Any]) -> None:
        """`Stream.ack` without the event: the same `Message.ack` (refcount; the consumer marks the offset
        committable) and `on_message_out` sensor call, synchronously. Holding messages instead of events
        until the flush keeps fewer objects alive (less GC work), and skips one coroutine per event (the
        per-event `on_stream_event_out` that `Stream.ack` adds does nothing without sensor state)."""
        consumer = app.consumer  # looked up here, not at registration: never create Faust's consumer early
        on_message_out = app.sensors.on_message_out
        for message in messages:
            if message.ack(consumer):
                on_message_out(message.tp, message.offset, message)

    def publish_counts() -> None:
        """Per-event counts go to Prometheus in bulk (a counter increment takes a lock)."""
        n_events, n_ok, n_unknown, n_replayed = counts
        if n_events:
            events_in.inc(n_events)
        if n_ok:
            ok_counter.inc(n_ok)
        if n_unknown:
            unknown_counter.inc(n_unknown)
        if n_replayed:
            replayed_counter.inc(n_replayed)
        counts[:] = [0, 0, 0, 0]

    async def flush_or_score() -> None:
        """Whatever is due (called with `state.lock` held)."""
        mono = time.monotonic()
        idle = mono - state.last_event >= IDLE_FLUSH_S
        if state.pending and (len(state.pending) >= flush_max or idle or mono - state.last_flush >= flush_every):
            await flush()
        elif (state.to_score or state.applied < len(state.pending)) and (idle or mono - state.last_score >= score_every):
            await score()
        publish_counts()  # after: the counts of the events this round applied

    counts = state.counts
    profiles = state.profiles
    features = state.features
    trim_hot = state.trim_hot
    hot = state.hot
    weights = WEIGHTS

    def apply_event(msg: Any, ev: Any) -> None:
        """Update the user's profile in memory and mark it dirty (synchronous: never interleaves a flush)."""
        part = msg.partition
        uid, pid, kind, query, ts = ev
        cache = profiles[part]
        prof = cache.get(uid)
        if prof is None:
            raw = table_get(table, state.part_event[part], uid.encode())
            prof = Profile.loads(raw) if raw else Profile()
            cache[uid] = prof
        off = msg.offset
        if off <= prof.off:  # already applied (and flushed) before a crash/rebalance: skip
            counts[3] += 1
            return
        prof.off = off
        ck = logp = emb = None
        if pid is not None:
            f = features.get(pid)
            if f is None:
                counts[2] += 1
            else:
                ck, _cat, logp, emb = f
                if ck is not None:  # the product's heat in its category
                    h = hot[ck]
                    h[pid] = h.get(pid, 0.0) + 1.0
                    if len(h) > 2 * HOT_PER_CATEGORY:
                        trim_hot(ck)
        prof.apply(weights.get(kind, 1.0), ts, pid, ck, logp, emb, query)
        d = state.dirty.get(part)
        if d is None:
            d = state.dirty[part] = {}
        d[uid] = prof
        state.to_score[uid] = (prof, ts)
        counts[1] += 1

    async def apply_pending() -> None:
        """Decode and apply every message received since the last call, in arrival order (called with
        `state.lock` held). Bad messages go to the dead-letter topic; the features of products not cached
        are fetched for the whole batch in one Redis round trip. Returns only when nothing is left
        unapplied: the agent appends messages while this awaits."""
        feature_until = state.feature_until
        while state.applied < len(state.pending):
            start = state.applied
            batch = state.pending[start:]
            state.applied = start + len(batch)
            gen = state.generation
            counts[0] += len(batch)
            mono = time.monotonic()
            decoded = []
            missing: dict[str, None] = {}
            for msg in batch:
                try:
                    ev = decode_behavior_fields(msg.value, max_bytes)
                except InvalidEvent as exc:
                    await dead_letter_message(msg, exc)
                    continue
                pid = ev.product_id
                if pid is not None and feature_until.get(pid, 0.0) <= mono:  # not cached (or stale): rare
                    missing[pid] = None
                decoded.append((msg, ev))
            if missing:
                await state.fetch_features(list(missing), mono)
            if gen != state.generation:
                # a rebalance ran during an await and dropped the messages of the partitions this worker
                # lost (their new owner re-consumes them): apply only those still pending
                alive = {id(m) for m in state.pending}
                decoded = [(msg, ev) for msg, ev in decoded if id(msg) in alive]
            for msg, ev in decoded:
                apply_event(msg, ev)

    async def dead_letter_message(msg: Any, exc: InvalidEvent) -> None:
        topic, part, off, key = message_coords(msg)
        dl = dead_letter(topic=topic, partition=part, offset=off, key=key, value=msg.value, reason=str(exc))
        await send_dead_letter(app.dlq_topic, dl, key)  # type: ignore[attr-defined]

    async def idle_flusher() -> None:
        """Flush what waits when the topic goes quiet (the agent flushes only when events arrive).

        A plain asyncio task, not a Faust timer: Faust stops its timers before it waits for unacknowledged
        events on shutdown (`Consumer.wait_empty`), and only a flush acknowledges ours."""
        while True:
            await asyncio.sleep(min(flush_every, score_every, IDLE_CHECK_S))
            try:
                async with state.lock:
                    await flush_or_score()
            except Exception as exc:  # exit WITHOUT acknowledging anything unflushed (streams/fatal.py)
                crash_worker("behaviour", exc)

    @app.agent(behavior_topic, name="descstream-behaviour")
    async def behaviour(stream: faust.StreamT) -> None:
        """One event at a time (Faust's cheapest iteration), acknowledged later by `flush`."""
        await audience_vectors()
        if not state.features:  # once per process (the agent restarts on a rebalance)
            try:
                n = await state.warm_features(worker.feature_warmup_products)
                log.info("behaviour: features of %d products cached at start", n)
            except Exception as exc:  # an optimisation: the per-product fetch still works
                log.warning("behaviour: feature warm-up failed (%s); fetching per product", exc)
        freeze_startup_heap()
        manual = stream.noack()
        if state.flusher is None:
            state.flusher = asyncio.ensure_future(idle_flusher())
        pending = state.pending
        part_event = state.part_event
        monotonic = time.monotonic
        async for _value in manual:  # (`manual.events()` adds one async-generator layer per event)
            event = manual.current_event
            if event is None:  # pragma: no cover - a topic-backed stream always has one
                continue
            try:
                # per event only this: the message is kept, and decoded and applied with the others received
                # since the last round (`apply_pending`, at most `audience_interval_s` later)
                msg = event.message
                if msg.partition not in part_event:
                    part_event[msg.partition] = event
                if pending is not state.pending:  # a flush swapped the list
                    pending = state.pending
                pending.append(msg)
                mono = state.last_event = monotonic()
                if (mono - state.last_score >= score_every or mono - state.last_flush >= flush_every
                        or len(pending) >= flush_max):
                    async with state.lock:
                        await flush_or_score()
            except Exception as exc:  # exit WITHOUT acknowledging anything unflushed (streams/fatal.py)
                crash_worker("behaviour", exc)

    @app.on_before_shutdown.connect
    async def _stop_flusher(_app: Any, **kw: Any) -> None:  # after Faust's wait for unacknowledged events
        if state.flusher is not None:
            state.flusher.cancel()

    @app.on_partitions_assigned.connect
    async def _assigned(_app: Any, assigned: Any = None, **kw: Any) -> None:
        assigned = assigned if assigned is not None else kw.get("assigned", set())
        mine = {tp.partition for tp in assigned if tp.topic == topics.behavior}
        state.generation += 1
        for part in list(state.profiles):
            if part not in mine:
                state.profiles.pop(part, None)
                for uid in state.dirty.pop(part, {}):  # unacknowledged: the new owner re-consumes these events
                    state.to_score.pop(uid, None)
        for part in list(state.part_event):
            if part not in mine:
                del state.part_event[part]
        # unacknowledged messages of lost partitions are dropped (their new owner re-consumes them); the
        # applied ones stay first
        applied = [m for m in state.pending[:state.applied] if m.partition in mine]
        state.pending = applied + [m for m in state.pending[state.applied:] if m.partition in mine]
        state.applied = len(applied)
