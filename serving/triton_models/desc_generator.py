"""Triton Python-backend model `desc_generator`: product (wire JSON) + audience -> a description.

Inputs (each `[1]` per request; `max_batch_size` > 0, so a request is `[B, 1]`, normally B = 1):
  PRODUCT_JSON BYTES   a `ProductUpsert` in wire JSON (`descstream.schemas.encode`)
  AUDIENCE     BYTES   an audience name from `models/audiences.toml`
  MAX_NEW_TOKENS INT32 1..`max_new_tokens_limit`
  TEMPERATURE  FP32    0 = greedy; > 0 = sampling with the request's SEED
  SEED         INT64   per-request RNG seed (same seed + same input -> same text)
Outputs: TEXT BYTES, PROMPT_TOKENS INT32, GENERATED_TOKENS INT32, MODEL_VERSION BYTES (each `[1]`).

- The prompt is rendered by `models.prompt.render_prompt` (the training prompt) and the weights are loaded
  by `models.generation.load_generator` (base / base + LoRA adapter merged / full weights from this
  version's `artifacts/`); text is post-processed with `models.generation.clean_output`.
- `DESCSTREAM_MODEL_MODE=tiny` loads the tiny random-init model of SmolLM2's architecture instead
  (`models.base_model.resolve_model_dir(tiny=True)`, built once and cached) through the same code path.
- Generation: `models.generation.decode_rows`, the same token loop `descstream eval` / `generate` use, with
  the project's default decoding `models.generation.DECODING` (repetition controls, top-k/top-p); one
  batched forward over all valid rows (left padding, KV cache). Each row has its own max_new_tokens,
  temperature and `torch.Generator(seed)`, so one request's output does not depend on its batch-mates'
  parameters or random draws; rows that finish are dropped from the batch (and its KV cache). Optional
  config parameters named like `DecodingConfig` fields (`top_k`, `top_p`, `repetition_penalty`,
  `no_repeat_ngram_size`, `ngram_max_count`, `min_new_tokens`, `hold_stop_for_facts`, `numbers_from_facts`) override `DECODING`; leave them out to
  serve exactly what was evaluated. TEMPERATURE/SEED stay per request.
- Every request is validated on its own: an invalid product, unknown audience, bad parameter or wrong
  dtype/shape yields an INVALID_ARG error for that request only; an over-long prompt is truncated to the
  `max_input_tokens` parameter (seller description shortened first, then the middle of the prompt).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models.generation import DECODING, DecodeRow, DecodingConfig
from serving.triton_models import _common
from serving.triton_models._common import RequestError

log = logging.getLogger("descstream.desc_generator")

DEFAULTS = {
    "max_input_tokens": "768",
    "max_new_tokens_limit": "512",
    "max_product_bytes": "65536",
    "max_temperature": "5.0",
    "torch_threads": "0",
}
#: Model-level decoding fields a config.pbtxt parameter may override (temperature and seed are per request).
DECODING_PARAMETERS = tuple(k for k in DECODING.to_dict() if k not in ("temperature", "seed"))

#: One generation job: a tokenised prompt and its own max_new_tokens, temperature and seed.
Row = DecodeRow


@dataclass(frozen=True)
class Output:
    text: str
    prompt_tokens: int
    generated_tokens: int


class DescGenerator:
    """The generator outside Triton: load, validate/render/tokenise, batched generate. Used by the Triton
    model below and in-process by `serving.bench` (so both run exactly the same code)."""

    def __init__(
        self,
        version_dir: str | Path | None = None,
        *,
        mode: str = "real",
        device: str = "cpu",
        model_name: str = "desc_generator",
        version: str = "1",
        max_input_tokens: int = 768,
        max_new_tokens_limit: int = 512,
        max_product_bytes: int = 65536,
        max_temperature: float = 5.0,
        top_k: int | None = None,
        decoding: DecodingConfig | None = None,
        warmup: bool = True,
    ) -> None:
        from models import base_model, generation

        self.device = device
        self.mode = mode
        self.max_input_tokens = max_input_tokens
        self.max_new_tokens_limit = max_new_tokens_limit
        self.max_product_bytes = max_product_bytes
        self.max_temperature = max_temperature
        self.decoding = decoding or DECODING
        if top_k is not None:
            self.decoding = self.decoding.replace(top_k=top_k)
        self._lock = threading.Lock()
        t0 = time.perf_counter()
        if mode == "tiny":
            tiny = base_model.resolve_model_dir(tiny=True)
            gen = generation.load_generator(None, device=device, base_dir=tiny)
            suffix = "tiny"
        else:
            kind, folder = "base", None
            if version_dir is not None:
                try:
                    kind, folder = generation.find_artifacts(Path(version_dir) / "artifacts")
                except FileNotFoundError:
                    kind, folder = "base", None
            gen = generation.load_generator(folder, device=device)
            card = _common.read_card(Path(version_dir)) if version_dir is not None else {}
            name = card.get("name") or card.get("run_name") or card.get("run") or (folder.name if folder else "")
            suffix = "base" if kind == "base" else f"{kind}:{name}" if name else kind
        self.model = gen.model
        self.tokenizer = gen.tokenizer
        self.tokenizer.padding_side = "left"
        self.model_version = f"{model_name}/{version}-{suffix}"
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.stop_ids = generation.stop_token_ids(self.tokenizer, self.model)
        self.exempt_ids = generation.repetition_exempt_ids(self.tokenizer)
        if warmup:  # the first forward pass pays one-off kernel set-up (seconds): not the first request
            self.generate([Row(tuple(self.tokenizer("warm up", add_special_tokens=False)["input_ids"]), 2, 0.0, 0)])
        self.load_seconds = time.perf_counter() - t0
        log.info("loaded %s on %s in %.1fs", self.model_version, device, self.load_seconds)

    # ---- request -> prompt ----------------------------------------------------------------------

    def row(self, product_json: str | bytes, audience: str, max_new_tokens: Any, temperature: Any, seed: Any) -> Row:
        """A validated request -> a `Row` (prompt ids, parameters, the product's fact tokens)."""
        from models.facts import fact_forms
        from models.generation import fact_token_ids
        from models.number_guard import FactNumbers

        mnt, temp, sd = self.check_params(max_new_tokens, temperature, seed)
        ids, product = self._prompt(product_json, audience)
        return Row(ids, mnt, temp, sd, fact_token_ids(self.tokenizer, product), fact_forms(product),
                   FactNumbers.of_product(product))

    def prompt_ids(self, product_json: str | bytes, audience: str) -> tuple[int, ...]:
        """Validate the product and audience, render the training prompt, tokenise, truncate."""
        return self._prompt(product_json, audience)[0]

    def _prompt(self, product_json: str | bytes, audience: str) -> tuple[tuple[int, ...], Any]:
        from descstream.schemas import InvalidEvent, ProductUpsert, decode_product

        raw = product_json.encode() if isinstance(product_json, str) else bytes(product_json)
        if not raw.strip():
            raise RequestError("PRODUCT_JSON is empty")
        try:
            product = decode_product(raw, max_bytes=self.max_product_bytes)
        except InvalidEvent as exc:
            raise RequestError(f"invalid product: {exc}") from None
        if not isinstance(product, ProductUpsert):
            raise RequestError("PRODUCT_JSON must be an upsert (op='upsert'), not a delete")
        audience = (audience or "").strip()
        _check_audience(audience)
        ids = self._render(product, audience)
        if len(ids) > self.max_input_tokens and product.description:
            # the seller's free text is the usual culprit: shorten it and re-render
            over = len(ids) - self.max_input_tokens
            keep = max(0, len(product.description) - 4 * over - 64)
            product = product.model_copy(update={"description": product.description[:keep]})
            ids = self._render(product, audience)
        if len(ids) > self.max_input_tokens:
            # still too long: keep the instructions (head) and the generation prompt (tail)
            tail = min(32, self.max_input_tokens // 4)
            ids = ids[: self.max_input_tokens - tail] + ids[-tail:]
        return tuple(ids), product

    def _render(self, product: Any, audience: str) -> list[int]:
        from models.prompt import render_prompt

        text = render_prompt(self.tokenizer, product, audience)
        if isinstance(text, (list, tuple)):  # already token ids
            return [int(t) for t in text]
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def check_params(self, max_new_tokens: Any, temperature: Any, seed: Any) -> tuple[int, float, int]:
        mnt = int(max_new_tokens)
        if not 1 <= mnt <= self.max_new_tokens_limit:
            raise RequestError(f"MAX_NEW_TOKENS must be 1..{self.max_new_tokens_limit}, got {mnt}")
        temp = float(temperature)
        if not np.isfinite(temp) or temp < 0 or temp > self.max_temperature:
            raise RequestError(f"TEMPERATURE must be 0..{self.max_temperature}, got {temp}")
        return mnt, temp, int(seed)

    # ---- batched generation ---------------------------------------------------------------------

    def generate(self, rows: Sequence[Row]) -> list[Output]:
        """Generate for all rows in one batch (`models.generation.decode_rows` with `self.decoding`)."""
        from models import generation

        if not rows:
            return []
        with self._lock:
            tokens = generation.decode_rows(self.model, rows, stop_ids=self.stop_ids, pad_id=self.pad_id,
                                            device=self.device, decoding=self.decoding, exempt_ids=self.exempt_ids,
                                            tokenizer=self.tokenizer)
        return [
            Output(text=generation.decode_text(self.tokenizer, toks, self.stop_ids), prompt_tokens=len(row.prompt_ids),
                   generated_tokens=len(toks))
            for row, toks in zip(rows, tokens)
        ]


def decoding_from_parameters(params: dict[str, Any]) -> DecodingConfig:
    """`DECODING`, with any of `DECODING_PARAMETERS` given as config.pbtxt parameters overriding it."""
    changes = {k: DecodingConfig.coerce(k, params[k]) for k in DECODING_PARAMETERS if str(params.get(k, "")).strip()}
    return DECODING.replace(**changes)


def _check_audience(audience: str) -> None:
    if not audience:
        raise RequestError("AUDIENCE is empty")
    try:
        from models.audiences import load_audiences
    except ImportError:  # audiences module absent: accept any sane name
        if len(audience) > 64 or not audience.replace("_", "").replace("-", "").isalnum():
            raise RequestError(f"invalid audience {audience!r}") from None
        return
    known = load_audiences()
    if audience not in known:
        raise RequestError(f"unknown audience {audience!r}; known: {', '.join(sorted(known))}")


class TritonPythonModel:
    """Triton entry point (see module docstring)."""

    def initialize(self, args: dict[str, Any]) -> None:
        params = {**DEFAULTS, **_common.parameters(args)}
        _common.set_threads(params)
        self.gen = DescGenerator(
            _common.version_dir(args),
            mode=_common.model_mode(),
            device=_common.device_for(args),
            model_name=args.get("model_name", "desc_generator"),
            version=str(args["model_version"]),
            max_input_tokens=int(params["max_input_tokens"]),
            max_new_tokens_limit=int(params["max_new_tokens_limit"]),
            max_product_bytes=int(params["max_product_bytes"]),
            max_temperature=float(params["max_temperature"]),
            decoding=decoding_from_parameters(params),
        )

    def _parse(self, request: Any) -> list[Row]:
        g = self.gen
        prod = _common.get_array(request, "PRODUCT_JSON", "bytes")
        aud = _common.get_array(request, "AUDIENCE", "bytes")
        mnt = _common.get_array(request, "MAX_NEW_TOKENS", "int")
        temp = _common.get_array(request, "TEMPERATURE", "float")
        seed = _common.get_array(request, "SEED", "int")
        n = prod.shape[0]
        if any(a.shape[0] != n for a in (aud, mnt, temp, seed)):
            raise RequestError("all inputs must have the same batch size")
        rows = []
        for i in range(n):
            pj = _common.row_scalar(prod, i, "PRODUCT_JSON")
            if not isinstance(pj, (bytes, bytearray)) or not pj:
                raise RequestError("PRODUCT_JSON is empty")
            audience = _common.as_text(_common.row_scalar(aud, i, "AUDIENCE"), "AUDIENCE", 256)
            rows.append(g.row(
                bytes(pj),
                audience,
                _common.row_scalar(mnt, i, "MAX_NEW_TOKENS"),
                _common.row_scalar(temp, i, "TEMPERATURE"),
                _common.row_scalar(seed, i, "SEED"),
            ))
        return rows

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses, good = _common.run_per_request(requests, self._parse)
        flat = [row for _, rows in good for row in rows]
        try:
            outs = self.gen.generate(flat)
        except Exception as exc:  # noqa: BLE001 - report, never crash the model
            log.exception("generation failed")
            for i, _ in good:
                responses[i] = _common.error_response(RuntimeError(f"generation failed: {exc!r}"), internal=True)
            return responses
        k = 0
        for i, rows in good:
            mine, k = outs[k : k + len(rows)], k + len(rows)
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[
                    _common.bytes_tensor("TEXT", [o.text for o in mine]),
                    pb_utils.Tensor("PROMPT_TOKENS", np.array([[o.prompt_tokens] for o in mine], dtype=np.int32)),
                    pb_utils.Tensor("GENERATED_TOKENS", np.array([[o.generated_tokens] for o in mine], dtype=np.int32)),
                    _common.bytes_tensor("MODEL_VERSION", [self.gen.model_version] * len(mine)),
                ]
            )
        return responses

    def finalize(self) -> None:
        self.gen = None
