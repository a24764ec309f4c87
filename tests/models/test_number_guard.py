"""`models.number_guard`: decoding can only write numbers that are among the product's facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import base_model, dataset
from models.number_guard import FactNumbers, NumberTokens, allowed_tokens

NT = NumberTokens(digit={i: str(i) for i in range(10)}, dot=frozenset({10}), comma=frozenset({11}))
NUMS = FactNumbers.of({"3.1", "4500", "149", "2"})


def digits(ids: frozenset[int]) -> str:
    return "".join(sorted(NT.digit[i] for i in ids if i in NT.digit))


def test_number_so_far_reads_the_trailing_number() -> None:
    assert NT.number_so_far([42, 4, 11, 5, 0]) == "450"  # "4,50": commas dropped
    assert NT.number_so_far([42, 10, 3]) == "3"  # a full stop before the number is not part of it
    assert NT.number_so_far([3, 42]) == ""
    assert NT.number_so_far([3, 8, 10, 10]) == "" and NT.number_so_far([3, 8, 10, 10, 1]) == "1"


def test_only_fact_numbers_can_be_spelt() -> None:
    ok, free = allowed_tokens(NT, "", NUMS)
    assert digits(ok) == "1234" and free  # numbers may start with 3 (3.1), 4 (4500), 1 (149), 2 (2)
    ok, free = allowed_tokens(NT, "45", NUMS)
    assert digits(ok) == "0" and not free  # "45" is not a fact: it must go on to 4500
    ok, free = allowed_tokens(NT, "3", NUMS)
    assert digits(ok) == "" and 10 in ok and not free  # "3" only as "3.1"
    ok, free = allowed_tokens(NT, "3.", NUMS)
    assert digits(ok) == "1" and not free
    ok, free = allowed_tokens(NT, "149", NUMS)
    assert free and 10 in ok and 11 in ok  # complete: punctuation or words may follow; "149.00" is allowed too
    ok, free = allowed_tokens(NT, "149.", NUMS)
    assert digits(ok) == "0" and free  # "149." may be a full stop, or go on to 149.0(0)
    ok, free = allowed_tokens(NT, "4", NUMS)
    assert 11 in ok and digits(ok) == "5"  # "4,500" as well as "4500"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return base_model.build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_decoding_with_the_guard_writes_no_invented_number(tiny_dir: Path) -> None:
    """The tiny model pushed to write digits: without the guard it invents numbers, with it the gate's
    number rule never fires."""
    from models import gate
    from models.generation import DecodingConfig, generate_for, load_generator

    gen = load_generator(None, base_dir=tiny_dir)
    nt = NumberTokens.of(gen.tokenizer)
    boost = sorted(set(nt.digit) | nt.dot)
    model = gen.model

    class DigitHappy:  # the tiny model, biased hard towards digits and dots
        def __call__(self, **kw):
            res = model(**kw)
            res.logits[..., boost] += 8.0
            return res

    gen.model = DigitHappy()
    pairs = [(e.product, e.audience) for e in dataset.build_synthetic_examples(4, seed=3)[:4]]

    def invented(cfg: DecodingConfig) -> list[str]:
        texts, _ = generate_for(gen, pairs, max_new_tokens=40, batch_size=4, decoding=cfg)
        assert sum(ch.isdigit() for t in texts for ch in t) > 40  # it did write numbers
        return [r for (p, a), t in zip(pairs, texts) for r in gate.check(p, a, t).reasons
                if r.startswith("number_not_in_facts")]

    cfg = DecodingConfig(temperature=0.8, seed=1)
    assert invented(cfg)  # the bias makes the unguarded model invent numbers
    assert invented(cfg.replace(numbers_from_facts=True)) == []
