"""What the agents call out to: the generator/embedder/tagger (Triton), the faithfulness gate, Redis.

Production uses `serving.client.TritonClient` (built with `TritonClient.from_settings(settings)`) and
`models.gate` (one gate: the same `check`/`fallback_text` everywhere). `FakeGenerator` is a test double:
a deterministic in-process generator/embedder/tagger for logic tests, the benchmark and
`--generator fake`; it speaks the real client's types (`GenerationRequest` in, `GenerationResult` /
`GenerationError` out).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from descstream.config import Settings
from descstream.schemas import GateVerdict, ProductUpsert
from models import gate as gate_mod
from models.prompt import format_value
from models.audiences import Audience, get_audience
from serving.client import (
    CircuitOpenError,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    TritonClient,
)

from .redis_store import RedisStore

log = logging.getLogger(__name__)

__all__ = [
    "CircuitOpenError", "Embedder", "FakeGenerator", "Gate", "GenerationError", "GenerationRequest",
    "GenerationResult", "Generator", "Services", "build_triton_client", "is_result", "make_request",
]


class Generator(Protocol):
    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult | GenerationError]: ...


class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...
    async def tag(self, texts: Sequence[str], top_k: int = 3) -> list[list[tuple[str, float]]]: ...


def make_request(product: ProductUpsert, audience: str, settings: Settings) -> GenerationRequest:
    m = settings.models
    return GenerationRequest(
        product=product, audience=audience, max_new_tokens=m.max_new_tokens, temperature=m.temperature, seed=m.seed,
    )


def is_result(r: Any) -> bool:
    return isinstance(r, GenerationResult)


class FakeGenerator:
    """Deterministic, faithful, in-process writer (test double: logic tests, benchmark, `--generator fake`).

    `fail_products`: every request for those product ids fails (retryable, like Triton being down for them).
    `fail_times`: product id -> how many more calls fail before it succeeds (transient outage).
    `unfaithful_products`: the text invents facts (the gate must reject it).
    `model_version`: the version stamped on every result (default "fake-1"; the worker's
    `--generator fake` takes it from `WorkerSettings.fake_model_version`, so a test can "upgrade the
    model" by restarting the worker with another value).
    """

    model_version = "fake-1"

    def __init__(
        self,
        fail_products: Sequence[str] = (),
        unfaithful_products: Sequence[str] = (),
        fail_times: dict[str, int] | None = None,
        model_version: str | None = None,
    ):
        if model_version is not None:
            self.model_version = model_version
        self.calls = 0
        self.texts = 0
        self.fail = set(fail_products)
        self.fail_times = dict(fail_times or {})
        self.unfaithful = set(unfaithful_products)

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult | GenerationError]:
        self.calls += 1
        self.texts += len(requests)
        out: list[GenerationResult | GenerationError] = []
        for r in requests:
            p = r.product
            left = self.fail_times.get(p.product_id, 0)
            if left > 0:
                self.fail_times[p.product_id] = left - 1
                out.append(GenerationError("injected transient failure", "UNAVAILABLE", True))
                continue
            if p.product_id in self.fail:
                out.append(GenerationError("injected failure", "UNAVAILABLE", True))
                continue
            if p.product_id in self.unfaithful:
                text = f"{p.title} by {p.brand}, now 90% off and made of pure gold, a great pick for every trip."
                out.append(GenerationResult(text, 0, 0, self.model_version))
                continue
            facts = ", ".join(f"{k}: {format_value(v)}" for k, v in list(p.attributes.items())[:4])
            brand = f" by {p.brand}" if p.brand else ""
            text = f"[{r.audience}] {p.title}{brand}." + (f" {facts}." if facts else "") + " See the product details for more."
            out.append(GenerationResult(text, 0, 0, self.model_version))
        return out

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "big")
            out[i] = np.random.default_rng(seed).standard_normal(384)
        return out

    async def tag(self, texts: Sequence[str], top_k: int = 3) -> list[list[tuple[str, float]]]:
        return [[("Home > Misc", 1.0)] for _ in texts]


@dataclass(frozen=True)
class Gate:
    """The faithfulness gate (`models.gate`) and audience lookup, injectable for tests.

    `check(product, audience_name, text)` (the verifier's verdict, `models.gate.judge`),
    `fallback_text(product, audience_name)`, `audience(name)`
    (KeyError for an unknown audience).
    """

    check: Callable[[ProductUpsert, str, str], GateVerdict] = gate_mod.judge
    fallback_text: Callable[[ProductUpsert, str], str] = gate_mod.fallback_text
    audience: Callable[[str], Audience] = get_audience

    @classmethod
    def load(cls) -> "Gate":
        return cls(gate_mod.judge, gate_mod.fallback_text, get_audience)


def build_triton_client(settings: Settings) -> TritonClient:
    """The production generator/embedder/tagger."""
    return TritonClient.from_settings(settings)


@dataclass
class Services:
    settings: Settings
    store: RedisStore
    generator: Any
    embedder: Any
    gate: Gate = field(default_factory=Gate.load)

    @classmethod
    def build(cls, settings: Settings, generator: str = "triton") -> "Services":
        store = RedisStore.from_settings(settings)
        if generator == "fake":
            g = FakeGenerator(model_version=settings.worker.fake_model_version)
            return cls(settings, store, g, g)
        if generator != "triton":
            raise ValueError(f"unknown generator {generator!r} (triton or fake)")
        client = build_triton_client(settings)
        return cls(settings, store, client, client)
