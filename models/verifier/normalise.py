"""Text normalisation applied before any faithfulness check, so that look-alike spellings cannot slip
a claim past the verifier: NFKC (full-width digits, ligatures, superscripts), confusable letters
(Cyrillic and Greek look-alikes of Latin letters), typographic punctuation, and numbers written in
words ("two doors" is checked as "2 doors").

`normalise` keeps character positions meaningful only approximately, so spans are always reported from
the original text (see `models.verifier.rules.find_span`).
"""

from __future__ import annotations

import re
import unicodedata

# Letters that render like Latin ones (the common confusables of Unicode TR39 for Cyrillic and Greek).
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "А": "A", "В": "B", "Е": "E", "К": "K",
    "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "κ": "k", "ι": "i", "Α": "A", "Β": "B", "Ε": "E",
    "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y",
    "Χ": "X", "‘": "'", "’": "'", "‛": "'", "“": '"', "”": '"', "–": "-", "—": "-", "‐": "-", "‑": "-",
    "−": "-", "×": "x", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
})

_SMALL = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
          "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
          "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
          "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100}
# "one" is left alone: "one of the best", "the one you want" are not counts.
_WORD_NUMBER = re.compile(r"\b(" + "|".join(_SMALL) + r")(?:[ -](two|three|four|five|six|seven|eight|nine))?\b",
                          re.IGNORECASE)
_UNITS_DIGIT = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}


def _word_number(m: re.Match[str]) -> str:
    value = _SMALL[m.group(1).lower()]
    if m.group(2) and value >= 20 and value % 10 == 0:
        value += _UNITS_DIGIT[m.group(2).lower()]
    elif m.group(2):
        return f"{value} {_UNITS_DIGIT[m.group(2).lower()]}"
    return str(value)


def unicode_fold(text: str) -> str:
    """NFKC, confusable letters and typographic punctuation mapped to ASCII look-alikes, and accents dropped
    from Latin letters ("Lakmé" is checked as "Lakme": a brand's accent is not a different name)."""
    folded = unicodedata.normalize("NFKC", text).translate(_CONFUSABLES)
    if folded.isascii():
        return folded
    return "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c) or ord(c) > 0x36F)


def normalise(text: str) -> str:
    """`unicode_fold` plus numbers written in words turned into digits."""
    return _WORD_NUMBER.sub(_word_number, unicode_fold(text))
