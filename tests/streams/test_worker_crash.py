"""An unexpected error in an agent exits the worker WITHOUT acknowledging the batch (streams/fatal.py): after
a restart the batch is consumed again (at-least-once), so nothing is lost. (Transient Redis errors never get
that far: `RedisStore` retries them, see test_redis_store.py.)"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from streams.cli import create_topics_async
from streams.fatal import EXIT_AGENT_CRASH
from streams.redis_store import meta_key

from .conftest import WorkerProc, isolated, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_unexpected_agent_error_exits_without_acknowledging(infra, tmp_path):
    settings = isolated(infra, tmp_path)
    await create_topics_async(settings)
    pid = "p-poison-" + settings.worker.app_id
    r = aioredis.Redis.from_url(settings.redis.url)
    await r.set(meta_key(pid), b"not a hash")  # META_UPSERT fails with WRONGTYPE: not transient, not retried
    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all")
    await producer.start()
    worker = WorkerProc(settings, tmp_path / "worker-1.log", "--agents", "products")
    try:
        ev = {"op": "upsert", "product_id": pid, "version": 1, "updated_at": datetime(2026, 11, 1, tzinfo=timezone.utc).isoformat(),
              "title": "Ridge 2 Tent", "category": "Outdoor > Camping > Tents", "brand": "NorthPeak", "price": 149.0,
              "attributes": {"colour": "green"}, "description": "Seller text."}
        await producer.send_and_wait(settings.topics.products, key=pid.encode(), value=orjson.dumps(ev))

        async def exited():
            return worker.proc.poll() is not None

        await wait_for(exited, timeout=120, what="the worker to exit on the agent error")
        assert worker.proc.returncode == EXIT_AGENT_CRASH, worker.tail()
        log = worker.tail(20000)
        assert "WITHOUT acknowledging" in log and "WRONGTYPE" in log, log
        assert "Crashed reason=" not in log  # Faust never got to restart the agent and move on
        worker.kill()

        # repaired; the restarted worker consumes the same (uncommitted) batch again
        await r.delete(meta_key(pid))
        worker = WorkerProc(settings, tmp_path / "worker-2.log", "--agents", "products")

        async def written():
            assert worker.proc.poll() is None, worker.tail()
            return await r.hget(meta_key(pid), "v") == b"1"

        await wait_for(written, timeout=120, what="the redelivered product to be written")
    finally:
        worker.kill()
        await producer.stop()
        await r.aclose()
