"""Fine-tune the description generator (SmolLM2-135M-Instruct): LoRA by default, `full=True` for all weights.

Recipe (all on CPU-friendly settings; see `TrainConfig`):
- data: synthetic catalogue (`models.dataset.build_synthetic_examples`) or a platform's own file
  (JSONL / CSV / AdvertiseGen via `models.importers`), split by *product* into train/validation/test so
  no product leaks across splits; the splits are saved under `<out>/data/` for `eval`;
- each example = chat prompt (`models.prompt.render_training_text`) + target completion ending in
  `<|im_end|>`; the loss is on completion tokens only (prompt and padding labels are -100); sequences are
  capped at `max_len` tokens (the prompt is kept exactly as served; an overlong target loses its tail);
- AdamW (weight decay on matrices only), linear warm-up then cosine (or linear) decay, gradient accumulation,
  LoRA dropout (or attention dropout for full fine-tuning), gradient clipping;
- validation loss every `eval_every` optimizer steps; the best checkpoint is kept in `<out>/adapter/`
  (or `<out>/weights/`); early stopping after `patience` evaluations without improvement;
- `max_steps` / `max_minutes` budgets: when the measured s/step shows the time budget ends first, the
  schedule's horizon is shortened once so the LR still decays to its floor;
- resumable: `<out>/train_state/` holds the latest trainable weights, optimizer, scheduler, RNG states,
  step and early-stopping counters; `resume=True` continues exactly from there;
- seeded (Python, NumPy, torch and the per-epoch shuffles).

Outputs: `<out>/adapter|weights/`, `training_log.jsonl` (one JSON per step/eval), `train_state/`,
`summary.json` (config, data hash, best validation loss, steps, s/step, minutes, reproduce command).
"""

from __future__ import annotations

import json
import math
import os
import random
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from models import base_model

IGNORE = -100


@dataclass
class TrainConfig:
    out_dir: str = "runs/generator"
    data: str | None = None  # platform file: .jsonl / .csv / AdvertiseGen (.json lines with content/summary)
    data_format: str = "auto"  # auto | jsonl | csv | advertisegen
    n_products: int = 600
    audiences_per_product: int = 3
    data_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    full: bool = False
    tiny: bool = False
    model_dir: str | None = None
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_mlp: bool = False
    lora_layers: int | None = None  # adapt only the top N decoder layers (backward stops below them)
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    schedule: str = "cosine"  # cosine | linear
    min_lr_ratio: float = 0.1
    batch_size: int = 8
    grad_accum: int = 1
    max_len: int = 448
    epochs: float = 3.0
    max_steps: int | None = None
    max_minutes: float | None = None
    eval_every: int = 50
    eval_examples: int = 96
    patience: int = 3
    min_delta: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    resume: bool = False
    threads: int | None = None
    progress: bool = True


# ----------------------------------------------------------------------------------------------- data


def load_examples(cfg: TrainConfig) -> list[Any]:
    """All examples (synthetic by default, or the platform's own file)."""
    if cfg.data:
        from models import importers

        path = Path(cfg.data)
        fmt = cfg.data_format
        if fmt == "auto":
            suffix = path.suffix.lower()
            fmt = "csv" if suffix == ".csv" else "jsonl"
            if fmt == "jsonl":
                with open(path, encoding="utf-8") as fh:
                    first = next((line for line in fh if line.strip()), "")
                try:
                    row = json.loads(first)
                    if isinstance(row, dict) and "content" in row and "summary" in row:
                        fmt = "advertisegen"
                except json.JSONDecodeError:
                    pass
        reader = {
            "jsonl": importers.read_pairs_jsonl,
            "csv": importers.read_pairs_csv,
            "advertisegen": importers.read_advertisegen,
        }[fmt]
        report = reader(path)
        examples, errors = list(report.examples), list(report.errors)
        for err in errors[:20]:
            print(f"{path}:{err.line}: skipped: {err.reason}", file=sys.stderr)
        if len(errors) > 20:
            print(f"... and {len(errors) - 20} more bad lines", file=sys.stderr)
        if not examples:
            raise ValueError(f"no usable examples in {path} ({len(errors)} bad lines)")
        return examples
    from models import dataset

    return dataset.build_synthetic_examples(cfg.n_products, cfg.data_seed, audiences_per_product=cfg.audiences_per_product)


def make_splits(cfg: TrainConfig, out: Path) -> tuple[Any, str]:
    """Split by product and save the splits under `<out>/data/`; on resume reuse the saved files."""
    from models import dataset

    data_dir = out / "data"
    names = ("train", "validation", "test")
    if cfg.resume and all((data_dir / f"{n}.jsonl").is_file() for n in names):
        parts = [dataset.load_jsonl(data_dir / f"{n}.jsonl") for n in names]
        splits = dataset.Splits(*parts)
    else:
        splits = dataset.split_by_product(load_examples(cfg), val=cfg.val_fraction, test=cfg.test_fraction, seed=cfg.data_seed)
        data_dir.mkdir(parents=True, exist_ok=True)
        for n in names:
            dataset.save_jsonl(getattr(splits, n), data_dir / f"{n}.jsonl")
    return splits, dataset.data_hash(list(splits.train) + list(splits.validation) + list(splits.test))


def encode_example(tokenizer: Any, example: Any, max_len: int) -> dict[str, list[int]]:
    """Prompt + completion token ids with labels = -100 on the prompt (loss on the response only)."""
    from models import prompt as prompt_mod

    prompt, completion = prompt_mod.render_training_text(tokenizer, example.product, example.audience, example.text)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if len(p_ids) + len(c_ids) > max_len:
        # keep the prompt exactly as served; cut the target's tail (it then lacks <|im_end|>, rare)
        keep = max(16, max_len - len(p_ids))
        c_ids = c_ids[:keep]
        if len(p_ids) + len(c_ids) > max_len:  # a huge prompt: drop its oldest tokens as a last resort
            p_ids = p_ids[len(p_ids) + len(c_ids) - max_len :]
    ids = p_ids + c_ids
    return {"input_ids": ids, "labels": [IGNORE] * len(p_ids) + list(c_ids)}


def collate(batch: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad for training; padding is masked in attention and labels."""
    import torch

    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[i, :n] = torch.tensor(b["input_ids"])
        labels[i, :n] = torch.tensor(b["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ----------------------------------------------------------------------------------------------- model


def build_model(cfg: TrainConfig, model_dir: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if cfg.full and cfg.lora_dropout > 0:
        kwargs["attention_dropout"] = cfg.lora_dropout
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    model.config.use_cache = False
    if cfg.full:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    if cfg.lora_mlp:
        targets += ["gate_proj", "up_proj", "down_proj"]
    n_layers = int(model.config.num_hidden_layers)
    layers = list(range(n_layers - cfg.lora_layers, n_layers)) if cfg.lora_layers and cfg.lora_layers < n_layers else None
    lcfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
        layers_to_transform=layers,
    )
    model = get_peft_model(model, lcfg)
    return model


def trainable_state(model: Any, full: bool) -> dict[str, Any]:
    if full:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_trainable_state(model: Any, state: dict[str, Any], full: bool) -> None:
    if full:
        model.load_state_dict(state)
    else:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)


def save_best(model: Any, tokenizer: Any, out: Path, full: bool, base_ref: str) -> Path:
    """Write the best checkpoint atomically: `<out>/adapter/` (LoRA) or `<out>/weights/` (full)."""
    name = "weights" if full else "adapter"
    final = out / name
    tmp = out / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    if full:
        model.config.use_cache = True
        model.save_pretrained(tmp, safe_serialization=True)
        model.config.use_cache = False
        tokenizer.save_pretrained(tmp)
    else:
        model.peft_config["default"].base_model_name_or_path = base_ref
        # embeddings are not adapted; skipping the check also avoids peft's hub lookup (no hub here)
        model.save_pretrained(tmp, safe_serialization=True, save_embedding_layers=False)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


class LRSchedule:
    """Linear warm-up then cosine/linear decay to `min_ratio`; `total` may be shortened during training."""

    def __init__(self, warmup: int, total: int, kind: str = "cosine", min_ratio: float = 0.1) -> None:
        self.warmup, self.total, self.kind, self.min_ratio = warmup, max(1, total), kind, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / max(1, self.warmup)
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        if self.kind == "linear":
            decay = 1.0 - progress
        else:
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_ratio + (1.0 - self.min_ratio) * decay


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def micro_batch_order(n_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The deterministic micro-batches of one epoch (shuffled with seed + epoch)."""
    idx = list(range(n_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(idx)
    return [idx[i : i + batch_size] for i in range(0, n_examples, batch_size)]


def _causal_lm(model: Any) -> Any:
    """The underlying *ForCausalLM (through a peft wrapper)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def response_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed cross-entropy over response tokens and their count.

    The LM head (576 x 49,152) runs only on positions that predict a response token: ~80 % of each
    sequence is prompt, so this skips most of the largest matmul and its logits memory.
    """
    import torch

    lm = _causal_lm(model)
    hidden = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    logits = lm.lm_head(hidden[:, :-1][keep])
    loss = torch.nn.functional.cross_entropy(logits.float(), labels[keep], reduction="sum")
    return loss, int(keep.sum())


def evaluate_loss(model: Any, encoded: Sequence[dict], pad_id: int, batch_size: int) -> float:
    """Mean per-token loss over the response tokens of `encoded`."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(encoded), batch_size):
            loss, n = response_loss(model, collate(encoded[i : i + batch_size], pad_id))
            total += float(loss)
            count += n
    if was_training:
        model.train()
    return total / max(1, count)


def _git_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        ).stdout.strip() or None
    except Exception:
        return None


def reproduce_command(cfg: TrainConfig) -> str:
    """The `descstream train generator ...` command line that reproduces this run."""
    d = TrainConfig()
    args = ["descstream", "train", "generator", "--out", cfg.out_dir]
    flags = {
        "data": "--data", "data_format": "--data-format", "n_products": "--n-products",
        "audiences_per_product": "--audiences-per-product", "data_seed": "--data-seed", "lora_r": "--lora-r",
        "lora_layers": "--lora-layers",
        "lora_alpha": "--lora-alpha", "lora_dropout": "--dropout", "lr": "--lr", "weight_decay": "--weight-decay",
        "warmup_steps": "--warmup-steps", "schedule": "--schedule", "batch_size": "--batch-size",
        "grad_accum": "--grad-accum", "max_len": "--max-len", "epochs": "--epochs", "max_steps": "--max-steps",
        "max_minutes": "--max-minutes", "eval_every": "--eval-every", "eval_examples": "--eval-examples",
        "patience": "--patience", "seed": "--seed", "model_dir": "--model-dir",
    }
    for key, flag in flags.items():
        value = getattr(cfg, key)
        if value != getattr(d, key) and value is not None:
            args += [flag, str(value)]
    for key, flag in (("full", "--full"), ("tiny", "--tiny"), ("lora_mlp", "--lora-mlp")):
        if getattr(cfg, key):
            args.append(flag)
    return shlex.join(args)


# ----------------------------------------------------------------------------------------------- train


def train(cfg: TrainConfig, log: Any = None, on_step: Any = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns the summary dict also written to `summary.json`.

    `on_step(step)` is called after every optimizer step (progress hooks, tests simulating a crash).
    Ctrl-C saves `train_state/` at the current step before exiting, so `--resume` loses nothing.
    """
    import torch

    say = log or (lambda msg: print(msg, file=sys.stderr))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_dir = out / "train_state"
    if cfg.resume and not (state_dir / "state.pt").is_file():
        say(f"no train_state in {out}: starting from scratch")
        cfg.resume = False
    if not cfg.resume and (state_dir / "state.pt").is_file():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or pick another --out")

    _seed_all(cfg.seed)
    model_dir = base_model.resolve_model_dir(tiny=cfg.tiny, model_dir=cfg.model_dir)
    base_ref = str(model_dir) if (cfg.tiny or cfg.model_dir) else base_model.BASE_MODEL_ID
    tokenizer = base_model.load_tokenizer(model_dir)
    pad_id = tokenizer.pad_token_id

    splits, dhash = make_splits(cfg, out)
    t_enc = time.perf_counter()
    train_enc = [encode_example(tokenizer, ex, cfg.max_len) for ex in splits.train]
    val_src = list(splits.validation)[: cfg.eval_examples] if cfg.eval_examples else list(splits.validation)
    val_enc = [encode_example(tokenizer, ex, cfg.max_len) for ex in val_src]
    if not train_enc:
        raise ValueError("the training split is empty")
    seq_lens = [len(e["input_ids"]) for e in train_enc]
    say(
        f"data: {len(train_enc)} train / {len(splits.validation)} validation / {len(splits.test)} test examples, "
        f"mean {sum(seq_lens) / len(seq_lens):.0f} tokens (max {max(seq_lens)}), encoded in {time.perf_counter() - t_enc:.1f}s"
    )

    model = build_model(cfg, model_dir)
    model.train()
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.999),
    )
    micro_per_epoch = math.ceil(len(train_enc) / cfg.batch_size)
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / cfg.grad_accum))
    planned = cfg.max_steps if cfg.max_steps else max(1, math.ceil(steps_per_epoch * cfg.epochs))
    config_planned = planned
    schedule = LRSchedule(min(cfg.warmup_steps, max(0, planned - 1)), planned, cfg.schedule, cfg.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    step = 0
    best_val = float("inf")
    best_step = 0
    bad_evals = 0
    elapsed_before = 0.0
    horizon_adjusted = False
    budget_shortened = False
    stop_reason = None
    if cfg.resume:
        st = torch.load(state_dir / "state.pt", weights_only=False)
        load_trainable_state(model, st["trainable"], cfg.full)
        optimizer.load_state_dict(st["optimizer"])
        scheduler.load_state_dict(st["scheduler"])
        step, best_val, best_step, bad_evals = st["step"], st["best_val"], st["best_step"], st["bad_evals"]
        elapsed_before = st["elapsed_s"]
        horizon_adjusted = st.get("horizon_adjusted", False)
        budget_shortened = st.get("budget_shortened", False)
        if budget_shortened and cfg.max_minutes:
            planned = st.get("planned", planned)  # keep the horizon the time budget chose
        schedule.total = planned  # same config -> same schedule; a larger --max-steps extends it
        _set_rng_state(st["rng"])
        say(f"resumed from step {step} (best validation loss {best_val:.4f} at step {best_step})")
    elif (out / "training_log.jsonl").exists():
        (out / "training_log.jsonl").unlink()

    log_fh = open(out / "training_log.jsonl", "a", encoding="utf-8")

    def write_log(rec: dict) -> None:
        log_fh.write(json.dumps(rec) + "\n")
        log_fh.flush()

    def save_state() -> None:
        tmp = state_dir.with_name("train_state.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "trainable": trainable_state(model, cfg.full),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "schedule_total": schedule.total,
                "planned": planned,
                "step": step,
                "best_val": best_val,
                "best_step": best_step,
                "bad_evals": bad_evals,
                "elapsed_s": elapsed_before + (time.perf_counter() - t_start),
                "horizon_adjusted": horizon_adjusted,
                "budget_shortened": budget_shortened,
                "rng": _rng_state(),
                "config": asdict(cfg),
            },
            tmp / "state.pt",
        )
        if state_dir.exists():
            shutil.rmtree(state_dir)
        os.replace(tmp, state_dir)

    write_log(
        {
            "event": "start" if not cfg.resume else "resume",
            "step": step,
            "trainable_params": n_trainable,
            "total_params": n_total,
            "train_examples": len(train_enc),
            "planned_steps": planned,
            "steps_per_epoch": steps_per_epoch,
        }
    )
    say(
        f"{'full fine-tune' if cfg.full else f'LoRA r={cfg.lora_r}'}: {n_trainable:,} of {n_total:,} params trainable; "
        f"{planned} steps planned ({steps_per_epoch}/epoch, batch {cfg.batch_size}x{cfg.grad_accum})"
    )

    t_start = time.perf_counter()
    step_times: list[float] = []
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None

    progress = None
    task = None
    if cfg.progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[sps]} s/step"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        progress.start()
        task = progress.add_task("train", total=planned, completed=step, loss="-", val="-", sps="-")

    last_eval_step = step if cfg.resume else -1

    def do_eval() -> float:
        nonlocal best_val, best_step, bad_evals, last_eval_step
        last_eval_step = step
        val = evaluate_loss(model, val_enc, pad_id, cfg.batch_size) if val_enc else float("nan")
        improved = val < best_val - cfg.min_delta
        if improved:
            best_val, best_step, bad_evals = val, step, 0
            save_best(model, tokenizer, out, cfg.full, base_ref)
        else:
            bad_evals += 1
        write_log({"event": "eval", "step": step, "val_loss": val, "best_val": best_val, "improved": improved})
        if progress is not None:
            progress.update(task, val=f"{val:.3f}")
        return val

    try:
        micro_index = step * cfg.grad_accum
        while step < planned:
            if budget_s is not None and elapsed_before + (time.perf_counter() - t_start) >= budget_s:
                stop_reason = "time budget"
                break
            t_step = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            tok_count = 0
            micro_batches = []
            for _ in range(cfg.grad_accum):
                epoch, pos = divmod(micro_index, micro_per_epoch)
                micro_batches.append(micro_batch_order(len(train_enc), cfg.batch_size, cfg.seed, epoch)[pos])
                micro_index += 1
            n_tokens = sum(sum(1 for l in train_enc[i]["labels"][1:] if l != IGNORE) for mb in micro_batches for i in mb)
            for mb in micro_batches:
                loss, n = response_loss(model, collate([train_enc[i] for i in mb], pad_id))
                (loss / max(1, n_tokens)).backward()  # token-weighted mean over the whole accumulated batch
                loss_sum += float(loss.detach())
                tok_count += n
            grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            dt = time.perf_counter() - t_step
            step_times.append(dt)
            train_loss = loss_sum / max(1, tok_count)
            elapsed = elapsed_before + (time.perf_counter() - t_start)
            write_log(
                {
                    "event": "step",
                    "step": step,
                    "loss": train_loss,
                    "lr": optimizer.param_groups[0]["lr"],
                    "grad_norm": float(grad_norm),
                    "s_per_step": dt,
                    "elapsed_s": elapsed,
                    "epoch": step / steps_per_epoch,
                }
            )
            # fit the LR horizon to the time budget: after 5 steps, then at every evaluation (the s/step of a
            # shared CPU drifts), never beyond the configured steps; the LR then still decays to its floor
            if budget_s is not None and len(step_times) >= 5 and (not horizon_adjusted or step % cfg.eval_every == 0):
                recent = sorted(step_times[-20:])
                sps = recent[len(recent) // 2]
                eval_cost = (len(val_enc) / max(1, cfg.batch_size)) * sps / 3 / max(1, cfg.eval_every)
                reachable = step + int((budget_s - elapsed) / (sps + eval_cost))
                new_planned = max(step + 1, min(config_planned, reachable))
                if new_planned != planned:
                    write_log({"event": "horizon", "step": step, "planned": planned, "new_planned": new_planned, "s_per_step": sps})
                    if not horizon_adjusted:
                        say(f"time budget: ~{reachable} of {config_planned} steps reachable at {sps:.2f} s/step; LR schedule fitted")
                    planned = new_planned
                    schedule.total = planned
                    budget_shortened = planned < config_planned
                    if progress is not None:
                        progress.update(task, total=planned)
                horizon_adjusted = True
            if progress is not None:
                progress.update(task, completed=step, loss=f"{train_loss:.3f}", sps=f"{dt:.2f}")
            if on_step is not None:
                on_step(step)
            if step % cfg.eval_every == 0 or step == planned:
                do_eval()
                save_state()
                if cfg.patience and bad_evals >= cfg.patience:
                    stop_reason = f"early stopping (no improvement in {cfg.patience} evaluations)"
                    break
        else:
            if budget_shortened:
                stop_reason = "time budget"
            else:
                stop_reason = "max steps" if cfg.max_steps else "epochs done"
        if step > 0 and last_eval_step != step:  # stopped between evaluations (time budget): evaluate the end
            do_eval()
            save_state()
    except KeyboardInterrupt:
        say(f"interrupted at step {step}: saving train_state/ (continue with --resume)")
        write_log({"event": "interrupted", "step": step})
        save_state()
        raise
    finally:
        if progress is not None:
            progress.stop()
        log_fh.close()

    total_s = elapsed_before + (time.perf_counter() - t_start)
    sps_all = [json.loads(l).get("s_per_step") for l in open(out / "training_log.jsonl") if '"event": "step"' in l]
    summary = {
        "base_model": base_ref,
        "method": "full" if cfg.full else "lora",
        "artifact": "weights" if cfg.full else "adapter",
        "config": asdict(cfg),
        "data_hash": dhash,
        "data_source": cfg.data or f"synthetic(n_products={cfg.n_products}, seed={cfg.data_seed})",
        "examples": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
        "trainable_params": n_trainable,
        "total_params": n_total,
        "steps": step,
        "epochs": step / steps_per_epoch,
        "best_val_loss": best_val if best_val != float("inf") else None,
        "best_step": best_step,
        "stop_reason": stop_reason,
        "train_minutes": total_s / 60,
        "s_per_step_median": sorted(sps_all)[len(sps_all) // 2] if sps_all else None,
        "tokens_per_example_mean": sum(seq_lens) / len(seq_lens),
        "git_commit": _git_commit(),
        "command": reproduce_command(cfg),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    say(f"done: {step} steps, best validation loss {summary['best_val_loss']} at step {best_step} ({stop_reason}); {total_s / 60:.1f} min")
    return summary
