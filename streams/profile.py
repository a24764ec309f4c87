"""Per-user interest profiles and audience assignment (pure Python, no I/O; the behaviour agent's core).

A profile is small and cheap to update per event:
- time-decayed category affinities (keyed by the first two levels of the category path, at most 12),
- a decayed mean of log(price) (the price band),
- decayed keyword affinities from search queries, per audience,
- an embedding centroid of the products interacted with (float32, 384-d) and its weight,
- the last 8 product ids, the current audience and when it was last written to Redis.
Event weights: view 1 < click 2 < add_to_cart 4 < purchase 8 (search adds query keywords only).

Audience assignment uses hysteresis: a user leaves their current audience only when another one scores
at least `MARGIN` higher, and not before `MIN_EVENTS` events, so users don't flap between audiences.

Serialised form (table value, written once per user per write-behind flush, not per event): 4-byte length +
orjson header + float16 centroid bytes (~0.8 KB per user). The header carries `off`, the offset of the last
behaviour event applied (a user's events all come from one partition), so a batch replayed after a crash
is skipped event by event instead of being counted twice: profile updates are applied exactly once.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import orjson

from descstream.schemas import DEFAULT_AUDIENCE

WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0, "search": 1.0}
HALF_LIFE_S = 7 * 24 * 3600.0
MAX_CATS = 12
RECENT = 8
MARGIN = 0.15
MIN_EVENTS = 3
DEFAULT_SCORE = 0.3

QUERY_WORDS = {
    "value_seekers": ("cheap", "budget", "deal", "sale", "affordable", "bargain", "discount"),
    "tech_enthusiasts": ("specs", "bluetooth", "wireless", "battery", "4k", "usb", "anc", "noise cancelling"),
    "outdoor_adventurers": ("hiking", "camping", "trail", "waterproof", "outdoor", "backpacking"),
    "gift_buyers": ("gift", "present", "birthday", "christmas", "for him", "for her", "anniversary"),
    "eco_conscious": ("eco", "recycled", "sustainable", "organic", "bamboo", "biodegradable"),
    "families": ("kids", "family", "children", "baby", "toddler"),
    "style_seekers": ("stylish", "designer", "elegant", "minimalist", "aesthetic"),
}


_LEN = struct.Struct(">I")
_DECAY_MIN_DT = -HALF_LIFE_S * math.log2(0.999)  # smaller gaps decay by a factor > 0.999: deferred


_LOG60 = math.log(60.0)
_LOG4 = math.log(4.0)


def category_key(category: str | None) -> str | None:
    if not category:
        return None
    parts = [p.strip() for p in category.split(">")]
    return " > ".join(parts[:2])


@dataclass
class Profile:
    audience: str = DEFAULT_AUDIENCE
    n: int = 0
    t: float = 0.0
    cats: dict[str, float] = field(default_factory=dict)
    pw: float = 0.0
    plog: float = 0.0
    q: dict[str, float] = field(default_factory=dict)
    cw: float = 0.0
    recent: list[str] = field(default_factory=list)
    redis_at: float = 0.0
    off: int = -1  # offset of the last applied event (idempotent replays)
    # weighted sum of the embeddings (decayed like cw): the centroid is esum / cw. A sum costs one numpy
    # add per event where a running mean costs three; scoring is scale-invariant and uses it directly.
    esum: np.ndarray | None = None

    @property
    def cent(self) -> np.ndarray | None:
        """The embedding centroid (weighted mean of the products' unit embeddings)."""
        if self.esum is None or self.cw <= 0:
            return None
        return self.esum / self.cw

    # ------------------------------------------------------------------ encoding
    def dumps(self) -> bytes:
        head = orjson.dumps(
            [self.audience, self.n, self.t, self.cats, self.pw, self.plog, self.q, self.cw, self.recent,
             self.redis_at, self.off]
        )
        cent = self.cent
        tail = b"" if cent is None else cent.astype(np.float16).tobytes()
        return _LEN.pack(len(head)) + head + tail

    @classmethod
    def loads(cls, raw: bytes) -> "Profile":
        (n,) = _LEN.unpack_from(raw)
        head = orjson.loads(raw[4 : 4 + n])
        p = cls(*head)  # older values without `off` load with off=-1
        if len(raw) > 4 + n:  # stored as the centroid (float16), kept as the weighted sum
            p.esum = np.frombuffer(raw, dtype=np.float16, offset=4 + n).astype(np.float32) * np.float32(p.cw)
        return p

    # ------------------------------------------------------------------ update
    def _decay(self, ts: float) -> None:
        """Decay everything to time `ts`. Gaps too small to matter (factor > 0.999) are not applied and
        `t` stays put, so they accumulate until they do matter (frequent events still decay)."""
        if not self.t:
            self.t = ts
            return
        if ts <= self.t:
            return
        f = 0.5 ** ((ts - self.t) / HALF_LIFE_S)
        if f < 0.999:
            cats, q = self.cats, self.q
            for k in cats:
                cats[k] *= f
            for k in q:
                q[k] *= f
            self.pw *= f
            self.plog *= f
            self.cw *= f
            if self.esum is not None:
                self.esum *= f
            self.t = ts

    def update(
        self,
        event: str,
        ts: float,
        product_id: str | None,
        category: str | None,
        price: float | None,
        embedding: np.ndarray | None,
        query: str | None,
    ) -> None:
        logp = math.log(price) if price is not None and price > 0 else None
        self.apply(WEIGHTS.get(event, 1.0), ts, product_id, category_key(category), logp, embedding, query)

    def apply(
        self,
        w: float,
        ts: float,
        product_id: str | None,
        ck: str | None,
        logp: float | None,
        embedding: np.ndarray | None,
        query: str | None,
    ) -> None:
        """`update` with the per-product work done once by the caller: weight, category key, log(price)."""
        if not self.t or ts > self.t + _DECAY_MIN_DT:
            self._decay(ts)
        self.n += 1
        if query:
            ql = query.lower()
            for aud, words in QUERY_WORDS.items():
                if any(word in ql for word in words):
                    self.q[aud] = self.q.get(aud, 0.0) + w
        if product_id is None:
            return
        rec = self.recent
        if product_id in rec:
            rec.remove(product_id)
        rec.append(product_id)
        if len(rec) > RECENT:
            del rec[0]
        if ck is not None:
            cats = self.cats
            cats[ck] = cats.get(ck, 0.0) + w
            if len(cats) > MAX_CATS:
                del cats[min(cats, key=cats.__getitem__)]
        if logp is not None:
            self.pw += w
            self.plog += w * logp
        if embedding is not None:
            esum = self.esum
            if esum is None or self.cw <= 0:
                self.esum = embedding * w  # a new array (float32: a Python float scalar keeps the dtype)
                self.cw = w
            else:
                if w == 1.0:
                    esum += embedding
                else:
                    esum += embedding * w
                self.cw += w


class AudienceModel:
    """Scores audiences for a profile. Built once per worker from `models.audiences`."""

    def __init__(self, audiences: dict, audience_vectors: dict[str, np.ndarray] | None = None):
        self.names = [n for n in audiences if n != DEFAULT_AUDIENCE]
        self.audiences = audiences
        self._relevant: dict[tuple[str, str | None], bool] = {}
        self._zero = {n: 0.0 for n in self.names}
        self._zero[DEFAULT_AUDIENCE] = DEFAULT_SCORE
        self._match_cache: dict[str, tuple[tuple[str, float], ...]] = {}
        self.vectors = audience_vectors or {}

    @property
    def vectors(self) -> dict[str, np.ndarray]:
        return self._vectors

    @vectors.setter
    def vectors(self, value: dict[str, np.ndarray]) -> None:
        """Audience embeddings; stacked into one matrix so scoring is one mat-vec per event."""
        self._vectors = dict(value)
        names = [n for n in self._vectors if n in self._zero]
        self._vnames = names
        self._vmat = np.stack([np.asarray(self._vectors[n], dtype=np.float32) for n in names]) if names else None

    def matching(self, ck: str) -> tuple[tuple[str, float], ...]:
        """(audience, weight) for audiences with a *specific* (not "*") category rule matching the key.

        The weight favours audiences for which the category is a primary one (earlier in their list)
        and specialists (fewer categories): a tent viewer is an outdoor adventurer before being a
        family shopper; headphone buyers are tech enthusiasts before style seekers.
        """
        m = self._match_cache.get(ck)
        if m is None:
            out = []
            for n in self.names:
                a = self.audiences[n]
                if "*" in a.categories:
                    continue
                for idx, prefix in enumerate(a.categories):
                    if dataclasses.replace(a, categories=(prefix,)).matches(ck):
                        out.append((n, (1.0 / (1.0 + 0.5 * idx)) * (2.0 / math.sqrt(len(a.categories)))))
                        break
            m = tuple(out)
            self._match_cache[ck] = m
        return m

    def scores(self, p: Profile) -> dict[str, float]:
        s = self._zero.copy()
        cats = p.cats
        total = sum(cats.values())
        if total > 0:
            matching = self._match_cache
            for ck, w in cats.items():
                m = matching.get(ck)
                if m is None:
                    m = self.matching(ck)
                frac = w / total
                for n, weight in m:
                    s[n] += frac * weight
        if p.pw > 0 and "value_seekers" in s:
            mean_logp = p.plog / p.pw  # log(25) ~ 3.2, log(100) ~ 4.6
            s["value_seekers"] += 0.8 * min(1.0, max(0.0, (_LOG60 - mean_logp) / _LOG4))
        if p.q:
            qt = sum(p.q.values())
            if qt > 0:
                denom = max(qt, total / 4.0, 1.0)
                for aud, w in p.q.items():
                    if aud in s:
                        s[aud] += 0.8 * w / denom
        cent = p.esum  # scale-invariant below: the sum scores like the centroid
        if cent is not None and p.cw > 0 and self._vmat is not None:
            norm = math.sqrt(float(cent @ cent)) or 1.0
            sims = (self._vmat @ cent).tolist()
            mean = sum(sims) / len(sims)
            for n, v in zip(self._vnames, sims):
                s[n] += 0.2 * (v / norm - mean / norm)
        return s

    def assign(self, p: Profile) -> str:
        """The audience the profile should have now (hysteresis against `p.audience`)."""
        if p.n < MIN_EVENTS:
            return p.audience
        s = self.scores(p)
        best = max(s, key=s.__getitem__)  # ties -> first in file order
        cur = p.audience if p.audience in s else DEFAULT_AUDIENCE
        if best != cur and s[best] >= s[cur] + MARGIN:
            return best
        return cur

    def assign_many(self, profiles: Sequence[Profile]) -> list[str]:
        """`assign` for many profiles at once (the behaviour agent's scoring round): the same scores as
        `scores`, computed as a few matrix products instead of one Python loop per profile."""
        out = [p.audience for p in profiles]
        idx = [i for i, p in enumerate(profiles) if p.n >= MIN_EVENTS]
        if not idx:
            return out
        cols = list(self._zero)  # `scores` order: ties go to the first column, as max() over the dict
        col = {n: j for j, n in enumerate(cols)}
        ps = [profiles[i] for i in idx]
        u = len(ps)
        # category affinities -> (users x categories) @ (categories x audiences)
        cat_col: dict[str, int] = {}
        rows, ccols, vals = [], [], []
        for r, p in enumerate(ps):
            for ck, w in p.cats.items():
                c = cat_col.get(ck)
                if c is None:
                    c = cat_col[ck] = len(cat_col)
                rows.append(r)
                ccols.append(c)
                vals.append(w)
        S = np.tile(np.array([self._zero[n] for n in cols]), (u, 1))
        totals = np.zeros(u)
        if cat_col:
            C = np.zeros((u, len(cat_col)))
            C[rows, ccols] = vals
            totals = C.sum(1)
            M = np.zeros((len(cat_col), len(cols)))
            for ck, c in cat_col.items():
                m = self._match_cache.get(ck)
                if m is None:
                    m = self.matching(ck)
                for n, weight in m:
                    M[c, col[n]] = weight
            safe = np.where(totals > 0, totals, 1.0)
            S += (C / safe[:, None]) @ M
        vs = col.get("value_seekers")
        for r, p in enumerate(ps):
            if p.pw > 0 and vs is not None:
                mean_logp = p.plog / p.pw
                S[r, vs] += 0.8 * min(1.0, max(0.0, (_LOG60 - mean_logp) / _LOG4))
            if p.q:
                qt = sum(p.q.values())
                if qt > 0:
                    denom = max(qt, totals[r] / 4.0, 1.0)
                    for aud, w in p.q.items():
                        j = col.get(aud)
                        if j is not None:
                            S[r, j] += 0.8 * w / denom
        if self._vmat is not None:
            er = [r for r, p in enumerate(ps) if p.esum is not None and p.cw > 0]
            if er:
                E = np.stack([ps[r].esum for r in er])
                norms = np.sqrt(np.einsum("ij,ij->i", E, E))
                norms[norms == 0] = 1.0
                sims = (E @ self._vmat.T).astype(np.float64)
                term = 0.2 * (sims - sims.mean(1, keepdims=True)) / norms[:, None]
                vcols = [col[n] for n in self._vnames]
                S[np.ix_(er, vcols)] += term
        best = S.argmax(1)
        default_col = col[DEFAULT_AUDIENCE]
        for r, p in enumerate(ps):
            b = best[r]
            c = col.get(p.audience, default_col)
            if b != c and S[r, b] >= S[r, c] + MARGIN:
                out[idx[r]] = cols[b]
            else:
                out[idx[r]] = cols[c]
        return out

    def relevant(self, audience: str, category: str | None) -> bool:
        """`Audience.matches`, memoised: a scoring round asks it for every candidate of every switch, and the
        answer depends on the (audience, category) pair only (a catalogue has few categories)."""
        key = (audience, category)
        hit = self._relevant.get(key)
        if hit is None:
            a = self.audiences.get(audience)
            hit = a is not None and a.matches(category)
            if len(self._relevant) >= 100_000:
                self._relevant.clear()
            self._relevant[key] = hit
        return hit


def decode_embedding(raw: bytes | None) -> np.ndarray | None:
    if not raw:
        return None
    v = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def encode_embedding(vec: Sequence[float] | np.ndarray) -> bytes:
    v = np.asarray(vec, dtype=np.float32)
    n = float(np.linalg.norm(v))
    if n > 0:
        v = v / n
    return v.astype(np.float16).tobytes()
