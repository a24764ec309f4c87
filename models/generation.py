"""Loading a trained/exported generator and batched generation (left padding, KV cache).

One place for the generation recipe so `eval`, `generate` and the Triton model produce the same text:
- artefacts are either a peft adapter folder (`adapter_config.json`) applied to the base SmolLM2, or a full
  HF weights folder (`config.json`); `load_generator` accepts either, a run dir (`<run>/adapter|weights`),
  an exported version dir (`<N>/artifacts/adapter|weights`) or None (= the untuned base model);
- prompts come from `models.prompt.render_prompt` (chat template + generation prompt);
- decoding: `DECODING` (a `DecodingConfig`) and one token loop, `decode_rows`, used by `generate_texts`
  (eval / batch generate) and by the Triton model `serving/triton_models/desc_generator.py`; stop at
  `<|im_end|>`, special tokens stripped, whitespace collapsed.

Repetition controls (`repetition_penalty`, `no_repeat_ngram_size`) look only at the row's *generated*
tokens, never at the prompt (the prompt holds the facts; penalising them would discourage stating them),
and never touch number/punctuation tokens (a banned digit turns "1,299" into an invented number); the
penalty also spares the product's own fact tokens (`fact_token_ids`: title, brand, values), so names are
not misspelt to dodge it ("Hushwave" -> "Hushlaw" was measured without this). Sampling (temperature > 0,
top-k/top-p) is per row with the row's own seeded `torch.Generator`, so a row's text depends only on its
prompt, its parameters and its seed, never on its batch-mates. In serving, temperature and seed come with
each request (settings `models.temperature` / `models.seed`, which should equal `DECODING`'s).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

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


# ---------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class DecodingConfig:
    """How the next token is chosen. `temperature` and `seed` are per request in serving (the Triton
    inputs TEMPERATURE/SEED); the rest is model-level.

    - `temperature`: 0 = greedy (argmax); > 0 = sample from softmax(logits / temperature);
    - `top_k`, `top_p`: sampling only: keep the k most likely tokens, then the smallest set whose
      probability reaches top_p (0 / 1.0 = off);
    - `repetition_penalty`: > 1 lowers the logit of every token already *generated* in this row (a
      positive logit is divided by it, a negative one multiplied), as in CTRL / transformers, except that
      prompt tokens are not penalised;
    - `no_repeat_ngram_size`: n > 0 bans any token that would make an n-gram of the *generated* tokens
      occur more than `ngram_max_count` times (1 = never repeat, as transformers; 2 = one repeat allowed,
      the third occurrence banned, which mirrors the gate's `repetition_loop` rule);
    - number and punctuation tokens are exempt from both (see the module docstring), and the penalty
      spares each row's `protected_ids` (its product's fact tokens);
    - `min_new_tokens`: stop tokens are banned until a row has generated this many tokens (0 = off);
    - `hold_stop_for_facts`: while a row has generated fewer than this many tokens, a stop token it picks
      is refused (and the token re-drawn without stops) if its text still misses one of the product's facts
      (`models.facts`, the coverage metric's definition); 0 = off. The model ends a description when *it*
      thinks it is done, which after short fine-tuning is often one fact early; this asks it to go on,
      in its own words, only then (the gate still checks whatever it writes);
    - `numbers_from_facts`: every number the row writes is one of its product's numbers
      (`models.number_guard`: digits are masked so a number can only spell out a fact number);
    - `seed`: the default per-row seed (eval / batch generate; serving sends its own).
    """

    temperature: float = 0.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    ngram_max_count: int = 1
    min_new_tokens: int = 0
    hold_stop_for_facts: int = 0
    numbers_from_facts: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"bad decoding parameters: {self}")
        if self.repetition_penalty <= 0 or self.no_repeat_ngram_size < 0 or self.ngram_max_count < 1 or self.min_new_tokens < 0 \
                or self.hold_stop_for_facts < 0:
            raise ValueError(f"bad decoding parameters: {self}")

    def replace(self, **changes: Any) -> "DecodingConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def coerce(cls, name: str, text: Any) -> Any:
        """A field value from text (a config.pbtxt parameter, a sweep spec): "false"/"0" are False."""
        kind = type(getattr(cls(), name))
        if kind is bool:
            low = str(text).strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"{name} must be true/false, got {text!r}")
            return low in ("1", "true", "yes", "on")
        return kind(str(text).strip())

    def describe(self) -> str:
        mode = "greedy" if self.temperature == 0 else (
            f"sampling (temperature {self.temperature:g}, top_k {self.top_k}, top_p {self.top_p:g}, seed {self.seed})")
        extra = []
        if self.repetition_penalty != 1.0:
            extra.append(f"repetition_penalty {self.repetition_penalty:g}")
        if self.no_repeat_ngram_size:
            extra.append(f"no_repeat_ngram_size {self.no_repeat_ngram_size}"
                         + (f" (max {self.ngram_max_count} occurrences)" if self.ngram_max_count > 1 else ""))
        if self.min_new_tokens:
            extra.append(f"min_new_tokens {self.min_new_tokens}")
        if self.hold_stop_for_facts:
            extra.append(f"stop held for unmentioned facts up to {self.hold_stop_for_facts} tokens")
        if self.numbers_from_facts:
            extra.append("numbers only from the facts")
        return mode + (" + " + ", ".join(extra) if extra else "") + " (generated tokens only)" * bool(extra)


#: The project's default decoding: eval, batch generate and the Triton model all use it. Chosen by
#: measured sweeps (README "Models"; the v4 model card records it): light seeded sampling for varied
#: wording, a mild repetition penalty and "no 3-token sequence a third time" against the loops the gate
#: rejects (v2 sweep, test split); numbers only from the facts and a stop held for unmentioned facts up to
#: 72 tokens (v3 sweep on the validation split: coverage 76.8% -> 81.3%, raw hallucination 3.7% -> 1.3%);
#: temperature 0.7 instead of 0.6 for Distinct-2 headroom (validation 0.527 -> 0.549; test sat at 0.50).
DECODING = DecodingConfig(temperature=0.7, top_k=50, top_p=0.9, repetition_penalty=1.1,
                          no_repeat_ngram_size=3, ngram_max_count=2, hold_stop_for_facts=72,
                          numbers_from_facts=True, seed=0)


@dataclass(frozen=True)
class DecodeRow:
    """One generation job: prompt token ids and the row's own parameters (the Triton model's `Row`)."""

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float
    seed: int
    protected_ids: frozenset[int] = frozenset()  # never penalised: the product's fact tokens
    facts: tuple[str, ...] = ()  # `models.facts.fact_forms(product)`, for `hold_stop_for_facts`
    numbers: Any = None  # `models.number_guard.FactNumbers` of the product, for `numbers_from_facts`


_EXEMPT_CACHE: dict[int, frozenset[int]] = {}


def repetition_exempt_ids(tokenizer: Any) -> frozenset[int]:
    """Token ids whose text is only digits, punctuation, symbols or whitespace (cached per tokenizer)."""
    key = id(tokenizer)
    if key not in _EXEMPT_CACHE:
        vocab = tokenizer.get_vocab()
        ids = sorted(vocab.values())
        texts = tokenizer.batch_decode([[i] for i in ids])
        _EXEMPT_CACHE[key] = frozenset(i for i, t in zip(ids, texts) if t and not any(c.isalpha() for c in t))
    return _EXEMPT_CACHE[key]


_NUMBER_TOKENS: dict[int, Any] = {}


def number_tokens(tokenizer: Any) -> Any:
    """`models.number_guard.NumberTokens` of `tokenizer` (cached per tokenizer)."""
    from models.number_guard import NumberTokens

    key = id(tokenizer)
    if key not in _NUMBER_TOKENS:
        _NUMBER_TOKENS[key] = NumberTokens.of(tokenizer)
    return _NUMBER_TOKENS[key]


def fact_token_ids(tokenizer: Any, product: Any) -> frozenset[int]:
    """Token ids of the product's title, brand and attribute values as the prompt states them."""
    from models import prompt as prompt_mod

    values = [line.split(": ", 1)[1] for line in prompt_mod.facts_lines(product) if ": " in line]
    ids: set[int] = set()
    for v in values:
        for form in (" " + v, v):
            ids.update(tokenizer(form, add_special_tokens=False)["input_ids"])
    return frozenset(ids)


def stop_token_ids(tokenizer: Any, model: Any = None) -> frozenset[int]:
    """`<|im_end|>`, the tokenizer's EOS and the model's generation-config EOS ids."""
    ids: set[int] = set()
    for t in ("<|im_end|>", tokenizer.eos_token):
        if t:
            i = tokenizer.convert_tokens_to_ids(t)
            if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id:
                ids.add(i)
    gc = getattr(model, "generation_config", None) if model is not None else None
    eos = getattr(gc, "eos_token_id", None) if gc is not None else None
    for i in eos if isinstance(eos, (list, tuple)) else [eos]:
        if isinstance(i, int) and i >= 0:
            ids.add(i)
    return frozenset(ids)


def banned_ngram_tokens(history: Sequence[int], n: int, max_count: int = 1) -> list[int]:
    """Tokens that would make an n-gram of `history` (the generated tokens) occur more than `max_count` times."""
    if n <= 0 or len(history) < n:
        return []
    if n == 1:
        counts: dict[int, int] = {}
        for t in history:
            counts[t] = counts.get(t, 0) + 1
        return sorted(t for t, c in counts.items() if c >= max_count)
    prefix = tuple(history[len(history) - n + 1 :])
    nexts: dict[int, int] = {}
    for i in range(len(history) - n + 1):
        if tuple(history[i : i + n - 1]) == prefix:
            t = history[i + n - 1]
            nexts[t] = nexts.get(t, 0) + 1
    return sorted(t for t, c in nexts.items() if c >= max_count)


def process_logits(
    logits: Any,
    histories: Sequence[Sequence[int]],
    cfg: DecodingConfig,
    exempt: frozenset[int] = frozenset(),
    protected: Sequence[frozenset[int]] | None = None,
) -> Any:
    """Apply the repetition penalty and the n-gram ban row by row (on a float copy). Tokens in `exempt`
    are never penalised or banned; `protected[b]` are never penalised in row b."""
    import torch

    if cfg.repetition_penalty == 1.0 and not cfg.no_repeat_ngram_size:
        return logits
    logits = logits.float().clone()
    for b, hist in enumerate(histories):
        if not hist:
            continue
        if cfg.repetition_penalty != 1.0:
            spare = exempt | protected[b] if protected else exempt
            pen = sorted(set(hist) - spare)
            if pen:
                idx = torch.tensor(pen, dtype=torch.long, device=logits.device)
                vals = logits[b, idx]
                logits[b, idx] = torch.where(vals > 0, vals / cfg.repetition_penalty, vals * cfg.repetition_penalty)
        banned = [t for t in banned_ngram_tokens(hist, cfg.no_repeat_ngram_size, cfg.ngram_max_count) if t not in exempt]
        if banned:
            logits[b, torch.tensor(banned, dtype=torch.long, device=logits.device)] = float("-inf")
    return logits


def choose_tokens(logits: Any, temperatures: Sequence[float], generators: Sequence[Any], cfg: DecodingConfig) -> Any:
    """Next token per row: argmax for temperature 0, else top-k/top-p sampling with the row's generator."""
    import torch

    nxt = logits.argmax(dim=-1)
    for b, (temp, g) in enumerate(zip(temperatures, generators)):
        if temp <= 0:
            continue
        row = logits[b].float() / temp
        if cfg.top_k > 0:
            kth = torch.topk(row, min(cfg.top_k, row.shape[-1])).values[-1]
            row = row.masked_fill(row < kth, float("-inf"))
        if cfg.top_p < 1.0:
            sorted_vals, sorted_idx = torch.sort(row, descending=True)
            cum = torch.softmax(sorted_vals, dim=-1).cumsum(-1)
            drop = cum - torch.softmax(sorted_vals, dim=-1) >= cfg.top_p  # keep the token that crosses top_p
            row = row.scatter(0, sorted_idx, sorted_vals.masked_fill(drop, float("-inf")))
        probs = torch.softmax(row, dim=-1)
        nxt[b] = torch.multinomial(probs, 1, generator=g)[0]
    return nxt


def decode_rows(
    model: Any,
    rows: Sequence[DecodeRow],
    *,
    stop_ids: Iterable[int],
    pad_id: int,
    device: str = "cpu",
    decoding: DecodingConfig = DECODING,
    exempt_ids: frozenset[int] = frozenset(),
    tokenizer: Any = None,
) -> list[list[int]]:
    """Generate for all rows in one batch: left padding, explicit positions, KV cache; rows that finish
    are dropped from the batch (and its cache). Returns each row's new tokens (a final stop token kept).
    `exempt_ids`: `repetition_exempt_ids(tokenizer)` (number/punctuation tokens); `tokenizer` is needed
    only for `decoding.hold_stop_for_facts` (it reads a row's text so far) and `numbers_from_facts`."""
    import torch

    from models import facts as facts_mod
    from models import number_guard

    guard = number_tokens(tokenizer) if decoding.numbers_from_facts and tokenizer is not None else None

    stop = frozenset(stop_ids)
    n = len(rows)
    if n == 0:
        return []
    width = max(1, max(len(r.prompt_ids) for r in rows))
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r.prompt_ids:
            ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, width - len(r.prompt_ids) :] = 1
    mask[:, -1] = 1  # an empty prompt still needs one visible position
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    gens = []
    for r in rows:
        g = torch.Generator(device=device)
        g.manual_seed(int(r.seed) & 0xFFFF_FFFF_FFFF_FFFF)
        gens.append(g)
    out_tokens: list[list[int]] = [[] for _ in rows]
    active = list(range(n))  # original row index of each batch position
    with torch.inference_mode():
        res = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        cache = res.past_key_values
        logits = res.logits[:, -1, :]
        last_pos = pos[:, -1]
        while True:
            logits = process_logits(logits, [out_tokens[i] for i in active], decoding, exempt_ids,
                                    [rows[i].protected_ids for i in active])
            if guard is not None and any(rows[i].numbers is not None for i in active):
                logits = number_guard.apply(logits.float().clone(), [out_tokens[i] for i in active], guard,
                                            [rows[i].numbers for i in active])
            if decoding.min_new_tokens and stop:
                early = [b for b, i in enumerate(active) if len(out_tokens[i]) < decoding.min_new_tokens]
                if early:
                    logits = logits.float().clone()
                    stop_idx = torch.tensor(sorted(stop), dtype=torch.long, device=logits.device)
                    for b in early:
                        logits[b, stop_idx] = float("-inf")
            nxt = choose_tokens(logits, [rows[i].temperature for i in active], [gens[i] for i in active], decoding)
            if decoding.hold_stop_for_facts and stop and tokenizer is not None:
                # a row that wants to stop with a fact still unmentioned draws again, stops banned
                held = [b for b, i in enumerate(active)
                        if int(nxt[b]) in stop and rows[i].facts and len(out_tokens[i]) < decoding.hold_stop_for_facts
                        and facts_mod.missing(tokenizer.decode(out_tokens[i], skip_special_tokens=True), rows[i].facts)]
                if held:
                    sub = logits[held].float().clone()
                    sub[:, torch.tensor(sorted(stop), dtype=torch.long, device=sub.device)] = float("-inf")
                    again = choose_tokens(sub, [rows[active[b]].temperature for b in held],
                                          [gens[active[b]] for b in held], decoding)
                    for j, b in enumerate(held):
                        nxt[b] = again[j]
            keep: list[int] = []
            for b, i in enumerate(active):
                t = int(nxt[b])
                out_tokens[i].append(t)
                if t not in stop and len(out_tokens[i]) < rows[i].max_new_tokens:
                    keep.append(b)
            if not keep:
                break
            if len(keep) < len(active):
                sel = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(sel)
                mask, last_pos, nxt = mask[sel], last_pos[sel], nxt[sel]
                active = [active[b] for b in keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            last_pos = last_pos + 1
            res = model(
                input_ids=nxt.view(-1, 1),
                attention_mask=mask,
                position_ids=last_pos.view(-1, 1),
                past_key_values=cache,
                use_cache=True,
            )
            cache = res.past_key_values
            logits = res.logits[:, -1, :]
    return out_tokens


def decode_text(tokenizer: Any, tokens: Sequence[int], stop_ids: Iterable[int]) -> str:
    body = list(tokens[:-1]) if tokens and tokens[-1] in set(stop_ids) else list(tokens)
    return clean_output(tokenizer.decode(body, skip_special_tokens=True))


def clean_output(text: str) -> str:
    text = text.split("<|im_end|>")[0].split("<|im_start|>")[0]
    return " ".join(text.split())


def generate_texts(
    gen: Generator,
    prompts: Sequence[str],
    max_new_tokens: int = 160,
    batch_size: int = 8,
    max_prompt_tokens: int = 512,
    decoding: DecodingConfig | None = None,
    protected: Sequence[frozenset[int]] | None = None,
    facts: Sequence[tuple[str, ...]] | None = None,
    numbers: Sequence[Any] | None = None,
) -> tuple[list[str], dict]:
    """Generate for rendered prompts with `decoding` (default `DECODING`, each row seeded with
    `decoding.seed`, as a serving request with that seed); returns texts and stats (new tokens, seconds,
    tokens/s). Same token loop as the Triton model (`decode_rows`). `protected[i]`: prompt i's fact tokens;
    `facts[i]`: its fact forms (`models.facts.fact_forms`, for `hold_stop_for_facts`); `numbers[i]`: its
    `models.number_guard.FactNumbers` (for `numbers_from_facts`)."""
    cfg = decoding or DECODING
    tok, model = gen.tokenizer, gen.model
    tok.padding_side = "left"
    stop = stop_token_ids(tok, model)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    exempt = repetition_exempt_ids(tok) if (cfg.repetition_penalty != 1.0 or cfg.no_repeat_ngram_size) else frozenset()
    new_tokens = 0
    t0 = time.perf_counter()
    # sort by length so each batch pads little; restore order at the end
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = []
        for i in idx:
            ids = tok(prompts[i], add_special_tokens=False, truncation=True, max_length=max_prompt_tokens)["input_ids"]
            rows.append(DecodeRow(tuple(ids), max_new_tokens, cfg.temperature, cfg.seed,
                                  protected[i] if protected else frozenset(), tuple(facts[i]) if facts else (),
                                  numbers[i] if numbers else None))
        toks = decode_rows(model, rows, stop_ids=stop, pad_id=pad_id, device=gen.device, decoding=cfg, exempt_ids=exempt,
                           tokenizer=tok)
        for i, t in zip(idx, toks):
            new_tokens += len(t)
            out[i] = decode_text(tok, t, stop)
    texts = [out[i] for i in range(len(prompts))]
    secs = time.perf_counter() - t0
    return texts, {"new_tokens": new_tokens, "seconds": secs, "tokens_per_s": new_tokens / secs if secs > 0 else 0.0,
                   "decoding": cfg.to_dict()}


def generate_for(gen: Generator, pairs: Sequence[tuple[Any, Any]], **kw: Any) -> tuple[list[str], dict]:
    """(product, audience) pairs -> texts, using `models.prompt.render_prompt`."""
    from models import facts as facts_mod
    from models import prompt as prompt_mod
    from models.number_guard import FactNumbers

    prompts = [prompt_mod.render_prompt(gen.tokenizer, p, a) for p, a in pairs]
    protected = [fact_token_ids(gen.tokenizer, p) for p, _ in pairs]
    forms = [facts_mod.fact_forms(p) for p, _ in pairs]
    numbers = [FactNumbers.of_product(p) for p, _ in pairs]
    return generate_texts(gen, prompts, protected=protected, facts=forms, numbers=numbers, **kw)
