"""Base vs fine-tuned generator, side by side, on held-out test products.

Metrics (each computed per system over the same (product, audience) pairs):
- `bleu4`: corpus BLEU-4 (sacrebleu, default 13a tokenisation) against the reference texts;
- `rougeL_f1`: mean sentence-level ROUGE-L F1 (longest common subsequence of lower-cased word tokens;
  P = LCS/len(hyp), R = LCS/len(ref), F1 = 2PR/(P+R)), implemented here;
- `distinct1` / `distinct2`: distinct n-grams / total n-grams over all generated texts (lower-cased words);
- `attribute_coverage`: per text, the share of the product's facts that the text mentions, averaged
  (`models.facts.coverage`: brand + attribute values, normalised surface match; price not counted);
- `error_rate`: share of raw model texts (before the gate) in which the verifier (`models.verifier`) finds
  any error; `errors_by_type`: the same per error type (misbound, invented, wrong_type, wrong_name,
  nonsense, injection);
- `gate_pass_rate`: share of raw texts the verifier passes (the gate publishes those as written);
- `error_rate_after_gate`: share of *published* texts with an error, measured: the passed text or, where the
  gate rejected it, `models.gate.fallback_text`, verified again; `fallback_rate` is the rejected share;
- `audience_differentiation`: for products with >= 2 audiences, mean (1 - Jaccard(word sets)) between
  the texts of each pair of audiences;
- `mean_words`, `tokens_per_s` (generated tokens / wall seconds, batched decoding).

Decoding: `models.generation.DECODING` unless `decoding=` is given (the served default; recorded in
`eval.json` as `decoding`). `python -m models.evaluate --run DIR --decoding "no_repeat_ngram_size=3" ...`
scores several decodings of one model, loaded once (the sweeps recorded in CHANGELOG.md).

Test data: the run's `data/test.jsonl`; for an exported version dir (no data folder) the synthetic split
is rebuilt from the model card's `n_products` / `audiences_per_product` / `data_seed` and checked
against the card's `data_hash` (the generator is deterministic).

A third column, `reference`, scores the reference (training-target) texts with the same metrics: it shows
what imitating the targets can reach (e.g. the reference writer mentions only the facts an audience cares
about, so its own attribute coverage is well below 100 %).

Outputs in `--out`: `eval.json` (metrics + per-example texts), `eval.md` (table), `eval.png` (bar chart).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from models.facts import coverage, product_facts  # noqa: F401  (the coverage metric; re-exported)

_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lcs_len(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l_f1(hyp: str, ref: str) -> float:
    h, r = words(hyp), words(ref)
    lcs = lcs_len(h, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams: list[tuple[str, ...]] = []
    for t in texts:
        w = words(t)
        grams += [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def jaccard(a: str, b: str) -> float:
    sa, sb = set(words(a)), set(words(b))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def score_system(pairs: Sequence[tuple[Any, str]], texts: Sequence[str], refs: Sequence[str], gen_stats: dict,
                 scorer: Any = None, threshold: float = 0.5) -> dict[str, Any]:
    import sacrebleu

    from models import gate
    from models.verifier import ERROR_TYPES, verify_many

    verdicts = verify_many([(p, a, t) for (p, a), t in zip(pairs, texts)], scorer, threshold)
    by_product: dict[str, dict[str, str]] = defaultdict(dict)
    for (p, a), t in zip(pairs, texts):
        by_product[p.product_id][a if isinstance(a, str) else getattr(a, "name", str(a))] = t
    diffs = []
    for texts_by_aud in by_product.values():
        for x, y in itertools.combinations(sorted(texts_by_aud), 2):
            diffs.append(1.0 - jaccard(texts_by_aud[x], texts_by_aud[y]))
    n = max(1, len(texts))
    flagged = sum(not v.ok for v in verdicts)
    by_type = {t: sum(any(e.type == t for e in v.errors) for v in verdicts) / n for t in ERROR_TYPES}
    # what the gate publishes: the text where the verifier passed it, else the template fallback, verified again
    published = [t if v.ok else gate.fallback_text(p, a) for (p, a), t, v in zip(pairs, texts, verdicts)]
    after = verify_many([(p, a, t) for (p, a), t in zip(pairs, published)], scorer, threshold)
    return {
        "n": len(texts),
        "bleu4": sacrebleu.corpus_bleu(list(texts), [list(refs)]).score,
        "rougeL_f1": sum(rouge_l_f1(t, r) for t, r in zip(texts, refs)) / n,
        "distinct1": distinct_n(texts, 1),
        "distinct2": distinct_n(texts, 2),
        "attribute_coverage": sum(coverage(p, t) for (p, _), t in zip(pairs, texts)) / n,
        "error_rate": flagged / n,
        "errors_by_type": by_type,
        "gate_pass_rate": 1 - flagged / n,
        "error_rate_after_gate": sum(not v.ok for v in after) / n,
        "fallback_rate": flagged / n,
        "audience_differentiation": sum(diffs) / len(diffs) if diffs else None,
        "mean_words": sum(len(words(t)) for t in texts) / n,
        "tokens_per_s": gen_stats.get("tokens_per_s"),
        "generation_seconds": gen_stats.get("seconds"),
        "_verdicts": [{"passed": v.ok, "errors": v.to_json()} for v in verdicts],
    }


def select_pairs(examples: Sequence[Any], limit: int | None, audiences_per_product: int = 2) -> list[Any]:
    """Up to `limit` products (first seen order), each with up to `audiences_per_product` examples."""
    per: dict[str, list[Any]] = {}
    for ex in examples:
        lst = per.setdefault(ex.product.product_id, [])
        if len(lst) < audiences_per_product and all(e.audience != ex.audience for e in lst):
            lst.append(ex)
    chosen = list(per.values())[: limit] if limit else list(per.values())
    return [ex for group in chosen for ex in group]


METRIC_ROWS = [
    ("bleu4", "BLEU-4", "{:.1f}"),
    ("rougeL_f1", "ROUGE-L F1", "{:.3f}"),
    ("distinct1", "Distinct-1", "{:.3f}"),
    ("distinct2", "Distinct-2", "{:.3f}"),
    ("attribute_coverage", "Attribute coverage", "{:.1%}"),
    ("error_rate", "Texts with any error (verifier, before gate)", "{:.1%}"),
    ("gate_pass_rate", "Gate pass rate", "{:.1%}"),
    ("error_rate_after_gate", "Texts with any error after gate (published)", "{:.1%}"),
    ("fallback_rate", "Fallback (template) share", "{:.1%}"),
    ("audience_differentiation", "Audience differentiation (1-Jaccard)", "{:.3f}"),
    ("mean_words", "Mean length (words)", "{:.1f}"),
    ("tokens_per_s", "Generation tokens/s (batched)", "{:.1f}"),
]


def write_markdown(result: dict[str, Any], path: Path) -> None:
    systems = list(result["systems"])
    lines = [
        f"# Generator evaluation ({result['n_examples']} texts, {result['n_products']} held-out products)",
        "",
        "| Metric | " + " | ".join(systems) + " |",
        "|---|" + "---|" * len(systems),
    ]
    for key, label, fmt in METRIC_ROWS:
        cells = []
        for s in systems:
            v = result["systems"][s].get(key)
            cells.append("n/a" if v is None else fmt.format(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    dec = (result.get("decoding") or {}).get("description", "greedy")
    lines += ["", f"Data: {result['data']}; decoding: {dec}; max {result['max_new_tokens']} new tokens, "
              f"batch {result['batch_size']}.", ""]
    lines += ["Metric definitions: see `models/evaluate.py` docstring.", ""]
    path.write_text("\n".join(lines))


def write_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("attribute_coverage", "coverage"), ("error_rate", "errors (raw)"), ("gate_pass_rate", "gate pass"),
            ("distinct2", "distinct-2"), ("rougeL_f1", "ROUGE-L"), ("audience_differentiation", "aud. diff.")]
    systems = list(result["systems"])
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / max(1, len(systems))
    for i, s in enumerate(systems):
        vals = [result["systems"][s].get(k) or 0.0 for k, _ in keys]
        xs = [j + i * width for j in range(len(keys))]
        ax.bar(xs, vals, width, label=s)
        for x, v in zip(xs, vals):
            ax.text(x, v + 0.01, f"{v:.2f}", ha="center", fontsize=7)
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(keys))])
    ax.set_xticklabels([label for _, label in keys])
    ax.set_ylim(0, 1.1)
    ax.set_title(f"Base vs fine-tuned on {result['n_examples']} held-out texts (BLEU-4: "
                 + ", ".join(f"{s} {result['systems'][s]['bleu4']:.1f}" for s in systems) + ")")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _card(run: str | Path | None) -> dict[str, Any]:
    if run and (Path(run) / "model_card.json").is_file():
        return json.loads((Path(run) / "model_card.json").read_text())
    return {}


def load_test_examples(
    run: str | Path | None, test_file: str | Path | None = None, n_products: int | None = None, data_seed: int | None = None,
    split: str = "test",
) -> tuple[list[Any], str]:
    """The held-out examples for `run` (see the module docstring) and a description of where they came from.
    `split="validation"` gives the validation split instead: decoding choices are made there, so the
    test split stays unseen until the final measurement."""
    from models import dataset

    if test_file:
        return dataset.load_jsonl(test_file), str(test_file)
    if split not in ("test", "validation"):
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
    if run and (Path(run) / "data" / f"{split}.jsonl").is_file():
        return dataset.load_jsonl(Path(run) / "data" / f"{split}.jsonl"), f"{run}/data/{split}.jsonl"
    card = _card(run)
    hp = card.get("hyperparameters") or {}
    n = n_products if n_products is not None else int(hp.get("n_products") or 600)
    seed = data_seed if data_seed is not None else int(hp.get("data_seed") or 0)
    per = int(hp.get("audiences_per_product") or 3)
    examples = dataset.build_synthetic_examples(n, seed, audiences_per_product=per)
    splits = dataset.split_by_product(examples, seed=seed)
    desc = f"synthetic {split} split (n_products={n}, data_seed={seed}, audiences_per_product={per})"
    if card.get("data_hash"):
        got = dataset.data_hash(list(splits.train) + list(splits.validation) + list(splits.test))
        if got != card["data_hash"]:
            raise ValueError(f"rebuilt data hash {got} != model card data_hash {card['data_hash']} "
                             f"({card.get('data_source')}): pass --test-file")
        desc += f", data_hash {got} = model card"
    return (splits.test if split == "test" else splits.validation), desc


def run_eval(
    run: str | Path | None,
    out: str | Path,
    limit: int | None = 40,
    audiences_per_product: int = 2,
    max_new_tokens: int = 160,
    batch_size: int = 8,
    include_base: bool = True,
    test_file: str | Path | None = None,
    n_products: int | None = None,
    data_seed: int | None = None,
    log: Any = None,
    decoding: Any = None,
) -> dict[str, Any]:
    """Evaluate base (optional) and the run's model on its saved test split (or a given/synthetic one)."""
    import sys

    from models.generation import DECODING, generate_for, load_generator

    cfg = decoding or DECODING
    say = log or (lambda m: print(m, file=sys.stderr))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    examples, data_desc = load_test_examples(run, test_file, n_products, data_seed)
    chosen = select_pairs(examples, limit, audiences_per_product)
    pairs = [(ex.product, ex.audience) for ex in chosen]
    refs = [ex.text for ex in chosen]
    systems: dict[str, Any] = {}
    samples: dict[str, list[str]] = {}
    base_dir = None
    if run:
        summ = Path(run) / "summary.json"
        if summ.is_file():
            bm = json.loads(summ.read_text()).get("base_model")
            if bm and Path(bm).is_dir():
                base_dir = bm  # tiny-model runs: their base is a local folder
    todo = ([("base", None)] if include_base else []) + ([("fine-tuned", run)] if run else [])
    for name, path in todo:
        t0 = time.perf_counter()
        gen = load_generator(path, base_dir=base_dir)
        say(f"{name}: loaded in {time.perf_counter() - t0:.1f}s; generating {len(pairs)} texts")
        texts, stats = generate_for(gen, pairs, max_new_tokens=max_new_tokens, batch_size=batch_size, decoding=cfg)
        del gen
        systems[name] = score_system(pairs, texts, refs, stats)
        samples[name] = texts
        m = systems[name]
        say(f"{name}: coverage {m['attribute_coverage']:.3f}, texts with errors {m['error_rate']:.3f}, "
            f"gate pass {m['gate_pass_rate']:.3f}, distinct-2 {m['distinct2']:.3f}, {m['tokens_per_s']:.1f} tok/s")
    # the training targets scored the same way: the ceiling imitation can reach on coverage/diversity
    systems["reference"] = score_system(pairs, refs, refs, {})
    result = {
        "data": data_desc,
        "n_examples": len(pairs),
        "n_products": len({p.product_id for p, _ in pairs}),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "decoding": {**cfg.to_dict(), "description": cfg.describe()},
        "run": str(run) if run else None,
        "systems": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in systems.items()},
        "examples": [
            {
                "product_id": p.product_id,
                "audience": a if isinstance(a, str) else getattr(a, "name", str(a)),
                "reference": r,
                **{name: {"text": samples[name][i], **systems[name]["_verdicts"][i]} for name in samples},
            }
            for i, ((p, a), r) in enumerate(zip(pairs, refs))
        ],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "eval.json").write_text(json.dumps(result, indent=2, default=str))
    write_markdown(result, out / "eval.md")
    write_chart(result, out / "eval.png")
    return result


SWEEP_KEYS = ("attribute_coverage", "error_rate", "gate_pass_rate", "distinct2", "audience_differentiation",
              "mean_words", "rougeL_f1", "tokens_per_s")


def parse_decoding(spec: str, base: Any = None) -> Any:
    """`"temperature=0.7,top_p=0.9,no_repeat_ngram_size=3"` -> a `DecodingConfig` (unset fields from `base`)."""
    from models.generation import DECODING, DecodingConfig

    base = base or DecodingConfig()  # a sweep spec is absolute: fields not given take the plain defaults
    if spec.strip() in ("", "greedy", "plain"):
        return base
    if spec.strip() == "default":
        return DECODING
    types = {f: type(getattr(base, f)) for f in base.to_dict()}
    changes: dict[str, Any] = {}
    for part in spec.split(","):
        key, _, val = part.partition("=")
        key = key.strip()
        if key not in types:
            raise ValueError(f"unknown decoding field {key!r}; known: {', '.join(types)}")
        changes[key] = DecodingConfig.coerce(key, val)
    return base.replace(**changes)


def sweep(run: str | Path, specs: Sequence[str], out: str | Path, limit: int | None = 20, audiences_per_product: int = 2,
          max_new_tokens: int = 160, batch_size: int = 8, log: Any = print, split: str = "validation") -> list[dict[str, Any]]:
    """Score several decodings of one model (loaded once) on the same held-out pairs; appends one JSON line per
    decoding to `out` (metrics + texts + verdict reasons) and returns the rows. Runs on the validation split by
    default, where decoding is chosen; `split="test"` only for the final check."""
    from models.generation import generate_for, load_generator

    examples, data_desc = load_test_examples(run, split=split)
    chosen = select_pairs(examples, limit, audiences_per_product)
    pairs = [(ex.product, ex.audience) for ex in chosen]
    refs = [ex.text for ex in chosen]
    gen = load_generator(run)
    rows = []
    for spec in specs:
        cfg = parse_decoding(spec)
        texts, stats = generate_for(gen, pairs, max_new_tokens=max_new_tokens, batch_size=batch_size, decoding=cfg)
        m = score_system(pairs, texts, refs, stats)
        row = {"spec": spec, "decoding": cfg.to_dict(), "description": cfg.describe(), "n": len(pairs), "data": data_desc,
               "metrics": {k: v for k, v in m.items() if not k.startswith("_")},
               "texts": texts, "errors": [v["errors"] for v in m["_verdicts"]]}
        with open(out, "a") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
        log(f"{spec:55s} " + " ".join(f"{k}={m[k]:.3f}" for k in SWEEP_KEYS if m.get(k) is not None)
            + f" by_type={m['errors_by_type']}")
        rows.append(row)
    return rows


if __name__ == "__main__":  # pragma: no cover - a research tool: `python -m models.evaluate --help`
    import argparse

    ap = argparse.ArgumentParser(description="Score several decodings of one generator (see `sweep`).")
    ap.add_argument("--run", required=True, help="run dir or exported version dir")
    ap.add_argument("--decoding", action="append", required=True,
                    help='repeatable: "greedy", "default" or "field=value,..." (DecodingConfig fields)')
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--audiences", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default="decoding_sweep.jsonl")
    ap.add_argument("--split", default="validation", choices=["validation", "test"])
    a = ap.parse_args()
    sweep(a.run, a.decoding, a.out, limit=a.limit or None, audiences_per_product=a.audiences,
          max_new_tokens=a.max_new_tokens, batch_size=a.batch_size, log=lambda m: print(m, flush=True), split=a.split)
