"""Shared test harness: isolated settings on one live broker/Redis, a worker subprocess, polling.

Every suite that runs `descstream worker` as a real process (streams, ops, reliability) uses this one
module, so the way tests start, configure and stop workers is the same everywhere.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from descstream.config import REPO_ROOT, Settings, child_env

# Small group-coordination timeouts: Tansu waits for the rebalance timeout on every join.
FAST_WORKER = {
    "broker_session_timeout_s": 6.0,
    "broker_heartbeat_interval_s": 0.5,
    "broker_rebalance_timeout_s": 3.0,
    "batch_size": 8,
    "batch_timeout_s": 0.2,
    # the embedded broker (Tansu) reports wrong end offsets; production Kafka keeps the check (see WorkerSettings)
    "recovery_consistency_check": False,
}


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


class WorkerProc:
    """`python -m streams.cli worker` in its own process group, configured only through DESCSTREAM_* env."""

    def __init__(self, settings: Settings, log: Path, *extra: str, generator: str = "fake",
                 env: dict[str, str] | None = None):
        self.settings = settings
        self.log = log
        self.fh = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--generator", generator, *extra],
            env={**child_env(settings), **(env or {})}, cwd=str(REPO_ROOT), stdout=self.fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the worker's group and wait; escalate to SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.fh.close()

    def stop(self) -> None:
        """Graceful stop (SIGTERM)."""
        self.kill(signal.SIGTERM)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


async def wait_for(pred: Callable[[], Awaitable[Any]], timeout: float = 45.0, interval: float = 0.2,
                   what: str = "condition") -> Any:
    """Poll `pred` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await pred()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")
