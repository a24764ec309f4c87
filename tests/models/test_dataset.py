from collections import Counter

import pytest

from descstream.schemas import DEFAULT_AUDIENCE
from models.audiences import audiences_for_category
from models.dataset import Example, build_synthetic_examples, data_hash, load_jsonl, save_jsonl, split_by_product


def test_build_synthetic_examples_audiences():
    ex = build_synthetic_examples(120, seed=4, audiences_per_product=3)
    per_product: dict[str, list[str]] = {}
    for e in ex:
        assert isinstance(e, Example) and e.text
        per_product.setdefault(e.product.product_id, []).append(e.audience)
    assert len(per_product) == 120
    for pid, auds in per_product.items():
        product = next(e.product for e in ex if e.product.product_id == pid)
        assert auds[0] == DEFAULT_AUDIENCE and len(auds) == 3 == len(set(auds))
        assert set(auds) <= set(audiences_for_category(product.category))
    assert len({e.audience for e in ex}) >= 7
    assert build_synthetic_examples(120, seed=4)[5].text == ex[5].text
    assert build_synthetic_examples(120, seed=5)[5].text != ex[5].text


def test_split_by_product_no_leakage():
    ex = build_synthetic_examples(300, seed=1)
    s = split_by_product(ex, val=0.1, test=0.1, seed=0)
    ids = [{e.product.product_id for e in part} for part in (s.train, s.validation, s.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert len(s.train) + len(s.validation) + len(s.test) == len(ex)
    assert [len(i) for i in ids] == [240, 30, 30]
    assert split_by_product(ex, seed=0).test == s.test
    assert {e.product.product_id for e in split_by_product(ex, seed=1).test} != ids[2]
    tiny = split_by_product(ex[:9], val=0.1, test=0.1)  # 3 products: each split still gets one
    assert all(len(part) == 3 for part in (tiny.train, tiny.validation, tiny.test))
    with pytest.raises(ValueError):
        split_by_product(ex, val=0.6, test=0.5)


def test_jsonl_round_trip_and_hash(tmp_path):
    ex = build_synthetic_examples(30, seed=2)
    path = tmp_path / "d" / "train.jsonl"
    assert save_jsonl(ex, path) == len(ex)
    back = load_jsonl(path)
    assert [(e.product, e.audience, e.text) for e in back] == [(e.product, e.audience, e.text) for e in ex]
    assert data_hash(back) == data_hash(ex) == data_hash(list(reversed(ex)))
    changed = [Example(ex[0].product, ex[0].audience, ex[0].text + " x")] + ex[1:]
    assert data_hash(changed) != data_hash(ex)
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=rf":{len(ex) + 1}:"):
        load_jsonl(path)


def test_adversarial_seller_texts_present_but_targets_clean():
    ex = build_synthetic_examples(400, seed=8)
    hostile = [e for e in ex if "ignore" in e.product.description.lower() or "<|im_" in e.product.description]
    assert hostile
    for e in hostile:
        low = e.text.lower()
        assert "free" not in low and "ignore" not in low
    assert Counter(e.audience for e in ex)[DEFAULT_AUDIENCE] == 400
