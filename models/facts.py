"""Which of a product's facts a text mentions: one definition for the coverage metric (`descstream eval`)
and for fact-aware decoding (`DecodingConfig.hold_stop_for_facts`), so what decoding aims at is what the
metric counts.

A product's facts are its brand and each attribute value. A fact is mentioned when its normalised value
appears in the normalised text (lower-case, hyphens and punctuation folded to spaces, decimal points kept):
strings as written ("1.6 kg", "ripstop nylon"), whole floats as integers ("3.0" -> "3"), booleans via
the attribute name ("noise cancelling" for `noise_cancelling: true`; `false` facts are not counted).
Price is not a fact here (whether to mention it depends on the audience).
"""

from __future__ import annotations

import re
from typing import Any, Sequence


def normalise(text: str) -> str:
    """Lower-case words and numbers, space-padded: keeps decimal points ("1.8") but not full stops."""
    text = re.sub(r"\.(?!\d)", " ", text.lower().replace("-", " "))
    return " " + " ".join(re.sub(r"[^a-z0-9.°%+]+", " ", text).split()) + " "


def product_facts(product: Any) -> list[tuple[str, str]]:
    """(name, normalised surface form) for each checkable fact: brand + attribute values."""
    facts: list[tuple[str, str]] = []
    if getattr(product, "brand", None):
        facts.append(("brand", normalise(product.brand).strip()))
    for key, value in (getattr(product, "attributes", None) or {}).items():
        if isinstance(value, bool):
            if value:
                facts.append((key, normalise(key.replace("_", " ")).strip()))
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        facts.append((key, normalise(str(value)).strip()))
    return [(k, v) for k, v in facts if v]


def fact_forms(product: Any) -> tuple[str, ...]:
    """The normalised surface forms of the product's facts (what `missing` looks for)."""
    return tuple(v for _, v in product_facts(product))


def missing(text: str, forms: Sequence[str]) -> list[str]:
    """The fact forms that `text` does not mention."""
    t = normalise(text)
    return [v for v in forms if f" {v} " not in t]


def coverage(product: Any, text: str) -> float:
    """Share of the product's facts that `text` mentions (1.0 for a product without facts)."""
    forms = fact_forms(product)
    if not forms:
        return 1.0
    return 1 - len(missing(text, forms)) / len(forms)
