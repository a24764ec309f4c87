"""Fixtures for the stream tests: a real broker (Tansu) and a real redis-server on free ports.

Triton is not needed here: the worker runs with the deterministic in-process generator
(`--generator fake`, a test double); the real Triton path is covered by `test_triton_path.py` through
the session `stack` fixture (tiny models).
"""

from __future__ import annotations


import pytest_asyncio
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from descstream.config import Settings
from streams.profile import Profile
from tests.support import WorkerProc, isolated, wait_for  # noqa: F401  (re-exported for the tests)


@pytest_asyncio.fixture(loop_scope='session')
async def redis_client(infra: Settings):
    r = aioredis.Redis.from_url(infra.redis.url)
    yield r
    await r.aclose()


async def changelog_profiles(settings: Settings) -> dict[str, Profile]:
    """The latest value of every user in the `user-profiles` table changelog (what a worker restores)."""
    topic = f"{settings.worker.app_id}-user-profiles-changelog"
    consumer = AIOKafkaConsumer(topic, **settings.kafka.aiokafka_kwargs(), auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    latest: dict[str, bytes] = {}
    try:
        empty = 0
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=300)
            empty = 0 if batch else empty + 1
            for msgs in batch.values():
                for m in msgs:
                    if m.value:
                        latest[m.key.decode()] = m.value
            if empty >= 3:  # read to the end
                break
    finally:
        await consumer.stop()
    return {uid: Profile.loads(raw) for uid, raw in latest.items()}
