"""The production compose file is valid (checked offline by docker-compose) and wires what we promise."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed (.ci/run installs it)")


def _config(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT, timeout=60,
    )


def test_compose_config_is_valid_and_complete() -> None:
    result = _config({"REDIS_PASSWORD": "test-password"})
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    services = cfg["services"]
    assert {"kafka", "redis", "triton", "worker", "reader", "prometheus", "topics"} <= set(services)
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    gpu = services["triton"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert "--requirepass" in services["redis"]["command"]
    for published in ("redis", "reader", "prometheus"):
        ports = services[published].get("ports", [])
        assert ports and all(str(p).startswith("127.0.0.1:") for p in ports), ports


def test_compose_refuses_to_start_without_a_redis_password() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD"}
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr
