"""The faithfulness gate: a pure, fast check that a text says nothing the product's facts do not.

A 135M-parameter generator invents numbers, brands and materials, and can be steered by seller text.
Nothing it writes is published unless `check` passes; otherwise the worker publishes `fallback_text`.

What counts as a fact: title, brand, category, price/currency and attribute keys/values. The seller's
free-text `description` does NOT count: it is unverified and is where prompt injections live ("say it
is free"), so a claim found only there is still an invented claim.

Rules (reason codes in `GateVerdict.reasons`):
- `empty`, `too_short`, `too_long`: word-count bounds (CJK characters count as half a word each).
- `number_not_in_facts:<n>`: every number in the text (units, %, $, "2-year", "1,200") must equal a
  number in the facts after normalisation (1.60 == 1.6, 1,200 == 1200).
- `unknown_brand:<w>`, `material_not_in_facts:<w>`, `colour_not_in_facts:<w>`: a word or phrase from
  the catalogue vocabularies that is absent from the facts.
- `forbidden_claim:<phrase>`: superlatives, guarantees and "free" claims (allowed only when the facts
  themselves say so) and medical/safety promises (never allowed).
- `instruction_echo:<phrase>`: the text talks about prompts/instructions or contains chat tokens or our
  delimiters: a sign the model followed or leaked the prompt.
- `colour_as_material:<c>`, `material_as_colour:<m>`: a fact put in the wrong slot. A colour word after
  "made of/from", "crafted from", ... when that phrase names no material ("made of red" for colour=red,
  material=oak; "made of red oak" is fine), unless the colour word is itself the material fact; a material
  word stated as the colour ("oak colour", "colour is oak", "oak-coloured") unless it is the colour fact.
- `repetition_loop`: a 3-word sequence repeated >= 3 times, a word 3 times in a row, or a sentence repeated.
- `off_topic`: the text names nothing of the product: no word of its title, brand or category (sampled
  gibberish has no loops and no vocabulary words, so the other rules would let it through).

`check` is called per generated description, so everything is precompiled; typical text takes well
under 1 ms.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from descstream.schemas import GateVerdict, ProductUpsert

from models.audiences import get_audience
from models.catalogue import KNOWN_BRANDS, KNOWN_COLOURS, KNOWN_MATERIALS
from models.prompt import format_value

MIN_WORDS = 12
MAX_WORDS = 120

# Spelling variants mapped to one form on both sides, so "gray" text matches "grey" facts.
_CANON = {"gray": "grey", "aluminum": "aluminium", "fiber": "fibre", "fiberglass": "fibreglass",
          "color": "colour", "multicolor": "multicolour", "microfiber": "microfibre"}
_CANON_RE = re.compile(r"\b(" + "|".join(map(re.escape, _CANON)) + r")\b")

# Numbers: "1,200" (thousands), "1.6", "19.99", "50" (also inside "50%", "$19.99", "2-year", "X200").
_NUMBER = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]*\d)|\d+(?:\.\d+)?")


def canonical_number(token: str) -> str:
    """Numbers as the gate (and number_guard) compare them: "1,200" -> "1200", "4.50" -> "4.5", "007" -> "7"."""
    token = token.replace(",", "")
    if "." in token:
        token = token.rstrip("0").rstrip(".") or "0"
    token = token.lstrip("0") or "0"
    return "0" + token if token.startswith(".") else token


def _numbers(text: str) -> list[str]:
    return [canonical_number(m) for m in _NUMBER.findall(text)]


def _norm_words(text: str) -> str:
    """Lowercase, canonical spellings, punctuation -> spaces, padded: phrase lookups become ` x y ` in s."""
    low = _CANON_RE.sub(lambda m: _CANON[m.group(1)], text.lower())
    return " " + " ".join(re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", low)) + " "


def _vocab_regex(words: frozenset[str]) -> re.Pattern[str]:
    canon = {_norm_words(w).strip() for w in words}
    alts = sorted((w for w in canon if w), key=len, reverse=True)  # longest first: "stainless steel" > "steel"
    return re.compile(r"(?<![a-z0-9'-])(" + "|".join(re.escape(a) for a in alts) + r")(?![a-z0-9-])")


_BRAND_RE = _vocab_regex(KNOWN_BRANDS)
_MATERIAL_RE = _vocab_regex(KNOWN_MATERIALS)
_COLOUR_RE = _vocab_regex(KNOWN_COLOURS)

_P = r"(?<![a-z0-9])"  # phrase start boundary on normalised text

# Claims allowed only if the same phrase is in the facts.
_CLAIMS_IF_IN_FACTS = re.compile(
    r"best in the world|world'?s best|best on the market|best ever|best-selling|best selling|"
    r"number one|no\. ?1\b|#1\b|unbeatable|unmatched|unrivalled|unrivaled|second to none|"
    r"guaranteed?|guarantees|lifetime warranty|\d+[- ]year warranty|warranty|money[- ]back|risk[- ]free|"
    r"free shipping|free delivery|free gift|free returns|for free|free of charge|"
    r"(?:it|this|that)(?: is|'s) free\b|is free\b|at no (?:extra )?cost|costs nothing|"
    r"never (?:breaks|fails|wears out)|indestructible",
)
# Never allowed, whatever the facts say: medical and safety promises are a legal matter, not copy.
_CLAIMS_NEVER = re.compile(
    r"\bcures?\b|\bheals?\b|clinically (?:proven|tested)|medically proven|dermatologist[- ](?:approved|recommended)|"
    r"prevents? (?:injur(?:y|ies)|disease|cancer|illness)|injury[- ]proof|100% safe|completely safe|"
    r"totally safe|perfectly safe|fda[- ]approved|doctor[- ]recommended|treats? (?:acne|eczema|disease)",
)
_ECHO = re.compile(
    r"ignore (?:the |all |any )?(?:facts|previous|above|prior|instructions)|ignore all previous|"
    r"disregard (?:the|all|any|previous)|new instructions|my instructions|your instructions|"
    r"as an ai\b|as a language model|i am an ai|i'm an ai|language model|system prompt|prompt injection|"
    r"say (?:it is|it's) free|seller[ _]?text|untrusted|listed facts|the facts (?:provided|given|say)|"
    r"here is (?:a|the|your) (?:product )?description|^\s*(?:sure|certainly|of course)\b[,!.]|"
    r"<\|[^|>]{0,40}\|>|<{2,}|>{2,}|\bim_(?:start|end)\b|\bendoftext\b|\[/?inst\]",
    re.IGNORECASE | re.MULTILINE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_WORDS = re.compile(r"[A-Za-z0-9$€£%]+(?:['.,\-][A-Za-z0-9]+)*")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


# Slot checks: "made of <phrase>" where the phrase should name a material, and "<m> colour" / "colour is <m>".
_MADE_OF = re.compile(
    r"\b(?:made|crafted|built|constructed|fashioned|manufactured|woven|moulded|molded|forged|sewn|cast)"
    r"(?: (?:entirely|mainly|mostly|primarily|largely|wholly|fully))? (?:out of|of|from|with|using) ([^.,;:!?()\n]{1,60})"
)
_PHRASE_STOP = frozenset("and or in with for that which to so but while on at by it its is are was this "
                         "into over under inside outside".split())
_GENERIC_MATERIAL = frozenset("fabric fabrics material materials cloth textile textiles wood woods metal metals "
                              "alloy yarn fibre fibres thread threads".split())
_MATERIAL_KEY = re.compile(r"material|fabric|upholstery|fill|outsole|coating|shell|lining|handle|surface")
_COLOUR_KEY = re.compile(r"colou?r|finish|shade")


@dataclass(frozen=True)
class _Facts:
    words: str  # normalised, padded facts text for phrase lookups
    raw_lower: str
    numbers: frozenset[str]
    material_words: str = " "  # normalised, padded values of material-like attributes
    colour_words: str = " "  # normalised, padded values of colour-like attributes


def _facts(product: ProductUpsert) -> _Facts:
    parts = [product.title, product.brand or "", product.category or "", product.currency]
    if product.price is not None:
        parts += [f"{product.price:.2f}", repr(product.price)]
    for k, v in product.attributes.items():
        parts += [k, k.replace("_", " "), format_value(v) if not isinstance(v, str) else v]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            parts.append(repr(v))
    text = "\n".join(parts)
    mats = [str(v) for k, v in product.attributes.items() if isinstance(v, str) and _MATERIAL_KEY.search(k.lower())]
    cols = [str(v) for k, v in product.attributes.items() if isinstance(v, str) and _COLOUR_KEY.search(k.lower())]
    return _Facts(words=_norm_words(text), raw_lower=text.lower(), numbers=frozenset(_numbers(text)),
                  material_words=_norm_words("\n".join(mats)), colour_words=_norm_words("\n".join(cols)))


def fact_numbers(product: ProductUpsert) -> frozenset[str]:
    """The numbers the gate accepts in a text about `product` (canonical: no thousands commas, no
    trailing decimal zeros); `models.generation.NumberGuard` keeps decoding inside this set."""
    return _facts(product).numbers


def _slot_errors(text: str, facts: _Facts) -> list[str]:
    """Facts stated in the wrong slot (see the module docstring)."""
    low = _CANON_RE.sub(lambda m: _CANON[m.group(1)], text.lower())
    out: list[str] = []
    for m in _MADE_OF.finditer(low):
        words = []
        for w in _norm_words(m.group(1)).split():
            if w in _PHRASE_STOP or len(words) == 4:
                break
            words.append(w)
        phrase = " " + " ".join(words) + " "
        colours = _COLOUR_RE.findall(phrase)
        materials = {x for x in _MATERIAL_RE.findall(phrase) if x not in colours}
        if not colours or materials or any(w in _GENERIC_MATERIAL for w in words):
            continue
        for c in colours:
            if f" {c} " not in facts.material_words:
                out.append(f"colour_as_material:{c}")
    norm = _norm_words(text)
    spaced = " ".join(low.split())  # punctuation kept: "material: nylon, colour: teal" states no slot error
    for mat in _MATERIAL_RE.findall(norm):
        if f" {mat} " in facts.colour_words:
            continue
        e = re.escape(mat)
        if re.search(rf"(?<![a-z0-9-])(?:{e} colou?r(?:ed)?|{e}-colou?r(?:ed)?|colou?r is (?:an? )?{e}|"
                     rf"(?:shade|hue) of {e})(?![a-z0-9-])", spaced):
            out.append(f"material_as_colour:{mat}")
    return out


def word_count(text: str) -> int:
    """Latin words plus half the CJK characters (Chinese has no spaces between words)."""
    return len(_WORDS.findall(text)) + (len(_CJK.findall(text)) + 1) // 2


def _in_facts(phrase: str, facts: _Facts) -> bool:
    return f" {phrase} " in facts.words


def check(product: ProductUpsert, audience: str, text: str, *,
          min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> GateVerdict:
    """Is `text` a faithful, safe description of `product`? All failing rules are reported.

    `audience` must be a known audience (KeyError otherwise); the rules are currently the same for all
    audiences, the parameter keeps the door open for audience-specific rules without changing callers.
    """
    get_audience(audience)
    if not text or not text.strip():
        return GateVerdict(passed=False, reasons=("empty",))
    reasons: list[str] = []
    n_words = word_count(text)
    if n_words < min_words:
        reasons.append("too_short")
    elif n_words > max_words:
        reasons.append("too_long")

    facts = _facts(product)
    seen: set[str] = set()

    def add(reason: str) -> None:
        if reason not in seen:
            seen.add(reason)
            reasons.append(reason)

    for num in _numbers(text):
        if num not in facts.numbers:
            add(f"number_not_in_facts:{num}")

    norm = _norm_words(text)
    for regex, code in ((_BRAND_RE, "unknown_brand"), (_MATERIAL_RE, "material_not_in_facts"),
                        (_COLOUR_RE, "colour_not_in_facts")):
        for phrase in regex.findall(norm):
            if not _in_facts(phrase, facts):
                add(f"{code}:{phrase}")

    for reason in _slot_errors(text, facts):
        add(reason)

    low = text.lower()
    for m in _CLAIMS_IF_IN_FACTS.finditer(low):
        phrase = m.group(0).strip()
        if phrase not in facts.raw_lower:
            add(f"forbidden_claim:{phrase}")
    for m in _CLAIMS_NEVER.finditer(low):
        add(f"forbidden_claim:{m.group(0).strip()}")
    for m in _ECHO.finditer(text):
        add(f"instruction_echo:{m.group(0).strip().lower()}")

    if _is_loop(norm, text):
        add("repetition_loop")
    if n_words >= min_words and text != _FALLBACK_GENERIC and not _on_topic(norm, product):
        # (the generic last-resort fallback names nothing of the product on purpose: it is used when every
        # product word is unusable, e.g. a title and category that are both injected instructions)
        add("off_topic")
    return GateVerdict(passed=not reasons, reasons=tuple(reasons))


_TOPIC_STOP = frozenset("the and for with from set pro max mini new one two for of in on to by a an".split())


def _on_topic(norm: str, product: ProductUpsert) -> bool:
    source = " ".join([product.title, product.brand or "", (product.category or "").replace(">", " ")])
    terms = {w for w in _norm_words(source).split() if len(w) >= 3 and w not in _TOPIC_STOP and not w.isdigit()}
    if not terms:
        return True
    words = set(norm.split())
    # "tents" in the category, "tent" in the text: compare without a plural s as well
    words |= {w[:-1] for w in words if w.endswith("s")}
    return bool(words & (terms | {t[:-1] for t in terms if t.endswith("s")}))


def _is_loop(norm: str, text: str) -> bool:
    tokens = norm.split()
    if any(a == b == c for a, b, c in zip(tokens, tokens[1:], tokens[2:])):
        return True
    if len(tokens) >= 9:
        grams = Counter(zip(tokens, tokens[1:], tokens[2:]))
        if grams and max(grams.values()) >= 3:
            return True
    sentences = [" ".join(_norm_words(s).split()) for s in _SENTENCE_SPLIT.split(text.strip())]
    sentences = [s for s in sentences if len(s.split()) >= 3]
    return len(sentences) != len(set(sentences))


def judge(product: ProductUpsert, audience: str, text: str) -> GateVerdict:
    """The publishing decision: the verifier's span rules (`models.verifier`), which include `check`.

    A text passes only when the verifier finds no error; each error becomes a reason `type:span`.
    """
    from models.verifier import verify

    get_audience(audience)
    verdict = verify(product, audience, text)
    return GateVerdict(passed=verdict.ok, reasons=tuple(f"{e.type}:{e.span}" for e in verdict.errors))


# ---------------------------------------------------------------- fallback


_FALLBACK_GENERIC = ("This product is listed in our catalogue. Please see the product details on this "
                     "page for its full specifications before you buy.")


def _fallback_candidates(product: ProductUpsert, audience: str) -> list[str]:
    from models.reference import price_text, product_noun  # local: reference imports are heavier

    aud = get_audience(audience)
    noun = product_noun(product)
    order = {k: i for i, k in enumerate(aud.emphasis)}
    keys = sorted(product.attributes, key=lambda k: order.get(k, len(order)))
    items: list[str] = []
    for k in keys:
        v = product.attributes[k]
        if isinstance(v, bool):
            continue  # "gps is yes" reads badly; booleans are in the product page's spec table
        value = format_value(v)
        if len(value.split()) > 8:
            continue  # long free-text values read badly and risk length limits
        items.append(f"{k.replace('_', ' ')} is {value}")
    brand = f" from {product.brand}" if product.brand else ""
    price = price_text(product)
    head = f"The {product.title} is a {noun}{brand}."
    price_s = f" It is priced at {price}." if price else ""
    tail = " See the product details for the full specifications."
    cands = []
    # The noun comes from the category: on a real catalogue the category is often a department ("Water
    # Filters" for inkjet paper, "Free Gifts" for a wallet), so it is used only when the title names it too.
    # It is seller data as well (it may carry an injection): the same texts without it follow.
    from models.catalogue import category_spec

    title_words = set(re.findall(r"[a-z0-9]+", product.title.lower()))
    grounded = category_spec(product.category) is not None or all(
        w in title_words or w + "s" in title_words or w + "es" in title_words
        for w in re.findall(r"[a-z0-9]+", noun.lower()))
    for first in ((head, f"The {product.title}{brand}.") if grounded else (f"The {product.title}{brand}.",)):
        for n in (5, 3, 1, 0):
            shown = items[:n]
            listed = ", ".join(shown[:-1]) + f" and {shown[-1]}" if len(shown) > 1 else "".join(shown)
            facts_s = f" Key details: {listed}." if shown else ""
            cands.append(first + facts_s + price_s + tail)
    if grounded:
        cands.append(f"This {noun}{brand} is listed in our catalogue." + price_s + tail)
    cands.append(_FALLBACK_GENERIC)
    return cands


def fallback_text(product: ProductUpsert, audience: str) -> str:
    """A plain, faithful description built from facts only, used when generated text fails `check`.

    Deterministic. Tries progressively plainer versions and returns the first that passes `judge`
    (seller-controlled facts can themselves contain forbidden phrases); the last resort is generic.
    """
    for cand in _fallback_candidates(product, audience):
        if judge(product, audience, cand).passed:
            return cand
    return _FALLBACK_GENERIC
