"""What the agents call out to: the generator/embedder (Triton in production), the gate, Redis.

The streams code only needs these duck-typed protocols, so tests and the benchmark can inject a
deterministic in-process generator (`FakeGenerator`) while production uses `serving.client` (Triton).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from descstream.config import Settings
from descstream.schemas import GateVerdict, ProductUpsert

from .redis_store import RedisStore

log = logging.getLogger(__name__)


class Generator(Protocol):
    async def generate(self, requests: list[Any]) -> list[Any]: ...


class Embedder(Protocol):
    async def embed(self, texts: list[str]) -> np.ndarray: ...
    async def tag(self, texts: list[str], top_k: int) -> list[Any]: ...


@dataclass
class GenRequest:
    """Same fields as `serving.client.GenerationRequest` (used when that module is unavailable)."""

    product: ProductUpsert
    audience: str
    max_new_tokens: int
    temperature: float
    seed: int


@dataclass
class GenResult:
    text: str
    prompt_tokens: int = 0
    generated_tokens: int = 0
    model_version: str = "fake-1"


@dataclass
class GenError:
    message: str
    code: str = "FAKE"
    retryable: bool = True


def make_request(product: ProductUpsert, audience: str, settings: Settings) -> Any:
    try:
        from serving.client import GenerationRequest  # type: ignore

        return GenerationRequest(
            product=product,
            audience=audience,
            max_new_tokens=settings.models.max_new_tokens,
            temperature=settings.models.temperature,
            seed=settings.models.seed,
        )
    except ImportError:
        return GenRequest(product, audience, settings.models.max_new_tokens, settings.models.temperature, settings.models.seed)


def is_result(r: Any) -> bool:
    return r is not None and not isinstance(r, BaseException) and isinstance(getattr(r, "text", None), str)


class FakeGenerator:
    """Deterministic, faithful, in-process writer (tests, benchmark, demo without Triton).

    `fail_products` makes every request for those product ids fail (to test retries/fallbacks).
    """

    model_version = "fake-1"

    def __init__(self, fail_products: Sequence[str] = (), unfaithful_products: Sequence[str] = ()):
        self.calls = 0
        self.texts = 0
        self.fail = set(fail_products)
        self.unfaithful = set(unfaithful_products)

    async def generate(self, requests: list[Any]) -> list[Any]:
        self.calls += 1
        self.texts += len(requests)
        out: list[Any] = []
        for r in requests:
            p: ProductUpsert = r.product
            if p.product_id in self.fail:
                out.append(GenError("injected failure"))
                continue
            if p.product_id in self.unfaithful:
                out.append(GenResult(text=f"{p.title} by {p.brand}, now 90% off and made of pure gold, a great pick for every trip.", model_version=self.model_version))
                continue
            facts = ", ".join(f"{k}: {v}" for k, v in list(p.attributes.items())[:4])
            brand = f" by {p.brand}" if p.brand else ""
            text = f"[{r.audience}] {p.title}{brand}." + (f" {facts}." if facts else "") + " See the product details for more."
            out.append(GenResult(text=text, model_version=self.model_version))
        return out

    async def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "big")
            out[i] = np.random.default_rng(seed).standard_normal(384)
        return out

    async def tag(self, texts: list[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
        return [[("Home > Misc", 1.0)] for _ in texts]


def _fallback_gate_check(product: ProductUpsert, audience: Any, text: str) -> GateVerdict:
    """Minimal numeric-claims check used only while `models.gate` is unavailable."""
    import re

    facts = " ".join([product.title, product.brand or "", str(product.price or ""), *map(str, product.attributes.values())]).lower()
    bad = [n for n in re.findall(r"\d+(?:\.\d+)?", text) if n not in facts]
    if "%" in text or bad:
        return GateVerdict(passed=False, reasons=("unsupported_number",))
    return GateVerdict(passed=True)


def _fallback_text(product: ProductUpsert, audience: Any) -> str:
    parts = [product.title + (f" by {product.brand}" if product.brand else "") + "."]
    if product.attributes:
        parts.append("; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in product.attributes.items()) + ".")
    return " ".join(parts)


@dataclass
class Gate:
    check: Callable[[ProductUpsert, Any, str], GateVerdict]
    fallback_text: Callable[[ProductUpsert, Any], str]
    audience: Callable[[str], Any]

    @classmethod
    def load(cls) -> "Gate":
        from models.audiences import load_audiences

        auds = load_audiences()
        try:
            from models import gate  # type: ignore

            return cls(gate.check, gate.fallback_text, auds.__getitem__)
        except ImportError:
            log.warning("models.gate not available: using the minimal built-in gate")
            return cls(_fallback_gate_check, _fallback_text, auds.__getitem__)


def build_triton_client(settings: Settings) -> Any:
    """The production generator/embedder: `serving.client` built from Settings."""
    from serving import client as sc  # type: ignore

    for name in ("from_settings", "build_client", "make_client", "create_client"):
        fn = getattr(sc, name, None)
        if callable(fn):
            return fn(settings)
    for name in ("TritonClient", "Client", "AsyncTritonClient"):
        cls = getattr(sc, name, None)
        if cls is not None:
            if hasattr(cls, "from_settings"):
                return cls.from_settings(settings)
            return cls(settings)
    raise RuntimeError("serving.client exposes no known client factory")


def circuit_open_error() -> type[BaseException]:
    try:
        from serving.client import CircuitOpenError  # type: ignore

        return CircuitOpenError
    except ImportError:
        class _Never(Exception):
            pass

        return _Never


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
            g = FakeGenerator()
            return cls(settings, store, g, g)
        client = build_triton_client(settings)
        return cls(settings, store, client, client)
