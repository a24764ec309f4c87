"""Smoke tests of the embedded stack: each real service works, and `down` leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import httpx
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from descstream.config import Settings
from descstream.stack import LocalStack, StackError, _group_members
from tests.conftest import make_stack


def test_broker_produce_consume(stack: Settings) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"

    async def roundtrip() -> list[bytes]:
        producer = AIOKafkaProducer(**stack.kafka.aiokafka_kwargs(), acks="all")
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, **stack.kafka.aiokafka_kwargs(), auto_offset_reset="earliest",
                                    group_id=f"g-{topic}")
        await consumer.start()
        got: list[bytes] = []
        try:
            while len(got) < 5:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                for records in batch.values():
                    got.extend(r.value for r in records)
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(roundtrip()) == [f"m{i}".encode() for i in range(5)]


def test_redis_set_get(stack: Settings) -> None:
    client = redis.Redis.from_url(stack.redis.url, **stack.redis.client_kwargs())
    key = f"smoke:{uuid.uuid4().hex}"
    client.set(key, "hello")
    assert client.get(key) == b"hello"
    client.delete(key)


def test_triton_ready_with_models(stack: Settings) -> None:
    base = f"http://{stack.triton.http_url}"
    assert httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200
    index = httpx.post(f"{base}/v2/repository/index", json={}, timeout=5).json()
    ready = {m["name"] for m in index if m.get("state") == "READY"}
    assert {stack.models.generator, stack.models.embedder, stack.models.tagger} <= ready


def test_status_reports_all_healthy(local_stack: LocalStack) -> None:
    states = local_stack.status()
    assert [s.name for s in states] == ["kafka", "redis", "triton"]
    assert all(s.healthy and s.pid and s.started_by_us for s in states)


def test_down_leaves_no_process(tmp_path) -> None:
    stack = make_stack(tmp_path)
    stack.up()
    pids = [s.pid for s in stack.status()]
    assert all(pids)
    groups = {pid: _group_members(pid) for pid in pids}
    assert any(len(m) > 1 for m in groups.values()), "Triton should have python stub children"
    assert sorted(stack.down()) == ["kafka", "redis", "triton"]
    for pid in pids:
        assert _group_members(pid) == [], f"process group {pid} still alive"
    assert not any(s.healthy for s in stack.status())


def test_taken_port_is_a_clear_error(tmp_path) -> None:
    stack = make_stack(tmp_path, services=("redis",))
    host, port = stack.settings.redis.url.split("//")[1].split("/")[0].split(":")
    with socket.socket() as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        with pytest.raises(StackError, match="already in use"):
            stack.up()
    assert stack.status()[0].pid is None


def test_reachable_service_is_reused_not_stopped(tmp_path) -> None:
    owner = make_stack(tmp_path / "owner", services=("redis",))
    owner.up()
    try:
        data = owner.settings.model_dump()
        data["stack"]["run_dir"] = str(tmp_path / "guest")
        guest = LocalStack(Settings(**data), services=("redis",))
        guest.up()
        assert guest.status()[0].started_by_us is False
        assert guest.down() == []
        assert owner.status()[0].healthy
    finally:
        owner.down()


def test_redis_password_is_required_and_never_in_state(tmp_path) -> None:
    stack = make_stack(tmp_path, services=("redis",), redis={"password": "s3cret-pass"})
    stack.up()
    try:
        assert stack.status()[0].healthy
        anonymous = redis.Redis.from_url(stack.settings.redis.url)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        assert "s3cret-pass" not in stack.state_file.read_text()
        assert "s3cret-pass" not in repr(stack.settings)
        assert oct(os.stat(stack.run_dir / "redis.conf").st_mode & 0o777) == "0o600"
    finally:
        stack.down()
