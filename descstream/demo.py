"""`descstream demo`: the whole path on the embedded stack, end to end, then a table read back from Redis.

1. brings the stack up (only the services not already running), creates the topics;
2. starts `descstream worker` as a child process (exactly as production runs it);
3. publishes a small synthetic catalogue to `products`;
4. waits until every expected (product, audience) description is final in Redis and prints
   product x audience -> description, source, model version, gate verdict;
5. publishes shoppers' views/clicks to `user-behavior`, waits for their audiences and prints what the
   recommender's reader returns for each shopper;
6. stops the worker and whatever part of the stack it started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from descstream.config import Settings, child_env
from descstream.schemas import BehaviorEvent, ProductUpsert, encode
from descstream.stack import LocalStack, StackError


class DemoError(RuntimeError):
    """The demo could not finish; the message says where to look."""


def _expected_pairs(products: list[ProductUpsert]) -> list[tuple[str, str]]:
    from models.audiences import audiences_for_category

    return [(p.product_id, a) for p in products for a in audiences_for_category(p.category)]


def _behaviour(products: list[ProductUpsert], users: int, seed: int) -> list[BehaviorEvent]:
    """Each shopper browses one category (views, clicks, a cart add) so profiles form and audiences differ."""
    import random

    rng = random.Random(seed)
    by_cat: dict[str, list[ProductUpsert]] = {}
    for p in products:
        by_cat.setdefault(p.category or "", []).append(p)
    cats = sorted(by_cat)
    events = []
    now = datetime.now(timezone.utc)
    for u in range(users):
        pool = by_cat[cats[u % len(cats)]]
        for kind in ("view", "view", "click", "view", "add_to_cart"):
            p = rng.choice(pool)
            events.append(BehaviorEvent(user_id=f"u-demo-{u}", product_id=p.product_id, event=kind, ts=now))
    return events


async def _publish(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def _final(record) -> bool:
    """Generated text, or the gate's fallback for this model. A "none" fallback (generation failed) is
    only a stand-in that the worker replaces once the generator answers."""
    return record.model_version != "none"


async def _wait_for_audiences(settings: Settings, users: list[str], timeout_s: float) -> dict[str, str | None]:
    from streams.redis_store import RedisStore

    store = RedisStore.from_settings(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            got = {u: await store.get_user_audience(u) for u in users}
            if all(got.values()) or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.5)
    finally:
        await store.close()


async def _wait_for(settings: Settings, pairs: list[tuple[str, str]], timeout_s: float, worker: subprocess.Popen,
                    console: Console) -> dict[tuple[str, str], object]:
    from streams.redis_store import RedisStore

    store = RedisStore.from_settings(settings)
    found: dict[tuple[str, str], object] = {}
    deadline = time.monotonic() + timeout_s
    try:
        with console.status("") as status:
            while time.monotonic() < deadline:
                if worker.poll() is not None:
                    raise DemoError(f"the worker exited with code {worker.returncode}")
                for pid in sorted({p for p, _ in pairs}):
                    for aud, rec in (await store.get_records(pid)).items():
                        if (pid, aud) in pairs:
                            found[(pid, aud)] = rec
                final = sum(_final(r) for r in found.values())
                status.update(f"descriptions in Redis: {len(found)}/{len(pairs)} ({final} final; generating on CPU)")
                if final == len(pairs):
                    return found
                await asyncio.sleep(1.0)
        missing = sorted(p for p in pairs if p not in found or not _final(found[p]))
        raise DemoError(f"timed out after {timeout_s:.0f} s; {len(missing)} descriptions not final, e.g. {missing[:3]}")
    finally:
        await store.close()


async def _reader_view(settings: Settings, users: list[str], product_ids: list[str]) -> dict[str, dict]:
    from streams.reader import get_descriptions
    from streams.redis_store import RedisStore

    store = RedisStore.from_settings(settings)
    try:
        return {u: await get_descriptions(store, u, product_ids) for u in users}
    finally:
        await store.close()


def run_demo(settings: Settings, *, products: int = 4, users: int = 4, seed: int = 7, timeout_s: float = 900.0,
             console: Console | None = None) -> int:
    """Run the demo; returns the number of descriptions read back from Redis."""
    from models.catalogue import generate_catalogue
    from streams.cli import create_topics

    console = console or Console()
    # The embedded broker keeps nothing across restarts, so the worker's local table state (RocksDB) must
    # not either: a fresh data dir per demo, or products "already seen" there would be skipped.
    data = settings.model_dump()
    data["worker"]["data_dir"] = str(Path(settings.stack.run_dir) / "demo-worker-data")
    # Tansu's end offsets fail Faust's recovery consistency check; production Kafka keeps it on.
    data["worker"]["recovery_consistency_check"] = False
    settings = Settings(**data)
    shutil.rmtree(settings.worker.data_dir, ignore_errors=True)
    stack = LocalStack(settings)
    already = {s.name for s in stack.status() if s.healthy}
    log_dir = Path(settings.stack.run_dir)
    worker: subprocess.Popen | None = None
    try:
        stack.up(progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        create_topics(settings)
        log_dir.mkdir(parents=True, exist_ok=True)
        worker_log = log_dir / "demo-worker.log"
        with open(worker_log, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "descstream.cli", "worker"], env=child_env(settings),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        console.print(f"[dim]worker: pid {worker.pid}, log {worker_log}[/dim]")

        catalogue = generate_catalogue(products, seed=seed, adversarial_rate=0.0)
        asyncio.run(_publish(settings, settings.topics.products,
                             [(p.product_id.encode(), encode(p)) for p in catalogue]))
        console.print(f"published {len(catalogue)} products to '{settings.topics.products}'")

        pairs = _expected_pairs(catalogue)
        t0 = time.monotonic()
        found = asyncio.run(_wait_for(settings, pairs, timeout_s, worker, console))
        console.print(f"all {len(found)} descriptions in Redis after {time.monotonic() - t0:.1f} s")
        _print_descriptions(console, catalogue, found)

        # Shoppers browse once the catalogue is known, so their profiles see categories and embeddings.
        events = _behaviour(catalogue, users, seed)
        asyncio.run(_publish(settings, settings.topics.behavior,
                             [(e.user_id.encode(), encode(e)) for e in events]))
        user_ids = sorted({e.user_id for e in events})
        audiences = asyncio.run(_wait_for_audiences(settings, user_ids, 60.0))
        console.print(f"published {len(events)} behaviour events; audiences: "
                      + ", ".join(f"{u} -> {a or '?'}" for u, a in audiences.items()))
        _print_reader(console, asyncio.run(_reader_view(settings, user_ids, [p.product_id for p in catalogue])))
        return len(found)
    except DemoError as exc:
        tail = ""
        if (log_dir / "demo-worker.log").exists():
            tail = "\n".join((log_dir / "demo-worker.log").read_text(errors="replace").splitlines()[-30:])
        raise DemoError(f"{exc}\n--- worker log tail ---\n{tail}") from None
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        ours = tuple(name for name in ("kafka", "redis", "triton") if name not in already)
        stopped = stack.down(only=ours)
        if stopped:
            console.print(f"[dim]stopped: {', '.join(stopped)}[/dim]")


def _print_descriptions(console: Console, catalogue: list[ProductUpsert], found: dict) -> None:
    table = Table("product", "audience", "description", "source", "model version", "gate", show_lines=True)
    for p in catalogue:
        for (pid, aud), rec in sorted(found.items()):
            if pid != p.product_id:
                continue
            verdict = "pass" if rec.gate.passed else "fail: " + ", ".join(rec.gate.reasons[:2])
            table.add_row(f"{pid}\n{p.title}", aud, rec.text, rec.source, rec.model_version, verdict)
    console.print(table)


def _print_reader(console: Console, view: dict[str, dict]) -> None:
    table = Table("user", "product", "audience", "source", "text")
    for user, products in view.items():
        for pid, item in products.items():
            text = (item or {}).get("text") or ""
            table.add_row(user, pid, str((item or {}).get("audience")), str((item or {}).get("source")),
                          text[:70] + ("..." if len(text) > 70 else ""))
    console.print("What the recommender reads (one pipelined round trip per user):")
    console.print(table)


def main(products: int, users: int, timeout_s: float) -> None:
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        run_demo(Settings(), products=products, users=users, timeout_s=timeout_s, console=console)
    except (DemoError, StackError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise SystemExit(1) from None
