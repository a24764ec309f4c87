"""Every system of the gold set side by side, as the editor read it and as the verifier reads it.

For each system in `models/data/gold/texts.jsonl` (template fallback, reference writer, untuned base
model, fine-tuned versions), over the labelled texts of one split part:
- editor: share of texts with any error and per type, publishable share (no error, fluency >= 4),
  mean fluency;
- verifier: share of texts it flags and per type; the gate: how many texts it passes and the share of
  those the editor marked wrong; after the gate: the expected share of published texts with an error,
  the passed texts' rate weighted with the fallback system's rate for the rest;
- text: attribute coverage, Distinct-1/2, mean words;
- the verifier's agreement with the editor (`models.verifier.agreement`).

`descstream eval --gold test` writes `gold_eval.json` and `gold_eval.md`.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from models.evaluate import distinct_n, words
from models.facts import coverage
from models.gold import ERROR_TYPES, GOLD_DIR
from models.verifier import SentenceScorer
from models.verifier.agreement import Scored, agreement, score_part


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def system_table(scored: Scored) -> dict[str, dict[str, Any]]:
    """Per-system figures for one scored split part (`models.verifier.agreement.score_part`)."""
    products, items, verdicts = scored.products, scored.items, scored.verdicts
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (text, label), verdict in zip(items, verdicts):
        r = rows[text["system"]]
        product = products[text["product_id"]]
        r["texts"].append(text["text"])
        r["wrong"].append(bool(label["errors"]))
        r["publishable"].append(bool(label["publishable"]))
        r["fluency"].append(float(label["fluency"]))
        r["coverage"].append(coverage(product, text["text"]))
        r["flagged"].append(not verdict.ok)
        for etype in ERROR_TYPES:
            r[f"editor_{etype}"].append(any(e["type"] == etype for e in label["errors"]))
            r[f"verifier_{etype}"].append(any(e.type == etype for e in verdict.errors))
        if verdict.ok:
            r["passed_wrong"].append(bool(label["errors"]))
    out: dict[str, dict[str, Any]] = {}
    for system, r in sorted(rows.items()):
        n = len(r["texts"])
        out[system] = {
            "texts": n,
            "editor_error_rate": _mean([float(x) for x in r["wrong"]]),
            "editor_errors_by_type": {t: _mean([float(x) for x in r[f"editor_{t}"]]) for t in ERROR_TYPES},
            "publishable_share": _mean([float(x) for x in r["publishable"]]),
            "mean_fluency": _mean(r["fluency"]),
            "verifier_flag_rate": _mean([float(x) for x in r["flagged"]]),
            "verifier_errors_by_type": {t: _mean([float(x) for x in r[f"verifier_{t}"]]) for t in ERROR_TYPES},
            "passed_texts": len(r["passed_wrong"]),
            "passed_editor_error_rate": _mean([float(x) for x in r["passed_wrong"]]),
            "attribute_coverage": _mean(r["coverage"]),
            "distinct1": round(distinct_n(r["texts"], 1), 4),
            "distinct2": round(distinct_n(r["texts"], 2), 4),
            "mean_words": _mean([float(len(words(t))) for t in r["texts"]]),
        }
    # what the gate publishes: a passed text, or the template fallback (its error rate from the fallback system)
    fallback_rate = (out.get("fallback") or {}).get("editor_error_rate")
    for row in out.values():
        passed = 1 - (row["verifier_flag_rate"] or 0.0)
        if fallback_rate is None or (passed and row["passed_editor_error_rate"] is None):
            row["published_editor_error_rate"] = None
            continue
        row["published_editor_error_rate"] = round(passed * (row["passed_editor_error_rate"] or 0.0)
                                                   + (1 - passed) * fallback_rate, 4)
    return out


ROWS = [
    ("texts", "Texts", "{:d}"),
    ("editor_error_rate", "Editor: texts with any error", "{:.1%}"),
    ("publishable_share", "Editor: publishable (no error, fluency >= 4)", "{:.1%}"),
    ("mean_fluency", "Editor: mean fluency (1-5)", "{:.2f}"),
    ("verifier_flag_rate", "Verifier: texts flagged", "{:.1%}"),
    ("passed_texts", "Gate: texts passed (published as written)", "{:d}"),
    ("passed_editor_error_rate", "Gate: passed texts the editor marks wrong", "{:.1%}"),
    ("published_editor_error_rate", "After the gate: published texts with an error (passed + fallback)", "{:.1%}"),
    ("attribute_coverage", "Attribute coverage", "{:.1%}"),
    ("distinct2", "Distinct-2", "{:.3f}"),
    ("mean_words", "Mean length (words)", "{:.1f}"),
]


def _fmt(fmt: str, value: Any) -> str:
    return "n/a" if value is None else fmt.format(value)


def write_report(out_dir: Path, part: str = "test", scorer: SentenceScorer | None = None, threshold: float = 0.5,
                 learned: str = "off", gold_dir: Path = GOLD_DIR) -> dict[str, Any]:
    """Compute the system table and the verifier agreement; write gold_eval.json and gold_eval.md."""
    t0 = time.perf_counter()
    scored = score_part(part, scorer, threshold, gold_dir)
    systems = system_table(scored)
    agree = agreement(part, scored=scored)
    result = {"part": part, "learned_verifier": learned, "systems": systems,
              "agreement": {k: v for k, v in agree.items() if k not in ("misses", "false_alarms")},
              "misses": agree["misses"], "false_alarms": agree["false_alarms"],
              "seconds": round(time.perf_counter() - t0, 1),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gold_eval.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    names = list(systems)
    lines = [f"# Gold set, {part} part: systems as the editor and the verifier read them", "",
             "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label, fmt in ROWS:
        lines.append(f"| {label} | " + " | ".join(_fmt(fmt, systems[s].get(key)) for s in names) + " |")
    lines += ["", "Editor's errors by type (share of texts):", "",
              "| type | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for t in ERROR_TYPES:
        lines.append(f"| {t} | " + " | ".join(_fmt("{:.1%}", systems[s]["editor_errors_by_type"][t]) for s in names) + " |")
    a = agree
    lines += ["", f"## Verifier agreement ({a['texts']} texts, learned verifier: {learned})", "",
              f"- recall (editor's rejects the verifier flags): {_fmt('{:.1%}', a['recall'])} "
              f"({a['confusion']['tp']} of {a['editor_wrong']})",
              f"- precision (verifier's flags the editor agrees with): {_fmt('{:.1%}', a['precision'])} "
              f"({a['confusion']['tp']} of {a['flagged']})", "",
              "| editor's type | texts | flagged | same type reported |", "|---|---|---|---|"]
    for t, row in a["per_type"].items():
        lines.append(f"| {t} | {row['texts']} | {_fmt('{:.1%}', row['recall'])} | {_fmt('{:.1%}', row['same_type_recall'])} |")
    lines += ["", "Regenerate: `descstream eval --gold " + part + "`. Labels: `models/data/gold/labels.jsonl` "
              "(guide: `docs/labelling-guide.md`).", ""]
    (out_dir / "gold_eval.md").write_text("\n".join(lines))
    return result
