"""Fixtures of the operations tests: a real broker (Tansu) + redis-server on free ports, and a stream
worker subprocess (`python -m streams.cli worker --generator fake`) on isolated topic names."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from descstream.config import Settings
from tests.conftest import broker_and_redis
from tests.support import WorkerProc, isolated, wait_for  # noqa: F401  (re-exported for the tests)


@pytest.fixture(scope="session")
def ops_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The operations suite's own broker + Redis: backfill scans the whole Redis, so no other suite may
    write into it."""
    with broker_and_redis(tmp_path_factory.mktemp("ops-infra")) as settings:
        yield settings


class Worker(WorkerProc):
    """A `streams.cli worker --generator fake` subprocess without a metrics port."""

    def __init__(self, settings: Settings, log: Path):
        super().__init__(settings, log, "--metrics-port", "0")


@pytest.fixture(scope="module")
def ops_worker(ops_infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Worker]]:
    """Isolated settings plus a running worker for them (one per test module)."""
    tmp = tmp_path_factory.mktemp("ops-worker")
    settings = isolated(ops_infra, tmp)
    from streams.cli import create_topics

    create_topics(settings)  # before anyone produces: auto-created topics get the broker default
    worker = Worker(settings, tmp / "worker.log")
    try:
        yield settings, worker
    finally:
        worker.stop()
        shutil.rmtree(tmp / "worker-data", ignore_errors=True)
