"""Fixtures for the stream tests: a real broker (Tansu) and a real redis-server on free ports.

Triton is not needed here: the worker runs with the deterministic in-process generator
(`--generator fake`, a test double); the real Triton path is covered by `test_triton_path.py` through
the session `stack` fixture (tiny models).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from descstream.config import REPO_ROOT, Settings
from tests.conftest import make_stack


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a live broker + Redis (no Triton), with small rebalance timeouts and tiny batches."""
    stack = make_stack(
        tmp_path_factory.mktemp("streams-stack"),
        services=("kafka", "redis"),
        worker={
            "broker_session_timeout_s": 6.0,
            "broker_heartbeat_interval_s": 0.5,
            "broker_rebalance_timeout_s": 3.0,
            "batch_size": 8,
            "batch_timeout_s": 0.2,
        },
        topics={"partitions": 2},
        triton={"max_retries": 1, "backoff_s": 0.05},
    )
    stack.up()
    try:
        yield stack.settings
    finally:
        stack.down()


def isolated(settings: Settings, tmp: Path, **sections: dict) -> Settings:
    """Same services, fresh topic names, group id and data dir (tests don't see each other's events).

    `sections` update settings sections, e.g. ``worker={"batch_size": 4}``."""
    tag = uuid.uuid4().hex[:8]
    data = settings.model_dump()
    data["topics"].update(
        products=f"products-{tag}", behavior=f"behavior-{tag}", descriptions=f"descriptions-{tag}",
        dead_letter=f"dlq-{tag}", generation_requests=f"genreq-{tag}",
    )
    data["worker"].update(app_id=f"ds-{tag}", data_dir=str(tmp / "worker-data"))
    for section, values in sections.items():
        data[section].update(values)
    return Settings(**data)


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESCSTREAM_")}
    flat = settings.model_dump(mode="json")
    for section in ("kafka", "redis", "topics", "worker", "triton", "models"):
        for key, value in flat[section].items():
            if value is None:
                continue
            env[f"DESCSTREAM_{section.upper()}__{key.upper()}"] = str(value)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


class WorkerProc:
    def __init__(self, settings: Settings, log: Path, *extra: str, generator: str = "fake"):
        self.settings = settings
        self.log = log
        self.fh = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--generator", generator, *extra],
            env=settings_env(settings), cwd=str(REPO_ROOT), stdout=self.fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.fh.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


async def wait_for(pred, timeout: float = 45.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await pred()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")


@pytest_asyncio.fixture(loop_scope='session')
async def redis_client(infra: Settings):
    r = aioredis.Redis.from_url(infra.redis.url)
    yield r
    await r.aclose()

