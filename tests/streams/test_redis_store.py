"""The Redis layout and its Lua compare-and-set, against a real redis-server."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import pytest_asyncio

from descstream.schemas import DescriptionRecord, GateVerdict, ProductUpsert
from streams.reader import get_descriptions
from streams.redis_store import LAYOUT_KEY, RedisStore, desc_key, meta_key, served_form

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)


def product(pid: str, version: int, **kw) -> ProductUpsert:
    base = dict(product_id=pid, version=version, updated_at=T0 + timedelta(minutes=version), title=f"Tent {pid}",
                category="Outdoor > Camping > Tents", brand="NorthPeak", price=149.0,
                attributes={"weight": "1.6 kg"}, description="seller text")
    base.update(kw)
    return ProductUpsert(**base)


def record(pid: str, audience: str, version: int, text: str, *, source="generated", minutes=None, passed=True,
           model="m1") -> DescriptionRecord:
    return DescriptionRecord(
        product_id=pid, audience=audience, text=text, source=source, model_version=model, product_version=version,
        source_event_time=T0 + timedelta(minutes=version if minutes is None else minutes),
        generated_at=datetime.now(timezone.utc), gate=GateVerdict(passed=passed),
    )


@pytest_asyncio.fixture(loop_scope='session')
async def store(infra):
    s = RedisStore.from_settings(infra)
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="session", params=["1", "2"])
async def layout(request, store):
    """Run a reader test on both `READ` paths: layout 1 (data of older versions may hold stale variants:
    every product's meta is checked) and layout 2 (pruned: one lookup per served product)."""
    if request.param == "2":
        await store.ensure_layout()
    else:
        await store.r.delete(LAYOUT_KEY)
    yield request.param
    await store.ensure_layout()


def pid() -> str:
    return "p-" + uuid.uuid4().hex[:10]


async def test_cas_newer_wins_and_replays_never_overwrite(store):
    p = pid()
    await store.upsert_products([(product(p, 1), "fh1", None)])
    assert await store.publish([record(p, "default", 1, "v1 text")]) == [True]
    await store.upsert_products([(product(p, 2, price=139.0), "fh2", None)])
    assert await store.publish([record(p, "default", 2, "v2 text")]) == [True]
    # the old event replayed after the newer one: refused, text unchanged
    assert await store.publish_codes([record(p, "default", 1, "v1 replay")]) == [-2]
    # exact duplicate: refused
    assert await store.publish([record(p, "default", 2, "v2 text")]) == [False]
    # same version, older source time: refused
    assert await store.publish([record(p, "default", 2, "older", minutes=0)]) == [False]
    assert (await store.get_record(p)).text == "v2 text"
    # same stamp: generated text replaces a fallback, never the other way round
    q = pid()
    await store.upsert_products([(product(q, 1), "fh", None)])
    assert await store.publish([record(q, "default", 1, "fallback", source="fallback")]) == [True]
    assert await store.publish([record(q, "default", 1, "generated")]) == [True]
    assert await store.publish([record(q, "default", 1, "fallback again", source="fallback")]) == [False]
    assert (await store.get_record(q)).text == "generated"


async def test_cas_upgrade_mode_replaces_other_model_at_same_stamp_only(store):
    """Model-upgrade backfill: same (product_version, source_event_time), different model version."""
    p = pid()
    await store.upsert_products([(product(p, 2), "fh2", None)])
    assert await store.publish([record(p, "default", 2, "old model", model="m1")]) == [True]
    # without the upgrade flag a new model cannot replace text of the same stamp (the pre-upgrade rule)
    assert await store.publish([record(p, "default", 2, "new model", model="m2")]) == [False]
    # a fallback from the new model never replaces gate-passed generated text, even as an upgrade
    assert await store.publish([record(p, "default", 2, "m2 fallback", source="fallback", model="m2")], upgrade=True) == [False]
    # the same model is a duplicate, even as an upgrade
    assert await store.publish([record(p, "default", 2, "m1 again", model="m1")], upgrade=True) == [False]
    # an older stamp is refused in upgrade mode too (older source time; older version = stale)
    assert await store.publish([record(p, "default", 2, "older", model="m2", minutes=0)], upgrade=True) == [False]
    assert await store.publish_codes([record(p, "default", 1, "v1", model="m2")], upgrade=True) == [-2]
    assert (await store.get_record(p)).text == "old model"
    # the upgrade itself
    assert await store.publish([record(p, "default", 2, "new model", model="m2")], upgrade=True) == [True]
    rec = await store.get_record(p)
    assert rec.text == "new model" and rec.model_version == "m2"
    assert await store.r.hget(desc_key(p), "default@v") == f"2 {int((T0 + timedelta(minutes=2)).timestamp() * 1000)} 2".encode()
    # ... and a replay of the old model's write (upgrade or not) never brings the old text back
    assert await store.publish([record(p, "default", 2, "old model", model="m1")], upgrade=[False]) == [False]
    assert await store.publish([record(p, "default", 2, "m2 dup", model="m2")], upgrade=True) == [False]
    # a newer product version still wins without any flag
    await store.upsert_products([(product(p, 3, price=99.0), "fh3", None)])
    assert await store.publish([record(p, "default", 3, "v3", model="m1")]) == [True]
    # equal rank fallback -> fallback of another model: allowed as an upgrade; fallback -> generated always
    q = pid()
    await store.upsert_products([(product(q, 1), "fh", None)])
    assert await store.publish([record(q, "default", 1, "fb m1", source="fallback", model="m1")]) == [True]
    assert await store.publish([record(q, "default", 1, "fb m2", source="fallback", model="m2")]) == [False]
    assert await store.publish([record(q, "default", 1, "fb m2", source="fallback", model="m2")], upgrade=True) == [True]
    assert await store.publish([record(q, "default", 1, "gen m2", model="m2")]) == [True]
    # never for a deleted product
    await store.delete_product(q, 2, T0)
    assert await store.publish_codes([record(q, "default", 1, "zombie", model="m3")], upgrade=True) == [-1]
    # per-record flags must match the records
    with pytest.raises(ValueError):
        await store.publish_codes([record(q, "default", 1, "x")], upgrade=[True, False])


async def test_pipelined_publish_mixed_results(store):
    p = pid()
    await store.upsert_products([(product(p, 3), "fh", None)])
    res = await store.publish([
        record(p, "default", 3, "a"), record(p, "families", 3, "b"), record(p, "default", 3, "dup"),
    ])
    assert res == [True, True, False]
    recs = await store.get_records(p)
    assert set(recs) == {"default", "families"}


async def test_meta_versions_and_tombstone(store):
    p = pid()
    assert await store.upsert_products([(product(p, 1), "fh1", b"\x00\x01")]) == [2]
    assert await store.upsert_products([(product(p, 1), "fh1", None)]) == [0]  # duplicate
    assert await store.upsert_products([(product(p, 2), "fh1", None)]) == [1]  # version bump, same facts
    assert await store.publish([record(p, "default", 2, "text")]) == [True]
    assert await store.delete_product(p, 5, T0) is True
    assert await store.r.exists(desc_key(p)) == 0
    # an old upsert replayed after the delete does not resurrect the product
    assert await store.upsert_products([(product(p, 4), "fh9", None)]) == [-1]
    assert await store.publish_codes([record(p, "default", 4, "zombie")]) == [-1]
    assert await store.delete_product(p, 3, T0) is False  # older delete
    # a genuinely newer upsert re-lists it
    assert await store.upsert_products([(product(p, 6), "fh6", None)]) == [2]
    meta = (await store.get_meta_many([p]))[0]
    assert meta.version == 6 and meta.facts_version == 6 and not meta.deleted and meta.facts.version == 6


async def test_has_current_and_user(store):
    p = pid()
    await store.upsert_products([(product(p, 2), "fh", None)])
    await store.publish([record(p, "default", 2, "t")])
    assert await store.has_current(p, "default", 2, "m1")
    assert not await store.has_current(p, "default", 3)
    assert not await store.has_current(p, "default", 2, "m2")
    assert not await store.has_current(p, "families", 2)
    await store.set_user_audience("u-x", "families")
    assert await store.get_user_audience("u-x") == "families"
    assert 0 < await store.r.ttl("ds:user:u-x") <= store.user_ttl


async def test_user_audiences_and_check_one_command(store):
    """The behaviour agent's scoring round: user audiences written (with TTL) + variant existence, one script."""
    p, q = pid(), pid()
    await store.upsert_products([(product(p, 1), "fh", None), (product(q, 1), "fh", None)])
    await store.publish([record(p, "default", 1, "t"), record(p, "outdoor_adventurers", 1, "v")])
    u1, u2 = "u-" + uuid.uuid4().hex[:6], "u-" + uuid.uuid4().hex[:6]
    have = await store.set_user_audiences_and_check(
        [(u1, "outdoor_adventurers"), (u2, "families")],
        [(p, "outdoor_adventurers"), (p, "families"), (q, "outdoor_adventurers"), ("p-nowhere", "default")],
    )
    assert have == [True, False, False, False]
    assert await store.get_user_audience(u1) == "outdoor_adventurers"
    assert await store.get_user_audience(u2) == "families"
    assert 0 < await store.r.ttl(f"ds:user:{u2}") <= store.user_ttl
    assert await store.set_user_audiences_and_check([], [(p, "default")]) == [True]
    assert await store.set_user_audiences_and_check([(u1, "families")], []) == []
    assert await store.get_user_audience(u1) == "families"


async def test_reader_ids_and_empty(store):
    """Ids travel joined by \\x1f: an id containing it (or an empty id) is refused, an empty list is fine."""
    assert await get_descriptions(store, "u-none", []) == {}
    with pytest.raises(ValueError):
        await get_descriptions(store, "u-none", ["a\x1fb"])
    with pytest.raises(ValueError):
        await get_descriptions(store, "u-none", ["a", ""])


async def test_reader_fallback_chain(store, layout):
    a, b, c, d, e = (pid() for _ in range(5))
    user = "u-" + uuid.uuid4().hex[:6]
    await store.set_user_audience(user, "outdoor_adventurers")
    for x in (a, b, c, e):
        await store.upsert_products([(product(x, 1, description=f"seller {x}"), "fh", None)])
    await store.publish([
        record(a, "outdoor_adventurers", 1, "variant a"), record(a, "default", 1, "default a"),
        record(b, "default", 1, "default b"),
        record(e, "outdoor_adventurers", 1, "bad e", passed=False), record(e, "default", 1, "default e"),
    ])
    await store.delete_product(c, 2, T0)
    out = await get_descriptions(store, user, [a, b, c, d, e])
    assert out[a]["text"] == "variant a" and out[a]["source"] == "generated" and out[a]["audience"] == "outdoor_adventurers"
    assert out[b]["text"] == "default b" and out[b]["audience"] == "default"
    assert out[c]["text"] is None and out[c]["source"] == "deleted"
    assert out[d]["source"] == "missing"
    assert out[e]["text"] == "default e"  # gate-failed text is never returned
    f = pid()
    await store.upsert_products([(product(f, 1, description="only the seller's"), "fh", None)])
    out = await get_descriptions(store, "u-unknown", [f, a])
    assert out[f] == {"text": "only the seller's", "audience": None, "model_version": None, "product_version": 1, "source": "seller"}
    assert out[a]["text"] == "default a"  # unknown user -> default


async def test_reader_http(infra, store):
    from aiohttp.test_utils import TestClient, TestServer

    from streams.reader import make_web_app

    p = pid()
    await store.upsert_products([(product(p, 1), "fh", None)])
    await store.publish([record(p, "default", 1, "hello")])
    async with TestClient(TestServer(make_web_app(infra, store))) as client:
        resp = await client.get(f"/descriptions?user=u-1&products={p},p-none")
        assert resp.status == 200
        body = await resp.json()
        assert body["descriptions"][p]["text"] == "hello"
        assert body["descriptions"]["p-none"]["source"] == "missing"
        assert (await client.get("/descriptions?user=u-1&products=bad id")).status == 400


async def test_cas_ranks_failed_fallback_below_gate_fallback_below_generated(store):
    """rank 0 = generation failed (model "none"), 1 = gate-rejected fallback (a real model), 2 = generated.

    A "generation failed" fallback must be replaceable by the retried attempt's gate-rejected fallback at the
    same stamp, or that item is regenerated on every later request."""
    from streams.redis_store import RANK_FAILED, RANK_FALLBACK, RANK_GENERATED, record_rank

    none_fb = record("x", "default", 1, "failed fallback", source="fallback", model="none")
    gate_fb = record("x", "default", 1, "gate fallback", source="fallback", model="m1")
    assert (record_rank(none_fb), record_rank(gate_fb), record_rank(record("x", "default", 1, "g"))) == (
        RANK_FAILED, RANK_FALLBACK, RANK_GENERATED)
    p = pid()
    await store.upsert_products([(product(p, 1), "fh", None)])
    assert await store.publish([record(p, "default", 1, "failed fallback", source="fallback", model="none")]) == [True]
    # the retry reached the model, the gate rejected its text: its fallback replaces the "none" one
    assert await store.publish([record(p, "default", 1, "gate fallback", source="fallback", model="m1")]) == [True]
    rec = await store.get_record(p)
    assert rec.text == "gate fallback" and rec.model_version == "m1"
    assert (await store.r.hget(desc_key(p), "default@v")).endswith(b" 1")
    # ... and a late "generation failed" fallback (a replayed failure) never replaces it
    assert await store.publish([record(p, "default", 1, "failed again", source="fallback", model="none")]) == [False]
    # generated text beats both
    assert await store.publish([record(p, "default", 1, "generated")]) == [True]
    assert await store.publish([record(p, "default", 1, "gate fallback 2", source="fallback", model="m2")]) == [False]
    assert (await store.get_record(p)).text == "generated"


async def test_facts_change_never_serves_an_older_variant(store, layout):
    """A facts change deletes the variants written for the older facts (READ must not serve them), and a
    category change deletes the variants of audiences that no longer apply (they would never be regenerated)."""
    p = pid()
    user = "u-" + uuid.uuid4().hex[:6]
    await store.set_user_audience(user, "outdoor_adventurers")
    await store.upsert_products([(product(p, 1, description="seller v1"), "fh1", None)])
    await store.publish([record(p, "outdoor_adventurers", 1, "tent variant v1"), record(p, "default", 1, "tent default v1")])
    assert (await get_descriptions(store, user, [p]))[p]["text"] == "tent variant v1"
    # facts change (same category): the v1 variants are deleted; the seller's text is served until v2's come
    assert await store.upsert_products([(product(p, 2, price=99.0, description="seller v2"), "fh2", None)]) == [2]
    assert await store.get_records(p) == {}
    out = (await get_descriptions(store, user, [p]))[p]
    assert out["text"] == "seller v2" and out["source"] == "seller"
    await store.publish([record(p, "default", 2, "tent default v2")])
    assert (await get_descriptions(store, user, [p]))[p]["text"] == "tent default v2"
    await store.publish([record(p, "outdoor_adventurers", 2, "tent variant v2")])
    assert (await get_descriptions(store, user, [p]))[p]["text"] == "tent variant v2"
    # a version bump with the same facts changes nothing
    assert await store.upsert_products([(product(p, 3, price=99.0, description="seller v2"), "fh2", None)]) == [1]
    assert (await get_descriptions(store, user, [p]))[p]["text"] == "tent variant v2"
    # re-categorised at v4, with v4 texts already written (they raced ahead of the meta): the outdoor variant
    # (text and CAS stamp) is deleted, whatever its version, because that audience no longer applies
    assert await store.publish([record(p, "outdoor_adventurers", 4, "raced ahead"), record(p, "default", 4, "raced default")]) == [True, True]
    mug = dict(category="Home > Kitchen > Mugs", title="Stoneware Mug", description="seller v4")
    assert await store.upsert_products([(product(p, 4, **mug), "fh4", None)]) == [2]
    assert set(await store.get_records(p)) == {"default"}
    assert (await get_descriptions(store, user, [p]))[p]["text"] == "raced default"
    # a late write for the old facts is refused (stale)
    assert await store.publish_codes([record(p, "outdoor_adventurers", 3, "tent variant v3")]) == [-2]


async def test_layout_migration_prunes_what_older_versions_left(store):
    """Data written before layout 2 may hold variants for older facts (older writers kept them until
    regenerated) and a deleted product's descriptions, and has no served forms (`@s`): the checked READ path
    never serves the stale ones, `ensure_layout` deletes exactly them and adds the served forms, after which
    the one-lookup path gives the same answers."""
    p, q, r = pid(), pid(), pid()
    user = "u-" + uuid.uuid4().hex[:6]
    await store.set_user_audience(user, "outdoor_adventurers")
    for x in (p, q, r):
        await store.upsert_products([(product(x, 1, description=f"seller {x}"), "fh1", None)])
        await store.publish([record(x, "outdoor_adventurers", 1, f"variant {x}"), record(x, "default", 1, f"default {x}")])
    await store.publish([record(r, "families", 1, "gate-failed families", passed=False)])
    await store.upsert_products([(product(p, 2, price=99.0, description="seller v2"), "fh2", None)])
    await store.publish([record(p, "default", 2, "default v2")])
    await store.delete_product(q, 2, T0)
    # what an older writer left behind: no served forms; p's v1 variant (facts changed at v2); q's texts (deleted)
    stale = {k: v for k, v in (await store.r.hgetall(desc_key(r))).items() if not k.endswith(b"@s")}
    await store.r.hset(desc_key(p), mapping={k: v for k, v in stale.items() if k.startswith(b"outdoor")})
    await store.r.hset(desc_key(q), mapping={k: v for k, v in stale.items() if not k.startswith(b"families")})
    for x in (p, r):
        await store.r.hdel(desc_key(x), *[k for k in await store.r.hkeys(desc_key(x)) if k.endswith(b"@s")])
    await store.r.delete(LAYOUT_KEY)
    want = {p: ("default v2", "generated"), q: (None, "deleted"), r: (f"variant {r}", "generated")}

    def answers(out: dict) -> dict:
        return {x: (out[x]["text"], out[x]["source"]) for x in out}

    assert answers(await get_descriptions(store, user, [p, q, r])) == want
    assert await store.ensure_layout() == 2 + 4  # p: outdoor + its stamp; q: its 4 fields (hash dropped)
    assert await store.r.get(LAYOUT_KEY) == b"2"
    assert set(await store.get_records(p)) == {"default"} and not await store.r.exists(desc_key(q))
    assert set(await store.get_records(r)) == {"outdoor_adventurers", "default", "families"}
    # the served forms were added for the gate-passed records only, with the bytes the writer would write
    for x, aud in ((p, "default"), (r, "outdoor_adventurers"), (r, "default")):
        assert await store.r.hget(desc_key(x), f"{aud}@s") == served_form(await store.get_record(x, aud))
    assert await store.r.hget(desc_key(r), "families@s") is None
    assert await store.r.hget(meta_key(q), "del") == b"1"
    assert answers(await get_descriptions(store, user, [p, q, r])) == want
    assert await store.ensure_layout() == 0  # done once


async def test_served_form_follows_the_record(store):
    """`@s` is written with every gate-passed record and removed when a later record did not pass."""
    p = pid()
    await store.upsert_products([(product(p, 1), "fh1", None)])
    await store.publish([record(p, "default", 1, "first")])
    assert await store.r.hget(desc_key(p), "default@s") == served_form(await store.get_record(p))
    assert (await get_descriptions(store, "u-x", [p]))[p]["text"] == "first"
    await store.publish([record(p, "default", 2, "newer but failed", passed=False)])
    assert await store.r.hget(desc_key(p), "default@s") is None
    assert (await get_descriptions(store, "u-x", [p]))[p]["source"] == "seller"


async def test_transient_redis_errors_are_retried_until_redis_is_back(infra, tmp_path):
    """A Redis outage stalls a store operation (retries with backoff, counted) instead of failing it;
    non-transient errors are raised at once; a bounded policy gives up."""
    import asyncio
    import subprocess

    import redis.exceptions

    from descstream.config import Settings
    from serving.triton_env import free_ports
    from streams import metrics
    from streams.redis_store import RetryPolicy

    (port,) = free_ports(1)
    data = infra.model_dump()
    data["redis"]["url"] = f"redis://127.0.0.1:{port}/0"
    settings = Settings(**data)

    def retries() -> float:
        return sum(s.value for m in metrics.REDIS_RETRIES.collect() for s in m.samples if s.name.endswith("_total"))

    bounded = RedisStore.from_settings(settings, retry=RetryPolicy(base_s=0.02, max_delay_s=0.1, give_up_s=0.3))
    with pytest.raises(redis.exceptions.ConnectionError):
        await bounded.get_user_audience("u-1")
    await bounded.close()

    s = RedisStore.from_settings(settings, retry=RetryPolicy(base_s=0.02, max_delay_s=0.2))
    before = retries()
    p = pid()
    task = asyncio.ensure_future(s.upsert_products([(product(p, 1), "fh1", None)]))
    await asyncio.sleep(1.0)
    assert not task.done() and retries() > before
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        assert await asyncio.wait_for(task, 20) == [2]
        assert await s.publish([record(p, "default", 1, "after the outage")]) == [True]
        assert s._down_since is None  # the outage is over (logged once at its start and once at its end)
        await s.r.set("ds:meta:wrongtype", b"x")  # a script error is not transient: raised at once
        with pytest.raises(redis.exceptions.ResponseError):
            await asyncio.wait_for(s.upsert_products([(product("wrongtype", 1), "fh", None)]), 5)
    finally:
        await s.close()
        proc.terminate()
        proc.wait(10)
