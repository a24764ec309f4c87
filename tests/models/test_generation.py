"""The shared decoding loop (`models.generation`): repetition controls, sampling, batch independence,
and that the Triton model's generator runs the very same code as eval / batch generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import base_model, dataset
from models.generation import (
    DECODING,
    DecodeRow,
    DecodingConfig,
    banned_ngram_tokens,
    choose_tokens,
    decode_rows,
    fact_token_ids,
    process_logits,
    repetition_exempt_ids,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return base_model.build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_banned_ngrams_respect_max_count() -> None:
    hist = [1, 2, 3, 9, 1, 2]
    assert banned_ngram_tokens(hist, 3) == [3]  # "1 2" was followed by 3 once: never again
    assert banned_ngram_tokens(hist, 3, max_count=2) == []  # one repeat allowed
    assert banned_ngram_tokens(hist + [3, 1, 2], 3, max_count=2) == [3]  # a third "1 2 3" is banned
    assert banned_ngram_tokens(hist, 0) == [] and banned_ngram_tokens([1], 3) == []
    assert banned_ngram_tokens([5, 5, 6], 1, max_count=2) == [5]


def test_process_logits_spares_exempt_and_protected_tokens() -> None:
    import torch

    cfg = DecodingConfig(repetition_penalty=2.0, no_repeat_ngram_size=2)
    logits = torch.tensor([[4.0, -4.0, 4.0, 4.0, 4.0]])
    out = process_logits(logits, [[0, 1, 0]], cfg, exempt=frozenset({3}), protected=[frozenset({2})])
    assert out[0, 0].item() == pytest.approx(2.0)  # penalised: positive logit divided
    assert out[0, 1] == float("-inf")  # "0 1" occurred: 1 after 0 is banned (also penalised)
    assert out[0, 2].item() == 4.0 and out[0, 4].item() == 4.0  # protected / never generated
    # a digit-like (exempt) token is neither banned nor penalised
    out = process_logits(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), [[3, 2, 3]], cfg, exempt=frozenset({2}))
    assert out[0, 2].item() == 1.0 and out[0, 3].item() == pytest.approx(0.5)
    assert logits[0, 0].item() == 4.0  # input untouched
    plain = torch.tensor([[1.0, 2.0]])
    assert process_logits(plain, [[0]], DecodingConfig()) is plain  # nothing to do: no copy


def test_choose_tokens_greedy_topp_and_seed() -> None:
    import torch

    logits = torch.tensor([[0.0, 5.0, 4.9, -1.0], [0.0, 5.0, 4.9, -1.0]])
    cfg = DecodingConfig(top_k=0, top_p=0.5)
    g = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)]
    assert choose_tokens(logits, [0.0, 0.0], g, cfg).tolist() == [1, 1]
    # top_p=0.5 keeps only the most likely token, whatever the draw
    for seed in range(5):
        g = [torch.Generator().manual_seed(seed)] * 2
        assert choose_tokens(logits, [1.0, 1.0], g, cfg).tolist() == [1, 1]
    wide = DecodingConfig(top_k=2, top_p=1.0)
    draws = {tuple(choose_tokens(logits, [5.0, 5.0], [torch.Generator().manual_seed(s)] * 2, wide).tolist()) for s in range(20)}
    assert {t for d in draws for t in d} <= {1, 2} and len({t for d in draws for t in d}) == 2  # top-k=2


def test_decoding_config_validation_and_description() -> None:
    with pytest.raises(ValueError):
        DecodingConfig(top_p=0.0)
    with pytest.raises(ValueError):
        DecodingConfig(ngram_max_count=0)
    assert DecodingConfig().describe() == "greedy"
    assert "no_repeat_ngram_size 3" in DecodingConfig(no_repeat_ngram_size=3).describe()
    assert DECODING.replace(seed=5).seed == 5 and DECODING.to_dict()["seed"] == DECODING.seed


def test_exempt_and_fact_tokens(tiny_dir: Path) -> None:
    tok = base_model.load_tokenizer(tiny_dir)
    exempt = repetition_exempt_ids(tok)
    for s in ("1", "9", ".", ",", "%"):
        assert all(i in exempt for i in tok(s, add_special_tokens=False)["input_ids"]), s
    assert not set(tok(" the", add_special_tokens=False)["input_ids"]) & exempt
    p = dataset.build_synthetic_examples(1, seed=0)[0].product
    facts = fact_token_ids(tok, p)
    assert set(tok(" " + p.brand, add_special_tokens=False)["input_ids"]) <= facts


def test_rows_are_independent_of_batch_mates(tiny_dir: Path) -> None:
    from models.generation import load_generator, stop_token_ids

    gen = load_generator(None, base_dir=tiny_dir)
    tok = gen.tokenizer
    cfg = DecodingConfig(temperature=0.8, top_p=0.9, repetition_penalty=1.2, no_repeat_ngram_size=3, ngram_max_count=2)
    ids = [tuple(tok(t, add_special_tokens=False)["input_ids"]) for t in ("a short prompt", "another, much longer prompt here")]
    rows = [DecodeRow(ids[0], 12, 0.8, 7), DecodeRow(ids[1], 9, 0.0, 1), DecodeRow(ids[0], 5, 0.8, 3)]
    kw = dict(stop_ids=stop_token_ids(tok, gen.model), pad_id=tok.pad_token_id or 0, decoding=cfg,
              exempt_ids=repetition_exempt_ids(tok))
    together = decode_rows(gen.model, rows, **kw)
    alone = [decode_rows(gen.model, [r], **kw)[0] for r in rows]
    assert together == alone
    assert decode_rows(gen.model, rows, **kw) == together  # seeded: reproducible
    assert [len(t) <= r.max_new_tokens for t, r in zip(together, rows)] == [True] * 3


def test_triton_generator_matches_generate_for(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The served path (`DescGenerator`) and eval/batch path (`generate_for`) give the same text."""
    from descstream.schemas import encode
    from models.generation import generate_for, load_generator
    from serving.triton_models import desc_generator as dg_mod

    monkeypatch.setattr(base_model, "resolve_model_dir", lambda tiny=False, **kw: tiny_dir)
    dg = dg_mod.DescGenerator(None, mode="tiny", warmup=False)
    assert dg.decoding == DECODING
    ex = dataset.build_synthetic_examples(2, seed=1)
    pairs = [(e.product, e.audience) for e in ex[:3]]
    rows = [dg.row(encode(p), a, 10, DECODING.temperature, DECODING.seed) for p, a in pairs]
    served = [o.text for o in dg.generate(rows)]
    texts, _ = generate_for(load_generator(None, base_dir=tiny_dir), pairs, max_new_tokens=10, batch_size=2)
    assert served == texts


def test_serving_settings_default_to_the_evaluated_decoding() -> None:
    from descstream.config import ModelSettings

    m = ModelSettings()
    assert (m.temperature, m.seed) == (DECODING.temperature, DECODING.seed)


def test_hold_stop_for_facts_refuses_an_early_stop(tiny_dir: Path) -> None:
    """A row that picks a stop token while a fact is unmentioned draws again without stops, up to the limit."""
    from models.generation import load_generator, stop_token_ids

    gen = load_generator(None, base_dir=tiny_dir)
    tok = gen.tokenizer
    stop = stop_token_ids(tok, gen.model)

    class EagerToStop:  # the tiny model, but it always wants to end the text now
        def __call__(self, **kw):
            res = gen.model(**kw)
            res.logits[..., sorted(stop)] += 1e4
            return res

    ids = tuple(tok("a prompt", add_special_tokens=False)["input_ids"])
    rows = [DecodeRow(ids, 20, 0.0, 0, facts=("zzqx unsayable",)), DecodeRow(ids, 20, 0.7, 1, facts=()),
            DecodeRow(ids, 5, 0.7, 2, facts=("zzqx unsayable",))]
    kw = dict(stop_ids=stop, pad_id=tok.pad_token_id or 0, tokenizer=tok)
    held = decode_rows(EagerToStop(), rows, decoding=DecodingConfig(hold_stop_for_facts=8), **kw)
    assert len(held[0]) == 9 and held[0][-1] in stop and not set(held[0][:-1]) & stop  # held for 8 tokens
    assert len(held[1]) == 1 and held[1][0] in stop  # no facts to wait for: stops at once
    assert len(held[2]) == 5  # max_new_tokens still wins
    plain = decode_rows(EagerToStop(), rows, decoding=DecodingConfig(), **kw)
    assert [len(t) for t in plain] == [1, 1, 1]
