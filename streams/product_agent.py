"""Product agent: products topic -> product facts table + Redis product meta -> generation requests.

Micro-batched (`take_events`): one batch decodes, coalesces per product (the newest version wins), drops
stale/duplicate versions and unchanged facts (facts hash in the RocksDB-backed `product-facts` table),
embeds the changed products in one Triton call (and tags those with no category in one more), writes
product meta to Redis (versioned Lua), and asks the generation agent for `default` plus the audiences that
matter for the category. Deletes write a versioned tombstone that removes every cached text and keeps
an old upsert replayed later from resurrecting the product.

The batch's offsets are acknowledged only when the loop asks for the next batch, i.e. after the Redis
writes and the generation-request sends were acknowledged (at-least-once; every write is idempotent).
Redis outages are retried inside `RedisStore` (the batch waits); a Triton tag/embed failure degrades to
no tag/embedding (logged, counted); any other exception exits the worker without acknowledging the batch
(`streams/fatal.py`). A facts change that moves the product to another category also deletes the cached
variants of audiences that no longer apply (`META_UPSERT`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson

from descstream.config import Settings
from descstream.schemas import InvalidEvent, ProductDelete, ProductUpsert, decode_product

from . import metrics
from .fatal import crash_worker
from .profile import encode_embedding
from .redis_store import to_ms
from .services import Services
from .tables import raw_table, table_get, table_set
from .validation import dead_letter, event_coords, send_dead_letter

log = logging.getLogger(__name__)

PRIORITY_DEFAULT = 100.0
PRIORITY_VARIANT = 50.0


def _embed_text(p: ProductUpsert) -> str:
    return " | ".join(x for x in (p.title, p.category or "", p.brand or "", p.description[:500]) if x)


def _tag_label(row: list[tuple[str, float]]) -> str | None:
    """Best label of one `TritonClient.tag()` row (`[(label, score), ...]`, best first)."""
    return str(row[0][0]) if row and row[0] and row[0][0] else None


def register(app: faust.App, settings: Settings, services: Services) -> None:
    from models.audiences import audiences_for_category

    topics = settings.topics
    products_topic = app.topic(topics.products, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    table = app.Table(
        "product-facts", default=None, partitions=topics.partitions, key_type=bytes, value_type=bytes,
    )
    raw_table(table)
    store = services.store
    events_in = metrics.EVENTS_IN.labels(topic=topics.products)
    max_bytes = settings.worker.max_field_bytes * 8
    batch_n = max(settings.worker.batch_size * 4, 16)

    async def embed_and_tag(changed: list[ProductUpsert]) -> tuple[list[bytes | None], list[ProductUpsert]]:
        embs: list[bytes | None] = [None] * len(changed)
        embedder = services.embedder
        if embedder is None or not changed:
            return embs, changed
        untagged = [i for i, p in enumerate(changed) if not p.category]
        if untagged:
            t0 = time.perf_counter()
            try:
                rows = await embedder.tag([_embed_text(changed[i]) for i in untagged], 1)
                for i, row in zip(untagged, rows):
                    label = _tag_label(row)
                    if label:
                        changed[i] = changed[i].model_copy(update={"category": label})
                metrics.PRODUCTS.labels(outcome="tagged").inc(len(untagged))
            except Exception as exc:
                metrics.GEN_FAILURES.labels(kind="tag").inc()
                log.warning("tagging failed for %d products: %s", len(untagged), exc)
            metrics.TRITON_LATENCY.labels(call="tag").observe(time.perf_counter() - t0)
        t0 = time.perf_counter()
        try:
            vecs = await embedder.embed([_embed_text(p) for p in changed])
            embs = [encode_embedding(v) for v in vecs]
        except Exception as exc:
            metrics.GEN_FAILURES.labels(kind="embed").inc()
            log.warning("embedding failed for %d products: %s", len(changed), exc)
        metrics.TRITON_LATENCY.labels(call="embed").observe(time.perf_counter() - t0)
        return embs, changed

    @app.agent(products_topic, name="descstream-products")
    async def products(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_n, within=settings.worker.batch_timeout_s):
            try:
                metrics.BATCH_SIZE.labels(agent="products").observe(len(events))
                latest: dict[str, tuple[Any, ProductUpsert | ProductDelete]] = {}
                for event in events:
                    events_in.inc()
                    try:
                        ev = decode_product(event.value, max_bytes)
                    except InvalidEvent as exc:
                        topic, part, off, key = event_coords(event)
                        dl = dead_letter(topic=topic, partition=part, offset=off, key=key, value=event.value, reason=str(exc))
                        await send_dead_letter(app.dlq_topic, dl, key)  # type: ignore[attr-defined]
                        continue
                    prev = latest.get(ev.product_id)
                    if prev is not None and prev[1].version >= ev.version:
                        metrics.PRODUCTS.labels(outcome="stale").inc()
                        continue
                    latest[ev.product_id] = (event, ev)

                changed: list[ProductUpsert] = []
                changed_fh: list[str] = []
                changed_ev: list[Any] = []
                bumps: list[tuple[Any, ProductUpsert, str]] = []
                deletes: list[tuple[Any, ProductDelete]] = []
                for pid, (event, ev) in latest.items():
                    raw = table_get(table, event, pid.encode())
                    cur_v, cur_fh, cur_del = -1, "", False
                    if raw:
                        v, fh, d = raw.decode().split("|")
                        cur_v, cur_fh, cur_del = int(v), fh, d == "1"
                    if ev.version <= cur_v:
                        metrics.PRODUCTS.labels(outcome="stale").inc()
                        continue
                    if isinstance(ev, ProductDelete):
                        deletes.append((event, ev))
                        continue
                    fh = ev.facts_hash()
                    if fh == cur_fh and not cur_del:
                        bumps.append((event, ev, fh))
                    else:
                        changed.append(ev)
                        changed_fh.append(fh)
                        changed_ev.append(event)

                embs, changed = await embed_and_tag(changed)
                items = [(ev, fh, emb) for ev, fh, emb in zip(changed, changed_fh, embs)]
                items += [(ev, fh, None) for _, ev, fh in bumps]
                codes = await store.upsert_products(items)
                deleted = await store.delete_products([(ev.product_id, ev.version, ev.updated_at) for _, ev in deletes])

                sends = []
                for (ev, fh, _), code, event in zip(items, codes, changed_ev + [b[0] for b in bumps]):
                    table_set(table, event, ev.product_id.encode(), f"{ev.version}|{fh}|0".encode())
                    outcome = {2: "changed", 1: "unchanged", 0: "stale", -1: "tombstoned"}[code]
                    metrics.PRODUCTS.labels(outcome=outcome).inc()
                    if code != 2:
                        continue
                    auds = audiences_for_category(ev.category)
                    req = {
                        "product_id": ev.product_id,
                        "version": ev.version,
                        "audiences": auds,
                        "reason": "product_change",
                        "priority": PRIORITY_DEFAULT,
                        "source_ms": to_ms(ev.updated_at),
                    }
                    sends.append(await app.gen_topic.send(key=ev.product_id.encode(), value=orjson.dumps(req)))  # type: ignore[attr-defined]
                    metrics.GEN_REQUESTS.labels(outcome="requested_product").inc(len(auds))
                for (event, ev), ok in zip(deletes, deleted):
                    table_set(table, event, ev.product_id.encode(), f"{ev.version}||1".encode())
                    metrics.PRODUCTS.labels(outcome="deleted" if ok else "stale").inc()
                for fut in sends:  # wait for the broker's ack before the batch is acknowledged
                    await fut
            except Exception as exc:  # anything else: exit WITHOUT acknowledging this batch (streams/fatal.py)
                crash_worker("products", exc)
