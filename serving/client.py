"""Async Triton client for the stream workers: generate descriptions, embed texts, tag products, verify sentences.

Built on `tritonclient.grpc.aio` with one reused gRPC channel (`TritonClient.from_settings(settings)`).

Resilience, configured by `descstream.config.TritonSettings`:
- **timeout**: every RPC has a deadline of `timeout_s`.
- **retries**: an RPC that fails with UNAVAILABLE (server down/restarting, connection refused or reset)
  is retried up to `max_retries` times with exponential backoff `backoff_s * 2**attempt` (+ up to 25 %
  jitter, capped at 10 s). Other errors are not retried: INVALID_ARGUMENT is the request's fault and
  DEADLINE_EXCEEDED means the server is overloaded (retrying would add load).
- **circuit breaker** (`CircuitBreaker`), counted per RPC after its retries:
    CLOSED    normal. Each transport failure (UNAVAILABLE after retries, DEADLINE_EXCEEDED, INTERNAL,
              connection errors) adds one to a consecutive-failure count; any success resets it.
              `breaker_failures` consecutive failures -> OPEN.
    OPEN      every call raises `CircuitOpenError` at once, without touching the network, until
              `breaker_reset_s` have passed since it opened -> HALF_OPEN.
    HALF_OPEN one trial RPC is let through (concurrent callers still get `CircuitOpenError`):
              success -> CLOSED (count reset); failure -> OPEN again for another `breaker_reset_s`.
  Request errors (INVALID_ARGUMENT, e.g. an invalid product) mean the server is healthy: they count as
  successes for the breaker.
- **concurrency**: at most `concurrency` RPCs in flight from one client (an `asyncio.Semaphore`).

`generate` sends one RPC per item, all concurrently, so Triton's dynamic batcher batches them, and every
RPC carries every input (requests that omit an optional input are never batched with ones that send it).
It returns, in order, a `GenerationResult` or a `GenerationError` per item: one bad product never fails the
others. It raises `CircuitOpenError` when the breaker is open before the call, and `TritonUnavailableError`
when *every* item failed for a transient reason (server down): the caller should back off, not dead-letter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from descstream.config import ModelSettings, Settings, TritonSettings
from descstream.schemas import DEFAULT_AUDIENCE, ProductUpsert, encode

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger("descstream.serving.client")

EMBED_DIM = 384
EMBED_BATCH = 64  # text_embedder / product_tagger max_batch_size
RETRYABLE = {"UNAVAILABLE"}
BREAKER_FAILURES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "RESOURCE_EXHAUSTED", "CANCELLED", "CONNECTION"}


# ------------------------------------------------------------------------------------------ errors

class TritonClientError(Exception):
    """Base class; `code` is the gRPC status name (e.g. 'UNAVAILABLE', 'INVALID_ARGUMENT')."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code

    @property
    def retryable(self) -> bool:
        return self.code in BREAKER_FAILURES


class CircuitOpenError(TritonClientError):
    """The circuit breaker is open: Triton failed repeatedly; calls fail fast until the reset time."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"Triton circuit breaker is open; retry in {retry_after_s:.1f}s", "CIRCUIT_OPEN")
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return True


class TritonUnavailableError(TritonClientError):
    """Triton could not be reached (after retries) or timed out."""


class TritonRequestError(TritonClientError):
    """Triton rejected the request (INVALID_ARGUMENT etc.): retrying will not help."""


# ------------------------------------------------------------------------------------------ types

@dataclass(frozen=True)
class GenerationRequest:
    """One description to write. `None` parameters take `ModelSettings` defaults."""

    product: ProductUpsert
    audience: str = DEFAULT_AUDIENCE
    max_new_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    text: str
    prompt_tokens: int
    generated_tokens: int
    model_version: str


@dataclass(frozen=True)
class GenerationError:
    """Why one item failed. `retryable` = transient (server/transport), else the request itself is bad."""

    message: str
    code: str
    retryable: bool


# ------------------------------------------------------------------------------------------ breaker

class CircuitBreaker:
    """closed -> open after `failures` consecutive failures -> half-open after `reset_s` -> closed on success.

    See the module docstring. `clock` is injectable for tests. Not thread-safe (one event loop).
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failures: int = 5, reset_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or reset_s <= 0:
            raise ValueError("failures must be >= 1 and reset_s > 0")
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._state = self.CLOSED
        self._count = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        if self._state == self.OPEN and self._clock() - self._opened_at >= self.reset_s:
            self._state = self.HALF_OPEN
            self._trial_in_flight = False
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._count

    def before_call(self) -> None:
        """Raise `CircuitOpenError` unless a call may go out now (in half-open: only the one trial)."""
        state = self.state
        if state == self.OPEN:
            raise CircuitOpenError(self.reset_s - (self._clock() - self._opened_at))
        if state == self.HALF_OPEN:
            if self._trial_in_flight:
                raise CircuitOpenError(0.0)
            self._trial_in_flight = True

    def record_success(self) -> None:
        if self._state != self.CLOSED:
            log.info("Triton circuit breaker closed")
        self._state = self.CLOSED
        self._count = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._count += 1
        self._trial_in_flight = False
        if self._state == self.HALF_OPEN or (self._state == self.CLOSED and self._count >= self.failures):
            if self._state == self.CLOSED:
                log.warning("Triton circuit breaker open after %d consecutive failures", self._count)
            self._state = self.OPEN
            self._opened_at = self._clock()

    def release_trial(self) -> None:
        """A half-open trial ended without a verdict (e.g. cancelled): let another trial go."""
        self._trial_in_flight = False


# ------------------------------------------------------------------------------------------ client

def from_settings(settings: Settings) -> "TritonClient":
    """`TritonClient.from_settings(settings)`."""
    return TritonClient.from_settings(settings)


def _status(exc: BaseException) -> str:
    """gRPC status name of a tritonclient exception ('StatusCode.UNAVAILABLE' -> 'UNAVAILABLE')."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        st = str(exc.status() or "")
        if st:
            return st.rsplit(".", 1)[-1].upper()
        msg = str(exc.message() if hasattr(exc, "message") else exc).lower()
        if "connect" in msg or "unavailable" in msg or "refused" in msg:
            return "UNAVAILABLE"
        return "UNKNOWN"
    if isinstance(exc, (ConnectionError, OSError)):
        return "UNAVAILABLE"
    if isinstance(exc, asyncio.TimeoutError):
        return "DEADLINE_EXCEEDED"
    return "UNKNOWN"


class TritonClient:
    """One gRPC connection to Triton with timeouts, retries, a circuit breaker and a concurrency limit."""

    def __init__(
        self,
        triton: TritonSettings | Settings | None = None,
        models: ModelSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(triton, Settings):  # TritonClient(settings) works too
            models = models or triton.models
            triton = triton.triton
        self.triton = triton or TritonSettings()
        self.models = models or ModelSettings()
        self.breaker = CircuitBreaker(self.triton.breaker_failures, self.triton.breaker_reset_s, clock)
        self._sem = asyncio.Semaphore(self.triton.concurrency)
        self._client: Any = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "TritonClient":
        return cls(settings.triton, settings.models)

    async def __aenter__(self) -> "TritonClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _conn(self) -> Any:
        if self._closed:
            raise TritonClientError("client is closed", "CLOSED")
        if self._client is None:
            import tritonclient.grpc.aio as grpcclient

            self._client = grpcclient.InferenceServerClient(
                self.triton.grpc_url,
                channel_args=[
                    # reconnect quickly after a Triton restart (gRPC's default backoff grows to 120 s)
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                    ("grpc.max_send_message_length", 64 * 1024 * 1024),
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ],
            )
        return self._client

    async def close(self) -> None:
        """Close the connection (idempotent). The client cannot be used afterwards."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def ready(self, models: Sequence[str] | None = None) -> bool:
        """Server ready and (if given) these models ready. Never raises; ignores the breaker."""
        try:
            client = self._conn()
            timeout = min(self.triton.timeout_s, 5.0)
            if not await client.is_server_ready(client_timeout=timeout):
                return False
            for m in models or ():
                if not await client.is_model_ready(m, client_timeout=timeout):
                    return False
            return True
        except Exception:  # noqa: BLE001
            return False

    # ---- one RPC with retries + breaker ---------------------------------------------------------

    async def _infer(self, model: str, inputs: list[Any], outputs: list[str]) -> Any:
        self.breaker.before_call()
        verdict = False
        try:
            result = await self._infer_with_retries(model, inputs, outputs)
            self.breaker.record_success()
            verdict = True
            return result
        except TritonRequestError:
            self.breaker.record_success()  # the server answered: it is healthy
            verdict = True
            raise
        except TritonUnavailableError:
            self.breaker.record_failure()
            verdict = True
            raise
        finally:
            if not verdict:
                self.breaker.release_trial()

    async def _infer_with_retries(self, model: str, inputs: list[Any], outputs: list[str]) -> Any:
        import tritonclient.grpc.aio as grpcclient

        req_outputs = [grpcclient.InferRequestedOutput(o) for o in outputs]
        attempt = 0
        while True:
            try:
                async with self._sem:
                    return await self._conn().infer(
                        model, inputs, outputs=req_outputs, client_timeout=self.triton.timeout_s
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                code = _status(exc)
                msg = str(exc)
                if code in RETRYABLE and attempt < self.triton.max_retries:
                    delay = min(10.0, self.triton.backoff_s * (2**attempt)) * (1 + random.random() * 0.25)
                    log.debug("Triton %s on %s; retry %d in %.2fs", code, model, attempt + 1, delay)
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                if code in BREAKER_FAILURES:
                    raise TritonUnavailableError(f"{model}: {msg}", code) from None
                raise TritonRequestError(f"{model}: {msg}", code) from None

    # ---- generate -------------------------------------------------------------------------------

    def _gen_inputs(self, req: GenerationRequest) -> list[Any]:
        import tritonclient.grpc.aio as grpcclient

        m = self.models
        mnt = m.max_new_tokens if req.max_new_tokens is None else int(req.max_new_tokens)
        temp = m.temperature if req.temperature is None else float(req.temperature)
        seed = m.seed if req.seed is None else int(req.seed)
        arrays = [
            ("PRODUCT_JSON", np.array([[encode(req.product)]], dtype=np.object_), "BYTES"),
            ("AUDIENCE", np.array([[str(req.audience).encode()]], dtype=np.object_), "BYTES"),
            ("MAX_NEW_TOKENS", np.array([[mnt]], dtype=np.int32), "INT32"),
            ("TEMPERATURE", np.array([[temp]], dtype=np.float32), "FP32"),
            ("SEED", np.array([[seed]], dtype=np.int64), "INT64"),
        ]
        inputs = []
        for name, arr, dtype in arrays:
            inp = grpcclient.InferInput(name, list(arr.shape), dtype)
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
        return inputs

    async def _generate_one(self, req: GenerationRequest) -> GenerationResult | GenerationError:
        try:
            inputs = self._gen_inputs(req)
        except Exception as exc:  # noqa: BLE001 - a bad item is that item's error
            return GenerationError(f"could not encode request: {exc}", "INVALID_ARGUMENT", False)
        try:
            res = await self._infer(
                self.models.generator, inputs, ["TEXT", "PROMPT_TOKENS", "GENERATED_TOKENS", "MODEL_VERSION"]
            )
        except CircuitOpenError as exc:
            return GenerationError(str(exc), exc.code, True)
        except TritonClientError as exc:
            return GenerationError(str(exc), exc.code, exc.retryable)
        text = res.as_numpy("TEXT").reshape(-1)[0]
        version = res.as_numpy("MODEL_VERSION").reshape(-1)[0]
        return GenerationResult(
            text=text.decode("utf-8") if isinstance(text, bytes) else str(text),
            prompt_tokens=int(res.as_numpy("PROMPT_TOKENS").reshape(-1)[0]),
            generated_tokens=int(res.as_numpy("GENERATED_TOKENS").reshape(-1)[0]),
            model_version=version.decode("utf-8") if isinstance(version, bytes) else str(version),
        )

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult | GenerationError]:
        """One result or error per request, in order (see the module docstring for what raises)."""
        if not requests:
            return []
        if self.breaker.state == CircuitBreaker.OPEN:
            self.breaker.before_call()  # raises CircuitOpenError without touching the network
        out = await asyncio.gather(*(self._generate_one(r) for r in requests))
        if all(isinstance(o, GenerationError) and o.retryable for o in out):
            first = out[0]
            assert isinstance(first, GenerationError)
            if first.code == "CIRCUIT_OPEN":
                raise CircuitOpenError(0.0)
            raise TritonUnavailableError(f"all {len(out)} generation requests failed: {first.message}", first.code)
        return list(out)

    # ---- embed / tag ----------------------------------------------------------------------------

    @staticmethod
    def _text_input(texts: Sequence[str]) -> Any:
        import tritonclient.grpc.aio as grpcclient

        arr = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        inp = grpcclient.InferInput("TEXT", list(arr.shape), "BYTES")
        inp.set_data_from_numpy(arr)
        return inp

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> list[str]:
        out = [str(t) for t in texts]
        for i, t in enumerate(out):
            if not t:
                raise ValueError(f"text {i} is empty")
        return out

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """`(len(texts), 384)` float32, unit-norm rows. Raises `ValueError` for an empty text."""
        texts = self._check_texts(texts)
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        chunks = [texts[i : i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]

        async def one(chunk: list[str]) -> np.ndarray:
            res = await self._infer(self.models.embedder, [self._text_input(chunk)], ["EMBEDDING"])
            return res.as_numpy("EMBEDDING").astype(np.float32, copy=False)

        parts = await asyncio.gather(*(one(c) for c in chunks))
        return np.concatenate(parts, axis=0)

    async def tag(self, texts: Sequence[str], top_k: int = 3) -> list[list[tuple[str, float]]]:
        """Per text, up to `top_k` `(label, score)` pairs, best first."""
        import tritonclient.grpc.aio as grpcclient

        texts = self._check_texts(texts)
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        chunks = [texts[i : i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]

        async def one(chunk: list[str]) -> list[list[tuple[str, float]]]:
            k = grpcclient.InferInput("TOP_K", [len(chunk), 1], "INT32")
            k.set_data_from_numpy(np.full((len(chunk), 1), top_k, dtype=np.int32))
            res = await self._infer(self.models.tagger, [self._text_input(chunk), k], ["LABELS", "SCORES"])
            labels, scores = res.as_numpy("LABELS"), res.as_numpy("SCORES")
            rows = []
            for lab_row, sc_row in zip(labels.reshape(len(chunk), -1), scores.reshape(len(chunk), -1)):
                rows.append([
                    (lab.decode("utf-8") if isinstance(lab, bytes) else str(lab), float(sc))
                    for lab, sc in zip(lab_row, sc_row)
                    if lab
                ])
            return rows

        parts = await asyncio.gather(*(one(c) for c in chunks))
        return [row for part in parts for row in part]

    # ---- fact verifier --------------------------------------------------------------------------

    async def verify_sentences(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """P(sentence not supported by the facts) per `(facts_text, sentence)` pair, in order.

        `facts_text` is `models.verifier.learned.facts_text(product)`; compare with the threshold in the
        model's `verifier_config.json` (`SentenceVerifier.load(...).threshold`). Raises `ValueError` for an
        empty facts text or sentence.
        """
        import tritonclient.grpc.aio as grpcclient

        pairs = [(str(f), str(s)) for f, s in pairs]
        for i, (f, s) in enumerate(pairs):
            if not f or not s:
                raise ValueError(f"pair {i} has an empty {'facts text' if not f else 'sentence'}")
        if not pairs:
            return []
        chunks = [pairs[i : i + EMBED_BATCH] for i in range(0, len(pairs), EMBED_BATCH)]

        def column(name: str, values: list[str]) -> Any:
            arr = np.array([[v.encode("utf-8")] for v in values], dtype=np.object_)
            inp = grpcclient.InferInput(name, list(arr.shape), "BYTES")
            inp.set_data_from_numpy(arr)
            return inp

        async def one(chunk: list[tuple[str, str]]) -> list[float]:
            inputs = [column("FACTS", [f for f, _ in chunk]), column("SENTENCE", [s for _, s in chunk])]
            res = await self._infer(self.models.verifier, inputs, ["P_UNSUPPORTED"])
            return [float(x) for x in res.as_numpy("P_UNSUPPORTED").reshape(-1)]

        parts = await asyncio.gather(*(one(c) for c in chunks))
        return [p for part in parts for p in part]
