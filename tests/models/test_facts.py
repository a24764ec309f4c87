"""`models.facts`: the fact-mention rule shared by the coverage metric and fact-aware decoding."""

from __future__ import annotations

from descstream.schemas import ProductUpsert
from models.facts import coverage, fact_forms, missing, normalise


def _product() -> ProductUpsert:
    return ProductUpsert(op="upsert", product_id="p-1", version=1, updated_at="2026-11-28T10:00:00Z",
                         title="Trail Tent", category="Outdoor > Camping > Tents", brand="NorthPeak", price=149.0,
                         currency="USD", attributes={"weight": "1.6 kg", "sleeps": 2.0, "waterproof": True,
                                                     "freestanding": False, "material": "ripstop nylon"})


def test_forms_cover_brand_values_whole_floats_and_true_flags() -> None:
    assert fact_forms(_product()) == ("northpeak", "1.6 kg", "2", "waterproof", "ripstop nylon")


def test_mentions_survive_case_punctuation_and_full_stops() -> None:
    text = "NorthPeak's tent weighs 1.6 kg. Sleeps 2, waterproof; made of ripstop-nylon."
    assert missing(text, fact_forms(_product())) == []  # possessive, hyphen, full stop, comma
    assert coverage(_product(), "By NorthPeak: 1.6 kg, sleeps 2, waterproof, ripstop nylon.") == 1.0
    assert coverage(_product(), "A tent.") == 0.0
    assert normalise("1.6 kg.") == " 1.6 kg "
    assert missing("weighs 1.60 kg", ["1.6 kg"]) == ["1.6 kg"]  # a different number is not the fact
