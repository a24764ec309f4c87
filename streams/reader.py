"""Read path: the description a given user should see for each product, in ONE Redis round trip.

Fallback chain per product: the user's audience variant -> the `default` description -> the seller's own
description (from product meta). A record whose gate verdict failed is never returned (the generation
agent never publishes one; this is the belt to its braces). Deleted or unknown products come back with
``text: null``.

HTTP: ``GET /descriptions?user=u-1&products=p-1,p-2`` ->
``{"user": "u-1", "audience": "outdoor_adventurers", "descriptions": {"p-1": {"text": ..., "audience": ...,
"model_version": ..., "product_version": ..., "source": "generated"|"fallback"|"seller"}, ...}}``.
Served by ``descstream serve-reader`` on `ReaderSettings` (127.0.0.1 by default).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import orjson

from descstream.config import Settings
from descstream.schemas import DEFAULT_AUDIENCE

from .redis_store import RedisStore, RetryPolicy

# The reader answers shoppers: ride out a Redis restart blip, but never hang a request through an outage.
READER_RETRY = RetryPolicy(base_s=0.02, max_delay_s=0.25, give_up_s=1.0)

MAX_PRODUCTS = 200
_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


_MISSING = {"text": None, "audience": None, "model_version": None, "product_version": None, "source": "missing"}


def resolve(reply: Sequence[bytes], product_ids: Sequence[str]) -> tuple[str, dict[str, dict]]:
    """Parse `RedisStore.read_raw`'s reply (see `redis_store.READ`) into the per-product answers.

    The reader's hottest Python: a served description is one split of its `@s` form (layout 2); the
    layout-1 path returns record JSON, whose gate verdict is checked again here."""
    audience = reply[0].decode()
    out: dict[str, dict] = {}
    for i, pid in enumerate(product_ids, 1):
        head = reply[2 * i - 1]
        kind = head[:1]
        if kind == b"a" or kind == b"d":
            aud = audience if kind == b"a" else DEFAULT_AUDIENCE
            if head[1:2] == b"s":
                mv, pv, source, text = reply[2 * i].split(b"\x1f", 3)
                out[pid] = {"text": text.decode(), "audience": aud, "model_version": mv.decode(),
                            "product_version": int(pv), "source": source.decode()}
            else:
                d = orjson.loads(reply[2 * i])
                if d["gate"]["passed"]:  # the Lua pre-filter matched text, this checks the parsed verdict
                    out[pid] = {"text": d["text"], "audience": aud, "model_version": d["model_version"],
                                "product_version": d["product_version"], "source": d["source"]}
                else:
                    out[pid] = _MISSING.copy()
        elif kind == b"s":
            version = head[1:]
            out[pid] = {"text": reply[2 * i].decode(), "audience": None, "model_version": None,
                        "product_version": int(version) if version else None, "source": "seller"}
        elif kind == b"D":
            out[pid] = {"text": None, "audience": None, "model_version": None, "product_version": int(head[1:]),
                        "source": "deleted"}
        else:
            out[pid] = _MISSING.copy()
    return audience, out


async def get_descriptions(store: RedisStore, user_id: str, product_ids: Sequence[str]) -> dict[str, dict]:
    """Per product the text this user should see (see module docstring). One Redis round trip."""
    _, out = await get_descriptions_with_audience(store, user_id, product_ids)
    return out


async def get_descriptions_with_audience(
    store: RedisStore, user_id: str, product_ids: Sequence[str]
) -> tuple[str, dict[str, dict]]:
    reply = await store.read_raw(user_id, product_ids)
    return resolve(reply, product_ids)


def make_web_app(settings: Settings, store: RedisStore | None = None) -> Any:
    from aiohttp import web

    async def on_startup(app: web.Application) -> None:
        app["store"] = store or RedisStore.from_settings(settings, retry=READER_RETRY)

    async def on_cleanup(app: web.Application) -> None:
        if store is None:
            await app["store"].close()

    async def descriptions(request: web.Request) -> web.Response:
        user = request.query.get("user", "")
        products = [p for p in request.query.get("products", "").split(",") if p]
        if not _ID.match(user):
            return web.json_response({"error": "user must be an identifier"}, status=400)
        if not products or len(products) > MAX_PRODUCTS or not all(_ID.match(p) for p in products):
            return web.json_response({"error": f"products must be 1-{MAX_PRODUCTS} comma-separated identifiers"}, status=400)
        audience, out = await get_descriptions_with_audience(request.app["store"], user, products)
        body = orjson.dumps({"user": user, "audience": audience, "descriptions": out})
        return web.Response(body=body, content_type="application/json")

    async def health(_request: web.Request) -> web.Response:
        try:
            ok = await _request.app["store"].ping()
        except Exception:
            ok = False
        return web.json_response({"redis": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/descriptions", descriptions)
    app.router.add_get("/health", health)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def run_reader(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    from aiohttp import web

    web.run_app(make_web_app(settings), host=host or settings.reader.host, port=port or settings.reader.port, print=None)
