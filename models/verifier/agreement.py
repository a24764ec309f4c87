"""How far the verifier agrees with the editor: its verdicts on the gold set against the gold labels.

A text is *wrong* for the editor when its label lists any error; the verifier *flags* a text when it
finds any error. Reported per part of the gold split (`dev` for tuning rules and thresholds, `test`
for the figures the README quotes):
- recall: flagged / wrong (the share of the editor's rejects the verifier also rejects);
- precision: wrong among flagged (the share of the verifier's rejects the editor agrees with);
- per error type: of the texts where the editor marked that type, the share flagged at all and the
  share where the verifier reported the same type;
- per system: the editor's error rate beside the verifier's flag rate.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.gold import ERROR_TYPES, GOLD_DIR, load_jsonl, load_products
from descstream.schemas import ProductUpsert
from models.verifier import SentenceScorer, Verdict, verify_many


def load_labels(gold_dir: Path = GOLD_DIR) -> dict[str, dict[str, Any]]:
    """Gold labels by text id (`labels.jsonl`)."""
    return {row["id"]: row for row in load_jsonl(gold_dir / "labels.jsonl")}


def gold_items(part: str, gold_dir: Path = GOLD_DIR) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(text row, label) for every labelled text of the split part (`dev`, `test`, a later part, or `all`)."""
    split = json.loads((gold_dir / "split.json").read_text())
    ids = set().union(*split.values()) if part == "all" else set(split[part])
    labels = load_labels(gold_dir)
    return [(t, labels[t["id"]]) for t in load_jsonl(gold_dir / "texts.jsonl")
            if t["product_id"] in ids and t["id"] in labels]


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


@dataclass(frozen=True)
class Scored:
    """The labelled texts of one split part with their products and the verifier's verdicts."""

    products: dict[str, ProductUpsert]
    items: list[tuple[dict[str, Any], dict[str, Any]]]
    verdicts: list[Verdict]


def score_part(part: str, scorer: SentenceScorer | None = None, threshold: float = 0.5,
               gold_dir: Path = GOLD_DIR) -> Scored:
    """Verify every labelled text of `part` once (agreement and the system table both read the result)."""
    products = load_products(gold_dir / "products.jsonl")
    items = gold_items(part, gold_dir)
    verdicts = verify_many([(products[t["product_id"]], t["audience"], t["text"]) for t, _ in items], scorer, threshold)
    return Scored(products, items, verdicts)


def agreement(part: str = "test", scorer: SentenceScorer | None = None, threshold: float = 0.5,
              gold_dir: Path = GOLD_DIR, scored: Scored | None = None) -> dict[str, Any]:
    """Agreement figures and every disagreement, as JSON-ready data (`scored`: verdicts already computed)."""
    scored = scored or score_part(part, scorer, threshold, gold_dir)
    items, verdicts = scored.items, scored.verdicts
    tp = fp = fn = tn = 0
    by_type: dict[str, dict[str, int]] = {k: {"texts": 0, "flagged": 0, "same_type": 0} for k in ERROR_TYPES}
    by_system: dict[str, dict[str, int]] = defaultdict(lambda: {"texts": 0, "editor_wrong": 0, "flagged": 0})
    misses, false_alarms = [], []
    for (text, label), verdict in zip(items, verdicts):
        wrong = bool(label["errors"])
        flagged = not verdict.ok
        tp += wrong and flagged
        fp += flagged and not wrong
        fn += wrong and not flagged
        tn += not wrong and not flagged
        sysrow = by_system[text["system"]]
        sysrow["texts"] += 1
        sysrow["editor_wrong"] += wrong
        sysrow["flagged"] += flagged
        found = {e.type for e in verdict.errors}
        for etype in {e["type"] for e in label["errors"]}:
            row = by_type.setdefault(etype, {"texts": 0, "flagged": 0, "same_type": 0})
            row["texts"] += 1
            row["flagged"] += flagged
            row["same_type"] += etype in found
        record = {"id": text["id"], "text": text["text"], "editor": label["errors"], "verifier": verdict.to_json()}
        if wrong and not flagged:
            misses.append(record)
        elif flagged and not wrong:
            false_alarms.append(record)
    return {
        "part": part, "texts": len(items), "editor_wrong": tp + fn, "flagged": tp + fp,
        "recall": _ratio(tp, tp + fn), "precision": _ratio(tp, tp + fp),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "per_type": {k: {**v, "recall": _ratio(v["flagged"], v["texts"]), "same_type_recall": _ratio(v["same_type"], v["texts"])}
                     for k, v in by_type.items()},
        "per_system": {k: {**v, "editor_error_rate": _ratio(v["editor_wrong"], v["texts"]),
                           "verifier_flag_rate": _ratio(v["flagged"], v["texts"])} for k, v in sorted(by_system.items())},
        "learned": scorer is not None, "threshold": threshold if scorer is not None else None,
        "misses": misses, "false_alarms": false_alarms,
    }
