"""Training examples: (product facts, audience, target text), synthetic or imported, split by product.

Splits are by *product*, never by example: the same product written for two audiences shares almost
all its facts, so letting it appear in train and test would measure memorisation, not generalisation.
Files are JSONL with the product in its wire JSON form (`schemas.encode`), so anything that can produce
a `ProductUpsert` can produce training data.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import orjson

from descstream.schemas import DEFAULT_AUDIENCE, ProductUpsert

from models.audiences import audiences_for_category
from models.catalogue import generate_catalogue
from models.reference import write_reference


@dataclass
class Example:
    """One supervised example: write `text` for `product` as seen by `audience`."""

    product: ProductUpsert
    audience: str
    text: str

    def to_json(self) -> dict:
        return {"product": self.product.model_dump(mode="json"), "audience": self.audience, "text": self.text}

    @classmethod
    def from_json(cls, data: dict) -> "Example":
        return cls(product=ProductUpsert.model_validate(data["product"]), audience=str(data["audience"]),
                   text=str(data["text"]))


@dataclass
class Splits:
    train: list[Example] = field(default_factory=list)
    validation: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)


def build_synthetic_examples(n_products: int, seed: int, audiences_per_product: int = 3, *,
                             adversarial_rate: float = 0.05) -> list[Example]:
    """Synthetic catalogue + reference writer. Each product gets `default` plus up to
    `audiences_per_product - 1` other audiences relevant to its category (chosen by seeded rng).

    Each reference uses its own rng seeded from (seed, product, audience), so adding audiences or
    products does not change the texts of the others.
    """
    rng = random.Random(f"examples:{seed}")
    out: list[Example] = []
    for product in generate_catalogue(n_products, seed, adversarial_rate=adversarial_rate):
        relevant = [a for a in audiences_for_category(product.category) if a != DEFAULT_AUDIENCE]
        chosen = [DEFAULT_AUDIENCE] + rng.sample(relevant, min(len(relevant), max(0, audiences_per_product - 1)))
        for aud in chosen:
            text = write_reference(product, aud, random.Random(f"ref:{seed}:{product.product_id}:{aud}"))
            out.append(Example(product, aud, text))
    return out


def split_by_product(examples: list[Example], val: float = 0.1, test: float = 0.1, seed: int = 0) -> Splits:
    """Split so that every product's examples land in exactly one split (no product leakage).

    Fractions are of products, rounded; with at least 3 products each non-zero split gets >= 1 product.
    Example order inside each split follows the input order.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError("val and test must be fractions with val + test < 1")
    ids = sorted({e.product.product_id for e in examples})
    random.Random(f"split:{seed}").shuffle(ids)
    n = len(ids)
    n_test = round(n * test)
    n_val = round(n * val)
    if n >= 3:
        n_test = max(n_test, 1 if test > 0 else 0)
        n_val = max(n_val, 1 if val > 0 else 0)
    test_ids = set(ids[:n_test])
    val_ids = set(ids[n_test:n_test + n_val])
    splits = Splits()
    for e in examples:
        pid = e.product.product_id
        (splits.test if pid in test_ids else splits.validation if pid in val_ids else splits.train).append(e)
    return splits


def save_jsonl(examples: Iterable[Example], path: str | Path) -> int:
    """Write one JSON object per line: {"product": <wire JSON>, "audience": ..., "text": ...}."""
    n = 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for e in examples:
            fh.write(orjson.dumps(e.to_json()) + b"\n")
            n += 1
    return n


def load_jsonl(path: str | Path) -> list[Example]:
    """Read a file written by `save_jsonl`. Raises ValueError naming the first bad line.

    (For files from elsewhere, which may have bad lines, use `models.importers.read_pairs_jsonl`.)
    """
    out: list[Example] = []
    with open(path, "rb") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(Example.from_json(orjson.loads(line)))
            except Exception as exc:  # noqa: BLE001 - report the line, whatever the cause
                raise ValueError(f"{path}:{i}: {exc}") from None
    return out


def data_hash(examples: Iterable[Example]) -> str:
    """Stable content hash of a data set for the model card: same examples (in any order) -> same hash."""
    digests = sorted(
        hashlib.blake2b(orjson.dumps(e.to_json(), option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
        for e in examples
    )
    h = hashlib.blake2b(digest_size=16)
    for d in digests:
        h.update(d)
    return h.hexdigest()
