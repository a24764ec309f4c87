"""`descstream replay` and `descstream backfill`: re-derive descriptions without touching live offsets.

Replay
------
`replay --topic products|user-behavior --from T [--to T]` reads the topic's events of that time window in
its **own** consumer group (default `descstream-replay-<topic>-<unix s>`; the worker's group is refused),
with manual partition assignment (no group join, no rebalance of the live workers) and commits only to
that group, so the live group's offsets never move.

Start offsets come from `offsets_for_times`; an answer whose timestamp is before the requested time (some
Kafka-compatible brokers answer with the segment start) is treated as a lower bound, and every message is
also filtered on its own timestamp, so the window is exact on any broker. Reading stops at the end offsets
taken when the replay starts (events that arrive during a replay are the live worker's business).

How it regenerates: through the worker's own path. The replay works out which (product, audience)
descriptions the window's events affect:

* `products`: each upserted product's relevant audiences (`models.audiences.audiences_for_category`, as the
  product agent requests them);
* `user-behavior`: each touched product's `default` description and the variant for the user's current
  audience (Redis `ds:user:*`), when that audience is relevant for the product's category;

compares them with Redis (`RedisStore.stored_versions` against the product meta's facts version) and
publishes generation requests (`reason: "replay"`, the same JSON the product and behaviour agents send)
for the pairs that are missing or stale. The generation agent then regenerates from the product's current
facts, gates and CAS-writes them like any other job. Replaying twice changes nothing the second time: the
pairs are up to date, so nothing is requested, and even a duplicate request would be skipped by the
agent's plan step and refused by the Redis compare-and-set (same version and event time).

Summary: read, in window, regenerated (written by the worker within `--wait`), of which fallback,
skipped as up to date, rejected (invalid events, unknown or deleted products, versions the worker has
not applied yet), pending (requested but not written within `--wait`).

Backfill
--------
`backfill --model-version V` walks every cached description (`ds:desc:*`), hottest products first
(behaviour events per product over the last `--hot-window` hours of the behaviour topic; then by id), and
requests regeneration of every (product, audience) whose record was not produced by V
(`reason: "backfill"`, `model_version: V`), one batch of products at a time, waiting up to `--wait` s per
batch for the records to show V. The workers must already run model V: the generation agent skips a pair
only when its stored text is V's, and writes V's text in the Redis CAS's *upgrade mode*, which lets a
different model version replace a description of the same product version and event time (never a
generated text by a fallback, never an older/stale/deleted one; see `streams.redis_store`).

Progress is a checkpoint file of processed products (atomic rewrite after each batch), so an interrupted
backfill (crash, Ctrl-C, or `--limit N` products) resumes where it stopped without re-requesting the
products already processed; `--restart` starts over. A run after a complete backfill finds nothing
stale and requests nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from descstream.config import Settings
from descstream.schemas import DEFAULT_AUDIENCE, InvalidEvent, ProductDelete, decode_behavior, decode_product

REPLAY_PRIORITY = 30.0
BACKFILL_PRIORITY = 1.0
NO_MODEL = "none"  # model_version of a fallback written after a generator failure (generation_agent)


class ReplayError(RuntimeError):
    """A replay/backfill could not run; the message says why."""


# ------------------------------------------------------------------------------------------ pure helpers
_REL = re.compile(r"^(-)?\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)(?:\s+ago)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(value: str, now: float | None = None) -> int:
    """A time given on the command line -> unix milliseconds.

    Accepts ISO 8601 (`2026-11-28T10:00:00Z`, naive = UTC), unix seconds or milliseconds (numbers above
    1e11 are milliseconds), `now`, and relative times before now (`-15m`, `15m`, `2h ago`, `1d`).
    """
    now = time.time() if now is None else now
    v = value.strip()
    if not v:
        raise ValueError("empty time")
    if v.lower() == "now":
        return int(now * 1000)
    m = _REL.match(v.lower())
    if m:
        return int((now - float(m.group(2)) * _UNITS[m.group(3)]) * 1000)
    try:
        num = float(v)
    except ValueError:
        pass
    else:
        return int(num) if num > 1e11 else int(num * 1000)
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read {value!r} as a time (ISO 8601, unix seconds/ms, now, or -15m/2h/1d)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def start_offset(answer: Any, beginning: int, end: int, start_ms: int) -> int:
    """Where to start reading a partition, from an `offsets_for_times` answer.

    None = no message at or after the time -> the end. An answer whose timestamp is before the requested
    time is not what Kafka promises (some compatible brokers return the segment start): use it as a lower
    bound (messages are filtered on their own timestamps anyway)."""
    if answer is None:
        return end
    off = max(beginning, min(int(answer.offset), end))
    return off


def stop_offset(answer: Any, end: int, end_ms: int | None) -> int:
    """Where to stop (exclusive): the end snapshot, or earlier when the broker gave a trustworthy answer
    (timestamp at or after `end_ms`) for the window's end."""
    if end_ms is None or answer is None:
        return end
    if answer.timestamp is not None and answer.timestamp >= end_ms:
        return max(0, min(int(answer.offset), end))
    return end


@dataclass
class Pacer:
    """Allows `rate` items per second (0 = unlimited); `wait(n)` sleeps just enough."""

    rate: float
    started: float = field(default_factory=time.monotonic)
    count: int = 0

    def delay(self, n: int, now: float | None = None) -> float:
        self.count += n
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, self.started + self.count / self.rate - now)

    async def wait(self, n: int) -> None:
        d = self.delay(n)
        if d > 0:
            await asyncio.sleep(d)


def requests_for(pairs: list[tuple[str, str]], reason: str, priority: float, versions: dict[str, int],
                 extra: dict[str, Any] | None = None) -> list[tuple[bytes, bytes]]:
    """Generation requests (key, value) grouped per product, in the agents' JSON format."""
    by_pid: dict[str, list[str]] = {}
    for pid, aud in pairs:
        auds = by_pid.setdefault(pid, [])
        if aud not in auds:
            auds.append(aud)
    out = []
    for pid, auds in by_pid.items():
        req = {"product_id": pid, "version": versions.get(pid, 0), "audiences": auds, "reason": reason,
               "priority": priority, **(extra or {})}
        out.append((pid.encode(), orjson.dumps(req)))
    return out


def is_current(stored: tuple[int, str, str] | None, facts_version: int, model_version: str | None = None) -> bool:
    """Does a stored (product_version, model_version, source) answer for these facts (and model)?"""
    if stored is None:
        return False
    pv, mv, _src = stored
    if mv == NO_MODEL or pv < facts_version:
        return False
    return model_version is None or mv == model_version


def hot_order(product_ids: list[str], counts: dict[str, int] | Counter) -> list[str]:
    """Most behaviour events first, then by product id (stable, deterministic)."""
    return sorted(product_ids, key=lambda pid: (-counts.get(pid, 0), pid))


# ------------------------------------------------------------------------------------------ replay
@dataclass
class ReplayConfig:
    topic: str  # the real topic name
    kind: str  # "products" | "behavior"
    start_ms: int
    end_ms: int | None
    group: str
    rate: float = 0.0
    dry_run: bool = False
    wait: float = 60.0
    progress: bool = True

    @classmethod
    def build(cls, settings: Settings, *, topic: str, start: str, end: str | None = None, rate: float = 0.0,
              group: str | None = None, dry_run: bool = False, wait: float = 60.0, progress: bool = True,
              now: float | None = None) -> "ReplayConfig":
        t = settings.topics
        aliases = {t.products: "products", "products": "products", t.behavior: "behavior",
                   "user-behavior": "behavior", "behavior": "behavior", "behaviour": "behavior"}
        kind = aliases.get(topic)
        if kind is None:
            raise ReplayError(f"cannot replay topic {topic!r}: use products ({t.products}) or user-behavior ({t.behavior})")
        real = t.products if kind == "products" else t.behavior
        now = time.time() if now is None else now
        try:
            start_ms = parse_time(start, now)
            end_ms = parse_time(end, now) if end else None
        except ValueError as exc:
            raise ReplayError(str(exc)) from None
        if end_ms is not None and end_ms <= start_ms:
            raise ReplayError("--to must be after --from")
        group = group or f"descstream-replay-{real}-{int(now)}"
        if group == settings.worker.app_id:
            raise ReplayError(f"--group {group!r} is the live worker group: a replay never reads or commits in it")
        if rate < 0:
            raise ReplayError("--rate must be >= 0")
        return cls(topic=real, kind=kind, start_ms=start_ms, end_ms=end_ms, group=group, rate=rate,
                   dry_run=dry_run, wait=wait, progress=progress)


def _bar(enabled: bool, description: str, total: int):
    if not enabled:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    p.start()
    return p, p.add_task(description, total=max(total, 1))


async def _read_window(settings: Settings, cfg: ReplayConfig, on_message) -> dict[str, int]:
    """Read `cfg.topic` between the window's offsets in the replay's own group; returns counters."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=cfg.group, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=2000)
    await consumer.start()
    stats = {"read": 0, "in_window": 0}
    try:
        parts = consumer.partitions_for_topic(cfg.topic)
        if not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = consumer.partitions_for_topic(cfg.topic)
        if not parts:
            raise ReplayError(f"topic {cfg.topic!r} does not exist on {settings.kafka.bootstrap_servers}")
        tps = [TopicPartition(cfg.topic, p) for p in sorted(parts)]
        beginning = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        starts_ans = await consumer.offsets_for_times({tp: cfg.start_ms for tp in tps})
        ends_ans = await consumer.offsets_for_times({tp: cfg.end_ms for tp in tps}) if cfg.end_ms else {}
        start = {tp: start_offset(starts_ans.get(tp), beginning[tp], ends[tp], cfg.start_ms) for tp in tps}
        stop = {tp: stop_offset(ends_ans.get(tp), ends[tp], cfg.end_ms) for tp in tps}
        todo = {tp for tp in tps if start[tp] < stop[tp]}
        total = sum(max(0, stop[tp] - start[tp]) for tp in tps)
        consumer.assign(list(todo))  # manual assignment: no group join, the live group is never rebalanced
        for tp in todo:
            consumer.seek(tp, start[tp])
        last: dict[Any, int] = {}
        pacer = Pacer(cfg.rate)
        bar, task = _bar(cfg.progress, f"replay {cfg.topic}", total)
        try:
            while todo:
                batches = await consumer.getmany(*todo, timeout_ms=500, max_records=500 if cfg.rate <= 0 else max(1, int(cfg.rate)))
                n = 0
                for tp, msgs in batches.items():
                    for m in msgs:
                        if m.offset >= stop[tp]:
                            break
                        n += 1
                        last[tp] = m.offset
                        if m.timestamp < cfg.start_ms or (cfg.end_ms is not None and m.timestamp >= cfg.end_ms):
                            continue
                        stats["in_window"] += 1
                        on_message(m)
                    if last.get(tp, start[tp] - 1) + 1 >= stop[tp] or (msgs and msgs[-1].offset + 1 >= stop[tp]):
                        todo.discard(tp)
                        consumer.pause(tp)
                for tp in list(todo):  # a partition whose position already reached the stop offset
                    if await consumer.position(tp) >= stop[tp]:
                        todo.discard(tp)
                stats["read"] += n
                if bar is not None:
                    bar.update(task, completed=stats["read"])
                await pacer.wait(n)
        finally:
            if bar is not None:
                bar.stop()
        if last and not cfg.dry_run:  # record how far the replay got, in the replay's own group only
            await consumer.commit({tp: off + 1 for tp, off in last.items()})
    finally:
        await consumer.stop()
    return stats


async def run_replay(settings: Settings, cfg: ReplayConfig) -> dict[str, Any]:
    """Read the window, request what is missing or stale, wait for the worker; returns the summary."""
    from models.audiences import audiences_for_category, get_audience

    from .redis_store import RedisStore, user_key

    rejected: Counter[str] = Counter()
    product_versions: dict[str, int] = {}  # products: newest upserted version in the window
    deleted_in_window: set[str] = set()
    touched: dict[str, set[str]] = {}  # behaviour: product -> users

    def on_message(m: Any) -> None:
        try:
            if cfg.kind == "products":
                ev = decode_product(m.value, settings.worker.max_field_bytes * 8)
                if isinstance(ev, ProductDelete):
                    deleted_in_window.add(ev.product_id)
                else:
                    product_versions[ev.product_id] = max(ev.version, product_versions.get(ev.product_id, -1))
            else:
                ev = decode_behavior(m.value, settings.worker.max_field_bytes * 2)
                if ev.product_id is None:
                    rejected["no_product"] += 1
                    return
                touched.setdefault(ev.product_id, set()).add(ev.user_id)
        except InvalidEvent:
            rejected["invalid"] += 1

    t0 = time.time()
    stats = await _read_window(settings, cfg, on_message)

    store = RedisStore.from_settings(settings)
    try:
        pids = sorted(product_versions) if cfg.kind == "products" else sorted(touched)
        metas = dict(zip(pids, await store.get_meta_many(pids, with_facts=False)))
        user_aud: dict[str, str] = {}
        if cfg.kind == "behavior":
            users = sorted({u for us in touched.values() for u in us})
            pipe = store.r.pipeline(transaction=False)
            for u in users:
                pipe.hget(user_key(u), "audience")
            for u, a in zip(users, await pipe.execute()):
                user_aud[u] = a.decode() if a else DEFAULT_AUDIENCE
        pairs: list[tuple[str, str]] = []
        facts_v: dict[str, int] = {}
        versions: dict[str, int] = {}
        for pid in pids:
            meta = metas.get(pid)
            if meta is None:
                rejected["unknown_product"] += 1
                continue
            if meta.deleted:
                rejected["deleted"] += 1
                continue
            if cfg.kind == "products" and product_versions[pid] > meta.version:
                rejected["not_applied_yet"] += 1  # the worker has not written these facts: nothing to regenerate from
                continue
            facts_v[pid] = meta.facts_version
            versions[pid] = meta.version
            if cfg.kind == "products":
                auds = audiences_for_category(meta.category)
            else:
                auds = [DEFAULT_AUDIENCE]
                for u in sorted(touched[pid]):
                    a = user_aud.get(u, DEFAULT_AUDIENCE)
                    if a in auds:
                        continue
                    try:
                        if get_audience(a).matches(meta.category):
                            auds.append(a)
                    except KeyError:
                        rejected["unknown_audience"] += 1
            pairs += [(pid, a) for a in auds]
        stored = await store.stored_versions(pairs)
        todo = [p for p, s in zip(pairs, stored) if not is_current(s, facts_v[p[0]])]
        summary: dict[str, Any] = {
            "topic": cfg.topic,
            "group": cfg.group,
            "window_from": datetime.fromtimestamp(cfg.start_ms / 1000, timezone.utc).isoformat(),
            "window_to": datetime.fromtimestamp(cfg.end_ms / 1000, timezone.utc).isoformat() if cfg.end_ms else "end",
            "read": stats["read"],
            "in_window": stats["in_window"],
            "products": len(pids),
            "pairs": len(pairs),
            "skipped_up_to_date": len(pairs) - len(todo),
            "to_regenerate": len(todo),
            "rejected": sum(rejected.values()),
            **{f"rejected_{k}": v for k, v in sorted(rejected.items())},
            "deletes_in_window": len(deleted_in_window),
        }
        if cfg.dry_run:
            summary["dry_run"] = "yes"
            summary["plan"] = [f"{p}/{a}" for p, a in todo]
            summary["seconds"] = round(time.time() - t0, 2)
            return summary
        await _publish(settings, requests_for(todo, "replay", REPLAY_PRIORITY, versions))
        written, fallback = await _await_written(store, todo, facts_v, None, cfg.wait)
        summary.update(regenerated=written, fallback=fallback, pending=len(todo) - written,
                       requested=len(todo), seconds=round(time.time() - t0, 2))
        return summary
    finally:
        await store.close()


async def _publish(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    if not messages:
        return
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", linger_ms=5)
    await producer.start()
    try:
        futs = [await producer.send(settings.topics.generation_requests, key=k, value=v) for k, v in messages]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def _await_written(store: Any, pairs: list[tuple[str, str]], facts_v: dict[str, int],
                         model_version: str | None, wait: float) -> tuple[int, int]:
    """Poll Redis until every pair is current (for the model, when given) or `wait` runs out;
    returns (written, of which fallback)."""
    if not pairs:
        return 0, 0
    deadline = time.monotonic() + max(0.0, wait)
    pending = list(pairs)
    written = fallback = 0
    while True:
        stored = await store.stored_versions(pending)
        still = []
        for p, s in zip(pending, stored):
            if is_current(s, facts_v.get(p[0], 0), model_version):
                written += 1
                fallback += s[2] != "generated"  # type: ignore[index]
            else:
                still.append(p)
        pending = still
        if not pending or time.monotonic() >= deadline:
            return written, fallback
        await asyncio.sleep(0.25)


# ------------------------------------------------------------------------------------------ backfill
@dataclass
class BackfillConfig:
    model_version: str
    checkpoint: Path | None = None
    batch: int = 50
    rate: float = 0.0  # products per second
    hot_window_h: float = 24.0
    wait: float = 60.0
    dry_run: bool = False
    restart: bool = False
    progress: bool = True
    max_products: int | None = None  # stop after this many (tests; operational throttling)


class Checkpoint:
    """Processed products of one backfill, persisted atomically (write to a temp file, then rename)."""

    def __init__(self, path: Path, model_version: str, restart: bool = False) -> None:
        self.path = path
        self.model_version = model_version
        self.done: set[str] = set()
        self.stats: dict[str, int] = {}
        if path.exists() and not restart:
            data = json.loads(path.read_text())
            if data.get("model_version") != model_version:
                raise ReplayError(
                    f"checkpoint {path} belongs to model version {data.get('model_version')!r}, not {model_version!r}: "
                    "pass --restart or another --checkpoint"
                )
            self.done = set(data.get("done", ()))
            self.stats = dict(data.get("stats", {}))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({
            "model_version": self.model_version, "updated_at": datetime.now(timezone.utc).isoformat(),
            "stats": self.stats, "done": sorted(self.done),
        }))
        os.replace(tmp, self.path)


async def behaviour_counts(settings: Settings, hours: float, limit: int = 5_000_000) -> Counter[str]:
    """Behaviour events per product over the last `hours` (group-less read; commits nothing)."""
    counts: Counter[str] = Counter()
    if hours <= 0:
        return counts
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        parts = c.partitions_for_topic(settings.topics.behavior) or set()
        tps = [TopicPartition(settings.topics.behavior, p) for p in sorted(parts)]
        if not tps:
            return counts
        since = int((time.time() - hours * 3600) * 1000)
        beginning = await c.beginning_offsets(tps)
        ends = await c.end_offsets(tps)
        ans = await c.offsets_for_times({tp: since for tp in tps})
        todo = set()
        c.assign(tps)
        for tp in tps:
            s = start_offset(ans.get(tp), beginning[tp], ends[tp], since)
            if s < ends[tp]:
                c.seek(tp, s)
                todo.add(tp)
        n = 0
        while todo and n < limit:
            batches = await c.getmany(*todo, timeout_ms=500, max_records=5000)
            for tp, msgs in batches.items():
                for m in msgs:
                    if m.offset >= ends[tp]:
                        break
                    n += 1
                    if m.timestamp < since:
                        continue
                    try:
                        pid = orjson.loads(m.value).get("product_id")
                    except (orjson.JSONDecodeError, AttributeError):
                        continue
                    if isinstance(pid, str):
                        counts[pid] += 1
            for tp in list(todo):
                if await c.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await c.stop()
    return counts


async def stale_pairs(store: Any, model_version: str) -> dict[str, list[str]]:
    """product -> audiences whose cached description was not produced by `model_version` (SCAN ds:desc:*)."""
    from .redis_store import PREFIX, is_record_field

    out: dict[str, list[str]] = {}
    prefix = f"{PREFIX}desc:".encode()
    keys: list[bytes] = []

    async def flush() -> None:
        pipe = store.r.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        for key, raw in zip(keys, await pipe.execute()):
            pid = key[len(prefix):].decode()
            for field_name, value in sorted(raw.items()):
                if not is_record_field(field_name):
                    continue
                try:
                    mv = orjson.loads(value).get("model_version")
                except (orjson.JSONDecodeError, AttributeError):
                    mv = None
                if mv != model_version:
                    out.setdefault(pid, []).append(field_name.decode())
        keys.clear()

    async for key in store.r.scan_iter(match=f"{PREFIX}desc:*", count=1000):
        keys.append(key)
        if len(keys) >= 500:
            await flush()
    if keys:
        await flush()
    return out


async def run_backfill(settings: Settings, cfg: BackfillConfig) -> dict[str, Any]:
    """Request regeneration of every description not produced by `cfg.model_version`, hot products first."""
    from .redis_store import RedisStore

    path = cfg.checkpoint or Path(".descstream") / f"backfill-{re.sub(r'[^A-Za-z0-9._-]', '_', cfg.model_version)}.json"
    ckpt = Checkpoint(path, cfg.model_version, restart=cfg.restart)
    t0 = time.time()
    store = RedisStore.from_settings(settings)
    try:
        stale = await stale_pairs(store, cfg.model_version)
        counts = await behaviour_counts(settings, cfg.hot_window_h)
        order = [pid for pid in hot_order(list(stale), counts) if pid not in ckpt.done]
        if cfg.max_products is not None:
            order = order[: cfg.max_products]
        summary: dict[str, Any] = {
            "model_version": cfg.model_version,
            "checkpoint": str(path),
            "stale_products": len(stale),
            "stale_descriptions": sum(len(v) for v in stale.values()),
            "already_done": len(ckpt.done),
            "to_process": len(order),
        }
        if cfg.dry_run:
            summary["dry_run"] = "yes"
            summary["plan"] = [f"{pid} ({counts.get(pid, 0)} events): {','.join(stale[pid])}" for pid in order]
            return summary
        pacer = Pacer(cfg.rate)
        requested = upgraded = fallback = 0
        bar, task = _bar(cfg.progress, f"backfill -> {cfg.model_version}", len(order))
        try:
            for i in range(0, len(order), max(1, cfg.batch)):
                chunk = order[i : i + max(1, cfg.batch)]
                metas = dict(zip(chunk, await store.get_meta_many(chunk, with_facts=False)))
                pairs = [(pid, a) for pid in chunk for a in stale[pid] if metas.get(pid) and not metas[pid].deleted]
                facts_v = {pid: m.facts_version for pid, m in metas.items() if m is not None}
                versions = {pid: m.version for pid, m in metas.items() if m is not None}
                await _publish(settings, requests_for(
                    pairs, "backfill", BACKFILL_PRIORITY, versions, {"model_version": cfg.model_version}))
                w, f = await _await_written(store, pairs, facts_v, cfg.model_version, cfg.wait)
                requested += len(pairs)
                upgraded += w
                fallback += f
                ckpt.done.update(chunk)
                ckpt.stats = {"requested": ckpt.stats.get("requested", 0) + len(pairs),
                              "upgraded": ckpt.stats.get("upgraded", 0) + w,
                              "not_upgraded": ckpt.stats.get("not_upgraded", 0) + len(pairs) - w}
                ckpt.save()
                if bar is not None:
                    bar.update(task, completed=min(len(order), i + len(chunk)))
                await pacer.wait(len(chunk))
        finally:
            if bar is not None:
                bar.stop()
        summary.update(requested=requested, upgraded=upgraded, fallback=fallback,
                       not_upgraded=requested - upgraded, processed_total=len(ckpt.done),
                       seconds=round(time.time() - t0, 2))
        return summary
    finally:
        await store.close()
