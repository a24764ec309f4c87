"""Batch-generate descriptions for a platform's products file: the exported generator + the faithfulness gate.

Input: one JSON object per line in the `products` topic form (`ProductUpsert`, `op` may be omitted).
Output: one JSON per (product, audience): `product_id`, `product_version`, `audience`, `text`, `source`
("generated" when the model's text passed the gate, else "fallback" = `models.gate.fallback_text`),
`gate` {passed, reasons} (the verdict on the *model's* text), `model_text` (the raw model text when it was
replaced), `model_version`, `generated_at`.
Bad input lines (invalid JSON, schema violations, deletes, unknown audiences) are reported with their line
number and reason on stderr and in the returned report; they never stop the batch.

`via`: `local` runs the generator in this process (`models.generation`), `triton` calls the Triton server
through `serving.client` (optional import), `auto` tries Triton and falls back to local if it is not
reachable.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from descstream.schemas import DEFAULT_AUDIENCE

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "serving" / "model_repository" / "desc_generator"


@dataclass
class BatchReport:
    lines: int = 0
    products: int = 0
    outputs: int = 0
    generated: int = 0
    fallback: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    via: str = "local"
    model_version: str = ""


def latest_version_dir(model_dir: Path = DEFAULT_MODEL_DIR) -> Path | None:
    """The highest numbered version that holds exported artefacts."""
    if not model_dir.is_dir():
        return None
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)), reverse=True)
    for v in versions:
        if (model_dir / str(v) / "artifacts").is_dir():
            return model_dir / str(v)
    return None


def read_products(path: str | Path, report: BatchReport) -> list[tuple[int, Any]]:
    from descstream.schemas import InvalidEvent, ProductUpsert, decode_product

    out: list[tuple[int, Any]] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            report.lines += 1
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                if isinstance(data, dict) and "op" not in data:
                    data["op"] = "upsert"
                    raw = json.dumps(data).encode()
                event = decode_product(raw)
            except json.JSONDecodeError as exc:
                report.errors.append((lineno, f"invalid JSON: {exc.msg}"))
                continue
            except InvalidEvent as exc:
                report.errors.append((lineno, str(exc)))
                continue
            if not isinstance(event, ProductUpsert):
                report.errors.append((lineno, "delete event: nothing to generate"))
                continue
            out.append((lineno, event))
    return out


class LocalBackend:
    def __init__(self, version_dir: Path | None, batch_size: int = 8, max_new_tokens: int = 160, tiny: bool = False) -> None:
        from models import base_model, generation

        if tiny:
            self.gen = generation.load_generator(None, base_dir=base_model.resolve_model_dir(tiny=True))
            self.version = "desc_generator/tiny"
        elif version_dir is not None and (version_dir / "artifacts").is_dir():
            self.gen = generation.load_generator(version_dir / "artifacts")
            self.version = f"desc_generator/{version_dir.name}"
        elif version_dir is not None:
            self.gen = generation.load_generator(version_dir)  # a run dir or an artefact folder
            self.version = f"local:{version_dir}"
        else:
            self.gen = generation.load_generator(None)
            self.version = "desc_generator/base"
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def generate(self, pairs: Sequence[tuple[Any, str]], seed: int | None = None) -> list[str]:
        from models.generation import DECODING, generate_for

        decoding = DECODING if seed is None else DECODING.replace(seed=seed)
        texts, _ = generate_for(self.gen, pairs, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                decoding=decoding)
        return texts


class TritonBackend:
    """Calls the `desc_generator` Triton model through `serving.client.TritonClient` (gRPC, retries, breaker).

    Construction checks that the server and model are ready (so `--via auto` can fall back to local).
    Per-item request errors come back as `None` texts (-> fallback text + an error line in the report).
    """

    def __init__(self, max_new_tokens: int = 160) -> None:
        import asyncio

        from descstream.config import load_settings
        from serving import client as triton_client  # optional: only needed for --via triton/auto

        self.mod = triton_client
        self.settings = load_settings()
        self.max_new_tokens = max_new_tokens
        self.version = f"triton:{self.settings.models.generator}"
        self.errors: list[str] = []
        self._loop = asyncio.new_event_loop()
        self.client = triton_client.TritonClient.from_settings(self.settings)
        ok = self._loop.run_until_complete(self.client.ready([self.settings.models.generator]))
        if not ok:
            self.close()
            raise ConnectionError(f"Triton at {self.settings.triton.grpc_url} is not ready (model {self.settings.models.generator})")

    def generate(self, pairs: Sequence[tuple[Any, str]], seed: int | None = None) -> list[str | None]:
        # temperature (and seed unless given) left to ModelSettings (= models.generation.DECODING): as local runs
        reqs = [self.mod.GenerationRequest(product=p, audience=a, max_new_tokens=self.max_new_tokens, seed=seed)
                for p, a in pairs]
        results = self._loop.run_until_complete(self.client.generate(reqs))
        texts: list[str | None] = []
        for r in results:
            if isinstance(r, self.mod.GenerationResult):
                self.version = r.model_version
                texts.append(r.text)
            else:
                texts.append(None)
                self.errors.append(f"{r.code}: {r.message}")
        return texts

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self.client.close())
        finally:
            self._loop.close()


def _resolve_audiences(product: Any, requested: Sequence[str] | None) -> list[str]:
    if requested:
        return list(requested)
    try:
        from models.audiences import audiences_for_category

        auds = [a if isinstance(a, str) else a.name for a in audiences_for_category(product.category)]
        return auds or [DEFAULT_AUDIENCE]
    except Exception:
        return [DEFAULT_AUDIENCE]


def run_batch(
    input_path: str | Path,
    output_path: str | Path,
    audiences: Sequence[str] | None = None,
    via: str = "local",
    model: str | Path | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 160,
    tiny: bool = False,
    log: Any = None,
    candidates: int = 1,
) -> BatchReport:
    """Generate + gate every (product, audience) in `input_path`, writing JSON lines to `output_path`.

    With `candidates` = k > 1, each text is written k times (seeds 0..k-1) and the verifier picks the one to
    publish (`models.verifier.best_candidate`); the gate still falls back when none passes."""
    from models.verifier import best_candidate
    from models import gate
    from models.audiences import load_audiences

    say = log or (lambda m: print(m, file=sys.stderr))
    report = BatchReport(via=via)
    t0 = time.perf_counter()
    products = read_products(input_path, report)
    report.products = len(products)
    known = set(load_audiences())
    bad = [a for a in (audiences or []) if a not in known]
    if bad:
        raise ValueError(f"unknown audience(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")

    backend: Any = None
    if via in ("triton", "auto"):
        try:
            backend = TritonBackend(max_new_tokens=max_new_tokens)
            report.via = "triton"
        except Exception as exc:  # noqa: BLE001
            if via == "triton":
                raise RuntimeError(f"Triton client unavailable: {exc}") from exc
            say(f"Triton not available ({exc}); generating locally")
    if backend is None:
        version_dir = Path(model) if model else latest_version_dir()
        backend = LocalBackend(version_dir, batch_size=batch_size, max_new_tokens=max_new_tokens, tiny=tiny)
        report.via = "local"

    jobs: list[tuple[int, Any, str]] = []
    for lineno, product in products:
        for aud in _resolve_audiences(product, audiences):
            jobs.append((lineno, product, aud))

    out_path = Path(output_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    chunk = max(1, batch_size * 4)
    with open(out_path, "w", encoding="utf-8") as out:
        for start in range(0, len(jobs), chunk):
            part = jobs[start : start + chunk]
            try:
                pairs = [(p, a) for _, p, a in part]
                if candidates == 1:
                    texts = backend.generate(pairs)  # verified once, by the gate in `_record`
                else:
                    runs = [backend.generate(pairs, seed=s) for s in range(candidates)]
                    texts = []
                    for j, (p, a) in enumerate(pairs):
                        cands = [run[j] for run in runs]
                        best, _ = best_candidate(p, a, cands)
                        texts.append(cands[best] if best >= 0 else None)
            except Exception as exc:  # noqa: BLE001 - the model failing is reported per line, never fatal
                texts = [None] * len(part)
                for lineno, _, aud in part:
                    report.errors.append((lineno, f"generation failed for audience {aud}: {exc}"))
            for (lineno, product, aud), text in zip(part, texts):
                if text is None and not any(e[0] == lineno for e in report.errors):
                    report.errors.append((lineno, f"no model output for audience {aud}; fallback text used"))
                rec = _record(product, aud, text, backend.version, gate)
                report.outputs += 1
                report.generated += rec["source"] == "generated"
                report.fallback += rec["source"] == "fallback"
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    report.model_version = backend.version
    if hasattr(backend, "close"):
        backend.close()
    report.seconds = time.perf_counter() - t0
    for lineno, reason in report.errors:
        say(f"line {lineno}: {reason}")
    return report


def _record(product: Any, audience: str, text: str | None, version: str, gate: Any) -> dict[str, Any]:
    if text:
        verdict = gate.judge(product, audience, text)
    else:
        from descstream.schemas import GateVerdict

        verdict = GateVerdict(passed=False, reasons=("no model output",))
    passed = verdict.passed
    return {
        "product_id": product.product_id,
        "product_version": product.version,
        "audience": audience,
        "text": text if passed else gate.fallback_text(product, audience),
        "source": "generated" if passed else "fallback",
        "gate": {"passed": passed, "reasons": list(verdict.reasons)},
        "model_text": None if passed else text,
        "model_version": version,
        "generated_at": datetime.now(timezone.utc).isoformat(),
    }
