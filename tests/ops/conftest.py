"""Fixtures of the operations tests: a real broker (Tansu) + redis-server on free ports, and a stream
worker subprocess (`python -m streams.cli worker --generator fake`) on isolated topic names."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from descstream.config import REPO_ROOT, Settings
from tests.conftest import make_stack


@pytest.fixture(scope="session")
def ops_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Broker + Redis (no Triton), small rebalance timeouts, tiny batches, 2 partitions."""
    stack = make_stack(
        tmp_path_factory.mktemp("ops-stack"),
        services=("kafka", "redis"),
        worker={
            "broker_session_timeout_s": 6.0,
            "broker_heartbeat_interval_s": 0.5,
            "broker_rebalance_timeout_s": 3.0,
            "batch_size": 8,
            "batch_timeout_s": 0.2,
        },
        topics={"partitions": 2},
    )
    stack.up()
    try:
        yield stack.settings
    finally:
        stack.down()


def isolated(settings: Settings, tmp: Path) -> Settings:
    """Same services, fresh topic names, group id and data dir."""
    tag = uuid.uuid4().hex[:8]
    data = settings.model_dump()
    data["topics"].update(
        products=f"products-{tag}", behavior=f"behavior-{tag}", descriptions=f"descriptions-{tag}",
        dead_letter=f"dlq-{tag}", generation_requests=f"genreq-{tag}",
    )
    data["worker"].update(app_id=f"ds-ops-{tag}", data_dir=str(tmp / "worker-data"))
    return Settings(**data)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as DESCSTREAM_* variables (nested delimiter `__`) for a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESCSTREAM_")}
    flat = settings.model_dump(mode="json")
    for section in ("kafka", "redis", "topics", "worker", "triton", "models"):
        for key, value in flat[section].items():
            if value is not None:
                env[f"DESCSTREAM_{section.upper()}__{key.upper()}"] = str(value)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


class Worker:
    """A `streams.cli worker --generator fake` subprocess in its own process group."""

    def __init__(self, settings: Settings, log: Path):
        self.log = log
        self.fh = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--generator", "fake", "--metrics-port", "0"],
            env=settings_env(settings), cwd=str(REPO_ROOT), stdout=self.fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.fh.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def ops_worker(ops_infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Worker]]:
    """Isolated settings plus a running worker for them (one per test module)."""
    tmp = tmp_path_factory.mktemp("ops-worker")
    settings = isolated(ops_infra, tmp)
    from streams.loadgen import ensure_topics

    asyncio.run(ensure_topics(settings))  # before anyone produces: auto-created topics get the broker default
    worker = Worker(settings, tmp / "worker.log")
    try:
        yield settings, worker
    finally:
        worker.stop()
        shutil.rmtree(tmp / "worker-data", ignore_errors=True)


async def wait_for(pred, timeout: float = 45.0, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await pred()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")
