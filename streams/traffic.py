"""Pure pieces of the load generator: popularity, sessions, drifting audiences, pacing and the report maths.

Nothing here touches Kafka, Redis or the clock: every function takes the time (`now`, seconds) and a
seeded `random.Random`, so the traffic a seed produces is reproducible and each piece is unit-tested
(`tests/ops/test_traffic.py`). `streams.loadgen` wires them to the broker.

Traffic model
-------------
* Product popularity is Zipf(s) over a seeded permutation of the catalogue (popularity is not
  correlated with product ids); within a category, products keep their global popularity order.
* A shopper acts in *sessions* (geometric length, mean `session_mean` events). Several sessions are
  open at once and interleave, as on a real site.
* Each user has a preferred category that drifts: time is cut into epochs of `drift_period_s` (with a
  per-user phase so switches are spread out); at every epoch boundary a user moves to another category
  with probability `drift_prob`. A view lands in the preferred category with probability `affinity`,
  otherwise anywhere (global Zipf). So users' audiences change during a run, which is what makes the
  worker regenerate descriptions for new (product, audience) pairs.
* Event kinds follow the configured mix. A `view` picks a new product; `click`, `add_to_cart` and
  `purchase` act on a product already viewed in the session (a funnel), like real clickstreams.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MIX: dict[str, float] = {"view": 0.7, "click": 0.2, "add_to_cart": 0.07, "purchase": 0.03}
KINDS = ("view", "click", "add_to_cart", "purchase", "search")
FUNNEL_KINDS = frozenset({"click", "add_to_cart", "purchase"})


# ----------------------------------------------------------------------------------------------- parsing
def parse_mix(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """`"view=0.7,click=0.2"` (or a mapping) -> normalised weights summing to 1, in KINDS order.

    Unknown kinds, negative or non-numeric weights and an all-zero mix raise `ValueError`.
    """
    if spec is None or spec == "":
        raw: dict[str, float] = dict(DEFAULT_MIX)
    elif isinstance(spec, Mapping):
        raw = {str(k): float(v) for k, v in spec.items()}
    else:
        raw = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep:
                raise ValueError(f"mix entry {part!r} must look like kind=weight")
            try:
                raw[name] = float(value)
            except ValueError:
                raise ValueError(f"mix weight for {name!r} is not a number: {value!r}") from None
    for name, w in raw.items():
        if name not in KINDS:
            raise ValueError(f"unknown event kind {name!r} in mix; known: {', '.join(KINDS)}")
        if not (w >= 0) or math.isinf(w):
            raise ValueError(f"mix weight for {name!r} must be a finite number >= 0")
    total = sum(raw.values())
    if total <= 0:
        raise ValueError("the mix needs at least one positive weight")
    return {k: raw[k] / total for k in KINDS if raw.get(k, 0) > 0}


# ----------------------------------------------------------------------------------------------- sampling
class ZipfSampler:
    """Ranks 0..n-1 with P(k) proportional to 1/(k+1)^s, sampled by bisection on the CDF (O(log n))."""

    def __init__(self, n: int, s: float = 1.1) -> None:
        if n < 1:
            raise ValueError("ZipfSampler needs n >= 1")
        if s < 0:
            raise ValueError("Zipf exponent must be >= 0")
        self.n = n
        self.s = s
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        total = sum(weights)
        acc = 0.0
        self._cdf: list[float] = []
        for w in weights:
            acc += w / total
            self._cdf.append(acc)
        self._cdf[-1] = 1.0
        self._pmf = [w / total for w in weights]

    def pmf(self, k: int) -> float:
        return self._pmf[k]

    def sample(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cdf, rng.random())


def _stable_int(*parts: Any) -> int:
    """A process-independent hash (Python's `hash` of str is salted per process)."""
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def geometric(rng: random.Random, mean: float) -> int:
    """A geometric count >= 1 with the given mean."""
    if mean <= 1:
        return 1
    p = 1.0 / mean
    u = 1.0 - rng.random()  # (0, 1]
    return max(1, int(math.ceil(math.log(u) / math.log(1.0 - p))))


def pace_due(rate: float, elapsed_s: float, sent: int, burst: int = 1000) -> int:
    """How many events to send now so that `sent` tracks `rate * elapsed` (never negative, capped by
    `burst` so a stalled loop catches up in bounded steps instead of one giant burst)."""
    if rate <= 0 or elapsed_s <= 0:
        return 0
    target = int(rate * elapsed_s)
    return max(0, min(burst, target - sent))


# ----------------------------------------------------------------------------------------------- the model
@dataclass
class Session:
    user_id: str
    remaining: int
    viewed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Behavior:
    """One generated behaviour event (the loadgen turns it into a `BehaviorEvent`)."""

    user_id: str
    product_id: str | None  # None only for `search`
    event: str
    ts: float  # unix seconds
    category: str | None
    query: str | None = None


class TrafficModel:
    """Generates shopper behaviour and picks products to update; see the module docstring."""

    def __init__(
        self,
        products: Sequence[tuple[str, str | None]],
        n_users: int,
        *,
        mix: Mapping[str, float] | str | None = None,
        seed: int = 0,
        zipf_s: float = 1.1,
        session_mean: float = 6.0,
        concurrent_sessions: int = 64,
        affinity: float = 0.8,
        drift_period_s: float = 30.0,
        drift_prob: float = 0.5,
    ) -> None:
        if not products:
            raise ValueError("TrafficModel needs at least one product")
        if n_users < 1:
            raise ValueError("TrafficModel needs at least one user")
        self.seed = seed
        self.rng = random.Random(f"traffic:{seed}")
        self.mix = parse_mix(mix)
        self._kinds = list(self.mix)
        self._kind_cdf = list(_accumulate(self.mix.values()))
        self.session_mean = session_mean
        self.affinity = affinity
        self.drift_period_s = drift_period_s
        self.drift_prob = drift_prob
        self.users = [f"u-{seed}-{i}" for i in range(n_users)]
        # Popularity: a seeded permutation of the catalogue, then Zipf over ranks.
        order = list(range(len(products)))
        random.Random(f"popularity:{seed}").shuffle(order)
        self.by_rank: list[tuple[str, str | None]] = [products[i] for i in order]
        self.rank_of = {pid: r for r, (pid, _) in enumerate(self.by_rank)}
        self.global_zipf = ZipfSampler(len(self.by_rank), zipf_s)
        self.categories: list[str | None] = sorted({c for _, c in products}, key=lambda c: c or "")
        self._in_cat: dict[str | None, list[str]] = {c: [] for c in self.categories}
        for pid, cat in self.by_rank:  # already in popularity order
            self._in_cat[cat].append(pid)
        self._cat_zipf = {c: ZipfSampler(len(ps), zipf_s) for c, ps in self._in_cat.items()}
        self._category_of = dict(products)
        self.n_sessions = max(1, min(concurrent_sessions, n_users))
        self._active: list[Session] = []
        self._active_users: set[str] = set()
        self.sessions_started = 0

    # -- users' drifting taste
    def preferred_category(self, user_id: str, now: float) -> str | None:
        """The user's preferred category at time `now` (deterministic per seed, user and epoch)."""
        phase = (_stable_int(self.seed, "phase", user_id) % 10_000) / 10_000 * self.drift_period_s
        epoch = int((now + phase) // self.drift_period_s) if self.drift_period_s > 0 else 0
        # Walk back to the last epoch where the user switched; bounded so this stays O(1)-ish.
        idx = _stable_int(self.seed, "home", user_id) % len(self.categories)
        start = max(0, epoch - 32)
        for e in range(start, epoch + 1):
            r = _stable_int(self.seed, "drift", user_id, e)
            if (r % 10_000) / 10_000 < self.drift_prob:
                step = 1 + (r // 10_000) % max(1, len(self.categories) - 1)
                idx = (idx + step) % len(self.categories)
        return self.categories[idx]

    def pick_product(self, user_id: str, now: float) -> str:
        if self.rng.random() < self.affinity:
            cat = self.preferred_category(user_id, now)
            ps = self._in_cat[cat]
            return ps[self._cat_zipf[cat].sample(self.rng)]
        return self.by_rank[self.global_zipf.sample(self.rng)][0]

    def _kind(self) -> str:
        i = bisect.bisect_left(self._kind_cdf, self.rng.random())
        return self._kinds[min(i, len(self._kinds) - 1)]

    def _new_session(self) -> Session:
        for _ in range(8):
            user = self.users[self.rng.randrange(len(self.users))]
            if user not in self._active_users:
                break
        self._active_users.add(user)
        self.sessions_started += 1
        return Session(user_id=user, remaining=geometric(self.rng, self.session_mean))

    def next_behavior(self, now: float) -> Behavior:
        """The next shopper action at time `now`."""
        while len(self._active) < self.n_sessions:
            self._active.append(self._new_session())
        i = self.rng.randrange(len(self._active))
        s = self._active[i]
        kind = self._kind()
        query = None
        pid: str | None
        if kind == "search":
            pid = None
            cat = self.preferred_category(s.user_id, now)
            query = (cat or "products").rsplit(">", 1)[-1].strip().lower()
        elif kind in FUNNEL_KINDS and s.viewed:
            pid = s.viewed[self.rng.randrange(len(s.viewed))]
        else:  # a view, or a funnel action with nothing viewed yet (acts on a product it picks now)
            pid = self.pick_product(s.user_id, now)
            s.viewed.append(pid)
        s.remaining -= 1
        if s.remaining <= 0:
            self._active_users.discard(s.user_id)
            self._active[i] = self._new_session()
        return Behavior(
            user_id=s.user_id, product_id=pid, event=kind, ts=now,
            category=self._category_of.get(pid) if pid else None, query=query,
        )

    def pick_update(self) -> str:
        """A product whose seller sends an update (popular products are edited more often)."""
        return self.by_rank[self.global_zipf.sample(self.rng)][0]


def _accumulate(values: Iterable[float]) -> Iterable[float]:
    acc = 0.0
    vals = list(values)
    for i, v in enumerate(vals):
        acc += v
        yield 1.0 if i == len(vals) - 1 else acc


# ----------------------------------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def latency_summary(values_s: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, min, p50, p95, p99, max of latencies in seconds."""
    n = len(values_s)
    return {
        "count": n,
        "mean": (sum(values_s) / n) if n else None,
        "min": float(min(values_s)) if n else None,
        "p50": percentile(values_s, 50),
        "p95": percentile(values_s, 95),
        "p99": percentile(values_s, 99),
        "max": float(max(values_s)) if n else None,
    }


def cdf_points(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """(sorted values, cumulative fraction) for an empirical CDF plot."""
    xs = sorted(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]


def per_second(timestamps: Iterable[float], t0: float, t1: float) -> list[int]:
    """Counts per one-second bucket from t0 (inclusive) to t1; timestamps outside are ignored."""
    n = max(0, int(math.ceil(t1 - t0)))
    out = [0] * n
    for t in timestamps:
        i = int(t - t0)
        if 0 <= i < n and t >= t0:
            out[i] += 1
    return out


def rate_stats(counts: Sequence[int]) -> dict[str, float]:
    """Mean and peak per-second rate of a `per_second` series."""
    if not counts:
        return {"mean_per_s": 0.0, "peak_per_s": 0.0}
    return {"mean_per_s": sum(counts) / len(counts), "peak_per_s": float(max(counts))}


def lag_total(end_offsets: Mapping[Any, int], committed: Mapping[Any, int | None]) -> int:
    """Sum over partitions of end offset minus committed offset (uncommitted partitions count in full
    from 0 only when the partition is non-empty: a group that never committed has read nothing)."""
    total = 0
    for tp, end in end_offsets.items():
        c = committed.get(tp)
        total += max(0, end - (c if c is not None and c >= 0 else 0))
    return total


def lag_summary(samples: Sequence[tuple[float, int]]) -> dict[str, float | int | None]:
    """Max, mean and final lag from (t, lag) samples; `drained_at_s` = first t after the peak at which
    lag reached 0 (None if it never did)."""
    if not samples:
        return {"samples": 0, "max": None, "mean": None, "final": None, "drained_at_s": None}
    lags = [lag for _, lag in samples]
    peak_i = max(range(len(lags)), key=lags.__getitem__)
    drained = next((t for t, lag in samples[peak_i:] if lag == 0), None)
    return {
        "samples": len(samples),
        "max": max(lags),
        "mean": sum(lags) / len(lags),
        "final": lags[-1],
        "drained_at_s": drained,
    }


@dataclass
class DescriptionSeen:
    """One description record read from the output topic, reduced to what the report needs."""

    product_id: str
    audience: str
    source: str  # generated | fallback
    fallback_kind: str | None  # "gate" (gate rejected the text), "generation" (generator failed) or None
    model_version: str
    source_event_s: float
    generated_s: float
    written_s: float  # the output record's Kafka timestamp (the worker sends it after the Redis write)
    reason: str = "unknown"  # what triggered it: product_change | audience_switch | ... (see `attribute`)
    trigger_s: float | None = None  # the triggering event's time (None: unknown, use source_event_s)


@dataclass(frozen=True)
class RequestSeen:
    """One generation request read from the requests topic."""

    product_id: str
    audiences: tuple[str, ...]
    reason: str
    sent_s: float  # Kafka timestamp of the request
    source_s: float | None  # the triggering event's time when the request carries `source_ms`


def fallback_kind(source: str, reasons: Sequence[str]) -> str | None:
    """Classify a fallback record from its gate reasons (the generation agent writes
    `fallback: gate failed: ...` or `fallback: generation failed: ...`)."""
    if source == "generated":
        return None
    text = " ".join(reasons)
    if "generation failed" in text:
        return "generation"
    return "gate"


def attribute(descs: Sequence[DescriptionSeen], requests: Sequence[RequestSeen]) -> list[DescriptionSeen]:
    """Give each written description the request that caused it.

    For each (product, audience), requests are consumed in time order: a record written at time W is
    caused by the *earliest* still-open request sent at or before W (later ones were coalesced into the
    same job). Its trigger time is the request's `source_ms` (the event time) when present, else the
    request's own timestamp. Records with no request seen keep reason `unknown`.
    """
    queues: dict[tuple[str, str], list[RequestSeen]] = {}
    for r in sorted(requests, key=lambda r: r.sent_s):
        for aud in r.audiences:
            queues.setdefault((r.product_id, aud), []).append(r)
    pos: dict[tuple[str, str], int] = {}
    out: list[DescriptionSeen] = []
    for d in sorted(descs, key=lambda d: d.written_s):
        key = (d.product_id, d.audience)
        q = queues.get(key, [])
        i = pos.get(key, 0)
        first: RequestSeen | None = None
        while i < len(q) and q[i].sent_s <= d.written_s + 0.001:
            if first is None:
                first = q[i]
            i += 1
        pos[key] = i
        if first is not None:
            trig = first.source_s if first.source_s is not None else first.sent_s
            d = DescriptionSeen(**{**d.__dict__, "reason": first.reason, "trigger_s": trig})
        out.append(d)
    return out


def summarize(
    *,
    descriptions: Sequence[DescriptionSeen],
    behaviour_sent: int,
    updates_sent: int,
    catalogue_sent: int,
    sent_times: Sequence[float],
    t0: float,
    traffic_start: float,
    traffic_end: float,
    t_end: float,
    lag_samples: Sequence[tuple[float, int]],
    consumed_samples: Sequence[tuple[float, int]] = (),
    lag_by_topic: Mapping[str, Sequence[tuple[float, int]]] | None = None,
    requests: Sequence[RequestSeen] = (),
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict. Series are per second from `t0`; `traffic_start` separates
    the catalogue warm-up from the steady traffic (latencies are reported for both)."""
    def trig(d: DescriptionSeen) -> float:
        return d.trigger_s if d.trigger_s is not None else d.source_event_s

    e2e = [d.written_s - trig(d) for d in descriptions]
    gen = [d.generated_s - trig(d) for d in descriptions]
    steady = [d for d in descriptions if trig(d) >= traffic_start]
    by_reason: dict[str, list[float]] = {}
    for d in steady:
        by_reason.setdefault(d.reason, []).append(d.written_s - trig(d))
    in_series = per_second(sent_times, t0, t_end)
    out_series = per_second([d.written_s for d in descriptions], t0, t_end)
    consumed_series = [
        max(0, b[1] - a[1]) for a, b in zip(consumed_samples, consumed_samples[1:])
    ]
    fallback = sum(1 for d in descriptions if d.source != "generated")
    gate_rej = sum(1 for d in descriptions if d.fallback_kind == "gate")
    gen_fail = sum(1 for d in descriptions if d.fallback_kind == "generation")
    n = len(descriptions)
    n_steady = len(steady)
    by_aud: dict[str, int] = {}
    for d in descriptions:
        by_aud[d.audience] = by_aud.get(d.audience, 0) + 1
    req_by_reason: dict[str, int] = {}
    for r in requests:
        req_by_reason[r.reason] = req_by_reason.get(r.reason, 0) + len(r.audiences)
    traffic_s = max(1e-9, traffic_end - traffic_start)
    i0, i1 = int(traffic_start - t0), int(math.ceil(traffic_end - t0))
    rel_lag = [(t - t0, lag) for t, lag in lag_samples]
    return {
        "params": dict(params or {}),
        "window": {
            "warmup_s": traffic_start - t0,
            "traffic_s": traffic_end - traffic_start,
            "total_s": t_end - t0,
        },
        "sent": {
            "catalogue": catalogue_sent,
            "behaviour": behaviour_sent,
            "product_updates": updates_sent,
            "total": catalogue_sent + behaviour_sent + updates_sent,
            "behaviour_per_s": behaviour_sent / traffic_s,
        },
        "throughput": {
            "in": rate_stats(in_series[i0:i1]),
            "out": rate_stats(out_series),
            "out_steady": rate_stats(out_series[i0:]),
            "worker_consumed": rate_stats(consumed_series),
            "in_series": in_series,
            "out_series": out_series,
            "consumed_series": consumed_series,
        },
        "descriptions": {
            "total": n,
            "during_traffic": n_steady,
            "distinct_pairs": len({(d.product_id, d.audience) for d in descriptions}),
            "by_audience": dict(sorted(by_aud.items())),
            "by_reason": {k: len(v) for k, v in sorted(by_reason.items())},
            "model_versions": sorted({d.model_version for d in descriptions}),
            "requests_by_reason": dict(sorted(req_by_reason.items())),
        },
        "generations_per_1000_behaviour": (1000.0 * n_steady / behaviour_sent) if behaviour_sent else None,
        "gate": {
            "fallback": fallback,
            "gate_rejected": gate_rej,
            "generation_failed": gen_fail,
            "rejection_rate": (gate_rej / n) if n else None,
            "fallback_rate": (fallback / n) if n else None,
        },
        "latency_s": {
            "all": latency_summary(e2e),
            "generated_all": latency_summary(gen),
            "steady": latency_summary([d.written_s - trig(d) for d in steady]),
            **{f"steady_{k}": latency_summary(v) for k, v in sorted(by_reason.items())},
        },
        "lag": {
            **lag_summary(rel_lag),
            "series": [[round(t, 3), lag] for t, lag in rel_lag],
            "by_topic_max": {k: max((lag for _, lag in v), default=0) for k, v in (lag_by_topic or {}).items()},
        },
    }


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


def render_markdown(report: Mapping[str, Any], machine: str = "", plots: Sequence[str] = ()) -> str:
    """A short human report of `summarize`'s dict."""
    p = report.get("params", {})
    w = report["window"]
    s = report["sent"]
    th = report["throughput"]
    lat = report["latency_s"]
    g = report["gate"]
    lag = report["lag"]
    d = report["descriptions"]
    gpk = report.get("generations_per_1000_behaviour")
    gpk_s = "-" if gpk is None else f"{gpk:.1f}"
    lines = [
        "# descstream load test",
        "",
        f"Command: `{p.get('command', 'descstream loadgen')}`  ",
        f"Machine: {machine or '-'}  ",
        f"Catalogue warm-up {w['warmup_s']:.1f} s, traffic {w['traffic_s']:.1f} s, total with drain {w['total_s']:.1f} s",
        "",
        "## Input",
        "",
        "| catalogue | behaviour events | product updates | behaviour/s | sent mean/s | sent peak/s | worker consumed mean/s |",
        "|---|---|---|---|---|---|---|",
        f"| {s['catalogue']} | {s['behaviour']} | {s['product_updates']} | {s['behaviour_per_s']:.1f} "
        f"| {th['in']['mean_per_s']:.1f} | {th['in']['peak_per_s']:.0f} | {th['worker_consumed']['mean_per_s']:.1f} |",
        "",
        "## Output",
        "",
        "| descriptions written (all) | during traffic | distinct (product, audience) | per 1,000 behaviour events "
        "| out mean/s (traffic) | out peak/s |",
        "|---|---|---|---|---|---|",
        f"| {d['total']} | {d['during_traffic']} | {d['distinct_pairs']} | {gpk_s} "
        f"| {th['out_steady']['mean_per_s']:.2f} | {th['out']['peak_per_s']:.0f} |",
        "",
        f"By audience: {', '.join(f'{k} {v}' for k, v in d['by_audience'].items()) or '-'}  ",
        f"By trigger (during traffic): {', '.join(f'{k} {v}' for k, v in d['by_reason'].items()) or '-'}  ",
        f"Generation requests seen (jobs by reason): {', '.join(f'{k} {v}' for k, v in d['requests_by_reason'].items()) or '-'}  ",
        f"Model versions: {', '.join(d['model_versions']) or '-'}",
        "",
        "## Latency: trigger event time -> description written to Redis",
        "",
        "| measure | n | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "all": "all records (incl. catalogue warm-up)",
        "steady": "during traffic, all triggers",
        "steady_product_change": "product update -> written",
        "steady_audience_switch": "behaviour event (audience switch) -> written",
        "generated_all": "trigger -> generated (all)",
    }
    for key, x in lat.items():
        lines.append(
            f"| {names.get(key, key)} | {x['count']} | {_fmt_s(x['p50'])} | {_fmt_s(x['p95'])} "
            f"| {_fmt_s(x['p99'])} | {_fmt_s(x['max'])} |"
        )
    rr = g["rejection_rate"]
    rr_s = "-" if rr is None else f"{rr:.1%}"
    fr = g["fallback_rate"]
    fr_s = "-" if fr is None else f"{fr:.1%}"
    mean_s = "-" if lag["mean"] is None else f"{lag['mean']:.1f}"
    drained = lag["drained_at_s"]
    drained_s = "never" if drained is None else f"t={drained:.1f} s"
    lines += [
        "",
        "## Gate and lag",
        "",
        f"- Gate rejections (text replaced by the faithful fallback): {g['gate_rejected']} of {d['total']} ({rr_s}); "
        f"generator failures: {g['generation_failed']}; all fallbacks: {g['fallback']} ({fr_s})",
        f"- Consumer lag of the worker group (input topics, sampled every second): max {lag['max']}, "
        f"mean {mean_s}, final {lag['final']}, back to 0 after the peak at {drained_s}",
    ]
    if lag.get("by_topic_max"):
        lines.append("- Max lag by topic: " + ", ".join(f"{k} {v}" for k, v in lag["by_topic_max"].items()))
    if plots:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"
