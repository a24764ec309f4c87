"""The gold set: (product, audience, text) triples labelled by careful reading, the yardstick of every
faithfulness claim descstream makes.

Files in `models/data/gold/`:
- `products.jsonl`: the products (wire JSON), at least half from real catalogues (`models.real_catalogues`)
  and from categories the synthetic training catalogue lacks; none was used in training;
- `texts.jsonl`: one text per line, `{"id", "product_id", "audience", "system", "text"}`; systems are the
  untuned base model, the fine-tuned versions, the template fallback, the training-reference writer and
  the seller's own copy (real catalogues), so every kind of error occurs;
- `labels.jsonl`: one label per text, `{"id", "errors": [{"type", "span", "why"}], "fluency": 1-5,
  "publishable": bool}`, written by people reading the text against the facts (the guide is
  `docs/labelling-guide.md`), never by the verifier;
- `split.json`: product ids of the `dev` and `test` parts. The verifier's rules and thresholds are tuned on
  `dev` only; `test` is read once, to report agreement.

`python -m models.gold products` rebuilds `products.jsonl` (deterministic); `python -m models.gold texts
--system v5` appends one system's texts. Labels are never generated.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Any, Iterable

from descstream.schemas import DEFAULT_AUDIENCE, ProductUpsert

GOLD_DIR = Path(__file__).resolve().parent / "data" / "gold"
ERROR_TYPES = ("misbound", "invented", "wrong_type", "wrong_name", "nonsense", "injection")

# How many products each real catalogue contributes (the rest of the set is synthetic and hand-written).
_REAL_QUOTA = {"myntra_styles": 24, "adidas": 14, "amazon": 14, "myntra_catalog": 8}
_SYNTHETIC_SEED = 7777  # never a training seed: training uses the catalogue seeds of the model card
_N_SYNTHETIC = 28


def _spread(products: list[ProductUpsert], n: int, rng: random.Random) -> list[ProductUpsert]:
    """`n` products spread over categories: one per category in turn, so rare categories are met."""
    by_cat: dict[str, list[ProductUpsert]] = {}
    for p in products:
        by_cat.setdefault(p.category or p.title.split()[-1], []).append(p)
    cats = sorted(by_cat)
    rng.shuffle(cats)
    for c in cats:
        rng.shuffle(by_cat[c])
    out: list[ProductUpsert] = []
    while len(out) < n and any(by_cat.values()):
        for c in cats:
            if by_cat[c] and len(out) < n:
                out.append(by_cat[c].pop())
    return out


def build_products(data_dir: str | Path | None = None) -> list[ProductUpsert]:
    """The gold products: real catalogue samples, hand-written unseen categories, held-out synthetic."""
    from models.catalogue import generate_catalogue
    from models.real_catalogues import read_catalogue

    rng = random.Random("gold:products")
    out: list[ProductUpsert] = []
    for source, n in _REAL_QUOTA.items():
        pool = [p for p in read_catalogue(source, data_dir) if p.attributes or p.description]
        out += _spread(pool, n, rng)
    with open(GOLD_DIR / "handwritten_products.jsonl", encoding="utf-8") as fh:
        out += [ProductUpsert.model_validate_json(line) for line in fh if line.strip()]
    out += generate_catalogue(_N_SYNTHETIC, _SYNTHETIC_SEED, adversarial_rate=0.15)
    rng.shuffle(out)  # sources interleaved, so any prefix of the file is a mix
    return out


def build_extra_products(existing: set[str], n_synthetic: int = 14, seed: str = "gold:products:2",
                         data_dir: str | Path | None = None) -> list[ProductUpsert]:
    """A further set of gold products, disjoint from `existing` (a later test part: once a test part has been
    read to decide changes, the next measurement needs products nobody has looked at)."""
    from models.catalogue import generate_catalogue
    from models.real_catalogues import read_catalogue

    rng = random.Random(seed)
    quota = {"myntra_styles": 12, "adidas": 8, "amazon": 8, "myntra_catalog": 8}
    out: list[ProductUpsert] = []
    for source, n in quota.items():
        pool = [p for p in read_catalogue(source, data_dir) if (p.attributes or p.description) and p.product_id not in existing]
        out += _spread(pool, n, rng)
    out += [p for p in generate_catalogue(n_synthetic, 8888, adversarial_rate=0.15) if p.product_id not in existing]
    rng.shuffle(out)
    return out


def load_products(path: Path = GOLD_DIR / "products.jsonl") -> dict[str, ProductUpsert]:
    with open(path, encoding="utf-8") as fh:
        return {p.product_id: p for p in (ProductUpsert.model_validate_json(x) for x in fh if x.strip())}


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(x) for x in fh if x.strip()]


def audiences_for(product: ProductUpsert, n: int) -> list[str]:
    """`default` plus up to n-1 audiences relevant to the product's category (deterministic)."""
    from models.audiences import audiences_for_category

    others = sorted(a if isinstance(a, str) else a.name for a in audiences_for_category(product.category))
    others = [a for a in others if a != DEFAULT_AUDIENCE]
    random.Random(f"gold:aud:{product.product_id}").shuffle(others)
    return [DEFAULT_AUDIENCE] + others[: max(0, n - 1)]


def _backend(system: str) -> Any:
    from models.generate_batch import LocalBackend, latest_version_dir

    if system == "base":
        return LocalBackend(None, batch_size=16)
    repo = latest_version_dir()
    if repo is None:
        raise FileNotFoundError("no exported desc_generator version in serving/model_repository")
    return LocalBackend(repo.parent / system.lstrip("v"), batch_size=16)  # "v<N>": an exported version


def seller_copy(product: ProductUpsert, max_words: int = 70) -> str:
    """The seller's own text as a description (whole sentences, about `max_words` words): the human copy that
    real catalogues ship, which says more than the structured facts; training references look like it."""
    sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+|\n+", product.description or "") if x.strip()]
    out: list[str] = []
    for sentence in sentences:
        if out and len(" ".join(out + [sentence]).split()) > max_words:
            break
        out.append(sentence if sentence[-1] in ".!?" else sentence + ".")
    return " ".join(out)


def add_texts(system: str, audiences_per_product: int, products: Iterable[ProductUpsert],
              limit: int | None = None) -> int:
    """Append `system`'s texts for each product's first `audiences_per_product` audiences to texts.jsonl
    (the first `limit` products; pairs already there are skipped, so an interrupted run resumes)."""
    path = GOLD_DIR / "texts.jsonl"
    done = {(t["product_id"], t["audience"], t["system"]) for t in load_jsonl(path)}
    chosen = list(products)[:limit]
    if system == "seller_copy":  # real catalogues only: their seller text is real human copy
        chosen = [p for p in chosen if not p.product_id.startswith(("p-", "hw-")) and len(seller_copy(p).split()) >= 12]
    pairs = [(p, a) for p in chosen for a in audiences_for(p, audiences_per_product)
             if (p.product_id, a, system) not in done]
    if system == "fallback":
        from models.gate import fallback_text

        generate = lambda part: [fallback_text(p, a) for p, a in part]  # noqa: E731
    elif system == "seller_copy":
        generate = lambda part: [seller_copy(p) for p, _ in part]  # noqa: E731
    elif system == "reference":
        from models.reference import write_reference

        generate = lambda part: [write_reference(p, a, random.Random(f"gold:ref:{p.product_id}:{a}"))  # noqa: E731
                                 for p, a in part]
    else:
        generate = _backend(system).generate
    for start in range(0, len(pairs), 16):
        part = pairs[start:start + 16]
        with open(path, "a", encoding="utf-8") as fh:
            for (p, a), text in zip(part, generate(part)):
                fh.write(json.dumps({"id": f"{system}:{p.product_id}:{a}", "product_id": p.product_id,
                                     "audience": a, "system": system, "text": text}, ensure_ascii=False) + "\n")
        print(f"{system}: {start + len(part)}/{len(pairs)} texts", file=sys.stderr, flush=True)
    return len(pairs)


def split_ids(product_ids: Iterable[str], test_share: float = 0.6) -> dict[str, list[str]]:
    """Dev/test split by product (never by text: two texts of one product share their facts)."""
    ids = sorted(product_ids)
    random.Random("gold:split").shuffle(ids)
    n_test = round(len(ids) * test_share)
    return {"dev": sorted(ids[n_test:]), "test": sorted(ids[:n_test])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.gold", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("products", help="rebuild products.jsonl and split.json")
    x = sub.add_parser("extend", help="append a further, disjoint set of products as a new split part")
    x.add_argument("--part", required=True, help="name of the new part in split.json, e.g. test2")
    t = sub.add_parser("texts", help="append one system's texts to texts.jsonl")
    t.add_argument("--system", required=True, help="base | fallback | reference | seller_copy | v<N> (an exported desc_generator version)")
    t.add_argument("--audiences", type=int, default=1, help="audiences per product")
    t.add_argument("--limit", type=int, default=None, help="only the first N products")
    t.add_argument("--part", default=None, help="only the products of this split part")
    args = ap.parse_args(argv)
    if args.cmd == "products":
        products = build_products()
        with open(GOLD_DIR / "products.jsonl", "w", encoding="utf-8") as fh:
            for p in products:
                fh.write(p.model_dump_json() + "\n")
        (GOLD_DIR / "split.json").write_text(json.dumps(split_ids(p.product_id for p in products), indent=1) + "\n")
        print(f"{len(products)} products", file=sys.stderr)
    elif args.cmd == "extend":
        current = load_products()
        extra = build_extra_products(set(current))
        with open(GOLD_DIR / "products.jsonl", "a", encoding="utf-8") as fh:
            for p in extra:
                fh.write(p.model_dump_json() + "\n")
        split = json.loads((GOLD_DIR / "split.json").read_text())
        split[args.part] = sorted(p.product_id for p in extra)
        (GOLD_DIR / "split.json").write_text(json.dumps(split, indent=1) + "\n")
        print(f"{len(extra)} products added as part {args.part}", file=sys.stderr)
    else:
        part = args.part and set(json.loads((GOLD_DIR / "split.json").read_text())[args.part])
        products = [p for p in load_products().values() if not part or p.product_id in part]
        n = add_texts(args.system, args.audiences, products, args.limit)
        print(f"{n} texts added for {args.system}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
