"""Fixtures for the stream tests: a real broker (Tansu) and a real redis-server on free ports.

Triton is not needed here: the worker runs with the deterministic in-process generator
(`--generator fake`, a test double); the real Triton path is covered by `test_triton_path.py` through
the session `stack` fixture (tiny models).
"""

from __future__ import annotations


import pytest_asyncio
import redis.asyncio as aioredis

from descstream.config import Settings
from tests.support import WorkerProc, isolated, wait_for  # noqa: F401  (re-exported for the tests)


@pytest_asyncio.fixture(loop_scope='session')
async def redis_client(infra: Settings):
    r = aioredis.Redis.from_url(infra.redis.url)
    yield r
    await r.aclose()

