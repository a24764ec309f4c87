"""`descstream verify`: check texts from anywhere (another system, an editor's rewrite) against the
products they describe, the same way the publishing gate does.

Input: products as the `products` topic carries them (JSON, one per line) and texts as JSON lines with
`product_id`, `audience` (default `default`) and `text`. Output: one line per text,
`{"product_id", "audience", "ok", "errors": [{"type", "span", "why"}]}`, in input order. A bad line
(unparseable JSON, an invalid product, a text whose product is missing) is reported with its line
number and skipped; it never stops the run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from descstream.schemas import DEFAULT_AUDIENCE, ProductUpsert

from models.verifier import SentenceScorer, verify_many


@dataclass
class VerifyReport:
    texts: int = 0
    ok: int = 0
    flagged: int = 0
    errors: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, reason)
    seconds: float = 0.0
    learned: str = "off"


def read_products(path: Path, report: VerifyReport) -> dict[str, ProductUpsert]:
    out: dict[str, ProductUpsert] = {}
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if data.get("op", "upsert") != "upsert":
                    continue
                product = ProductUpsert.model_validate(data)
            except (json.JSONDecodeError, ValidationError, AttributeError) as exc:
                report.errors.append((str(path), i, _one_line(exc)))
                continue
            out[product.product_id] = product
    return out


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def load_scorer(mode: str) -> tuple[SentenceScorer | None, float, str]:
    """The learned sentence scorer: `off`, `local` (in-process), `triton`, or `auto` (local if its
    artefacts exist, else off). Returns (scorer, threshold, description)."""
    if mode == "off":
        return None, 1.0, "off"
    from models.verifier import learned

    if mode == "triton":
        return _triton_scorer(learned)
    folder = learned.default_artifacts_dir()
    if not (folder / "verifier_config.json").is_file():
        if mode == "auto":
            return None, 1.0, "off (no fact_verifier artefacts)"
        raise FileNotFoundError(f"no learned verifier in {folder} (train one with python -m models.verifier.train)")
    model = learned.SentenceVerifier.load(folder)
    return model.unsupported_probs, model.threshold, f"local ({folder})"


def _triton_scorer(learned: Any) -> tuple[SentenceScorer, float, str]:
    import asyncio
    import atexit

    from descstream.config import load_settings
    from serving.client import TritonClient

    settings = load_settings()
    loop = asyncio.new_event_loop()
    client = TritonClient.from_settings(settings)
    atexit.register(lambda: (loop.run_until_complete(client.close()), loop.close()))
    config = json.loads((learned.default_artifacts_dir() / "verifier_config.json").read_text())

    def score(pairs: Any) -> list[float]:
        return list(loop.run_until_complete(client.verify_sentences(list(pairs))))

    return score, float(config["threshold"]), f"triton ({settings.triton.grpc_url})"


def verify_files(products_path: Path, texts_path: Path, output_path: Path, *, learned: str = "off",
                 batch: int = 64, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify every text of `texts_path`; see the module docstring."""
    report = VerifyReport()
    t0 = time.perf_counter()
    products = read_products(products_path, report)
    scorer, threshold, report.learned = load_scorer(learned)
    items: list[tuple[ProductUpsert, str, str]] = []
    with open(texts_path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pid, text = str(row["product_id"]), row["text"]
                audience = str(row.get("audience") or DEFAULT_AUDIENCE)
                if not isinstance(text, str):
                    raise ValueError("text must be a string")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                report.errors.append((str(texts_path), i, f"bad text line: {_one_line(exc)}"))
                continue
            if pid not in products:
                report.errors.append((str(texts_path), i, f"no product {pid!r} in {products_path}"))
                continue
            items.append((products[pid], audience, text))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "w", encoding="utf-8") as out:
        for start in range(0, len(items), batch):
            part = items[start:start + batch]
            for (product, audience, _), verdict in zip(part, verify_many(part, scorer, threshold)):
                report.texts += 1
                report.ok += verdict.ok
                report.flagged += not verdict.ok
                out.write(json.dumps({"product_id": product.product_id, "audience": audience, "ok": verdict.ok,
                                      "errors": verdict.to_json()}, ensure_ascii=False) + "\n")
            if progress:
                progress(report.texts)
    report.seconds = time.perf_counter() - t0
    return report

