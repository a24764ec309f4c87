"""One settings object for every process, read from `DESCSTREAM_*` variables and an optional TOML file.

Precedence (highest first): explicit keyword arguments, environment variables
(`DESCSTREAM_REDIS__URL`, nested with `__`), the TOML file named by
`DESCSTREAM_CONFIG` (or `descstream.toml` in the working directory), defaults.
Secrets are `SecretStr`, so they print as `**********` in logs, reprs and `stack status`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel):
    """Broker address and optional SASL/TLS (production Kafka); the embedded broker is PLAINTEXT."""

    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers/consumers/admin clients."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            import ssl

            ctx = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            kw["ssl_context"] = ctx
        if self.security_protocol.startswith("SASL"):
            kw["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return kw


class RedisSettings(BaseModel):
    """Redis URL without credentials; username/password are separate so they never print."""

    url: str = "redis://127.0.0.1:16379/0"
    username: str | None = None
    password: SecretStr | None = None
    ssl_ca_certs: str | None = None
    description_ttl_s: int = Field(default=30 * 24 * 3600, ge=0, description="0 = no expiry")
    user_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)

    def client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.username:
            kw["username"] = self.username
        if self.password:
            kw["password"] = self.password.get_secret_value()
        if self.ssl_ca_certs:
            kw["ssl_ca_certs"] = self.ssl_ca_certs
        return kw


class TritonSettings(BaseModel):
    """Where workers reach Triton and how patiently."""

    grpc_url: str = "127.0.0.1:18001"
    http_url: str = "127.0.0.1:18000"
    metrics_port: int = 18002
    protocol: Literal["grpc", "http"] = "grpc"
    timeout_s: float = Field(default=300.0, gt=0, description="per call; a CPU batch of 8 x 160 tokens can take minutes, lower it on GPU")
    max_retries: int = Field(default=4, ge=0)
    backoff_s: float = Field(default=0.2, ge=0)
    concurrency: int = Field(default=16, ge=1)
    breaker_failures: int = Field(default=5, ge=1, description="consecutive failures that open the breaker")
    breaker_reset_s: float = Field(default=10.0, gt=0, description="how long the breaker stays open")


class TopicSettings(BaseModel):
    products: str = "products"
    behavior: str = "user-behavior"
    descriptions: str = "descriptions"
    dead_letter: str = "descstream-dlq"
    generation_requests: str = "descstream-generation-requests"
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class ModelSettings(BaseModel):
    """Triton model names and the generator mode. `tiny` = random-init weights of the same architecture."""

    generator: str = "desc_generator"
    embedder: str = "text_embedder"
    tagger: str = "product_tagger"
    verifier: str = "fact_verifier"
    mode: Literal["tiny", "real"] = "real"
    max_new_tokens: int = Field(default=160, ge=1, le=512, description="a cap: generation stops at the end token")
    temperature: float = Field(
        default=0.7, ge=0,
        description="per-request sampling temperature (0 = greedy); 0.7 = models.generation.DECODING, the evaluated decoding",
    )
    seed: int = Field(default=0, description="per-request seed (same seed + input -> same text)")


class WorkerSettings(BaseModel):
    app_id: str = "descstream"
    store: str = "rocksdb://"
    data_dir: str = ".descstream/worker-data"
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    batch_size: int = Field(default=8, ge=1)
    batch_timeout_s: float = Field(default=0.5, gt=0)
    broker_session_timeout_s: float = 10.0
    broker_heartbeat_interval_s: float = 1.0
    broker_rebalance_timeout_s: float = 5.0
    max_field_bytes: int = Field(default=8192, ge=256, description="larger message fields are dead-lettered")
    generation_max_attempts: int = Field(
        default=6, ge=1,
        description="generation attempts per (product, audience) before the faithful fallback is final",
    )
    generation_retry_base_s: float = Field(
        default=2.0, ge=0,
        description="backoff before the first generation retry; doubles per attempt (2, 4, 8, ... s)",
    )
    generation_retry_max_s: float = Field(default=60.0, ge=0, description="cap of the generation retry backoff")
    generation_park_max_s: float = Field(
        default=1.0, gt=0,
        description="how long a batch of only not-yet-due retries waits before re-sending them",
    )
    audience_interval_s: float = Field(
        default=1.0, gt=0, le=60,
        description="behaviour agent: how often users updated since the last round are re-scored (audience "
        "assignment; switches go to Redis); the most an audience switch waits",
    )
    profile_flush_interval_s: float = Field(
        default=15.0, gt=0, le=60,
        description="behaviour agent: how often updated profiles are written to the table (one changelog "
        "record per user per flush) and their events acknowledged; a crash replays at most this much (or "
        "`profile_flush_max_events`, whichever comes first). A table write costs ~200 us of worker CPU "
        "(measured): longer intervals coalesce more of a user's events into one write, like Kafka Streams' "
        "record cache flushed at its 30 s at-least-once commit interval",
    )
    feature_warmup_products: int = Field(
        default=20_000, ge=0,
        description="behaviour agent: at start, load the features (category, price, embedding) of up to this "
        "many products from Redis in pipelined batches, so a restarted worker catching up on lag does not "
        "stall on one Redis round trip per product it meets (0 = off)",
    )
    blas_threads: int = Field(
        default=1, ge=1, le=64,
        description="BLAS threads in a worker process (threadpoolctl). The behaviour agent's scoring matmuls "
        "are small; multi-threaded BLAS spins its idle threads and takes CPU from the event loop (measured: "
        "2 threads cost ~45 us of worker CPU per behaviour event on 2 cores)",
    )
    profile_flush_max_events: int = Field(
        default=50_000, ge=1,
        description="behaviour agent: flush early once this many events are unacknowledged (bounds memory "
        "and the replay after a crash)",
    )
    fake_model_version: str = Field(
        default="fake-1", min_length=1,
        description="model_version reported by the deterministic test generator (`worker --generator fake`)",
    )
    recovery_consistency_check: bool = Field(
        default=True,
        description="Faust's table-recovery consistency check (a persisted changelog offset above the topic's "
        "end offset is an error). Keep True on Apache Kafka; the embedded broker (Tansu) reports a wrong end "
        "offset, so the local stack, the demo and the tests set it False for that broker only",
    )
    redis_socket_timeout_s: float = Field(
        default=5.0, gt=0, description="Redis socket read/write timeout of the workers (a hung Redis fails fast)",
    )
    redis_socket_connect_timeout_s: float = Field(default=2.0, gt=0, description="Redis connect timeout of the workers")
    redis_health_check_interval_s: int = Field(
        default=15, ge=0, description="PING an idle pooled Redis connection before reuse after this many seconds (0 = off)",
    )
    redis_retry_base_s: float = Field(
        default=0.05, gt=0,
        description="first backoff after a transient Redis error (connection refused/reset, timeout, LOADING, "
        "READONLY); doubles per attempt, with jitter",
    )
    redis_retry_max_delay_s: float = Field(default=2.0, gt=0, description="cap of one Redis retry backoff")
    redis_retry_give_up_s: float = Field(
        default=0.0, ge=0,
        description="how long the workers retry a Redis operation through an outage before the error escapes "
        "(and the worker exits without acknowledging the batch); 0 = retry until Redis is back",
    )


class StackSettings(BaseModel):
    """The embedded local stack: where it keeps PIDs/logs and what it serves."""

    run_dir: str = ".descstream/run"
    model_repository: str = str(REPO_ROOT / "serving" / "model_repository")
    startup_timeout_s: float = Field(default=120.0, gt=0)
    stop_grace_s: float = Field(default=10.0, gt=0)
    bind_host: str = "127.0.0.1"


class ReaderSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8088


class Settings(BaseSettings):
    """Everything configurable in descstream. Build with `Settings()` (env + TOML) or `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="DESCSTREAM_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    triton: TritonSettings = TritonSettings()
    topics: TopicSettings = TopicSettings()
    models: ModelSettings = ModelSettings()
    worker: WorkerSettings = WorkerSettings()
    stack: StackSettings = StackSettings()
    reader: ReaderSettings = ReaderSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("DESCSTREAM_CONFIG", "descstream.toml")
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    def redacted(self) -> dict[str, Any]:
        """A printable dict: secrets masked, passwords inside URLs masked."""
        data = self.model_dump(mode="json")
        data["redis"]["url"] = redact_url(self.redis.url)
        return data


def redact_url(url: str) -> str:
    """`redis://user:secret@host` -> `redis://user:***@host`; URLs without credentials are unchanged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """Split `host:port` or a URL (`redis://h:p/0`) into (host, port)."""
    if "://" in address:
        parts = urlsplit(address)
        return parts.hostname or "127.0.0.1", parts.port or default_port
    first = address.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return (host or "127.0.0.1"), int(port) if port else default_port


def settings_env(settings: Settings) -> dict[str, str]:
    """`DESCSTREAM_*` variables that reproduce `settings` in a child process (worker, reader).

    Secrets travel in the child's environment (never on its command line, where `ps` would show them).
    """
    env: dict[str, str] = {}
    for section, fields in settings.model_dump().items():
        for name, value in fields.items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"DESCSTREAM_{section.upper()}__{name.upper()}"] = str(value)
    return env


def child_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """A child process's whole environment: `base` (default `os.environ`) without any inherited
    `DESCSTREAM_*` variable, plus `settings_env(settings)` and the repository root on PYTHONPATH."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("DESCSTREAM_")}
    env.update(settings_env(settings))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
