"""Prometheus metrics of the stream workers, served on `WorkerSettings.metrics_port` (127.0.0.1).

All metrics live in one module-level registry so a worker process exposes exactly these; tests read them
over HTTP like Prometheus would.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter("descstream_events_in_total", "Events consumed, per topic", ["topic"], registry=REGISTRY)
DEAD_LETTERS = Counter("descstream_dead_letters_total", "Messages sent to the dead-letter topic", ["topic", "reason"], registry=REGISTRY)
PRODUCTS = Counter("descstream_products_total", "Product events by outcome", ["outcome"], registry=REGISTRY)
BEHAVIOUR = Counter("descstream_behaviour_total", "Behaviour events by outcome", ["outcome"], registry=REGISTRY)
AUDIENCE_SWITCHES = Counter("descstream_audience_switches_total", "Users whose audience changed", ["to"], registry=REGISTRY)
GEN_REQUESTS = Counter("descstream_generation_requests_total", "(product, audience) generation jobs by outcome", ["outcome"], registry=REGISTRY)
GENERATED = Counter("descstream_generator_calls_total", "Texts requested from the generator", registry=REGISTRY)
GEN_FAILURES = Counter("descstream_generator_failures_total", "Generator failures by kind", ["kind"], registry=REGISTRY)
BATCH_SIZE = Histogram(
    "descstream_batch_size", "Micro-batch sizes", ["agent"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=REGISTRY
)
TRITON_LATENCY = Histogram(
    "descstream_triton_seconds", "Triton call latency", ["call"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=REGISTRY,
)
GATE = Counter("descstream_gate_verdicts_total", "Faithfulness gate verdicts", ["verdict", "reason"], registry=REGISTRY)
REDIS_WRITES = Counter("descstream_redis_writes_total", "Redis description writes by result", ["result"], registry=REGISTRY)
PUBLISHED = Counter("descstream_descriptions_published_total", "Descriptions published by source", ["source"], registry=REGISTRY)
CONSUMER_LAG = Gauge("descstream_consumer_lag", "Highwater minus committed offset", ["topic", "partition"], registry=REGISTRY)
PROFILE_FLUSHES = Counter("descstream_profile_flushes_total", "Profiles written to the table changelog", registry=REGISTRY)
BEHAVIOUR_ACKED = Counter(
    "descstream_behaviour_acked_total", "Behaviour events acknowledged (their profiles are in the changelog)", registry=REGISTRY,
)
REDIS_RETRIES = Counter(
    "descstream_redis_retries_total", "Redis operations retried after a transient error (outage, timeout, LOADING)",
    ["op"], registry=REGISTRY,
)
REDIS_OUTAGES = Counter("descstream_redis_outages_total", "Redis outages seen (first failed attempt after a success)", registry=REGISTRY)
REDIS_UNAVAILABLE = Gauge("descstream_redis_unavailable", "1 while Redis operations are being retried through an outage", registry=REGISTRY)
AGENT_CRASHES = Counter(
    "descstream_agent_crashes_total", "Unexpected agent errors (the worker exits without acknowledging the batch)",
    ["agent"], registry=REGISTRY,
)

_started: set[int] = set()


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Start the /metrics HTTP server once per port (0 disables)."""
    if port and port not in _started:
        start_http_server(port, addr=host, registry=REGISTRY)
        _started.add(port)
