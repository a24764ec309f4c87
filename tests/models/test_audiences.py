import pytest

from descstream.schemas import DEFAULT_AUDIENCE
from models.audiences import Audience, audiences_for_category, get_audience, load_audiences
from models.catalogue import CATEGORIES, KNOWN_BRANDS, KNOWN_COLOURS, KNOWN_MATERIALS


def test_at_least_six_audiences_plus_default():
    auds = load_audiences()
    assert DEFAULT_AUDIENCE in auds
    assert len(auds) >= 7
    for name in ("value_seekers", "tech_enthusiasts", "outdoor_adventurers", "gift_buyers", "eco_conscious", "families"):
        a = auds[name]
        assert isinstance(a, Audience) and a.label and a.cares_about and a.emphasis and a.tone


def test_get_audience_unknown_has_clear_message():
    assert get_audience("families").name == "families"
    with pytest.raises(KeyError, match="unknown audience 'nope'.*known audiences: .*default"):
        get_audience("nope")


def test_load_audiences_returns_copy():
    auds = load_audiences()
    auds.pop("families")
    assert "families" in load_audiences()


def test_audiences_for_category_default_first_and_relevant():
    tents = audiences_for_category("Outdoor > Camping > Tents")
    assert tents[0] == DEFAULT_AUDIENCE
    assert "outdoor_adventurers" in tents and "families" in tents and "tech_enthusiasts" not in tents
    phones = audiences_for_category("Electronics > Audio > Headphones")
    assert "tech_enthusiasts" in phones and "outdoor_adventurers" not in phones
    assert audiences_for_category(None)[0] == DEFAULT_AUDIENCE
    assert "outdoor_adventurers" not in audiences_for_category("Outdoorsy Things")  # prefix is path-aware
    for spec in CATEGORIES:
        assert len(audiences_for_category(spec.path)) >= 3


def test_tone_words_carry_no_facts():
    vocab = KNOWN_BRANDS | KNOWN_MATERIALS | KNOWN_COLOURS
    for a in load_audiences().values():
        for phrase in a.tone:
            assert not any(ch.isdigit() for ch in phrase)
            words = set(phrase.lower().replace("-", " ").split())
            assert not (words & vocab), (a.name, phrase)


def test_load_audiences_rejects_missing_default(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text('[x]\nlabel = "X"\ncares_about = "y"\n')
    with pytest.raises(ValueError, match="default"):
        load_audiences(p)
