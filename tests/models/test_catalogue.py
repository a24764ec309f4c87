import random

from descstream.schemas import ProductUpsert, decode_product, encode
from models.catalogue import (CATEGORIES, KNOWN_BRANDS, KNOWN_COLOURS, KNOWN_MATERIALS, generate_catalogue,
                              mutate_product)


def test_deterministic_and_unique():
    a = generate_catalogue(300, seed=5)
    b = generate_catalogue(300, seed=5)
    assert [encode(p) for p in a] == [encode(p) for p in b]
    assert len({p.product_id for p in a}) == 300
    assert a[7].product_id == "p-5-7"
    assert all(p.version == 1 for p in a)
    assert len({p.updated_at for p in a}) == 1
    c = generate_catalogue(300, seed=6)
    assert {p.product_id for p in a}.isdisjoint({p.product_id for p in c})


def test_thousands_of_distinct_products_and_all_categories():
    ps = generate_catalogue(3000, seed=1)
    assert len({p.facts_hash() for p in ps}) == 3000
    assert len(CATEGORIES) >= 8
    assert {p.category for p in ps} == {c.path for c in CATEGORIES}
    assert len({p.title for p in ps}) > 2000


def test_products_round_trip_the_wire_format():
    for p in generate_catalogue(50, seed=2):
        assert decode_product(encode(p)) == p
        assert p.price is not None and p.price > 0
        assert p.brand and p.brand.lower() in KNOWN_BRANDS


def test_vocabularies_cover_generated_values_and_common_words():
    ps = generate_catalogue(1000, seed=3)
    for p in ps:
        for k, v in p.attributes.items():
            if k in ("material", "upper_material", "strap_material", "upholstery", "fill") and isinstance(v, str):
                assert v.lower() in KNOWN_MATERIALS, v
            if k == "colour" and v != "natural":
                assert v in KNOWN_COLOURS, v
    assert {"sony", "nike", "lego"} <= KNOWN_BRANDS
    assert {"cotton", "leather", "titanium", "merino wool"} <= KNOWN_MATERIALS
    assert {"black", "purple", "gold"} <= KNOWN_COLOURS


def test_mutate_product_bumps_version_and_changes_facts():
    rng = random.Random(0)
    changed_price = changed_attrs = 0
    for p in generate_catalogue(200, seed=4):
        q = mutate_product(p, rng)
        assert isinstance(q, ProductUpsert)
        assert q.product_id == p.product_id and q.version == p.version + 1 and q.updated_at > p.updated_at
        assert q.facts_hash() != p.facts_hash()
        changed_price += q.price != p.price
        changed_attrs += q.attributes != p.attributes
    assert changed_price > 80 and changed_attrs > 30
