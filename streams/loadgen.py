"""`descstream loadgen`: realistic synthetic traffic against a running worker, measured end to end.

Phases (every one bounded, so the run always stops by itself):

1. **Catalogue**: `generate_catalogue(N, seed)` published to the products topic with `updated_at` = now and
   `version` = a run-unique base (unix seconds x 1000), so a rerun against the same stack is news to the
   worker, not a stale duplicate. Then up to `--warmup` seconds for the worker to work through it.
2. **Traffic** for `--duration` seconds: behaviour events at `--rate`/s from `streams.traffic.TrafficModel`
   (Zipf popularity, sessions, drifting category affinity, the `--mix` of kinds) and seller updates at
   `--update-rate`/s (`mutate_product`, version + 1, `updated_at` = now).
3. **Drain**: until the worker group's lag is 0 and no description arrived for 2 s, at most `--drain` s.

Measurements, taken from outside the worker like a client would:

* the `descriptions` topic (every record the worker wrote to Redis, sent after the write):
  trigger event time -> write time (the record's Kafka timestamp), p50/p95/p99; fallback and gate-rejection
  rates; output throughput;
* the generation-requests topic: why each record was generated and when its trigger happened
  (`product_change` requests carry the product event's time, `audience_switch` requests the time of the
  behaviour event that switched the user, both as `source_ms`; a request without it is timed from the
  request itself);
* the worker group's committed offsets vs the end offsets of its input topics, every second (lag, and
  consumption rate from the committed-offset deltas).

Results go to `--out` (default `bench/results/loadgen-<timestamp>/`): `report.json`, `report.md`,
`latency_cdf.png`, `throughput.png`, `lag.png`.
"""

from __future__ import annotations

import asyncio
import json
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from descstream.config import REPO_ROOT, Settings

from .traffic import DescriptionSeen, RequestSeen, TrafficModel, attribute, fallback_kind, pace_due, parse_mix, render_markdown, summarize


@dataclass
class LoadgenConfig:
    products: int = 200
    users: int = 500
    rate: float = 50.0  # behaviour events per second
    duration: float = 30.0
    seed: int = 0
    mix: str | None = None
    update_rate: float = 0.5  # seller updates per second
    out: Path | None = None
    warmup: float = 60.0  # max seconds to wait for the catalogue to be processed
    drain: float = 30.0  # max seconds to wait after traffic for the worker to catch up
    group: str | None = None  # the worker's consumer group (default: WorkerSettings.app_id)
    zipf_s: float = 1.1
    session_mean: float = 6.0
    drift_period_s: float = 20.0
    progress: bool = True
    command: str = ""


@dataclass
class _State:
    descs: list[DescriptionSeen] = field(default_factory=list)
    requests: list[RequestSeen] = field(default_factory=list)
    sent_times: list[float] = field(default_factory=list)
    lag: list[tuple[float, int]] = field(default_factory=list)
    lag_by_topic: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    consumed: list[tuple[float, int]] = field(default_factory=list)
    behaviour_sent: int = 0
    updates_sent: int = 0
    catalogue_sent: int = 0
    last_desc_at: float = 0.0
    stop: bool = False


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def ensure_topics(settings: Settings) -> None:
    """The descstream topics must exist before anyone produces (auto-created ones get the broker default)."""
    from streams.cli import create_topics_async

    await create_topics_async(settings)


async def _tail_consumer(settings: Settings, topics: list[str]):
    """A group-less consumer assigned to every partition of `topics`, positioned at the end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    await c.start()
    tps = []
    for topic in topics:
        parts = None
        for _ in range(50):
            await c._client.force_metadata_update()  # noqa: SLF001 - topics may have just been created
            parts = c.partitions_for_topic(topic)
            if parts:
                break
            await asyncio.sleep(0.1)
        tps += [TopicPartition(topic, p) for p in sorted(parts or ())]
    c.assign(tps)
    await c.seek_to_end(*tps)
    for tp in tps:  # resolve the positions now, so nothing sent after this point is missed
        await c.position(tp)
    return c


async def _watch(settings: Settings, st: _State, consumer: Any) -> None:
    desc_topic = settings.topics.descriptions
    while not st.stop:
        batches = await consumer.getmany(timeout_ms=200, max_records=2000)
        now = time.time()
        for tp, msgs in batches.items():
            for m in msgs:
                try:
                    d = orjson.loads(m.value)
                except orjson.JSONDecodeError:
                    continue
                if tp.topic == desc_topic:
                    try:
                        gate = d.get("gate") or {}
                        st.descs.append(
                            DescriptionSeen(
                                product_id=d["product_id"],
                                audience=d["audience"],
                                source=d["source"],
                                fallback_kind=fallback_kind(d["source"], gate.get("reasons") or ()),
                                model_version=d.get("model_version", ""),
                                source_event_s=_parse_time(d["source_event_time"]),
                                generated_s=_parse_time(d["generated_at"]),
                                written_s=m.timestamp / 1000.0,
                            )
                        )
                        st.last_desc_at = now
                    except (KeyError, TypeError, ValueError):
                        continue
                else:
                    if not isinstance(d, dict) or "product_id" not in d:
                        continue
                    src = d.get("source_ms")
                    st.requests.append(
                        RequestSeen(
                            product_id=str(d["product_id"]),
                            audiences=tuple(d.get("audiences") or ()),
                            reason=str(d.get("reason", "unknown")),
                            sent_s=m.timestamp / 1000.0,
                            source_s=(src / 1000.0) if isinstance(src, (int, float)) and src > 0 else None,
                        )
                    )


async def committed_offsets(consumer: Any, tps: list[Any]) -> dict[Any, int]:
    """The group's committed offsets for `tps` (missing = never committed), read through a consumer that
    carries the group id but never joins or commits (one OffsetFetch; the admin client's
    ListConsumerGroupOffsets is not understood by every broker, the consumer's OffsetFetch is)."""
    try:
        got = await consumer._coordinator.fetch_committed_offsets(tps)  # noqa: SLF001 - one request for all
        return {tp: om.offset for tp, om in got.items() if om is not None and om.offset >= 0}
    except AttributeError:  # pragma: no cover - private API moved: one request per partition
        out = {}
        for tp in tps:
            off = await consumer.committed(tp)
            if off is not None and off >= 0:
                out[tp] = off
        return out


async def _sample_lag(settings: Settings, st: _State, group: str, topics: list[str]) -> None:
    """Every second: end offsets of the worker's input topics vs the group's committed offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # Carries the worker's group id only to *read* its committed offsets: never subscribes, never commits.
    probe = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        while not st.stop:
            t = time.time()
            try:
                tps = [TopicPartition(topic, p) for topic in topics for p in sorted(probe.partitions_for_topic(topic) or ())]
                ends = await probe.end_offsets(tps) if tps else {}
                committed = await committed_offsets(probe, tps) if tps else {}
                by_topic: dict[str, int] = {}
                done = 0
                for tp, end in ends.items():
                    off = committed.get(tp, 0)
                    by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(0, end - off)
                    done += off
                if tps:
                    st.lag.append((t, sum(by_topic.values())))
                    st.consumed.append((t, done))
                    for topic, lag in by_topic.items():
                        st.lag_by_topic.setdefault(topic, []).append((t, lag))
                else:
                    await probe._client.force_metadata_update()  # noqa: SLF001
            except Exception:  # a sample may fail while the group rebalances; keep sampling
                pass
            await asyncio.sleep(max(0.0, 1.0 - (time.time() - t)))
    finally:
        await probe.stop()


def _product_bytes(p: Any) -> bytes:
    return orjson.dumps(p.model_dump(mode="json"))


async def run_loadgen(settings: Settings, cfg: LoadgenConfig) -> dict[str, Any]:
    """Run the three phases and write the report; returns the report dict (also in report.json)."""
    from aiokafka import AIOKafkaProducer

    from models.catalogue import generate_catalogue, mutate_product

    mix = parse_mix(cfg.mix)
    out = Path(cfg.out) if cfg.out else REPO_ROOT / "bench" / "results" / f"loadgen-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    topics = settings.topics
    group = cfg.group or settings.worker.app_id
    await ensure_topics(settings)

    st = _State()
    watcher = await _tail_consumer(settings, [topics.descriptions, topics.generation_requests])
    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", linger_ms=5)
    await producer.start()
    tasks = [
        asyncio.create_task(_watch(settings, st, watcher)),
        asyncio.create_task(_sample_lag(settings, st, group, [topics.products, topics.behavior, topics.generation_requests])),
    ]
    progress = _Progress(cfg.progress)
    t0 = time.time()
    try:
        # ---------------------------------------------------------------- 1. catalogue
        base = int(t0 * 1000)
        catalogue = {
            p.product_id: p.model_copy(update={"version": base, "updated_at": datetime.fromtimestamp(t0, timezone.utc)})
            for p in generate_catalogue(cfg.products, cfg.seed)
        }
        for p in catalogue.values():
            await producer.send(topics.products, key=p.product_id.encode(), value=_product_bytes(p))
            st.sent_times.append(time.time())
        await producer.flush()
        st.catalogue_sent = len(catalogue)
        progress.start("catalogue warm-up", cfg.warmup)
        deadline = time.time() + cfg.warmup
        while time.time() < deadline:
            await asyncio.sleep(0.5)
            progress.update(time.time() - t0, st)
            if _caught_up(st, since=t0 + 1.0):
                break
        progress.stop()

        # ---------------------------------------------------------------- 2. traffic
        model = TrafficModel(
            [(pid, p.category) for pid, p in catalogue.items()], cfg.users, mix=mix, seed=cfg.seed,
            zipf_s=cfg.zipf_s, session_mean=cfg.session_mean, drift_period_s=cfg.drift_period_s,
        )
        rng = random.Random(f"updates:{cfg.seed}")
        t1 = time.time()
        end = t1 + cfg.duration
        progress.start("traffic", cfg.duration)
        last_ui = 0.0
        while True:
            now = time.time()
            if now >= end:
                break
            elapsed = now - t1
            for _ in range(pace_due(cfg.rate, elapsed, st.behaviour_sent)):
                b = model.next_behavior(time.time())
                ev = {"user_id": b.user_id, "event": b.event, "ts": _iso(b.ts)}
                if b.product_id is not None:
                    ev["product_id"] = b.product_id
                if b.query is not None:
                    ev["query"] = b.query
                await producer.send(topics.behavior, key=b.user_id.encode(), value=orjson.dumps(ev))
                st.behaviour_sent += 1
                st.sent_times.append(b.ts)
            for _ in range(pace_due(cfg.update_rate, elapsed, st.updates_sent)):
                pid = model.pick_update()
                ts = time.time()
                p = mutate_product(catalogue[pid], rng).model_copy(update={"updated_at": datetime.fromtimestamp(ts, timezone.utc)})
                catalogue[pid] = p
                await producer.send(topics.products, key=pid.encode(), value=_product_bytes(p))
                st.updates_sent += 1
                st.sent_times.append(ts)
            if now - last_ui > 0.25:
                progress.update(now - t1, st)
                last_ui = now
            await asyncio.sleep(0.01)
        await producer.flush()
        t2 = time.time()
        progress.stop()

        # ---------------------------------------------------------------- 3. drain
        progress.start("drain", cfg.drain)
        deadline = t2 + cfg.drain
        while time.time() < deadline:
            await asyncio.sleep(0.5)
            progress.update(time.time() - t2, st)
            if _caught_up(st, since=t2 + 1.0):
                break
        progress.stop()
        t3 = time.time()
    finally:
        st.stop = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        await watcher.stop()
        progress.stop()

    descs = attribute(st.descs, st.requests)
    params = {
        "command": cfg.command or "descstream loadgen",
        "products": cfg.products, "users": cfg.users, "rate": cfg.rate, "duration": cfg.duration,
        "seed": cfg.seed, "mix": mix, "update_rate": cfg.update_rate, "group": group,
        "bootstrap_servers": settings.kafka.bootstrap_servers, "partitions": topics.partitions,
        "batch_size": settings.worker.batch_size, "model_mode": settings.models.mode,
    }
    report = summarize(
        descriptions=descs, behaviour_sent=st.behaviour_sent, updates_sent=st.updates_sent,
        catalogue_sent=st.catalogue_sent, sent_times=st.sent_times, t0=t0, traffic_start=t1, traffic_end=t2,
        t_end=t3, lag_samples=st.lag, consumed_samples=st.consumed, lag_by_topic=st.lag_by_topic,
        requests=st.requests, params=params,
    )
    report["redis_descriptions"] = await _redis_count(settings)
    try:
        from descstream.machine import describe_machine

        report["machine"] = describe_machine()
    except Exception:  # pragma: no cover - the machine description is informative only
        report["machine"] = {}
    plots = write_plots(out, report, descs, t0)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    with open(out / "records.jsonl", "wb") as fh:  # raw measurements, for ad-hoc analysis
        for d in descs:
            fh.write(orjson.dumps({"kind": "description", **d.__dict__}) + b"\n")
        for r in st.requests:
            fh.write(orjson.dumps({"kind": "request", **r.__dict__}) + b"\n")
    (out / "report.md").write_text(render_markdown(report, _machine_line(report["machine"]), plots))
    report["out"] = str(out)
    return report


def _caught_up(st: _State, since: float) -> bool:
    """Worker lag 0 (latest sample taken after `since`) and no description for 2 s."""
    if not st.lag or st.lag[-1][0] < since:
        return False
    return st.lag[-1][1] == 0 and time.time() - st.last_desc_at > 2.0


async def _redis_count(settings: Settings, limit: int = 200_000) -> int | None:
    """Description entries in Redis (audience fields of `ds:desc:*`), or None if Redis is unreachable."""
    try:
        import redis.asyncio as aioredis

        from .redis_store import PREFIX, is_record_field

        r = aioredis.Redis.from_url(settings.redis.url, **settings.redis.client_kwargs())
        try:
            total = 0
            seen = 0
            async for key in r.scan_iter(match=f"{PREFIX}desc:*", count=1000):
                total += sum(1 for f in await r.hkeys(key) if is_record_field(f))
                seen += 1
                if seen >= limit:
                    break
            return total
        finally:
            await r.aclose()
    except Exception:
        return None


def _machine_line(m: dict[str, Any]) -> str:
    if not m:
        return ""
    return f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB RAM, {m.get('os')}, Python {m.get('python')}"


def write_plots(out: Path, report: dict[str, Any], descs: list[DescriptionSeen], t0: float) -> list[str]:
    """latency_cdf.png, throughput.png, lag.png (matplotlib Agg); returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .traffic import cdf_points

    names = []
    w = report["window"]
    traffic_start = t0 + w["warmup_s"]

    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups: dict[str, list[float]] = {}
    for d in descs:
        trig = d.trigger_s if d.trigger_s is not None else d.source_event_s
        label = d.reason if trig >= traffic_start else "catalogue warm-up"
        groups.setdefault(label, []).append(max(1e-4, d.written_s - trig))
    for label, vals in sorted(groups.items()):
        xs, ys = cdf_points(vals)
        ax.step(xs, ys, where="post", label=f"{label} (n={len(vals)})")
    ax.set_xscale("log")
    ax.set_xlabel("trigger event -> description written (s, log)")
    ax.set_ylabel("fraction of descriptions")
    ax.set_title("End-to-end latency CDF")
    ax.grid(True, which="both", alpha=0.3)
    if groups:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(fig)
    names.append("latency_cdf.png")

    th = report["throughput"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(range(len(th["in_series"])), th["in_series"], label="events sent/s")
    if th["consumed_series"]:
        ax.plot(range(1, len(th["consumed_series"]) + 1), th["consumed_series"], label="worker consumed/s (committed)", alpha=0.8)
    ax2 = ax.twinx()
    ax2.plot(range(len(th["out_series"])), th["out_series"], color="tab:green", label="descriptions written/s")
    ax2.set_ylabel("descriptions/s", color="tab:green")
    for x in (w["warmup_s"], w["warmup_s"] + w["traffic_s"]):
        ax.axvline(x, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("events/s")
    ax.set_title("Throughput in and out")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
    names.append("throughput.png")

    fig, ax = plt.subplots(figsize=(7, 4.2))
    series = report["lag"]["series"]
    if series:
        ax.plot([t for t, _ in series], [lag for _, lag in series], label="total")
    for x in (w["warmup_s"], w["warmup_s"] + w["traffic_s"]):
        ax.axvline(x, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("messages behind (end offset - committed)")
    ax.set_title(f"Consumer lag of group {report['params'].get('group')}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "lag.png", dpi=110)
    plt.close(fig)
    names.append("lag.png")
    return names


class _Progress:
    """A rich progress bar per phase with live counters (no-op when disabled or not a TTY-less run)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p = None
        self._task = None

    def start(self, phase: str, total: float) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), transient=False,
        )
        self._p.start()
        self._task = self._p.add_task(phase, total=max(total, 0.001), info="")

    def update(self, elapsed: float, st: _State) -> None:
        if self._p is None:
            return
        lag = st.lag[-1][1] if st.lag else "-"
        info = (
            f"sent {st.catalogue_sent + st.behaviour_sent + st.updates_sent}  behaviour {st.behaviour_sent}  "
            f"updates {st.updates_sent}  descriptions {len(st.descs)}  lag {lag}"
        )
        self._p.update(self._task, completed=elapsed, info=info)

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


def main_command() -> str:
    return " ".join(shlex.quote(a) for a in ["descstream", *sys.argv[1:]])
