"""Learned sentence-level faithfulness verifier (FactCC-style): a MiniLM cross-encoder over (facts, sentence).

`SentenceVerifier.unsupported_probs([(facts_text(product), sentence), ...])` returns, per pair, the
probability that the sentence is NOT supported by the product's facts. A sentence is flagged when its
probability is at or above `threshold`, which `models/verifier/train.py` chose on held-out corruptions and
wrote to `verifier_config.json` beside the weights.

Runtime only: torch + transformers, no training imports. The facts side is `facts_text(product)` — title,
brand, category, price and attributes; the seller's free-text `description` is data, never a fact.
Artefacts: `serving/model_repository/fact_verifier/1/artifacts/` (`default_artifacts_dir()`), weights
stored in fp16 safetensors and loaded back in fp32. The word-embedding matrix stays frozen in training, so
it is not stored: `load_classifier` takes it from the installed MiniLM (`models.embedding.minilm_dir`),
which halves the artefact. `save_classifier` and `load_classifier` are the one definition of that format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from descstream.schemas import ProductUpsert

CONFIG_FILE = "verifier_config.json"
DEFAULT_MAX_LENGTH = 256
UNSUPPORTED = 1  # class index of "not supported" in the 2-way classifier
WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"


def default_artifacts_dir() -> Path:
    """`serving/model_repository/fact_verifier/1/artifacts` of this checkout."""
    return Path(__file__).resolve().parents[2] / "serving" / "model_repository" / "fact_verifier" / "1" / "artifacts"


# ---------------------------------------------------------------------------------------- facts side


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _attr_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _number(value)
    return str(value)


def facts_text(product: ProductUpsert) -> str:
    """The one serialisation of a product's facts the cross-encoder reads (never the seller's description).

    `title: ...; brand: ...; category: ...; price: 1299 INR; colour: Blue; battery life: 46 hours; gps: yes`
    """
    parts = [f"title: {product.title}"]
    if product.brand:
        parts.append(f"brand: {product.brand}")
    if product.category:
        parts.append(f"category: {product.category}")
    if product.price is not None:
        price = _number(product.price) if float(product.price).is_integer() else f"{product.price:.2f}"
        parts.append(f"price: {price} {product.currency}")
    for key, value in product.attributes.items():
        parts.append(f"{key.replace('_', ' ')}: {_attr_value(value)}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------- sentences

# Abbreviations after which a period never ends a sentence, and those that end one only before a capital.
_NEVER_END = frozenset("approx e.g i.e eg ie vs rs no mr mrs ms dr st incl approx. prof jr sr dept fig est ca nos".split())
_SOFT_END = frozenset("etc inc ltd co".split())
_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_NEWLINES = re.compile(r"\s*\n\s*")


def _split_line(line: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _END.finditer(line):
        end = m.end()
        rest = line[end:].lstrip()
        if rest:
            before = line[start : m.start()].split()
            word = before[-1].lower().strip("(\"'") if before else ""
            single = m.group(0) == "."
            if single and (word in _NEVER_END or (len(word) == 1 and word.isalpha())):
                continue  # "approx. 5 kg", "Rs. 1299", "J. Smith"
            if single and word in _SOFT_END and not rest[:1].isupper():
                continue
            if rest[:1].islower():
                continue  # "... 3 in. wide", lower-case continuation is not a new sentence
        piece = line[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    tail = line[start:].strip()
    if tail:
        out.append(tail)
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`: ends at . ! ? followed by white space or the end; line breaks end one too.

    Decimals ("1.6 kg"), "approx. 5 kg", "Rs. 1299", "e.g. foo" and initials stay inside their sentence.
    """
    out: list[str] = []
    for line in _NEWLINES.split(text or ""):
        line = line.strip()
        if line:
            out.extend(_split_line(line))
    return out


# ---------------------------------------------------------------------------------------- model


def save_classifier(model: Any, folder: Path) -> None:
    """Write the classifier in fp16 without its word embeddings (frozen: identical to the base MiniLM)."""
    half = model.half()
    half.save_pretrained(str(folder), safe_serialization=True,
                         state_dict={k: v for k, v in half.state_dict().items() if k != WORD_EMBEDDINGS})


def load_classifier(folder: Path) -> Any:
    """The classifier of `save_classifier` (or a full checkpoint) in fp32; missing word embeddings come
    from the base MiniLM, rounded through fp16 as they were when the classifier was saved."""
    import torch
    from safetensors import safe_open
    from transformers import BertForSequenceClassification

    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        stored = set(fh.keys())
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    if WORD_EMBEDDINGS not in stored:
        hf_logging.set_verbosity_error()  # the "missing weights" report is expected: they are filled in below
    try:
        model = BertForSequenceClassification.from_pretrained(str(folder), torch_dtype=torch.float32).float()
    finally:
        hf_logging.set_verbosity(verbosity)
    if WORD_EMBEDDINGS not in stored:
        from models.embedding import minilm_dir

        with safe_open(str(minilm_dir() / "model.safetensors"), framework="pt") as fh:
            key = next(k for k in fh.keys() if k.endswith("word_embeddings.weight"))
            base = fh.get_tensor(key)
        with torch.no_grad():
            model.bert.embeddings.word_embeddings.weight.copy_(base.half().float())
    return model


class SentenceVerifier:
    """The fine-tuned cross-encoder; `unsupported_probs` scores (facts_text, sentence) pairs."""

    def __init__(self, model: Any, tokenizer: Any, threshold: float, *, max_length: int = DEFAULT_MAX_LENGTH,
                 device: str = "cpu", config: dict[str, Any] | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.threshold = float(threshold)
        self.max_length = int(max_length)
        self.device = device
        self.config = dict(config or {})

    @classmethod
    def load(cls, folder: str | Path | None = None, device: str = "cpu") -> "SentenceVerifier":
        """Load weights (fp16 on disk -> fp32), tokenizer and `verifier_config.json` from `folder`."""
        from transformers import AutoTokenizer

        folder = Path(folder) if folder is not None else default_artifacts_dir()
        cfg_path = folder / CONFIG_FILE
        if not cfg_path.is_file():
            raise FileNotFoundError(f"no {CONFIG_FILE} in {folder} (train with python -m models.verifier.train)")
        cfg = json.loads(cfg_path.read_text())
        model = load_classifier(folder).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        return cls(model, tokenizer, float(cfg["threshold"]), max_length=int(cfg.get("max_length", DEFAULT_MAX_LENGTH)),
                   device=device, config=cfg)

    def unsupported_probs(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> list[float]:
        """P(sentence not supported by facts) per `(facts_text, sentence)` pair, in input order."""
        import torch

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        pairs = [(str(f), str(s)) for f, s in pairs]
        if not pairs:
            return []
        # similar lengths together: less padding (the order is restored below)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        out = [0.0] * len(pairs)
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b : b + batch_size]
                enc = self.tokenizer(
                    [pairs[i][0] for i in idx], [pairs[i][1] for i in idx], truncation="only_first",
                    max_length=self.max_length, padding=True, return_tensors="pt",
                ).to(self.device)
                logits = self.model(**enc).logits.float()
                probs = torch.softmax(logits, dim=-1)[:, UNSUPPORTED].cpu().tolist()
                for i, p in zip(idx, probs):
                    out[i] = float(p)
        return out

    def is_unsupported(self, prob: float) -> bool:
        return prob >= self.threshold

    def score_text(self, product: ProductUpsert, text: str, batch_size: int = 32) -> list[tuple[str, float]]:
        """`(sentence, P(unsupported))` for every sentence of `text`, scored in one batch."""
        facts = facts_text(product)
        sents = split_sentences(text)
        return list(zip(sents, self.unsupported_probs([(facts, s) for s in sents], batch_size=batch_size)))
