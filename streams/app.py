"""The Faust app factory: one app per worker process, built from `Settings`.

`create_app(settings, services)` returns a `faust.App` with the product, behaviour and generation agents
registered (each in its own module) plus the consumer-lag timer. Delivery is at-least-once (the
embedded broker has no transactions, and neither do we need them): every sink is idempotent (the Redis
writes are versioned compare-and-set in Lua), so re-processing after a crash is harmless. An agent never
acknowledges a batch it failed on: Redis outages are retried inside `RedisStore`, any other error exits the
process without acknowledging (`streams/fatal.py`).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import faust

from descstream.config import Settings

from . import metrics
from .services import Services

log = logging.getLogger(__name__)


def broker_credentials(settings: Settings) -> Any:
    """Faust `broker_credentials` from KafkaSettings (None for PLAINTEXT)."""
    k = settings.kafka
    ctx = None
    if k.security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=k.ssl_cafile)
        if k.ssl_certfile:
            ctx.load_cert_chain(k.ssl_certfile, k.ssl_keyfile)
    if k.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            mechanism=k.sasl_mechanism or "PLAIN",
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def broker_url(settings: Settings) -> str:
    return ";".join("kafka://" + h.strip() for h in settings.kafka.bootstrap_servers.split(",") if h.strip())


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    generator: str = "triton",
    agents: tuple[str, ...] = ("products", "behavior", "generation"),
    web_port: int | None = None,
    data_dir: str | None = None,
) -> faust.App:
    w = settings.worker
    kw: dict[str, Any] = {}
    creds = broker_credentials(settings)
    if creds is not None:
        kw["broker_credentials"] = creds
    app = faust.App(
        w.app_id,
        broker=broker_url(settings),
        store=w.store,
        datadir=str(Path(data_dir or w.data_dir)),
        processing_guarantee="at_least_once",
        broker_session_timeout=w.broker_session_timeout_s,
        broker_heartbeat_interval=w.broker_heartbeat_interval_s,
        broker_rebalance_timeout=w.broker_rebalance_timeout_s,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        web_enabled=True,
        web_bind=w.web_host,
        web_host=w.web_host,
        web_port=web_port if web_port is not None else w.web_port,
        table_cleanup_interval=60.0,
        producer_acks=-1,
        # table changelog records of a micro-batch are queued together: let them share produce requests
        producer_linger=0.005,
        # True on Apache Kafka. The embedded broker (Tansu) reports a wrong end offset (its last batch's base
        # offset + 1), so recovery would find its own persisted offset "above the highwater" and exit with
        # ConsistencyError: the local stack, demo and tests set WorkerSettings.recovery_consistency_check=False.
        recovery_consistency_check=w.recovery_consistency_check,
        **kw,
    )
    services = services or Services.build(settings, generator=generator)
    app.descstream_services = services  # type: ignore[attr-defined]

    from . import behaviour_agent, generation_agent, product_agent

    topics = settings.topics
    app.dlq_topic = app.topic(topics.dead_letter, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")  # type: ignore[attr-defined]
    app.gen_topic = app.topic(  # type: ignore[attr-defined]
        topics.generation_requests, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        partitions=topics.partitions,
    )
    app.desc_topic = app.topic(topics.descriptions, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")  # type: ignore[attr-defined]
    if "products" in agents:
        product_agent.register(app, settings, services)
    if "behavior" in agents:
        behaviour_agent.register(app, settings, services)
    if "generation" in agents:
        generation_agent.register(app, settings, services)

    @app.timer(interval=5.0)
    async def _lag() -> None:  # consumer lag gauge, best effort
        consumer = app.consumer
        try:
            for tp in consumer.assignment():
                hw = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp)  # noqa: SLF001 - no public accessor
                if hw is not None:
                    metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, hw - (committed or 0)))
        except Exception:  # pragma: no cover - metrics must never break the worker
            pass

    return app
