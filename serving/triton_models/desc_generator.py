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
- Generation: one batched forward over all valid rows (left padding, KV cache). Each row has its own
  max_new_tokens, temperature and `torch.Generator(seed)`, so one request's output does not depend on its
  batch-mates' parameters or random draws; rows that finish are dropped from the batch (and its KV cache).
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

from serving.triton_models import _common
from serving.triton_models._common import RequestError

log = logging.getLogger("descstream.desc_generator")

DEFAULTS = {
    "max_input_tokens": "768",
    "max_new_tokens_limit": "512",
    "max_product_bytes": "65536",
    "max_temperature": "5.0",
    "top_k": "50",
    "torch_threads": "0",
}


@dataclass(frozen=True)
class Row:
    """One generation job: a tokenised prompt and its own decoding parameters."""

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float
    seed: int


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
        top_k: int = 50,
        warmup: bool = True,
    ) -> None:
        from models import base_model, generation

        self.device = device
        self.mode = mode
        self.max_input_tokens = max_input_tokens
        self.max_new_tokens_limit = max_new_tokens_limit
        self.max_product_bytes = max_product_bytes
        self.max_temperature = max_temperature
        self.top_k = top_k
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
        self.stop_ids = self._stop_ids()
        self._clean = generation.clean_output
        if warmup:  # the first forward pass pays one-off kernel set-up (seconds): not the first request
            self.generate([Row(tuple(self.tokenizer("warm up", add_special_tokens=False)["input_ids"]), 2, 0.0, 0)])
        self.load_seconds = time.perf_counter() - t0
        log.info("loaded %s on %s in %.1fs", self.model_version, device, self.load_seconds)

    def _stop_ids(self) -> frozenset[int]:
        tok = self.tokenizer
        ids: set[int] = set()
        for t in ("<|im_end|>", tok.eos_token):
            if t:
                i = tok.convert_tokens_to_ids(t)
                if isinstance(i, int) and i >= 0 and i != tok.unk_token_id:
                    ids.add(i)
        gc = getattr(self.model, "generation_config", None)
        eos = getattr(gc, "eos_token_id", None) if gc is not None else None
        for i in eos if isinstance(eos, (list, tuple)) else [eos]:
            if isinstance(i, int) and i >= 0:
                ids.add(i)
        return frozenset(ids)

    # ---- request -> prompt ----------------------------------------------------------------------

    def prompt_ids(self, product_json: str | bytes, audience: str) -> tuple[int, ...]:
        """Validate the product and audience, render the training prompt, tokenise, truncate."""
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
        return tuple(ids)

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
        """Generate for all rows in one batch (left padding + KV cache, per-row params and RNG)."""
        if not rows:
            return []
        with self._lock:
            tokens = self._generate_ids(rows)
        outs = []
        for row, toks in zip(rows, tokens):
            body = toks[:-1] if toks and toks[-1] in self.stop_ids else toks
            text = self._clean(self.tokenizer.decode(body, skip_special_tokens=True))
            outs.append(Output(text=text, prompt_tokens=len(row.prompt_ids), generated_tokens=len(toks)))
        return outs

    def _generate_ids(self, rows: Sequence[Row]) -> list[list[int]]:
        import torch

        dev = self.device
        n = len(rows)
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r.prompt_ids:
                ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids, dtype=torch.long)
                mask[i, width - len(r.prompt_ids) :] = 1
        mask[:, -1] = 1  # an empty prompt still needs one visible position
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = []
        for r in rows:
            g = torch.Generator(device=dev)
            g.manual_seed(r.seed & 0xFFFF_FFFF_FFFF_FFFF)
            gens.append(g)
        out_tokens: list[list[int]] = [[] for _ in rows]
        active = list(range(n))  # original row index of each batch position
        with torch.inference_mode():
            res = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
            cache = res.past_key_values
            logits = res.logits[:, -1, :]
            last_pos = pos[:, -1]
            while True:
                nxt = self._choose(logits, [rows[i] for i in active], [gens[i] for i in active])
                keep: list[int] = []
                for b, i in enumerate(active):
                    t = int(nxt[b])
                    out_tokens[i].append(t)
                    if t not in self.stop_ids and len(out_tokens[i]) < rows[i].max_new_tokens:
                        keep.append(b)
                if not keep:
                    break
                if len(keep) < len(active):
                    sel = torch.tensor(keep, dtype=torch.long, device=dev)
                    cache.batch_select_indices(sel)
                    mask, last_pos, nxt = mask[sel], last_pos[sel], nxt[sel]
                    active = [active[b] for b in keep]
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                last_pos = last_pos + 1
                res = self.model(
                    input_ids=nxt.view(-1, 1),
                    attention_mask=mask,
                    position_ids=last_pos.view(-1, 1),
                    past_key_values=cache,
                    use_cache=True,
                )
                cache = res.past_key_values
                logits = res.logits[:, -1, :]
        return out_tokens

    def _choose(self, logits: Any, rows: Sequence[Row], gens: Sequence[Any]) -> Any:
        import torch

        nxt = logits.argmax(dim=-1)
        for b, (r, g) in enumerate(zip(rows, gens)):
            if r.temperature > 0:
                row = logits[b].float() / r.temperature
                if self.top_k > 0:
                    kth = torch.topk(row, min(self.top_k, row.shape[-1])).values[-1]
                    row = row.masked_fill(row < kth, float("-inf"))
                probs = torch.softmax(row, dim=-1)
                nxt[b] = torch.multinomial(probs, 1, generator=g)[0]
        return nxt


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
            top_k=int(params["top_k"]),
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
            m, t, s = g.check_params(
                _common.row_scalar(mnt, i, "MAX_NEW_TOKENS"),
                _common.row_scalar(temp, i, "TEMPERATURE"),
                _common.row_scalar(seed, i, "SEED"),
            )
            rows.append(Row(g.prompt_ids(bytes(pj), audience), m, t, s))
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
