"""THE Redis layout of descstream, and the only code that writes it.

Key layout (all keys share the `ds:` prefix; TTLs from `RedisSettings`):

``ds:desc:{product_id}``  HASH, one entry per audience that has a description (``default`` included)
    field ``{audience}``    JSON of a `DescriptionRecord` (text, source, model_version, product_version,
                            source_event_time, generated_at, gate)
    field ``{audience}@s``  the served form ``"{model_version}\x1f{product_version}\x1f{source}\x1f{text}"``,
                            present only while the record's gate verdict passed (what `READ` returns:
                            no JSON to parse per product on the reader's side)
    field ``{audience}@v``  CAS stamp ``"{product_version} {source_event_time_ms} {rank}"``; rank 2 =
                            generated text that passed the gate, 1 = faithful fallback after the gate
                            rejected a real model's text, 0 = faithful fallback after the generation
                            failed (model_version "none"; a retry replaces it with rank 1 or 2)
    TTL ``description_ttl_s`` (refreshed on every write; 0 = no expiry)

``ds:meta:{product_id}``  HASH, the product's current state (written by the product agent)
    ``v`` latest product version seen, ``t`` its source event time (ms), ``fv`` the version at which the
    facts last changed (descriptions for an older version are *stale*), ``fh`` facts hash,
    ``del`` "1" when deleted (a tombstone: ``v`` is then the delete's version), ``seller`` the seller's
    own description, ``title``, ``cat`` category, ``price``, ``facts`` JSON of the `ProductUpsert`,
    ``emb`` float16 embedding bytes (384 x 2 B) used by the behaviour agent's centroid.
    TTL ``description_ttl_s``.

``ds:user:{user_id}``     HASH ``audience`` (assigned audience name), ``updated`` (unix seconds). TTL ``user_ttl_s``.

Write rules (all enforced server-side in Lua, atomically, so duplicates, replays and racing workers
can never make state go backwards):

* `DESC_CAS`: a description is written only if ``(product_version, source_event_time)`` is newer than the
  stored stamp (or equal with a better rank: generated beats fallback); it is refused if the product is
  deleted at a version >= its own (no resurrection) or if the product's facts changed after its version
  (stale). Returns 1 written, 0 not newer, -1 deleted, -2 stale.

  *Upgrade mode* (optional ARGV 7 = "1", ARGV 8 = the record's model version; `publish_codes(...,
  upgrade=...)`): a model-upgrade backfill regenerates descriptions for the *same* product version and
  source event time, which the plain rules refuse as duplicates. With the upgrade flag, an equal stamp is
  also replaced when the record comes from a *different* model version than the stored record's
  ``model_version`` and its rank is >= the stored rank (so a gate-passed generated text is never
  replaced by a fallback). Everything else is unchanged: never an older stamp, never stale facts, never
  a deleted product, never a rewrite by the same model version. The stored model version is read (cjson)
  only on that equal-stamp, equal-rank path; without the flag the script behaves exactly as before.
  The generation agent sets the flag only for records that came out of a request carrying a target
  ``model_version`` (a backfill request or its retries) and whose text was produced by that model.
* `META_UPSERT`: writes product meta only for a strictly newer version; an upsert at or below a
  tombstone's version is refused. When the facts change it also deletes (text + stamp) every cached
  variant written for the older facts, and any variant of an audience not relevant to the new category
  (`models.audiences.audiences_for_category`, passed in by `upsert_products`), so the desc hash only ever
  holds servable text. Returns 2 written and facts changed, 1 written (facts unchanged, version bump),
  0 duplicate/older, -1 tombstoned.
* `DELETE`: versioned tombstone. Keeps ``v``/``del`` in meta (so an old upsert replayed after the delete
  can't resurrect the product), drops the seller text/facts and every cached description.
  Returns 1 deleted, 0 older than what is stored.
* `USERS_AND_CHECK`: the behaviour agent's scoring round in one command: every switched user's audience
  (with TTL), and which (product, audience) descriptions exist.
* `READ`: the reader's single round trip: the user's audience plus, per product, the audience variant,
  the default variant and the seller fallback. With layout 2 a product whose description qualifies
  costs one hash lookup (the writers above keep stale text out of the desc hash); see the script.

``ds:layout``             STRING ``"2"`` once `RedisStore.ensure_layout` (run by every worker at start) has
    brought data written by older versions up to date (variants left behind by a facts change pruned,
    missing ``@s`` served forms added). Until then `READ` also checks every variant against the meta's
    ``fv`` and returns record JSON (slower, same answers).

Failure handling: every `RedisStore` operation retries transient errors (connection refused/reset,
timeouts, LOADING, READONLY...) in place with bounded, jittered exponential backoff (`RetryPolicy`,
`WorkerSettings.redis_retry_*`; the workers retry until Redis is back), counted in
`descstream_redis_retries_total{op}` and logged once per outage. Safe because every write above is an
idempotent compare-and-set (or an overwrite with the same value).

The Lua scripts touch several keys per call; they need a standalone/Sentinel Redis (for Redis Cluster,
hash-tag keys per product first).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar

import orjson
import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from descstream.config import Settings
from descstream.schemas import DEFAULT_AUDIENCE, DescriptionRecord, ProductUpsert

from . import metrics

log = logging.getLogger(__name__)

PREFIX = "ds:"
T = TypeVar("T")


def desc_key(product_id: str) -> str:
    return f"{PREFIX}desc:{product_id}"


def meta_key(product_id: str) -> str:
    return f"{PREFIX}meta:{product_id}"


def user_key(user_id: str) -> str:
    return f"{PREFIX}user:{user_id}"


def to_ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return int(ts.timestamp() * 1000)


RANK_FAILED = 0  # generation failed (Triton down...): faithful fallback, model_version "none", to be retried
RANK_FALLBACK = 1  # the gate rejected a real model's text: faithful fallback, final for that model version
RANK_GENERATED = 2  # generated text that passed the gate
NO_MODEL = "none"

# KEYS: desc, meta. ARGV: audience, product_version, source_ms, rank, json, ttl, upgrade "1"|"0", model_version,
# served form ('' when the gate did not pass: the `@s` field is then removed)
DESC_CAS = """
local aud = ARGV[1]
local pv = tonumber(ARGV[2])
local st = tonumber(ARGV[3])
local rank = tonumber(ARGV[4])
local meta = redis.call('HMGET', KEYS[2], 'v', 'del', 'fv')
if meta[2] == '1' and tonumber(meta[1]) >= pv then return -1 end
if meta[3] and tonumber(meta[3]) > pv then return -2 end
local stamp = redis.call('HGET', KEYS[1], aud .. '@v')
if stamp then
  local i = string.find(stamp, ' ')
  local j = string.find(stamp, ' ', i + 1)
  local spv = tonumber(string.sub(stamp, 1, i - 1))
  local sst = tonumber(string.sub(stamp, i + 1, j - 1))
  local srk = tonumber(string.sub(stamp, j + 1))
  if pv < spv then return 0 end
  if pv == spv then
    if st < sst then return 0 end
    if st == sst and rank < srk then return 0 end
    if st == sst and rank == srk then
      if ARGV[7] ~= '1' then return 0 end
      local cur = redis.call('HGET', KEYS[1], aud)
      local smv = false
      if cur then
        local ok, rec = pcall(cjson.decode, cur)
        if ok and type(rec) == 'table' and type(rec['model_version']) == 'string' then smv = rec['model_version'] end
      end
      if smv == ARGV[8] then return 0 end
    end
  end
end
redis.call('HSET', KEYS[1], aud, ARGV[5], aud .. '@v', ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], aud .. '@s', ARGV[9]) else redis.call('HDEL', KEYS[1], aud .. '@s') end
local ttl = tonumber(ARGV[6])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS: meta, desc. ARGV: version, source_ms, facts_hash, ttl, keep (audiences relevant for the new facts,
# joined by \x1f), then field/value pairs.
# When the facts change, every cached variant written for older facts is deleted (text + stamp): `READ`
# must not serve it (layout 2 relies on this instead of reading `fv` per product), and a variant for an
# audience outside `keep` would never be regenerated. Variants inside `keep` are regenerated by the request
# that follows; until then the reader falls back to the default, then the seller's text. Also deleted: any
# variant of an audience outside `keep`, whatever its version.
META_UPSERT = """
local v = tonumber(ARGV[1])
local cur = redis.call('HMGET', KEYS[1], 'v', 'del', 'fh')
if cur[1] and v <= tonumber(cur[1]) then
  if cur[2] == '1' then return -1 end
  return 0
end
local changed = (cur[3] ~= ARGV[3]) or (cur[2] == '1')
redis.call('HSET', KEYS[1], 'v', ARGV[1], 't', ARGV[2], 'fh', ARGV[3], 'del', '0')
if changed then
  redis.call('HSET', KEYS[1], 'fv', ARGV[1])
  local keep = {}
  for a in string.gmatch(ARGV[5], '[^' .. string.char(31) .. ']+') do keep[a] = true end
  local all, stamps, drop = redis.call('HGETALL', KEYS[2]), {}, {}
  for i = 1, #all, 2 do
    if string.sub(all[i], -2) == '@v' then stamps[string.sub(all[i], 1, -3)] = tonumber(string.match(all[i + 1], '^%d+')) end
  end
  for i = 1, #all, 2 do
    local f = all[i]
    local aud = f
    local sfx = string.sub(f, -2)
    if sfx == '@v' or sfx == '@s' then aud = string.sub(f, 1, -3) end
    local pv = stamps[aud]
    if not keep[aud] or not pv or pv < v then drop[#drop + 1] = f end
  end
  if #drop > 0 then redis.call('HDEL', KEYS[2], unpack(drop)) end
end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local ttl = tonumber(ARGV[4])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
if changed then return 2 end
return 1
"""

# KEYS: meta, desc. ARGV: version, source_ms, ttl
DELETE = """
local v = tonumber(ARGV[1])
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and v < tonumber(cur) then return 0 end
redis.call('HDEL', KEYS[1], 'seller', 'facts', 'emb', 'title', 'fh')
redis.call('HSET', KEYS[1], 'v', ARGV[1], 't', ARGV[2], 'del', '1', 'fv', ARGV[1])
redis.call('DEL', KEYS[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS: none. ARGV: now (unix s), user ttl (0 = none), number of users U, then U (user, audience) pairs,
# then (product, audience) pairs. Writes every user's audience (and refreshes its TTL) and returns one
# string of '0'/'1', one per pair: does `ds:desc:{product}` hold that audience? The behaviour agent's whole
# scoring round in one command: as a pipeline it was 2 commands per user + 1 per pair, and redis-py
# spends ~10x more packing a command than packing an argument. Keys are built here (standalone Redis) from `PREFIX`.
USERS_AND_CHECK = """
local now, ttl, nu = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local i = 4
for _ = 1, nu do
  local key = '@PREFIX@user:' .. ARGV[i]
  redis.call('HSET', key, 'audience', ARGV[i + 1], 'updated', now)
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  i = i + 2
end
local out = {}
while i < #ARGV do
  out[#out + 1] = redis.call('HEXISTS', '@PREFIX@desc:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
return table.concat(out)
"""

# KEYS: user. ARGV: the product ids joined by \x1f (identifiers never contain it; `read_raw` checks).
# The desc/meta keys are built here from the ids instead of being passed as 2 KEYS per product: packing
# 101 arguments per call was a large share of the reader's client-side time (fine for standalone/Sentinel
# Redis, which the other scripts need anyway).
# Returns a flat array: the audience, then per product a header and a payload. Header: `as`/`ds` audience
# variant / default as its served form (`@s`), `aj`/`dj` the same as record JSON (layout-1 path), `s{v}`
# seller text (payload = the text; `v` the meta version), `D{v}` deleted, `x{v}` nothing (`v` empty when the
# product is unknown). An array,
# not one concatenated string: building a ~35 kB string in Lua cost ~70 us of the ~300 us script (measured,
# Redis 7.0, 50 products), returning 101 elements ~7 us.
# Only records whose gate passed qualify (plain-text check on the JSON), and only records written for the
# product's current facts. Layout 2 (`LAYOUT_KEY` = "2", set by `RedisStore.ensure_layout` once older data
# is pruned) guarantees that by construction: `META_UPSERT` deletes the variants a facts change makes
# stale, `DELETE` drops the whole hash, and `DESC_CAS` keeps an `@s` served form exactly while the record's
# gate passed, so a product with a servable description costs ONE lookup of small fields, and the reader
# parses no JSON.
# Before that (layout 1) every product also reads its meta and a variant whose stamp's product version is
# below the meta's `fv` is skipped. Meta is read in any case when no description qualifies (seller text,
# deleted flag).
READ = """
local aud = redis.call('HGET', KEYS[1], 'audience')
if not aud then aud = 'default' end
local checked = redis.call('GET', '@PREFIX@layout') ~= '2'
local variant = aud ~= 'default'
local audv, auds = aud .. '@v', aud .. '@s'
local find, match, tonumber = string.find, string.match, tonumber
local function current(rec, stamp, fv)
  if not rec or not find(rec, '"passed":true', 1, true) then return false end
  if fv == nil then return true end
  local pv = stamp and tonumber(match(stamp, '^%d+'))
  return pv ~= nil and pv >= fv
end
local out, n = {aud}, 1
for pid in string.gmatch(ARGV[1], '[^\\31]+') do
  local mk, dk = '@PREFIX@meta:' .. pid, '@PREFIX@desc:' .. pid
  local m, fv = nil, nil
  if checked then
    m = redis.call('HMGET', mk, 'del', 'v', 'fv')
    fv = tonumber(m[3])
  end
  local head, payload = nil, ''
  if not m or m[1] ~= '1' then
    if checked then
      local rec, stamp, drec, dstamp
      if variant then
        local d = redis.call('HMGET', dk, aud, audv, 'default', 'default@v')
        rec, stamp, drec, dstamp = d[1], d[2], d[3], d[4]
      else
        local d = redis.call('HMGET', dk, 'default', 'default@v')
        drec, dstamp = d[1], d[2]
      end
      if variant and current(rec, stamp, fv) then
        head, payload = 'aj', rec
      elseif current(drec, dstamp, fv) then
        head, payload = 'dj', drec
      end
    else
      local sa, sd
      if variant then
        local d = redis.call('HMGET', dk, auds, 'default@s')
        sa, sd = d[1], d[2]
      else
        sd = redis.call('HGET', dk, 'default@s')
      end
      if sa then head, payload = 'as', sa elseif sd then head, payload = 'ds', sd end
    end
  end
  if not head then
    local mm = redis.call('HMGET', mk, 'del', 'v', 'seller')
    if mm[1] == '1' then head = 'D' .. mm[2]
    elseif mm[3] and mm[3] ~= '' then head, payload = 's' .. mm[2], mm[3]
    else head = 'x' .. (mm[2] or '') end
  end
  out[n + 1] = head
  out[n + 2] = payload
  n = n + 2
end
return out
"""

LAYOUT_KEY = f"{PREFIX}layout"
LAYOUT_VERSION = "2"

# KEYS: desc, meta. Layout 1 -> 2 for one product: drop the cached variants `READ` would not serve (written
# for facts older than the meta's `fv`, or left behind by a delete) and add the served form (`@s`, the same
# bytes as `served_form`) of every remaining gate-passed record that lacks one. Returns {fields removed,
# served forms added}.
PRUNE = """
local m = redis.call('HMGET', KEYS[2], 'del', 'fv')
if m[1] == '1' then
  local n = redis.call('HLEN', KEYS[1])
  redis.call('DEL', KEYS[1])
  return {n, 0}
end
local fv = tonumber(m[2])
local all = redis.call('HGETALL', KEYS[1])
local f = {}
for i = 1, #all, 2 do f[all[i]] = all[i + 1] end
local drop, added = {}, 0
for name, value in pairs(f) do
  local sfx = string.sub(name, -2)
  if sfx ~= '@v' and sfx ~= '@s' then
    local stamp = f[name .. '@v']
    local pv = stamp and tonumber(string.match(stamp, '^%d+'))
    if fv and (not pv or pv < fv) then
      drop[#drop + 1] = name
      drop[#drop + 1] = name .. '@v'
      drop[#drop + 1] = name .. '@s'
    elseif not f[name .. '@s'] then
      local ok, rec = pcall(cjson.decode, value)
      if ok and type(rec) == 'table' and type(rec['gate']) == 'table' and rec['gate']['passed'] == true
          and type(rec['text']) == 'string' and type(rec['product_version']) == 'number' then
        redis.call('HSET', KEYS[1], name .. '@s', tostring(rec['model_version']) .. '\\31'
          .. string.format('%d', rec['product_version']) .. '\\31' .. tostring(rec['source']) .. '\\31' .. rec['text'])
        added = added + 1
      end
    end
  end
end
local removed = 0
if #drop > 0 then removed = redis.call('HDEL', KEYS[1], unpack(drop)) end
return {removed, added}
"""

# the two scripts that build keys from ids take the prefix from `PREFIX` (the one key layout)
USERS_AND_CHECK = USERS_AND_CHECK.replace("@PREFIX@", PREFIX)
READ = READ.replace("@PREFIX@", PREFIX)


@dataclass(frozen=True)
class ProductMeta:
    product_id: str
    version: int
    facts_version: int
    deleted: bool
    facts: ProductUpsert | None
    category: str | None
    price: float | None
    embedding: bytes | None
    seller: str | None


def record_json(rec: DescriptionRecord) -> bytes:
    return orjson.dumps(rec.model_dump(mode="json"))


def served_form(rec: DescriptionRecord) -> bytes:
    """The `{audience}@s` field: what the reader returns, as one split, no JSON (b"" unless the gate passed).
    `PRUNE` builds the same bytes in Lua for records written before layout 2."""
    if not rec.gate.passed:
        return b""
    return f"{rec.model_version}\x1f{rec.product_version}\x1f{rec.source}\x1f{rec.text}".encode()


def is_record_field(name: bytes | str) -> bool:
    """A desc-hash field that holds a record (JSON), not its CAS stamp (`@v`) or served form (`@s`)."""
    tail = name[-2:]
    return tail not in (b"@v", b"@s", "@v", "@s")


def record_rank(rec: DescriptionRecord) -> int:
    """CAS rank at an equal (product_version, source_event_time) stamp: a higher rank replaces a lower one.

    0 = generation failed (fallback with model_version "none"), 1 = the gate rejected a real model's text
    (fallback carrying that model's version), 2 = generated text that passed the gate. A gate-rejected
    fallback must be able to replace a "generation failed" one, or the failed item is regenerated on every
    later request."""
    if rec.source == "generated" and rec.gate.passed:
        return RANK_GENERATED
    return RANK_FAILED if rec.model_version == NO_MODEL else RANK_FALLBACK


# Errors that mean "Redis is (temporarily) not there", not "this request is wrong": retried in place.
# BusyLoadingError (LOADING after a restart) and MaxConnectionsError are ConnectionErrors; ReadOnlyError
# (a replica just promoted / failover in progress), TryAgain and MasterDown are transient cluster/sentinel
# states. Authentication/permission errors are configuration errors: never retried.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, rexc.TryAgainError, rexc.ClusterDownError,
    ConnectionError, TimeoutError, asyncio.TimeoutError,
)
NOT_TRANSIENT: tuple[type[BaseException], ...] = (rexc.AuthenticationError, rexc.AuthorizationError, rexc.NoPermissionError)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, NOT_TRANSIENT)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient Redis errors: `base_s * 2**attempt` capped at `max_delay_s`, with jitter
    (uniform in [d/2, d]); `give_up_s` None = retry until Redis is back, else re-raise after that long."""

    base_s: float = 0.05
    max_delay_s: float = 2.0
    give_up_s: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        w = settings.worker
        return cls(w.redis_retry_base_s, w.redis_retry_max_delay_s, w.redis_retry_give_up_s or None)

    def delay(self, attempt: int) -> float:
        d = min(self.max_delay_s, self.base_s * (2 ** min(attempt, 30)))
        return random.uniform(d / 2, d)


NO_RETRY = RetryPolicy(give_up_s=0.0)


class RedisStore:
    """Async access to the descstream Redis layout (see module docstring).

    Every operation is retried in place through transient Redis errors (`RetryPolicy`; the workers'
    default retries until Redis is back, see `WorkerSettings.redis_retry_*`), so a Redis outage stalls
    the agents instead of failing their batch: every write is an idempotent, versioned compare-and-set (or
    an overwrite with the same value), so re-sending a pipeline that may have been partly applied is safe.
    Each retry is counted (`descstream_redis_retries_total{op}`); an outage is logged once when it starts
    and once when Redis is back. Non-transient errors (a script error, WRONGTYPE, bad credentials) are
    raised at once.
    """

    def __init__(self, client: aioredis.Redis, settings: Settings, retry: RetryPolicy | None = None):
        self.r = client
        self.settings = settings
        self.desc_ttl = settings.redis.description_ttl_s
        self.user_ttl = settings.redis.user_ttl_s
        self.retry = retry if retry is not None else RetryPolicy.from_settings(settings)
        self._desc_cas = client.register_script(DESC_CAS)
        self._meta_upsert = client.register_script(META_UPSERT)
        self._delete = client.register_script(DELETE)
        self._read = client.register_script(READ)
        self._prune = client.register_script(PRUNE)
        self._users_and_check = client.register_script(USERS_AND_CHECK)
        self._down_since: float | None = None
        self._down_retries = 0

    @classmethod
    def from_settings(cls, settings: Settings, retry: RetryPolicy | None = None, **kw: Any) -> "RedisStore":
        """Client with the workers' socket timeouts and health checks (`WorkerSettings.redis_*`); redis-py
        itself reconnects once at once (a pooled connection closed by a Redis restart), the backoff is ours."""
        w = settings.worker
        opts: dict[str, Any] = {
            "socket_timeout": w.redis_socket_timeout_s,
            "socket_connect_timeout": w.redis_socket_connect_timeout_s,
            "health_check_interval": w.redis_health_check_interval_s,
            "retry": Retry(NoBackoff(), 1),
        }
        opts.update(kw)
        client = aioredis.Redis.from_url(
            settings.redis.url, decode_responses=False, **settings.redis.client_kwargs(), **opts
        )
        return cls(client, settings, retry)

    async def close(self) -> None:
        await self.r.aclose()

    async def ping(self) -> bool:
        """One attempt, no retry (health checks report the present)."""
        return bool(await self.r.ping())

    # ---------------------------------------------------------------- retry
    async def _call(self, op: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt()` (which builds and sends its whole pipeline each time) until it succeeds, retrying
        transient errors per `self.retry`."""
        policy = self.retry
        first_failure: float | None = None
        n = 0
        while True:
            try:
                res = await attempt()
            except BaseException as exc:
                if not is_transient(exc):
                    raise
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                if policy.give_up_s is not None and now - first_failure >= policy.give_up_s:
                    raise
                self._outage(op, exc)
                metrics.REDIS_RETRIES.labels(op=op).inc()
                await asyncio.sleep(policy.delay(n))
                n += 1
                continue
            if self._down_since is not None:
                self._recovered()
            return res

    def _outage(self, op: str, exc: BaseException) -> None:
        self._down_retries += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            metrics.REDIS_OUTAGES.inc()
            metrics.REDIS_UNAVAILABLE.set(1)
            forever = self.retry.give_up_s is None
            log.warning(
                "Redis unavailable (%s during %s: %s); retrying with backoff (<= %.1f s) %s; the batch in "
                "progress waits and is not acknowledged meanwhile",
                type(exc).__name__, op, exc, self.retry.max_delay_s,
                "until it is back" if forever else f"for up to {self.retry.give_up_s:.0f} s per operation",
            )

    def _recovered(self) -> None:
        assert self._down_since is not None
        log.warning("Redis is back after %.1f s (%d retries)", time.monotonic() - self._down_since, self._down_retries)
        self._down_since = None
        self._down_retries = 0
        metrics.REDIS_UNAVAILABLE.set(0)

    def _pipe(self) -> Any:
        return self.r.pipeline(transaction=False)

    # ---------------------------------------------------------------- descriptions
    async def publish(
        self, records: Sequence[DescriptionRecord], upgrade: bool | Sequence[bool] = False
    ) -> list[bool]:
        """CAS-write records in one pipeline; True = written, False = skipped (older/dup/deleted/stale)."""
        return [c == 1 for c in await self.publish_codes(records, upgrade)]

    async def publish_codes(
        self, records: Sequence[DescriptionRecord], upgrade: bool | Sequence[bool] = False
    ) -> list[int]:
        """CAS-write records (codes as `DESC_CAS`). `upgrade` (one flag for all, or one per record) enables
        the model-upgrade mode: an equal stamp may be replaced by a different model version's record of
        at least the same rank."""
        if not records:
            return []
        flags = [bool(upgrade)] * len(records) if isinstance(upgrade, bool) else [bool(x) for x in upgrade]
        if len(flags) != len(records):
            raise ValueError(f"{len(flags)} upgrade flags for {len(records)} records")
        calls = [
            (
                [desc_key(rec.product_id), meta_key(rec.product_id)],
                [
                    rec.audience,
                    rec.product_version,
                    to_ms(rec.source_event_time),
                    record_rank(rec),
                    record_json(rec),
                    self.desc_ttl,
                    "1" if up else "0",
                    rec.model_version,
                    served_form(rec),
                ],
            )
            for rec, up in zip(records, flags)
        ]

        async def attempt() -> list[Any]:
            pipe = self._pipe()
            for keys, args in calls:
                await self._desc_cas(keys=keys, args=args, client=pipe)
            return await pipe.execute()

        return [int(x) for x in await self._call("publish", attempt)]

    async def get_record(self, product_id: str, audience: str = DEFAULT_AUDIENCE) -> DescriptionRecord | None:
        raw = await self._call("get_record", lambda: self.r.hget(desc_key(product_id), audience))
        return None if raw is None else DescriptionRecord.model_validate_json(raw)

    async def get_records(self, product_id: str) -> dict[str, DescriptionRecord]:
        raw = await self._call("get_records", lambda: self.r.hgetall(desc_key(product_id)))
        return {
            k.decode(): DescriptionRecord.model_validate_json(v)
            for k, v in raw.items()
            if is_record_field(k)
        }

    async def has_current(
        self, product_id: str, audience: str, product_version: int, model_version: str | None = None
    ) -> bool:
        return (await self.current_many([(product_id, audience, product_version, model_version)]))[0]

    async def _hget_many(self, op: str, pairs: Sequence[tuple[str, str]]) -> list[Any]:
        async def attempt() -> list[Any]:
            pipe = self._pipe()
            for pid, aud in pairs:
                pipe.hget(desc_key(pid), aud)
            return await pipe.execute()

        return await self._call(op, attempt)

    async def current_many(
        self, items: Sequence[tuple[str, str, int, str | None]]
    ) -> list[bool]:
        """For each (product, audience, version, model_version|None): does Redis hold a description at
        least that new (from that model, when given)? One pipelined round trip."""
        if not items:
            return []
        rows = await self._hget_many("current_many", [(pid, aud) for pid, aud, _, _ in items])
        out = []
        for (pid, aud, pv, mv), raw in zip(items, rows):
            if raw is None:
                out.append(False)
                continue
            d = orjson.loads(raw)
            out.append(d["product_version"] >= pv and (mv is None or d["model_version"] == mv))
        return out

    async def stored_versions(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[int, str, str] | None]:
        """(product_version, model_version, source) of each stored (product, audience) or None."""
        if not pairs:
            return []
        out: list[tuple[int, str, str] | None] = []
        for raw in await self._hget_many("stored_versions", pairs):
            if raw is None:
                out.append(None)
            else:
                d = orjson.loads(raw)
                out.append((d["product_version"], d["model_version"], d["source"]))
        return out

    # ---------------------------------------------------------------- products
    async def upsert_products(
        self, items: Sequence[tuple[ProductUpsert, str, bytes | None]]
    ) -> list[int]:
        """Write product meta for (event, facts_hash, embedding-or-None); codes as `META_UPSERT`.

        When an upsert changes the facts, cached variants for audiences no longer relevant to the (new)
        category are deleted in the same script (`models.audiences.audiences_for_category`)."""
        if not items:
            return []
        from models.audiences import audiences_for_category

        calls = []
        for ev, fh, emb in items:
            fields: list[Any] = [
                "seller", ev.description,
                "title", ev.title,
                "cat", ev.category or "",
                "price", "" if ev.price is None else repr(float(ev.price)),
                "facts", orjson.dumps(ev.model_dump(mode="json")),
            ]
            if emb is not None:
                fields += ["emb", emb]
            keep = "\x1f".join({DEFAULT_AUDIENCE, *audiences_for_category(ev.category)})
            calls.append((
                [meta_key(ev.product_id), desc_key(ev.product_id)],
                [ev.version, to_ms(ev.updated_at), fh, self.desc_ttl, keep, *fields],
            ))

        async def attempt() -> list[Any]:
            pipe = self._pipe()
            for keys, args in calls:
                await self._meta_upsert(keys=keys, args=args, client=pipe)
            return await pipe.execute()

        return [int(x) for x in await self._call("upsert_products", attempt)]

    async def delete_products(self, items: Sequence[tuple[str, int, datetime]]) -> list[bool]:
        if not items:
            return []

        async def attempt() -> list[Any]:
            pipe = self._pipe()
            for pid, version, ts in items:
                await self._delete(keys=[meta_key(pid), desc_key(pid)], args=[version, to_ms(ts), self.desc_ttl], client=pipe)
            return await pipe.execute()

        return [int(x) == 1 for x in await self._call("delete_products", attempt)]

    async def delete_product(self, product_id: str, version: int, updated_at: datetime) -> bool:
        return (await self.delete_products([(product_id, version, updated_at)]))[0]

    async def _hmget_many(self, op: str, keys: Sequence[str], fields: list[str]) -> list[Any]:
        async def attempt() -> list[Any]:
            pipe = self._pipe()
            for key in keys:
                pipe.hmget(key, fields)
            return await pipe.execute()

        return await self._call(op, attempt)

    async def get_meta_many(self, product_ids: Sequence[str], with_facts: bool = True) -> list[ProductMeta | None]:
        if not product_ids:
            return []
        fields = ["v", "fv", "del", "cat", "price", "emb", "seller", "facts" if with_facts else "title"]
        rows = await self._hmget_many("get_meta_many", [meta_key(pid) for pid in product_ids], fields)
        out: list[ProductMeta | None] = []
        for pid, row in zip(product_ids, rows):
            v, fv, dl, cat, price, emb, seller, facts = row
            if v is None:
                out.append(None)
                continue
            out.append(
                ProductMeta(
                    product_id=pid,
                    version=int(v),
                    facts_version=int(fv or v),
                    deleted=dl == b"1",
                    facts=ProductUpsert.model_validate_json(facts) if (with_facts and facts) else None,
                    category=cat.decode() if cat else None,
                    price=float(price) if price else None,
                    embedding=emb,
                    seller=seller.decode() if seller is not None else None,
                )
            )
        return out

    async def product_ids(self, limit: int, batch: int = 1000) -> list[str]:
        """Up to `limit` product ids that have meta (SCAN, no order; deleted ones included)."""
        out: list[str] = []
        skip = len(PREFIX) + 5  # "meta:"
        async for key in self.r.scan_iter(match=f"{PREFIX}meta:*", count=batch):
            out.append(key[skip:].decode())
            if len(out) >= limit:
                break
        return out

    async def get_features(self, product_id: str) -> tuple[str | None, float | None, bytes | None] | None:
        """(category, price, embedding) for the behaviour agent; None if unknown or deleted."""
        return (await self.get_features_many([product_id]))[0]

    async def get_features_many(
        self, product_ids: Sequence[str]
    ) -> list[tuple[str | None, float | None, bytes | None] | None]:
        """`get_features` for many products in one pipelined round trip."""
        if not product_ids:
            return []
        rows = await self._hmget_many("get_features", [meta_key(pid) for pid in product_ids], ["v", "del", "cat", "price", "emb"])
        out: list[tuple[str | None, float | None, bytes | None] | None] = []
        for v, dl, cat, price, emb in rows:
            if v is None or dl == b"1":
                out.append(None)
            else:
                out.append(((cat.decode() or None) if cat else None, float(price) if price else None, emb))
        return out

    # ---------------------------------------------------------------- users
    async def set_user_audience(self, user_id: str, audience: str, now: float | None = None) -> None:
        key = user_key(user_id)
        updated = int(now or time.time())

        async def attempt() -> list[Any]:
            pipe = self._pipe()
            pipe.hset(key, mapping={"audience": audience, "updated": updated})
            if self.user_ttl > 0:
                pipe.expire(key, self.user_ttl)
            return await pipe.execute()

        await self._call("set_user_audience", attempt)

    async def set_user_audiences(self, items: Iterable[tuple[str, str]]) -> None:
        items = list(items)
        if items:
            await self.set_user_audiences_and_check(items, [])

    async def set_user_audiences_and_check(
        self, users: Sequence[tuple[str, str]], pairs: Sequence[tuple[str, str]]
    ) -> list[bool]:
        """Write user audiences and check which (product, audience) descriptions exist: ONE command
        (`USERS_AND_CHECK`)."""
        if not users and not pairs:
            return []
        args: list[Any] = [int(time.time()), int(self.user_ttl or 0), len(users)]
        for uid, aud in users:
            args += (uid, aud)
        for pid, aud in pairs:
            args += (pid, aud)
        res = await self._call("set_user_audiences", lambda: self._users_and_check(keys=[], args=args))
        return [c == 49 for c in res]  # b"1"

    async def get_user_audience(self, user_id: str) -> str | None:
        raw = await self._call("get_user_audience", lambda: self.r.hget(user_key(user_id), "audience"))
        return raw.decode() if raw is not None else None

    # ---------------------------------------------------------------- reader
    async def read_raw(self, user_id: str, product_ids: Sequence[str]) -> list[bytes]:
        """`READ` for one user and these products (one round trip; ids travel as one \\x1f-joined argument)."""
        joined = "\x1f".join(product_ids)
        if product_ids and (joined.count("\x1f") != len(product_ids) - 1 or "" in product_ids):
            raise ValueError("product ids must be non-empty and must not contain \\x1f")
        keys, args = [user_key(user_id)], [joined]
        return await self._call("read", lambda: self._read(keys=keys, args=args))

    # ---------------------------------------------------------------- layout
    async def ensure_layout(self, batch: int = 500) -> int:
        """Bring data written by older versions to `LAYOUT_VERSION` (idempotent; a no-op once done): prune
        every desc hash with `PRUNE` (stale variants out, served forms in), then set `LAYOUT_KEY`. Returns
        the number of fields removed. Workers run it at start; readers never write (until it ran they take
        `READ`'s checked path)."""
        if await self._call("layout", lambda: self.r.get(LAYOUT_KEY)) == LAYOUT_VERSION.encode():
            return 0
        removed = added = 0
        cursor = 0
        while True:
            cursor, keys = await self._call(
                "layout", lambda: self.r.scan(cursor=cursor, match=f"{PREFIX}desc:*", count=batch))
            if keys:
                pids = [k.decode()[len(PREFIX) + 5:] for k in keys]

                async def attempt(pids: list[str] = pids) -> list[Any]:
                    pipe = self._pipe()
                    for pid in pids:
                        await self._prune(keys=[desc_key(pid), meta_key(pid)], client=pipe)
                    return await pipe.execute()

                for n_removed, n_added in await self._call("layout", attempt):
                    removed += int(n_removed)
                    added += int(n_added)
            if cursor == 0:
                break
        await self._call("layout", lambda: self.r.set(LAYOUT_KEY, LAYOUT_VERSION))
        if removed or added:
            log.info("Redis layout %s: pruned %d stale description fields, added %d served forms",
                     LAYOUT_VERSION, removed, added)
        return removed
