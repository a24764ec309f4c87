"""Span-level faithfulness rules: each finds one kind of error an editor marks, with the exact span.

Checked against the product's structured facts (title, brand, category, price and currency, attribute
keys and values); the seller's free-text description is never a fact source (`docs/labelling-guide.md`).
Every rule runs on normalised text (`models.verifier.normalise`: NFKC, confusables, number words).

- values (`misbound`, `invented`): every number in the text is a fact's number, with that fact's unit
  and currency, and not bound to another attribute's noun ("2.4 GHz processor" for a 2.4 GHz wireless
  link, "183 kg" for 183 cm, "$1299" for 1299 INR); model codes such as "M800" are in the facts;
- product type (`wrong_type`): a product noun in the text ("this backpack") names the product's type;
- names (`wrong_name`): brand and title words are spelt exactly ("Hushlaw" for Hushwave), and no other
  catalogue brand is named;
- audience words (`invented`): "for men" only when the facts say so;
- seller text (`injection`, `invented`): an instruction, a commercial promise or a feature phrase that
  appears only in the seller's description is not repeated;
- vocabularies and claims (`invented`, `misbound`, `injection`, `nonsense`): the gate's materials,
  colours, claims, prompt echoes and repetition loops, mapped to the error types;
- form (`nonsense`): a text that breaks off mid-sentence.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from descstream.schemas import ProductUpsert

from models.verifier.normalise import normalise, unicode_fold


@dataclass(frozen=True)
class SpanError:
    """One error: its type (`models.verifier.ERROR_TYPES`), the exact text span, and why."""

    type: str
    span: str
    why: str


def find_span(text: str, needle: str) -> str:
    """`needle` as it is written in `text` (case and look-alikes kept), or `needle` itself if absent."""
    if not needle:
        return needle
    folded = unicode_fold(text).lower()
    i = folded.find(needle.lower())
    if i >= 0 and len(folded) == len(text):
        return text[i:i + len(needle)]
    m = re.search(re.escape(needle), text, re.IGNORECASE)
    return m.group(0) if m else needle


# ----------------------------------------------------------------------------------------- units

_UNIT_ALIASES = {
    "kg": "kg", "kgs": "kg", "kilogram": "kg", "kilograms": "kg", "kilo": "kg", "kilos": "kg",
    "g": "g", "gr": "g", "gram": "g", "grams": "g", "gm": "g", "gms": "g",
    "mg": "mg", "oz": "oz", "ounce": "oz", "ounces": "oz", "lb": "lb", "lbs": "lb",
    "mm": "mm", "millimetre": "mm", "millimetres": "mm", "millimeter": "mm", "millimeters": "mm",
    "cm": "cm", "centimetre": "cm", "centimetres": "cm", "centimeter": "cm", "centimeters": "cm",
    "m": "m", "metre": "m", "metres": "m", "meter": "m", "meters": "m", "km": "km",
    "in": "in", "inch": "in", "inches": "in", "ft": "ft", "feet": "ft", "foot": "ft",
    "ml": "ml", "millilitre": "ml", "millilitres": "ml", "milliliter": "ml", "milliliters": "ml",
    "l": "l", "litre": "l", "litres": "l", "liter": "l", "liters": "l", "cl": "cl",
    "w": "w", "watt": "w", "watts": "w", "kw": "kw", "v": "v", "volt": "v", "volts": "v",
    "mah": "mah", "wh": "wh", "pounds": "lb", "pound": "lb",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "min": "min", "mins": "min",
    "minute": "min", "minutes": "min", "s": "s", "sec": "s", "seconds": "s", "second": "s",
    "day": "day", "days": "day", "week": "week", "weeks": "week", "month": "month", "months": "month",
    "year": "year", "years": "year", "yr": "year", "yrs": "year",
    "ghz": "ghz", "mhz": "mhz", "hz": "hz", "gb": "gb", "gigabyte": "gb", "gigabytes": "gb", "tb": "tb",
    "mb": "mb", "megabytes": "mb", "mp": "mp", "megapixel": "mp", "megapixels": "mp",
    "°c": "c", "°f": "f", "k": "k", "kelvin": "k", "%": "%", "percent": "%", "atm": "atm",
    "lumens": "lm", "lumen": "lm", "lm": "lm", "db": "db", "rpm": "rpm", "psi": "psi", "mp3": "",
}
_UNIT_CLASS = {
    "kg": "mass", "g": "mass", "mg": "mass", "oz": "mass", "lb": "mass",
    "mm": "length", "cm": "length", "m": "length", "km": "length", "in": "length", "ft": "length",
    "ml": "volume", "l": "volume", "cl": "volume", "w": "power", "kw": "power", "v": "voltage",
    "mah": "charge", "wh": "energy", "h": "time", "min": "time", "s": "time", "day": "time", "week": "time",
    "month": "time", "year": "time", "ghz": "frequency", "mhz": "frequency", "hz": "frequency",
    "gb": "data", "tb": "data", "mb": "data", "mp": "resolution", "c": "temperature", "f": "temperature",
    "k": "colour temperature", "%": "share", "atm": "pressure", "lm": "light", "db": "sound", "rpm": "speed",
    "psi": "pressure",
}
_CURRENCY_SYMBOL = {"$": "USD", "us$": "USD", "£": "GBP", "€": "EUR", "₹": "INR", "rs": "INR", "rs.": "INR",
                    "inr": "INR", "usd": "USD", "eur": "EUR", "gbp": "GBP"}
_CURRENCY_WORD = {"usd": "USD", "dollars": "USD", "dollar": "USD", "inr": "INR", "rupees": "INR", "rupee": "INR",
                  "eur": "EUR", "euros": "EUR", "euro": "EUR", "gbp": "GBP", "pounds": "GBP", "pound": "GBP"}
# A noun right after a value names the attribute it belongs to: "2.4 GHz processor", "130 g of storage".
_SPEC_NOUNS = frozenset(
    "processor cpu chip storage memory ram battery screen display camera weight capacity power motor "
    "speaker speakers driver drivers resolution strap case bulb blade blades lens zoom range waterproofing "
    "charge charging runtime playback playtime warranty guarantee comfort".split())
# The attribute words each spec noun may stand for ("600 ml of storage" for a capacity is right).
_NOUN_KEYS = {
    "storage": {"storage", "capacity", "volume"}, "power": {"power", "wattage", "output"},
    "waterproofing": {"waterproof", "rating", "water"}, "battery": {"battery", "case"},
    "display": {"display", "screen"}, "screen": {"display", "screen"}, "charge": {"battery", "charging"},
    "runtime": {"battery", "runtime"}, "playback": {"battery", "playback"}, "playtime": {"battery", "playtime"},
    "capacity": {"capacity", "volume", "battery"}, "driver": {"driver"}, "case": {"case"},
    "comfort": {"comfort"},
}
_WEIGH_WORDS = frozenset("weighs weighing weight weighted tips".split())

_TOKEN = re.compile(
    r"(?P<cur>(?:us\$|\$|£|€|₹|\brs\.?(?=\s?\d)))?\s?"
    r"(?P<num>(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])\d+(?:\.\d+)?)"
    r"(?P<rest>(?:[a-z]+\d*)?)",
    re.IGNORECASE,
)


def _canon(num: str) -> str:
    num = num.replace(",", "")
    if "." in num:
        num = num.rstrip("0").rstrip(".")
    return num.lstrip("0") or "0"


@dataclass(frozen=True)
class _FactValue:
    number: str
    unit: str | None
    key: str
    words: frozenset[str]


def _unit_after(text: str, end: int) -> tuple[str | None, str, int]:
    """The unit written right after a number (at `end`), as (canonical unit, as written, end position)."""
    m = re.match(r"[ -]?(°\s?[cf]\b|%|[a-z]+\b)", text[end:], re.IGNORECASE)
    if not m:
        return None, "", end
    word = m.group(1).lower().replace(" ", "")
    unit = _UNIT_ALIASES.get(word)
    if unit:
        return unit, m.group(0), end + m.end()
    return None, "", end


def _values_in(text: str, key: str, words: frozenset[str]) -> list[_FactValue]:
    out = []
    for m in _TOKEN.finditer(text):
        rest = m.group("rest").lower()
        if rest and rest not in _UNIT_ALIASES:
            out.append(_FactValue(_canon(m.group("num")) + rest, None, key, words))  # "k3", "m600"
            continue
        unit = _UNIT_ALIASES.get(rest) if rest else _unit_after(text, m.end())[0]
        out.append(_FactValue(_canon(m.group("num")), unit, key, words))
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


@dataclass(frozen=True)
class Facts:
    """A product's facts, prepared once for every rule."""

    product: ProductUpsert
    values: tuple[_FactValue, ...]
    price: str | None
    currency: str
    words: frozenset[str]  # every word of every fact (title, brand, category, keys, values)
    text: str  # the facts joined, lower-case, for phrase lookups
    seller: str  # the seller's description, normalised, lower-case


def _singular(w: str) -> str:
    if len(w) > 3 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def prepare(product: ProductUpsert) -> Facts:
    values: list[_FactValue] = []
    parts = [product.title, product.brand or "", product.category or ""]
    for key, value in product.attributes.items():
        kwords = frozenset(_singular(w) for w in _words(key))
        if isinstance(value, bool):
            parts.append(key.replace("_", " ") + (" yes" if value else " no"))
            continue
        sval = value if isinstance(value, str) else (f"{value:g}" if isinstance(value, float) else str(value))
        parts.append(key.replace("_", " ") + " " + sval)
        vwords = frozenset(_singular(w) for w in _words(sval))
        found = _values_in(normalise(sval).lower(), key, kwords | vwords)
        key_unit = next((_UNIT_ALIASES[w] for w in _words(key)  # "shelf_life_in_months": 48 is in months
                         if len(w) > 2 and _UNIT_ALIASES.get(w) in _UNIT_CLASS), None)
        values += [_FactValue(v.number, key_unit, v.key, v.words) if v.unit is None and key_unit else v for v in found]
    for text in (product.title, product.brand or "", product.category or ""):
        values += _values_in(normalise(text).lower(), "title", frozenset(_singular(w) for w in _words(text)))
    price = _canon(f"{product.price:.2f}") if product.price is not None else None
    joined = normalise("\n".join(parts)).lower()
    words = set(_words(joined)) | {_singular(w) for w in _words(joined)} | set(re.findall(r"[a-z]+", joined))
    words.add(product.currency.lower())
    return Facts(product, tuple(values), price, product.currency, frozenset(words), joined,
                 normalise(product.description or "").lower())


# ------------------------------------------------------------------------------------ values


def value_errors(text: str, facts: Facts) -> list[SpanError]:
    """Numbers, units, currencies and model codes (see the module docstring)."""
    norm = normalise(text)
    low = norm.lower()
    errors: list[SpanError] = []
    for m in _TOKEN.finditer(low):
        num, rest = _canon(m.group("num")), m.group("rest").lower()
        start = m.start("num")
        if rest and rest not in _UNIT_ALIASES:  # a model code: "k3", "v60", "ipx4"
            code = num + rest
            whole = m.group("num") + m.group("rest")
            if not any(v.number == code for v in facts.values) and whole.lower() not in facts.text:
                errors.append(SpanError("invented", find_span(text, whole), f"'{whole}' is not in the facts"))
            continue
        if rest:
            unit, written, end = _UNIT_ALIASES[rest], m.group("rest"), m.end()
        else:
            unit, written, end = _unit_after(low, m.end())
        cur = (m.group("cur") or "").lower().strip()
        after = low[end:end + 12].strip()
        code_after = re.match(r"(usd|inr|eur|gbp|dollars?|rupees?|euros?|pounds?)\b", after)
        currency = _CURRENCY_SYMBOL.get(cur) if cur else None
        if unit == "lb" and num == facts.price and not any(v.number == num and v.unit == "lb" for v in facts.values):
            unit, currency = None, currency or "GBP"  # "25 pounds" where 25 is the price: a price
        elif code_after and unit != "lb":
            currency = currency or _CURRENCY_WORD.get(code_after.group(1))
        span_text = low[m.start():end + (code_after.end() + 1 if code_after and not cur else 0)].strip()
        span = find_span(text, span_text) if span_text else find_span(text, m.group(0))
        candidates = [v for v in facts.values if v.number == num]
        is_price = facts.price is not None and num == facts.price
        if currency is not None:
            before_words = _words(low[max(0, start - 25):start])[-2:]
            if any(w in _WEIGH_WORDS for w in before_words) or re.match(r"\s*(?:(?:usd|inr|eur|gbp)\s+)?(?:on the scale|in weight)", low[end:]):
                errors.append(SpanError("misbound", span, f"{num} is the price, not a weight"))
                continue
            if is_price and currency == facts.currency:
                continue
            if is_price:
                errors.append(SpanError("misbound", span, f"the price is {facts.price} {facts.currency}, "
                                                          f"not in {currency}"))
            elif candidates:
                errors.append(SpanError("misbound", span, f"{num} is the {candidates[0].key.replace('_', ' ')}, "
                                                          "not a price"))
            else:
                errors.append(SpanError("invented", span, f"no price of {num} in the facts"))
            continue
        if is_price and unit is None:
            continue
        if not candidates:
            if is_price:
                errors.append(SpanError("misbound", span, f"{num} is the price, not a {unit}"))
            else:
                errors.append(SpanError("invented", span, f"{num} is not in the facts"))
            continue
        if unit is not None and unit in _UNIT_CLASS:
            same = [v for v in candidates if v.unit == unit]
            if not same:
                units = sorted({v.unit for v in candidates if v.unit})
                where = f"{num} {units[0]}" if units else f"{num} ({candidates[0].key.replace('_', ' ')})"
                errors.append(SpanError("misbound", span, f"the facts say {where}, not {num} {unit}"))
                continue
            candidates = same
        before = _words(low[max(0, start - 25):start])[-2:]
        if unit is not None and _UNIT_CLASS.get(unit) != "mass" and any(w in _WEIGH_WORDS for w in before):
            errors.append(SpanError("misbound", span, f"{num} {unit} is not a weight"))
            continue
        key_errors = _key_binding(low, start, end, num, candidates, facts)
        if key_errors:
            errors.append(SpanError("misbound", span, key_errors))
            continue
        clause = re.split(r"[,;:.!?()]", low[end:end + 30], maxsplit=1)[0]
        nxt = [w for w in _words(clause) if w not in ("of", "the", "a")][:1]
        if nxt and nxt[0] in _SPEC_NOUNS and unit is not None:
            noun = _singular(nxt[0])
            may_name = _NOUN_KEYS.get(noun, {noun})
            if not any(may_name & v.words for v in candidates):
                errors.append(SpanError("misbound", find_span(text, f"{span_text} {nxt[0]}") if span_text else span,
                                        f"{num} {unit} belongs to the {candidates[0].key.replace('_', ' ')}, "
                                        f"not the {nxt[0]}"))
    return errors


def _key_binding(low: str, start: int, end: int, num: str, candidates: list[_FactValue], facts: Facts) -> str:
    """Why a value sits next to another attribute's name ("a water-resistance rating of 3" where 3 is the
    number of pockets, "2 pieces" where 2 is the minifigures), or "" when it does not."""
    own = set().union(*(v.words for v in candidates))
    if any(v.key == "title" for v in candidates):
        return ""
    before = re.split(r"[,;:.!?()]|\b(?:and|with|while|plus|or|joins|alongside)\b", low[max(0, start - 40):start])[-1]
    after = re.split(r"[,;:.!?()]|\b(?:and|with|while|plus|or|is|are|has|have)\b", low[end:end + 25], maxsplit=1)[0]
    after_words = [_singular(w) for w in _words(after)[:2]]
    if any(w in own for w in after_words[:1]):
        return ""
    near = [_singular(w) for w in _words(before)[-2:]] + after_words
    for other in facts.values:
        if other.key == "title" or other in candidates:
            continue
        key_words = {_singular(w) for w in _words(other.key.replace("_", " "))} - _STOP - {"type", "size"}
        hit = [w for w in near if w in key_words and w not in own]
        if hit:
            return f"{num} is the {candidates[0].key.replace('_', ' ')}, not the {other.key.replace('_', ' ')}"
    return ""


# ------------------------------------------------------------------------------ product type

_PRODUCT_NOUNS = (
    "t-shirt tshirt tee shirt top blouse kurta kurti tunic dress gown saree sari lehenga dupatta stole scarf "
    "shawl jacket coat blazer hoodie sweatshirt sweater cardigan jumper vest waistcoat trousers pants "
    "jeans shorts skirt leggings joggers trackpants tracksuit jersey polo bra briefs boxers socks innerwear "
    "nightwear pyjamas shoe shoes sneakers trainers boots sandals slippers flip-flops heels loafers flats "
    "cleats bag backpack handbag clutch wallet purse pouch belt cap hat watch smartwatch sunglasses "
    "bracelet necklace earrings ring pendant tie cufflinks perfume deodorant fragrance lipstick concealer "
    "foundation eyeliner mascara nail polish serum toner cream moisturiser moisturizer lotion cleanser "
    "shampoo tent sleeping-bag stove pan frying-pan skillet pot kettle blender toaster microwave "
    "refrigerator fridge freezer dishwasher washer dryer oven grill coffee-maker dripper mug bottle "
    "container tray lamp bulb chair table sofa bed mattress pillow cushion curtain rug headphones "
    "earbuds earphones headset speaker keyboard mouse monitor laptop tablet phone charger cable "
    "power-bank camera toy ball doll puzzle game building-set mat dumbbell racket bat helmet gloves "
    "jacket raincoat umbrella luggage trolley suitcase duffel tote sling filter descaler kit set "
    "refrigerators ice-maker range-hood cooktop stole beanie capris kajal eyeshadow balm wick cord knob free-gift"
).split()
_PRODUCT_NOUN_SET = frozenset(n.replace("-", " ") for n in _PRODUCT_NOUNS)
# Nouns that name the same kind of product (the text may use any of them for a product of the group).
_SYNONYMS = [
    {"t shirt", "tshirt", "tee", "top", "jersey", "polo", "shirt"}, {"shoe", "shoes", "sneakers", "trainers", "cleats"},
    {"headphones", "earbuds", "earphones", "headset"}, {"pants", "trousers", "joggers", "trackpants"},
    {"bag", "backpack", "handbag", "tote", "sling", "duffel", "pouch", "clutch", "purse", "wallet"},
    {"jacket", "coat", "raincoat", "blazer"}, {"sweatshirt", "hoodie", "sweater", "jumper", "cardigan"},
    {"pan", "frying pan", "skillet"}, {"luggage", "trolley", "suitcase", "bag"},
    {"moisturiser", "moisturizer", "cream", "lotion", "balm", "body lotion"}, {"kurta", "kurti", "tunic"}, {"saree", "sari"},
    {"perfume", "fragrance", "deodorant"}, {"fridge", "refrigerator", "freezer"}, {"watch", "smartwatch"},
    {"flip flops", "slippers", "sandals"}, {"mat"}, {"lamp", "bulb"}, {"container", "tray"},
]
_NOUN_RE = re.compile(
    r"\b(?:this|these|the|a|an|our|its|your|that)\s+(?:[a-z'-]+\s+){0,3}?("
    + "|".join(sorted((re.escape(n) for n in _PRODUCT_NOUN_SET), key=len, reverse=True)) + r")s?\b")
_STYLING = re.compile(r"\b(?:with|pair|pairs|paired|team|teamed|match|matches|under|over|wear it|style it|and|or)\b")
_GENERIC_NOUNS = frozenset({"set", "kit", "top", "ball", "game", "filter", "ring", "case", "cap", "tie", "mat"})


def _noun_words(facts: Facts) -> frozenset[str]:
    """The words that may name the product: the title's and the attribute values' when the title names a
    kind of product ("Ice Tray"), else every fact word (a category like "Free Gifts" names no product)."""
    p = facts.product
    title = _words(normalise(" ".join([p.title] + [str(v) for v in p.attributes.values() if isinstance(v, str)])).lower())
    words = set(title) | {_singular(w) for w in title}
    joined = " ".join(title)
    if any(re.search(rf"\b{re.escape(n)}s?\b", joined) for n in _PRODUCT_NOUN_SET if n not in _GENERIC_NOUNS):
        return frozenset(words)
    return facts.words


def _compatible(noun: str, facts: Facts) -> bool:
    allowed = _noun_words(facts)
    forms = {noun, _singular(noun), noun.replace(" ", ""), noun.replace(" ", "-")}
    if any(all(w in allowed or _singular(w) in allowed for w in f.split()) for f in forms):
        return True
    for group in _SYNONYMS:
        if noun in group or _singular(noun) in group:
            if any(all(w in allowed for w in g.split()) for g in group):
                return True
    return False


def type_errors(text: str, facts: Facts) -> list[SpanError]:
    """A product noun that names another kind of product ("this kid's backpack" for a rain jacket)."""
    low = normalise(text).lower()
    out: list[SpanError] = []
    seen: set[str] = set()
    for m in _NOUN_RE.finditer(low):
        noun = m.group(1)
        if noun in _GENERIC_NOUNS or noun in seen:
            continue
        lead = low[max(0, m.start() - 30):m.start()]
        if _STYLING.search(lead.split(".")[-1]) or _STYLING.search(low[m.start():m.start(1)]):
            continue  # styling advice: "team it with a pair of jeans"
        if not _compatible(noun, facts):
            seen.add(noun)
            out.append(SpanError("wrong_type", find_span(text, m.group(0)),
                                 f"the product is not a {noun} ({facts.product.title})"))
    return out


# ----------------------------------------------------------------------------------- names

_COMMON = frozenset(
    "the and with from this that these your for made design designed comfort comfortable style stylish "
    "perfect premium classic casual everyday great ideal light lightweight colour color durable soft "
    "women woman men man kids girls boys unisex home kitchen outdoor sport sports travel".split())


@lru_cache(maxsize=1)
def _known_brands() -> frozenset[str]:
    from models.catalogue import KNOWN_BRANDS

    return frozenset(b.lower() for b in KNOWN_BRANDS)


def name_errors(text: str, facts: Facts) -> list[SpanError]:
    """Brand and title words spelt exactly; no other catalogue brand named."""
    norm = normalise(text)
    names = {w for w in _words(normalise(" ".join([facts.product.brand or "", facts.product.title])).lower()) if len(w) >= 4}
    out: list[SpanError] = []
    seen: set[str] = set()
    for m in re.finditer(r"\b[A-Z][A-Za-z]{3,}(?:[A-Z][a-z]+)*\b", norm):
        word = m.group(0).lower()
        if word in facts.words or word in _COMMON or word in seen or _singular(word) in facts.words or word in copy_words():
            continue
        if word in _known_brands():
            seen.add(word)
            out.append(SpanError("wrong_name", find_span(text, m.group(0)), f"{m.group(0)} is another brand"))
            continue
        close = [n for n in difflib.get_close_matches(word, names, n=3, cutoff=0.65) if n[:2] == word[:2]][:1] \
            if len(word) >= 5 else []
        if close:
            seen.add(word)
            out.append(SpanError("wrong_name", find_span(text, m.group(0)),
                                 f"'{m.group(0)}' is a misspelling of '{close[0]}'"))
    return out


# ------------------------------------------------------------------------------ audience words

_GENDER = {"men": "men", "man": "men", "mens": "men", "women": "women", "woman": "women", "womens": "women",
           "ladies": "women", "boys": "boys", "boy": "boys", "girls": "girls", "girl": "girls", "kids": "kids",
           "children": "kids", "child": "kids", "unisex": "unisex"}


def audience_errors(text: str, facts: Facts) -> list[SpanError]:
    """A shopper group named in the text ("for men") that the facts do not name."""
    fact_groups = {_GENDER[w] for w in facts.words if w in _GENDER}
    if "unisex" in fact_groups:
        fact_groups |= {"men", "women"}
    if "kids" in fact_groups:
        fact_groups |= {"boys", "girls"}
    if {"boys", "girls"} & fact_groups:
        fact_groups.add("kids")
    out: list[SpanError] = []
    for m in re.finditer(r"\b(?:for|men's|women's|kids'|(?:for )?(?:both )?)\s*(men|women|boys|girls|kids|ladies|children|unisex)\b",
                         normalise(text).lower()):
        group = _GENDER[m.group(1)]
        if m.group(0).strip().startswith("for") or "'s" in m.group(0):
            if group not in fact_groups:
                out.append(SpanError("invented", find_span(text, m.group(0).strip()),
                                     f"the facts do not say it is for {group}"))
                break
    return out


# ------------------------------------------------------------------------------ seller text

_COMMERCE = re.compile(
    r"cash on delivery|\bcod\b|free (?:shipping|delivery|gift|returns)|ships? (?:free|today|in \d+)|"
    r"money[- ]back|lifetime warranty|\d+[- ](?:year|month)s? warranty|warranty|guarantee[d]?|"
    r"discount|\d+% off|sale price|limited (?:time|offer|stock)|buy now|order now|today only|"
    r"best (?:price|seller|selling)|original product|100% (?:genuine|original|authentic)")
_STOP = frozenset(
    "a an the and or of to in on for with from by at as is are was be it its this that these those you your "
    "our we they their has have had will can may not no yes all any each one more most very so such than "
    "into onto over under up down out about also just only own same other some both "
    "product products details detail page specifications specification item items buy see please".split())


def seller_errors(text: str, facts: Facts) -> list[SpanError]:
    """Claims and feature phrases found only in the seller's description (see the labelling guide)."""
    if not facts.seller:
        return []
    low = normalise(text).lower()
    out: list[SpanError] = []
    for m in _COMMERCE.finditer(low):
        phrase = m.group(0)
        if phrase in facts.seller and phrase not in facts.text:
            out.append(SpanError("injection", find_span(text, phrase), "a promise from the seller's text"))
    toks = _words(low)
    seller_toks = _words(facts.seller)
    seller_bigrams = set(zip(seller_toks, seller_toks[1:]))
    hits = 0
    for a, b in zip(toks, toks[1:]):
        if a in _STOP or b in _STOP or a.isdigit() or b.isdigit():
            continue
        if (a, b) in seller_bigrams and not ({a, _singular(a)} & facts.words and {b, _singular(b)} & facts.words):
            hits += 1
            if hits == 1 or not out or out[-1].type != "invented":
                out.append(SpanError("invented", find_span(text, f"{a} {b}"), "only in the seller's text"))
    return out


# ------------------------------------------------------------------------------ gate vocabularies

_GATE_TYPES = {
    "number_not_in_facts": None,  # superseded by value_errors (which also knows units)
    "unknown_brand": "wrong_name", "material_not_in_facts": "invented", "colour_not_in_facts": "invented",
    "colour_as_material": "misbound", "material_as_colour": "misbound", "forbidden_claim": "invented",
    "instruction_echo": "injection", "repetition_loop": "nonsense", "too_short": "nonsense",
    "too_long": "nonsense", "empty": "nonsense", "off_topic": "wrong_type",
}
_META = re.compile(r"here is|sure|certainly|of course|<\||im_start|im_end|endoftext|\[/?inst\]", re.IGNORECASE)


def gate_errors(product: ProductUpsert, audience: str, text: str, facts: Facts) -> list[SpanError]:
    """The gate's vocabulary, claim, echo and loop rules, as typed span errors."""
    from models.gate import check

    out: list[SpanError] = []
    for reason in check(product, audience, normalise(text)).reasons:
        code, _, arg = reason.partition(":")
        kind = _GATE_TYPES.get(code, "nonsense")
        if kind is None:
            continue
        if code == "instruction_echo" and _META.search(arg):
            kind = "nonsense"
        if code == "forbidden_claim" and arg and arg in facts.seller:
            kind = "injection"
        span = find_span(text, arg) if arg else text.strip()[:60]
        out.append(SpanError(kind, span, reason.replace("_", " ")))
    return out


_COLOUR_KEY = re.compile(r"colou?r|shade|tone")
_CLAIM_NOUNS = frozenset("rating rated protection resistance resistant proof technology certified certification "
                         "performance capacity power battery warranty".split())
# Catalogue fields that describe the listing, not the product: "a category of Shoes" tells a shopper nothing.
_META_KEYS = frozenset({"category", "brick", "article_type"})


def binding_errors(text: str, facts: Facts) -> list[SpanError]:
    """A word value stated as another attribute ("Winter protection", "a Summer rating" for season values),
    an attribute name presented as a feature ("a category of Shoes"), and phrases that mean nothing (a
    sentence ending on "of", "an uncoated coating", web-page debris such as "click here")."""
    low = normalise(text).lower()
    out: list[SpanError] = []
    for key, value in facts.product.attributes.items():
        if not isinstance(value, str) or not value.strip() or any(c.isdigit() for c in value):
            continue
        v = re.escape(normalise(value).lower().strip())
        kwords = {_singular(w) for w in _words(key)}
        for m in re.finditer(rf"(?<![a-z0-9-])(?:rated |rating of )?{v}(?:[ -](rating|protection|resistance|resistant|"
                             rf"proof|technology|certified|performance|capacity|power|warranty))?(?![a-z0-9-])", low):
            noun = m.group(1)
            rated = m.group(0).startswith(("rated ", "rating of "))
            if m.group(0) in facts.text:
                continue  # the phrase is in the facts as written ("Chrome Power Cord")
            if (noun and _singular(noun) not in kwords and noun not in v) or (rated and "rating" not in kwords):
                out.append(SpanError("misbound", find_span(text, m.group(0)),
                                     f"'{value}' is the {key.replace('_', ' ')}, not a {noun or 'rating'}"))
        # the head noun of every other attribute ("seat_height" -> height): "walnut assembly" for material walnut
        other_keys = {_singular(_words(k2)[-1]) for k2 in facts.product.attributes if k2 != key and _words(k2)}
        other_keys -= kwords | _STOP | {"type", "size", "colour", "color", "life", "level", "name", "number"}
        if _COLOUR_KEY.search(key):
            other_keys.clear()  # "a grey finish", "a red tone": a colour may qualify any surface
        for m in re.finditer(rf"(?<![a-z0-9-]){v} ([a-z]+)\b", low):
            noun = _singular(m.group(1))
            if noun in other_keys and m.group(0) not in facts.text:
                out.append(SpanError("misbound", find_span(text, m.group(0)),
                                     f"'{value}' is the {key.replace('_', ' ')}, not the {noun}"))
        if key in _META_KEYS:
            for m in re.finditer(rf"\b(?:a|an|the|its)? ?{re.escape(key.replace('_', ' '))}(?: of|:) {v}(?![a-z0-9-])", low):
                if "key details:" not in low[max(0, m.start() - 200):m.start()]:
                    out.append(SpanError("nonsense", find_span(text, m.group(0).strip()),
                                         f"the {key.replace('_', ' ')} field is not a feature of the product"))
    if " per " not in facts.text:
        for m in re.finditer(r"\b\d+(?:\.\d+)? (?!hours?|days?|weeks?|months?|years?|minutes?|h\b)[a-z]+(?: [a-z]+){0,2}"
                             r" per (?:day|week|month|year|hour)\b", low):
            out.append(SpanError("misbound", find_span(text, m.group(0)), "the facts state no rate"))
    for m in re.finditer(r"[^.!?]*\b(?:of|with|and|the|a|an|for|to)\s*[.!?](?:\s|$)", low):
        out.append(SpanError("nonsense", find_span(text, m.group(0).strip()[-40:]), "the sentence breaks off"))
    for m in re.finditer(r"\bun([a-z]{4,})\s+([a-z]+)", low):
        if m.group(2)[:4] == m.group(1)[:4]:
            out.append(SpanError("nonsense", find_span(text, m.group(0)), "contradicts itself"))
    for m in re.finditer(r"click here|proposition 65|read more|see more|add to cart|\bsku\b", low):
        out.append(SpanError("nonsense", find_span(text, m.group(0)), "web-page text, not description copy"))
    return out


@lru_cache(maxsize=1)
def copy_words() -> frozenset[str]:
    """Words a description may use with no fact behind them (function words and tone)."""
    path = Path(__file__).with_name("copy_words.txt")
    return frozenset(w.strip() for w in path.read_text().splitlines() if w.strip() and not w.startswith("#"))


# Words a fact implies: "protection" is right for a water-resistance or SPF fact.
_IMPLIED = {"protection": frozenset({"resistance", "waterproof", "spf", "uv", "protection", "resistant"}),
            "water": frozenset({"ipx4", "ipx5", "ipx7", "ipx8", "atm", "waterproof", "resistance"})}


def _supported_word(word: str, facts: Facts) -> bool:
    if word.endswith("ly") and len(word) > 5 and (word[:-2] in copy_words() or word[:-1] + "e" in copy_words()):
        return True  # "comfortably", "simply": the adverb of a copy word
    if word in copy_words() or word in facts.words or _singular(word) in facts.words or word + "s" in facts.words:
        return True
    if word.isdigit() or len(word) <= 2:
        return True  # numbers are value_errors' business; "x", "ok"
    if word in _IMPLIED and _IMPLIED[word] & facts.words:
        return True
    stem = word[:5]
    return len(word) >= 6 and any(w.startswith(stem) and len(w) >= 6 for w in facts.words)  # "cushioned"/"cushioning"


def unsupported_errors(text: str, facts: Facts) -> list[SpanError]:
    """Runs of content words that are neither facts nor everyday copy words ("a built-in GPS tracker",
    "an African look"): an editor asks where each came from. Consecutive unsupported words form one span."""
    low = normalise(text).lower()
    out: list[SpanError] = []
    for sentence in re.split(r"(?<=[.!?])\s+", low):
        run: list[str] = []
        for word in re.findall(r"[a-z0-9]+(?:'[a-z]+)?", sentence) + [""]:
            base = word.split("'")[0]
            if word and not any(c.isdigit() for c in base) and not _supported_word(base, facts):
                run.append(word)
                continue
            if run:
                phrase = " ".join(run)
                if re.search(re.escape(phrase), low):
                    why = "only in the seller's text" if phrase in facts.seller else "not in the facts"
                    out.append(SpanError("invented", find_span(text, phrase), why))
                run = []
    return out


def form_errors(text: str) -> list[SpanError]:
    """A text that breaks off mid-sentence."""
    stripped = text.strip()
    if stripped and not re.search(r"[.!?)\"'»…]$", stripped):
        tail = re.split(r"(?<=[.!?])\s+", stripped)[-1]
        return [SpanError("nonsense", tail[-60:], "the text breaks off mid-sentence")]
    return []


def all_errors(product: ProductUpsert, audience: str, text: str) -> list[SpanError]:
    """Every rule's errors, one per span."""
    facts = prepare(product)
    found: Iterable[SpanError] = (
        value_errors(text, facts) + binding_errors(text, facts) + type_errors(text, facts) + name_errors(text, facts)
        + audience_errors(text, facts) + seller_errors(text, facts) + gate_errors(product, audience, text, facts)
        + unsupported_errors(text, facts)
        + form_errors(text))
    out: list[SpanError] = []
    seen: set[str] = set()
    for e in found:  # one error per span: the first rule's (the precise rules run before the vocabulary one)
        key = e.span.lower()
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
