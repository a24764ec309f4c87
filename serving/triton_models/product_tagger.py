"""Triton Python-backend model `product_tagger`: product text -> top-k category labels with scores.

Inputs: `TEXT` BYTES [1] (non-empty UTF-8), `TOP_K` INT32 [1] (1..number of labels; larger is clamped).
Outputs: `LABELS` BYTES [k], `SCORES` FP32 [k], best first (softmax probabilities, or sigmoid for a
multi-label classifier).

Where the classifier comes from (decided at load time, reported in the server log):
- `<version>/artifacts/adapter/` (+ `labels.json`): the LoRA-tuned MiniLM classifier of
  `models/train_tagger.py`, loaded with its `load_tagger` (exported by `models/export.py`);
- or `<version>/artifacts/` holds a full HF `BertForSequenceClassification`; labels come from
  `labels.json` (a list, `{"labels": [...]}` or `{"id2label": {...}}`) or its config's `id2label`.
Callers should send `models.train_tagger.product_text(product)` (what the tagger was trained on).
- no artifacts and `DESCSTREAM_MODEL_MODE=tiny`: MiniLM with a seeded random classification head over
  the catalogue's category labels (tests/CI only: scores are meaningless but shapes/dtypes are real).
- no artifacts in `real` mode: the model loads (so the server stays ready for the other models) but
  every request fails with a clear error saying no tagger has been exported.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from serving.triton_models import _common
from serving.triton_models._common import RequestError

log = logging.getLogger("descstream.product_tagger")

DEFAULTS = {"max_text_bytes": "65536", "max_length": "128", "torch_threads": "0", "tiny_seed": "0"}

# Used only for the tiny random head when no catalogue module provides labels.
FALLBACK_LABELS = (
    "Electronics > Audio",
    "Electronics > Wearables",
    "Electronics > Computers",
    "Home > Kitchen",
    "Home > Furniture",
    "Home > Decor",
    "Outdoor > Camping",
    "Sports > Running",
    "Sports > Fitness",
    "Bags",
    "Beauty",
    "Toys",
)


def catalogue_labels() -> list[str]:
    """Category paths of the synthetic catalogue (`models.catalogue.CATEGORIES`), else a fixed list."""
    try:
        from models.catalogue import CATEGORIES

        labels = [str(getattr(c, "path", c)) for c in CATEGORIES]
        if labels:
            return labels
    except Exception:  # noqa: BLE001 - optional module
        pass
    return list(FALLBACK_LABELS)


def read_labels(vdir: Path) -> list[str] | None:
    for path in (vdir / "labels.json", vdir / "artifacts" / "labels.json"):
        if path.is_file():
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                data = data.get("labels") or data.get("id2label") or data
                if isinstance(data, dict):
                    return [str(data[k]) for k in sorted(data, key=lambda k: int(k))]
            return [str(x) for x in data]
    return None


def find_classifier(vdir: Path) -> Path | None:
    """A full HF classifier folder in the version's artifacts (the LoRA adapter form is handled separately)."""
    for cand in (vdir / "artifacts", vdir / "artifacts" / "model", vdir / "artifacts" / "weights"):
        if (cand / "config.json").is_file() and any(cand.glob("*.safetensors")) or (cand / "pytorch_model.bin").is_file():
            return cand
    return None


class Tagger:
    """The classifier outside Triton (also used in-process by the benchmark)."""

    def __init__(self, vdir: Path | None, *, mode: str = "real", device: str = "cpu", max_length: int = 128, tiny_seed: int = 0,
                 model_name: str = "product_tagger", version: str = "1") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from models.embedding import minilm_dir

        self.device = device
        self.max_length = max_length
        self.error: str | None = None
        self.model = None
        folder = find_classifier(vdir) if vdir is not None else None
        has_adapter = vdir is not None and ((vdir / "artifacts" / "adapter").is_dir() or (vdir / "adapter").is_dir())
        if has_adapter:
            # models/train_tagger.py's artefact: peft adapter (+ modules_to_save head) + labels.json
            from models.train_tagger import load_tagger

            loaded = load_tagger(vdir, device="cpu")
            self.model, self.tokenizer, self.labels = loaded.model, loaded.tokenizer, list(loaded.labels)
            self.version = f"{model_name}/{version}-lora"
        elif folder is not None:
            self.labels = read_labels(vdir)
            self.model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
            if not self.labels:
                id2 = self.model.config.id2label
                self.labels = [str(id2[i]) for i in range(len(id2))]
            tok_dir = folder if (folder / "tokenizer_config.json").is_file() else minilm_dir()
            self.tokenizer = AutoTokenizer.from_pretrained(tok_dir)
            self.version = f"{model_name}/{version}-finetuned"
        elif mode == "tiny":
            self.labels = catalogue_labels()
            torch.manual_seed(tiny_seed)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                minilm_dir(), num_labels=len(self.labels), dtype=torch.float32,
                id2label=dict(enumerate(self.labels)), label2id={v: i for i, v in enumerate(self.labels)},
            )
            self.tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
            self.version = f"{model_name}/{version}-tiny"
        else:
            self.labels = []
            self.version = f"{model_name}/{version}-missing"
            self.error = (
                f"{model_name} version {version} has no exported classifier (no {vdir}/artifacts); "
                "export one with models.export (train the tagger first) or run Triton with DESCSTREAM_MODEL_MODE=tiny"
            )
            log.error(self.error)
            return
        if len(self.labels) != int(self.model.config.num_labels):
            raise RuntimeError(f"{len(self.labels)} labels but the classifier has {self.model.config.num_labels} outputs")
        self.multi_label = getattr(self.model.config, "problem_type", None) == "multi_label_classification"
        self.model.to(device).eval()

    def scores(self, texts: list[str]) -> np.ndarray:
        """(len(texts), n_labels) probabilities."""
        import torch

        if self.error:
            raise RuntimeError(self.error)
        with torch.inference_mode():
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
            logits = self.model(**enc).logits.float()
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs.cpu().numpy()

    def tag(self, texts: list[str], top_k: list[int]) -> list[list[tuple[str, float]]]:
        probs = self.scores(texts)
        out = []
        for row, k in zip(probs, top_k):
            k = max(1, min(int(k), len(self.labels)))
            idx = np.argsort(-row, kind="stable")[:k]
            out.append([(self.labels[j], float(row[j])) for j in idx])
        return out


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = {**DEFAULTS, **_common.parameters(args)}
        _common.set_threads(params)
        self.max_bytes = int(params["max_text_bytes"])
        self.tagger = Tagger(
            _common.version_dir(args),
            mode=_common.model_mode(),
            device=_common.device_for(args),
            max_length=int(params["max_length"]),
            tiny_seed=int(params["tiny_seed"]),
            model_name=args.get("model_name", "product_tagger"),
            version=str(args["model_version"]),
        )

    def _parse(self, request: Any) -> list[tuple[str, int]]:
        if self.tagger.error:
            raise RequestError(self.tagger.error)
        texts = _common.get_array(request, "TEXT", "bytes")
        ks = _common.get_array(request, "TOP_K", "int")
        if ks.shape[0] != texts.shape[0]:
            raise RequestError("TEXT and TOP_K must have the same batch size")
        rows = []
        for i in range(texts.shape[0]):
            k = int(_common.row_scalar(ks, i, "TOP_K"))
            if k < 1:
                raise RequestError(f"TOP_K must be >= 1, got {k}")
            rows.append((_common.as_text(_common.row_scalar(texts, i, "TEXT"), "TEXT", self.max_bytes), k))
        return rows

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses, good = _common.run_per_request(requests, self._parse)
        flat = [r for _, rows in good for r in rows]
        try:
            tags = self.tagger.tag([t for t, _ in flat], [k for _, k in flat]) if flat else []
        except Exception as exc:  # noqa: BLE001
            for i, _ in good:
                responses[i] = _common.error_response(RuntimeError(f"tagging failed: {exc!r}"), internal=True)
            return responses
        j = 0
        for i, rows in good:
            mine, j = tags[j : j + len(rows)], j + len(rows)
            k = max(len(m) for m in mine)  # rows of one request share k only if their TOP_K match
            labels = np.full((len(mine), k), b"", dtype=np.object_)
            scores = np.zeros((len(mine), k), dtype=np.float32)
            for r, m in enumerate(mine):
                for c, (lab, sc) in enumerate(m):
                    labels[r, c] = lab.encode()
                    scores[r, c] = sc
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("LABELS", labels), pb_utils.Tensor("SCORES", scores)]
            )
        return responses

    def finalize(self) -> None:
        self.tagger = None
