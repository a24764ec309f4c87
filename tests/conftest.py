"""Session fixtures: the real broker, Redis and Triton on free ports, started through `descstream.stack`.

Tests never touch the machine's shared services: every `DESCSTREAM_*` variable is cleared so the
settings come only from what the fixtures build. Triton runs the repository in tiny-model mode.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

for _name in [k for k in os.environ if k.startswith("DESCSTREAM_") and k != "DESCSTREAM_MODEL_CACHE"]:
    del os.environ[_name]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from descstream.config import Settings  # noqa: E402
from descstream.stack import LocalStack, settings_on_free_ports  # noqa: E402


def make_stack(run_dir: Path, services: tuple[str, ...] = ("kafka", "redis", "triton"), **overrides) -> LocalStack:
    """A stack on fresh free ports with tiny models (for tests that need their own services)."""
    overrides.setdefault("models", {"mode": "tiny"})
    overrides.setdefault("stack", {"startup_timeout_s": 300.0})
    if "triton" in services:
        _prepare_tiny_models()
    settings = settings_on_free_ports(run_dir, **overrides)
    return LocalStack(settings, services=services)


def _prepare_tiny_models() -> None:
    """Convert SmolLM2 from the GGUF and build the tiny model once, before Triton loads them.

    On a fresh machine the conversion takes ~40 s; doing it here keeps Triton's start-up short and
    its readiness timeout meaningful.
    """
    from models.base_model import resolve_model_dir

    resolve_model_dir(tiny=True)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = make_stack(tmp_path_factory.mktemp("stack"))
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> Settings:
    """Settings pointing at a live broker, Redis and Triton (tiny models) on free ports."""
    return local_stack.settings


@contextlib.contextmanager
def broker_and_redis(run_dir: Path) -> Iterator[Settings]:
    """A live broker + Redis (no Triton) with small rebalance timeouts, tiny batches and 2 partitions."""
    from tests.support import FAST_WORKER

    stack = make_stack(
        run_dir,
        services=("kafka", "redis"),
        worker=dict(FAST_WORKER),
        topics={"partitions": 2},
        triton={"max_retries": 1, "backoff_s": 0.05},
    )
    stack.up()
    try:
        yield stack.settings
    finally:
        stack.down()


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Broker + Redis shared by the stream tests; they separate themselves with `tests.support.isolated`."""
    with broker_and_redis(tmp_path_factory.mktemp("infra")) as settings:
        yield settings
