"""Pure logic of the behaviour agent's profiles (`streams/profile.py`): no broker, no Redis."""

from __future__ import annotations

import numpy as np
import pytest

from descstream.schemas import DEFAULT_AUDIENCE
from models.audiences import load_audiences
from streams.profile import HALF_LIFE_S, MIN_EVENTS, WEIGHTS, AudienceModel, Profile, category_key

T0 = 1_795_860_000.0


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def test_centroid_is_the_weighted_mean_of_embeddings() -> None:
    p = Profile()
    embs = [unit(i) for i in range(5)]
    kinds = ["view", "click", "purchase", "view", "add_to_cart"]
    for i, (e, k) in enumerate(zip(embs, kinds)):
        p.apply(WEIGHTS[k], T0 + i, f"p-{i}", "Outdoor > Camping", 4.0, e, None)
    w = np.array([WEIGHTS[k] for k in kinds])
    expect = (w[:, None] * np.stack(embs)).sum(0) / w.sum()
    np.testing.assert_allclose(p.cent, expect, rtol=1e-5, atol=1e-6)
    assert p.cw == pytest.approx(w.sum())
    assert embs[0][0] == unit(0)[0]  # the caller's embedding is never modified in place


def test_decay_keeps_the_centroid_and_halves_weights() -> None:
    p = Profile()
    p.apply(1.0, T0, "p-1", "Outdoor > Camping", 4.0, unit(1), None)
    p.apply(1.0, T0 + 1, "p-2", "Outdoor > Camping", 4.0, unit(2), None)
    before = p.cent.copy()
    p._decay(T0 + 1 + HALF_LIFE_S)
    np.testing.assert_allclose(p.cent, before, rtol=1e-5, atol=1e-6)
    assert p.cw == pytest.approx(1.0, rel=1e-3)
    assert p.cats["Outdoor > Camping"] == pytest.approx(1.0, rel=1e-3)


def test_serialised_profile_round_trips() -> None:
    p = Profile()
    for i in range(4):
        p.apply(WEIGHTS["click"], T0 + i, f"p-{i}", category_key("Electronics > Audio > Headphones"), 5.0, unit(i), "wireless anc")
    p.audience, p.off, p.redis_at = "tech_enthusiasts", 41, T0
    q = Profile.loads(p.dumps())
    assert (q.audience, q.n, q.off, q.recent, q.cats, q.q) == (p.audience, p.n, p.off, p.recent, p.cats, p.q)
    assert q.cw == pytest.approx(p.cw)
    np.testing.assert_allclose(q.cent, p.cent, atol=2e-3)  # float16 on disk
    q.apply(1.0, T0 + 10, "p-9", None, None, unit(9), None)  # keeps accumulating after a restore
    assert q.cw == pytest.approx(p.cw + 1.0)


def test_empty_profile_round_trips_without_embedding() -> None:
    q = Profile.loads(Profile().dumps())
    assert q.cent is None and q.audience == DEFAULT_AUDIENCE and q.off == -1


def test_assignment_needs_evidence_and_has_hysteresis() -> None:
    model = AudienceModel(load_audiences())
    p = Profile()
    tent = category_key("Outdoor > Camping > Tents")
    headphones = category_key("Electronics > Audio > Headphones")
    for i in range(MIN_EVENTS - 1):
        p.apply(WEIGHTS["view"], T0 + i, f"t-{i}", tent, 5.0, None, None)
    assert model.assign(p) == DEFAULT_AUDIENCE  # too few events
    p.apply(WEIGHTS["view"], T0 + 5, "t-9", tent, 5.0, None, None)
    p.audience = model.assign(p)
    assert p.audience == "outdoor_adventurers"
    p.apply(WEIGHTS["view"], T0 + 6, "h-1", headphones, 5.0, None, None)  # one stray view: no flap
    assert model.assign(p) == "outdoor_adventurers"
    for i in range(6):
        p.apply(WEIGHTS["purchase"], T0 + 10 + i, f"h-{i}", headphones, 5.0, None, None)
    assert model.assign(p) == "tech_enthusiasts"  # sustained interest does switch


def test_embedding_term_is_scale_invariant() -> None:
    names = [n for n in load_audiences() if n != DEFAULT_AUDIENCE]
    model = AudienceModel(load_audiences(), {n: unit(100 + i) for i, n in enumerate(names)})
    a, b = Profile(), Profile()
    for i in range(3):
        a.apply(1.0, T0 + i, f"p-{i}", None, None, unit(i), None)
        b.apply(8.0, T0 + i, f"p-{i}", None, None, unit(i), None)  # same centroid, 8x the weight sum
    sa, sb = model.scores(a), model.scores(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k] == pytest.approx(sb[k], abs=1e-5)
    assert len({round(v, 6) for v in sa.values()}) > 2  # the embedding term does separate audiences


def test_vectorised_assignment_matches_the_per_profile_one() -> None:
    """`assign_many` (the agent's scoring round) decides exactly like `assign`, on varied random profiles."""
    import random

    names = [n for n in load_audiences() if n != DEFAULT_AUDIENCE]
    model = AudienceModel(load_audiences(), {n: unit(200 + i) for i, n in enumerate(names)})
    cats = ["Outdoor > Camping > Tents", "Electronics > Audio > Headphones", "Home > Kitchen > Mugs", "Toys > Building",
            "Beauty > Skin > Serums", "Home > Furniture > Chairs", "Sports > Running > Shoes", "Books > Fiction", None]
    rng = random.Random(5)
    profiles = []
    for k in range(300):
        p = Profile(audience=rng.choice([DEFAULT_AUDIENCE, *names, "retired_audience"]))
        for i in range(rng.randrange(0, 12)):
            kind = rng.choice(list(WEIGHTS))
            price = rng.choice([None, 3.0, 20.0, 80.0, 900.0])
            p.apply(WEIGHTS[kind], T0 + i * 60, f"p-{rng.randrange(50)}", category_key(rng.choice(cats)),
                    None if price is None else np.log(price), rng.choice([None, unit(rng.randrange(40))]),
                    rng.choice([None, None, "cheap gift for kids", "waterproof hiking", "eco bamboo"]))
        profiles.append(p)
    got = model.assign_many(profiles)
    want = [model.assign(p) for p in profiles]
    assert got == want
    assert len(set(want)) >= 4  # the sample exercises several audiences and switches
