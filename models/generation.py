"""Loading a trained/exported generator and batched greedy generation (left padding, KV cache).

One place for the generation recipe so `eval`, `generate` and the Triton model produce the same text:
- artefacts are either a peft adapter folder (`adapter_config.json`) applied to the base SmolLM2, or a full
  HF weights folder (`config.json`); `load_generator` accepts either, a run dir (`<run>/adapter|weights`),
  an exported version dir (`<N>/artifacts/adapter|weights`) or None (= the untuned base model);
- prompts come from `models.prompt.render_prompt` (chat template + generation prompt);
- greedy decoding, stop at `<|im_end|>`, special tokens stripped, whitespace collapsed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from models import base_model


def find_artifacts(path: str | Path | None) -> tuple[str, Path | None]:
    """Return ("adapter"|"weights"|"base", folder) for a run dir, version dir, artifacts dir or leaf dir."""
    if path is None:
        return "base", None
    p = Path(path)
    for cand in (p, p / "artifacts", p / "adapter", p / "weights", p / "artifacts" / "adapter", p / "artifacts" / "weights"):
        if (cand / "adapter_config.json").is_file():
            return "adapter", cand
        if (cand / "config.json").is_file() and any(cand.glob("*.safetensors")):
            return "weights", cand
    raise FileNotFoundError(f"no adapter (adapter_config.json) or weights (config.json) under {p}")


@dataclass
class Generator:
    model: Any
    tokenizer: Any
    kind: str
    source: str
    device: str = "cpu"
    info: dict = field(default_factory=dict)


def load_generator(
    path: str | Path | None = None, device: str = "cpu", base_dir: str | Path | None = None, merge: bool = True
) -> Generator:
    """Load base / base+adapter (merged for speed) / full weights, in eval mode on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    kind, folder = find_artifacts(path)
    if kind == "weights":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tok = base_model.load_tokenizer(folder)
    else:
        base_folder = Path(base_dir) if base_dir is not None else None
        if kind == "adapter" and base_folder is None:
            cfg = json.loads((folder / "adapter_config.json").read_text())
            hint = cfg.get("base_model_name_or_path") or ""
            # a tiny-model adapter records its local base folder; the real one records the hub id
            if hint and Path(hint).is_dir() and (Path(hint) / "config.json").is_file():
                base_folder = Path(hint)
        base_folder = base_folder or base_model.ensure_base_model()
        model = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
        tok = base_model.load_tokenizer(base_folder)
        if kind == "adapter":
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder)
            if merge:
                model = model.merge_and_unload()
    model.to(device).eval()
    return Generator(model=model, tokenizer=tok, kind=kind, source=str(folder or base_folder), device=device)


def clean_output(text: str) -> str:
    text = text.split("<|im_end|>")[0].split("<|im_start|>")[0]
    return " ".join(text.split())


def generate_texts(
    gen: Generator,
    prompts: Sequence[str],
    max_new_tokens: int = 160,
    batch_size: int = 8,
    max_prompt_tokens: int = 512,
) -> tuple[list[str], dict]:
    """Greedy generation for rendered prompts; returns texts and stats (new tokens, seconds, tokens/s)."""
    import torch

    tok, model = gen.tokenizer, gen.model
    tok.padding_side = "left"
    eos_ids = [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]
    eos_ids = sorted({i for i in eos_ids if i is not None and i >= 0})
    texts: list[str] = []
    new_tokens = 0
    t0 = time.perf_counter()
    # sort by length so each batch pads little; restore order at the end
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: dict[int, str] = {}
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tok(
                [prompts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_prompt_tokens,
                add_special_tokens=False,
            ).to(gen.device)
            seq = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos_ids,
                pad_token_id=tok.pad_token_id,
            )
            gen_part = seq[:, enc["input_ids"].shape[1] :]
            for row, i in enumerate(idx):
                ids = gen_part[row].tolist()
                n = len(ids)
                for j, t in enumerate(ids):
                    if t in eos_ids:
                        n = j + 1
                        break
                new_tokens += n
                out[i] = clean_output(tok.decode(ids[:n], skip_special_tokens=True))
    texts = [out[i] for i in range(len(prompts))]
    secs = time.perf_counter() - t0
    return texts, {"new_tokens": new_tokens, "seconds": secs, "tokens_per_s": new_tokens / secs if secs > 0 else 0.0}


def generate_for(gen: Generator, pairs: Sequence[tuple[Any, Any]], **kw: Any) -> tuple[list[str], dict]:
    """(product, audience) pairs -> texts, using `models.prompt.render_prompt`."""
    from models import prompt as prompt_mod

    prompts = [prompt_mod.render_prompt(gen.tokenizer, p, a) for p, a in pairs]
    return generate_texts(gen, prompts, **kw)
