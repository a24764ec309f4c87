"""The client rides out a Triton restart (retries on UNAVAILABLE) and its breaker opens and closes as
documented against a real tritonserver, started here via `serving.triton_env.triton_command`."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from descstream.config import ModelSettings, TritonSettings
from serving.client import CircuitOpenError, TritonClient, TritonUnavailableError
from serving.triton_env import free_ports, triton_command

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2] / "serving" / "model_repository"


class Triton:
    """One tritonserver serving only `text_embedder` (fast to load) on fixed ports."""

    def __init__(self, repo: Path, log: Path) -> None:
        self.http, self.grpc, self.metrics = free_ports(3)
        self.argv, self.env = triton_command(repo, self.http, self.grpc, self.metrics, model_mode="tiny")
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(self.log.read_text()[-2000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def triton(tmp_path: Path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "text_embedder", repo / "text_embedder")
    t = Triton(repo, tmp_path / "triton.log")
    t.start()
    yield t
    t.stop()


async def test_retries_across_restart_and_breaker(triton: Triton) -> None:
    settings = TritonSettings(
        grpc_url=f"127.0.0.1:{triton.grpc}", timeout_s=10.0, max_retries=8, backoff_s=0.25,
        breaker_failures=2, breaker_reset_s=1.0,
    )
    client = TritonClient(settings, ModelSettings(mode="tiny"))
    try:
        assert (await client.embed(["before"])).shape == (1, 384)

        # 1. a call made while Triton is down completes once it is back (retries with backoff)
        triton.stop()
        call = asyncio.create_task(client.embed(["during restart"]))
        await asyncio.sleep(0.5)
        assert not call.done()
        await asyncio.to_thread(triton.start)
        assert (await asyncio.wait_for(call, 60)).shape == (1, 384)
        assert client.breaker.state == "closed"

        # 2. no retries: consecutive failures open the breaker, which then fails fast
        triton.stop()
        client.triton = settings.model_copy(update={"max_retries": 0})
        for _ in range(2):
            with pytest.raises(TritonUnavailableError):
                await client.embed(["down"])
        assert client.breaker.state == "open"
        t0 = time.monotonic()
        with pytest.raises(CircuitOpenError):
            await client.embed(["down"])
        assert time.monotonic() - t0 < 0.05

        # 3. after the reset time a failing trial re-opens it; a successful trial closes it
        await asyncio.sleep(1.05)
        assert client.breaker.state == "half_open"
        with pytest.raises(TritonUnavailableError):
            await client.embed(["trial while down"])
        assert client.breaker.state == "open"
        await asyncio.to_thread(triton.start)
        await asyncio.sleep(1.05)
        assert client.breaker.state == "half_open"
        client.triton = settings  # retries again: the channel may still be in its reconnect backoff
        assert (await client.embed(["trial"])).shape == (1, 384)
        assert client.breaker.state == "closed"
        assert await client.ready(["text_embedder"])
    finally:
        await client.close()
