import itertools
import random
import re

from models.audiences import audiences_for_category, load_audiences
from models.catalogue import generate_catalogue
from models.dataset import build_synthetic_examples
from models.gate import check
from models.reference import write_reference

_TOK = re.compile(r"[a-z0-9$€£.'-]+")


def _tokens(text: str) -> list[str]:
    return [t.strip(".") for t in _TOK.findall(text.lower()) if t.strip(".")]


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Corpus Distinct-n: unique n-grams / all n-grams over the whole set of texts."""
    total, seen = 0, set()
    for t in texts:
        toks = _tokens(t)
        grams = list(zip(*(toks[i:] for i in range(n))))
        total += len(grams)
        seen.update(grams)
    return len(seen) / max(total, 1)


PRODUCTS = generate_catalogue(500, seed=13)
REFS = {(p.product_id, a): write_reference(p, a, random.Random(f"{p.product_id}/{a}"))
        for p in PRODUCTS for a in audiences_for_category(p.category)}


def test_references_pass_gate_and_length_for_500_products():
    by_id = {p.product_id: p for p in PRODUCTS}
    for (pid, aud), text in REFS.items():
        v = check(by_id[pid], aud, text)
        assert v.passed, (aud, text, v.reasons)
        words = len(text.split())
        assert 30 <= words <= 100, (words, text)
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
        assert 2 <= len(sentences) <= 6, text
    assert len(REFS) > 2000


def test_reference_is_deterministic_given_rng():
    p = PRODUCTS[0]
    assert write_reference(p, "gift_buyers", random.Random(7)) == write_reference(p, "gift_buyers", random.Random(7))
    assert write_reference(p, "gift_buyers", random.Random(7)) != write_reference(p, "gift_buyers", random.Random(8))


def test_references_differ_across_audiences():
    sims = []
    for p in PRODUCTS:
        auds = audiences_for_category(p.category)
        words = {a: set(_tokens(REFS[(p.product_id, a)])) for a in auds}
        for a, b in itertools.combinations(auds, 2):
            sims.append(len(words[a] & words[b]) / len(words[a] | words[b]))
    mean = sum(sims) / len(sims)
    assert mean < 0.5, mean
    assert max(sims) < 0.9


def test_every_audience_gets_used_and_has_its_own_voice():
    per_aud: dict[str, list[str]] = {}
    for (_, aud), text in REFS.items():
        per_aud.setdefault(aud, []).append(text)
    assert set(per_aud) == set(load_audiences())
    # price leads for value seekers far more often than for anyone else
    def price_share(texts):
        return sum(bool(re.search(r"[$€£]\d", t)) for t in texts) / len(texts)
    assert price_share(per_aud["value_seekers"]) > 0.9 > 0.5 > price_share(per_aud["gift_buyers"])


def test_distinct_2_of_references():
    # Corpus-level Distinct-2 falls as the corpus grows; since references say *every* fact (coverage ~97%)
    # they reuse more fact frames: 0.23 at 600 texts (0.28 when they said a third of the facts). The floor
    # guards against a regression to one fixed template, which scores ~0.05 here. Within one text,
    # bigrams almost never repeat.
    texts = [e.text for e in build_synthetic_examples(200, seed=3)]
    assert len(texts) == 600
    assert distinct_n(texts, 2) >= 0.2
    per_text = [distinct_n([t], 2) for t in texts]
    assert sum(per_text) / len(per_text) > 0.95


def test_references_cover_the_facts():
    from models.evaluate import coverage

    by_id = {p.product_id: p for p in PRODUCTS}
    cov = [coverage(by_id[pid], text) for (pid, _), text in REFS.items()]
    assert sum(cov) / len(cov) >= 0.9
