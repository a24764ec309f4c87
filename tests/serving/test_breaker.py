"""The circuit breaker's documented state machine, and the client's fail-fast / retry behaviour
against an address where nothing listens (no Triton needed)."""

from __future__ import annotations

import asyncio
import time

import pytest

from descstream.config import ModelSettings, TritonSettings
from serving.client import CircuitBreaker, CircuitOpenError, TritonClient, TritonUnavailableError
from serving.triton_env import free_ports


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_closed_open_half_open_closed() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=3, reset_s=10.0, clock=clock)
    assert b.state == "closed"
    for _ in range(2):
        b.before_call()
        b.record_failure()
    assert b.state == "closed"
    b.before_call()
    b.record_success()  # a success resets the consecutive count
    assert b.consecutive_failures == 0
    for _ in range(3):
        b.before_call()
        b.record_failure()
    assert b.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        b.before_call()
    assert 0 < info.value.retry_after_s <= 10.0
    clock.now += 9.9
    assert b.state == "open"
    clock.now += 0.2
    assert b.state == "half_open"
    b.before_call()  # the single trial
    with pytest.raises(CircuitOpenError):
        b.before_call()  # concurrent callers are still refused
    b.record_success()
    assert b.state == "closed"
    b.before_call()


def test_breaker_half_open_failure_reopens() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=1, reset_s=5.0, clock=clock)
    b.before_call()
    b.record_failure()
    assert b.state == "open"
    clock.now += 5.0
    assert b.state == "half_open"
    b.before_call()
    b.record_failure()
    assert b.state == "open"
    with pytest.raises(CircuitOpenError):
        b.before_call()
    clock.now += 5.0
    b.before_call()
    b.release_trial()  # a trial without a verdict (cancelled) lets the next one through
    b.before_call()


def test_breaker_rejects_bad_config() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=0)


async def test_client_retries_then_opens_breaker_without_server() -> None:
    (port,) = free_ports(1)
    triton = TritonSettings(
        grpc_url=f"127.0.0.1:{port}", timeout_s=2.0, max_retries=2, backoff_s=0.05, breaker_failures=2, breaker_reset_s=30.0
    )
    client = TritonClient(triton, ModelSettings())
    try:
        assert await client.ready() is False
        t0 = time.monotonic()
        with pytest.raises(TritonUnavailableError) as info:
            await client.embed(["hello"])
        assert info.value.code == "UNAVAILABLE"
        assert time.monotonic() - t0 >= 0.05 + 0.1  # two backoffs happened
        with pytest.raises(TritonUnavailableError):
            await client.tag(["hello"], 2)
        assert client.breaker.state == "open"
        t0 = time.monotonic()
        with pytest.raises(CircuitOpenError):
            await client.embed(["hello"])
        assert time.monotonic() - t0 < 0.05  # fail fast: no network
    finally:
        await client.close()


async def test_concurrency_limit_is_respected() -> None:
    client = TritonClient(TritonSettings(concurrency=3))
    in_flight = peak = 0

    class Fake:
        async def infer(self, *a, **kw):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return "ok"

        async def close(self):
            pass

    client._client = Fake()
    await asyncio.gather(*(client._infer("m", [], []) for _ in range(12)))
    assert peak == 3
    await client.close()
