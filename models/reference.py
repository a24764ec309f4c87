"""The reference writer: faithful, audience-specific training targets built from facts only.

There is no public corpus of product facts paired with per-audience descriptions, so targets are
written here. The rules that make them worth learning from:
- Faithful by construction: every number, brand, material and colour comes verbatim from the product's
  facts; the only free words are framing and the audience's `tone` phrases (which carry no facts).
- Varied: many sentence frames, per-attribute phrasings, audience-specific openers/closers, emphasis
  order from the audience, so the model learns to *write*, not to fill one template.
- Deterministic given the `rng`, so data sets (and their hashes) are reproducible.
"""

from __future__ import annotations

import random
import re

from descstream.schemas import AttributeValue, ProductUpsert

from models.audiences import Audience, get_audience
from models.catalogue import category_spec

MIN_WORDS = 30
MAX_WORDS = 90

_CURRENCY_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£"}

# Per-attribute phrasings. NP = noun phrase ("a weight of 1.6 kg"), VP = verb phrase ("weighs 1.6 kg").
# {v} is the value verbatim. Booleans are only mentioned when true (False facts are not selling points).
_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "weight": (("a weight of {v}", "just {v} on the scale", "a {v} build", "a carry weight of {v}"),
               ("weighs {v}", "comes in at {v}", "tips the scales at {v}", "weighs only {v}", "keeps the weight to {v}")),
    "material": (("{v} construction", "a {v} body", "durable {v}", "{v} throughout"),
                 ("is made from {v}", "is built from {v}", "uses {v}", "is crafted in {v}")),
    "colour": (("a {v} finish", "a {v} colourway", "{v} styling"),
               ("comes in {v}", "is finished in {v}", "wears a {v} colourway")),
    "sleeps": (("room for {v}", "space for {v} people", "a {v}-person layout"),
               ("sleeps {v}", "fits {v} people", "has room for {v} sleepers")),
    "season": (("{v} protection", "a {v} rating", "{v} design"),
               ("is rated {v}", "is a {v} design", "is built for {v} use")),
    "waterproof_rating": (("a {v} waterproof rating", "{v} of waterproofing", "a hydrostatic head of {v}"),
                          ("is rated to {v} of waterproofing", "holds a {v} waterproof rating")),
    "packed_size": (("a packed size of {v}", "a {v} pack size"), ("packs to {v}", "packs down to {v}")),
    "pole_material": (("{v} poles", "a {v} pole set"), ("pitches on {v} poles", "uses {v} poles")),
    "doors": (("{v} doors", "{v} entrances"), ("has {v} doors", "offers {v} entrances")),
    "comfort_temperature": (("a comfort rating of {v}", "comfort down to {v}"),
                            ("is comfortable down to {v}", "carries a comfort rating of {v}")),
    "fill": (("{v} fill", "a {v} fill", "{v} inside"), ("is filled with {v}", "uses {v} for warmth")),
    "shape": (("a {v} cut", "a {v} shape"), ("has a {v} cut", "follows a {v} shape")),
    "length": (("a length of {v}", "{v} of length"), ("measures {v} long", "stretches to {v}")),
    "type": (("a {v} design", "a {v} format"), ("is a {v} design", "takes a {v} form")),
    "battery_life": (("{v} of battery life", "up to {v} per charge", "a battery that lasts {v}"),
                     ("runs for {v} per charge", "offers {v} of battery life", "lasts up to {v} between charges")),
    "connectivity": (("{v} connectivity", "{v} pairing"), ("connects over {v}", "pairs via {v}", "links up using {v}")),
    "noise_cancelling": (("active noise cancelling", "noise cancelling"), ("cancels background noise", "features noise cancelling")),
    "driver_size": (("{v} drivers", "a {v} driver"), ("drives sound through {v} drivers", "uses {v} drivers")),
    "charging": (("{v}", "{v} charging support"), ("charges via {v}", "tops up through {v}")),
    "microphone": (("a built-in microphone", "an integrated mic"), ("includes a microphone for calls", "handles calls with a built-in mic")),
    "display": (("a {v} display", "a {v} screen"), ("has a {v} display", "shows everything on a {v} screen")),
    "water_resistance": (("{v} water resistance", "a {v} rating against water"),
                         ("is rated {v}", "carries a {v} water rating", "offers {v} protection against water")),
    "gps": (("built-in GPS", "onboard GPS"), ("tracks routes with built-in GPS", "includes GPS")),
    "strap_material": (("a {v} strap", "a {v} band"), ("sits on a {v} strap", "comes on a {v} band")),
    "case_size": (("a {v} case", "a case measuring {v}"), ("has a {v} case", "is built around a {v} case")),
    "sensors": (("{v} sensors", "{v} tracking"), ("tracks {v}", "monitors {v}")),
    "capacity": (("a capacity of {v}", "{v} of capacity", "{v} of space"), ("holds {v}", "offers {v} of capacity", "takes up to {v}")),
    "wattage": (("{v} of power", "a {v} rating"), ("draws {v}", "runs at {v}")),
    "programmable": (("programmable settings", "a programmable design"), ("can be programmed ahead", "is programmable")),
    "pressure": (("{v} of pressure", "a {v} pump"), ("brews at {v}", "builds {v} of pressure")),
    "cups": (("room for {v} cups", "up to {v} cups per batch"), ("makes up to {v} cups", "brews {v} cups at a time")),
    "diameter": (("a {v} diameter", "a {v} cooking surface"), ("measures {v} across", "has a {v} diameter")),
    "coating": (("a {v} coating", "{v} surface"), ("has a {v} coating", "is finished with {v}")),
    "hob": (("compatibility with {v}", "{v} compatibility"), ("works on {v}", "suits {v}")),
    "oven_safe_to": (("oven use up to {v}", "an oven-safe rating of {v}"), ("goes in the oven up to {v}", "is oven-safe to {v}")),
    "handle": (("a {v} handle", "{v} handle"), ("has a {v} handle", "is fitted with a {v} handle")),
    "size": (("size {v}", "a {v} fit"), ("comes in size {v}", "is listed in size {v}")),
    "upper_material": (("a {v} upper", "{v} up top"), ("has a {v} upper", "wraps the foot in {v}")),
    "drop": (("a {v} drop", "a heel-to-toe drop of {v}"), ("has a {v} drop", "runs a {v} heel-to-toe drop")),
    "surface": (("a {v} focus", "{v} grip"), ("is made for {v}", "targets {v} running")),
    "cushioning": (("{v} cushioning", "a {v} level of cushioning"), ("offers {v} cushioning", "has {v} cushioning underfoot")),
    "outsole": (("a {v} outsole", "{v} underfoot"), ("grips with a {v} outsole", "has a {v} outsole")),
    "seat_height": (("a seat height of {v}", "a {v} seat height"), ("sits at {v}", "has a seat height of {v}")),
    "upholstery": (("{v} upholstery", "a {v} seat cover"), ("is upholstered in {v}", "is covered in {v}")),
    "max_load": (("a maximum load of {v}", "support for up to {v}"), ("supports up to {v}", "is rated for {v}")),
    "style": (("{v} styling", "a {v} look"), ("has a {v} look", "leans {v} in style")),
    "finish": (("a {v} finish", "{v} surfaces"), ("has a {v} finish", "is {v}")),
    "assembly": (("assembly {v}", "assembly: {v}"), ("lists assembly as {v}",)),
    "pieces": (("{v} pieces", "a {v}-piece build"), ("includes {v} pieces", "comes with {v} pieces")),
    "age_range": (("an age range of {v}", "a {v} age rating"), ("is aimed at ages {v}", "suits builders aged {v}")),
    "minifigures": (("{v} minifigures", "a cast of {v} minifigures"), ("includes {v} minifigures", "comes with {v} minifigures")),
    "theme": (("a {v} theme", "{v} theming"), ("follows a {v} theme", "is themed around {v}")),
    "instructions": (("a {v}", "instructions as a {v}"), ("comes with a {v}", "includes a {v}")),
    "volume": (("{v} of product", "a {v} size"), ("holds {v}", "comes in a {v} size")),
    "skin_type": (("a formula for {v}", "suitability for {v}"), ("is formulated for {v}", "suits {v}")),
    "key_ingredient": (("{v} as its key ingredient", "a {v} formula"), ("is built around {v}", "features {v}")),
    "scent": (("a {v} scent", "{v} fragrance"), ("has a {v} scent", "is {v}")),
    "packaging": (("a {v}", "{v} packaging"), ("comes in a {v}", "is packed in a {v}")),
    "vegan": (("a vegan formula", "vegan ingredients"), ("is vegan", "uses a vegan formula")),
    "spf": (("{v} protection", "built-in {v}"), ("offers {v}", "includes {v}")),
    "laptop_sleeve": (("a {v} laptop sleeve", "a padded {v} laptop sleeve"), ("fits a {v} laptop", "has a {v} laptop sleeve")),
    "pockets": (("{v} pockets", "{v} separate pockets"), ("has {v} pockets", "organises gear across {v} pockets")),
    "colour_temperature": (("a colour temperature range of {v}", "{v} light"), ("adjusts across {v}", "covers {v}")),
    "brightness_levels": (("{v} brightness levels", "{v} brightness settings"), ("offers {v} brightness levels", "dims across {v} levels")),
    "usb_port": (("a USB port", "a built-in USB port"), ("includes a USB port", "has a USB port for charging")),
    "height": (("a height of {v}", "{v} of height"), ("stands {v} tall", "reaches {v}")),
    "dimmable": (("dimmable light", "a dimmer"), ("is dimmable", "dims smoothly")),
}
_UNIT_SINGULAR = {"doors": "door", "pockets": "pocket", "minifigures": "minifigure", "cups": "cup", "pieces": "piece"}

_SUBJECTS = ("It", "This {noun}", "The {noun}", "The {brand} {noun}")
_ADD_ON = ("On top of that,", "It also", "Beyond that,", "Add to that", "Alongside this,", "Meanwhile,", "Plus,", "Elsewhere,")

# Audience voices. Fields: {title} {noun} {brand} {tone} {tone2} {np} {vp} {price} {subj}.
_OPENERS: dict[str, tuple[str, ...]] = {
    "default": (
        "The {title} is a {tone} {noun} with {np}.",
        "Meet the {title}, a {tone} {noun} that {vp}.",
        "The {title} from {brand} {vp}.",
        "This {noun} from {brand}, the {title}, {vp}.",
        "Looking for a {tone} {noun}? The {title} {vp}.",
        "{brand}'s {title} brings {np} to a {tone} package.",
        "Here is the {title}: a {tone} {noun} with {np}.",
        "The {title} keeps things simple and {vp}.",
    ),
    "value_seekers": (
        "At {price}, the {title} {vp}.",
        "The {title} costs {price} and {vp}.",
        "For {price} you get the {title}, a {tone} pick that {vp}.",
        "Priced at {price}, this {noun} from {brand} {vp}.",
        "If you want a {tone} {noun}, the {title} at {price} is worth a look.",
        "{price} buys you the {title}, which {vp}.",
        "The {title} is a {tone} {noun} at {price}.",
        "Spend {price} on the {title} and you get {np}.",
    ),
    "tech_enthusiasts": (
        "Spec-wise, the {title} {vp}.",
        "The {title} puts {np} front and centre.",
        "Start with the numbers: the {title} {vp}.",
        "{brand} {tone2} the {title} around {np}.",
        "On paper, the {title} is a {tone} {noun} with {np}.",
        "For anyone who reads the spec sheet first, the {title} {vp}.",
        "The headline figure on the {title}: {np}.",
        "Under the hood, this {brand} {noun} {vp}.",
    ),
    "outdoor_adventurers": (
        "Out on the trail, the {title} {vp}.",
        "The {title} is a {tone} {noun} with {np}.",
        "Heading outdoors? The {title} {vp}.",
        "For long days outside, the {title} brings {np}.",
        "When the weather turns, the {title} {vp}.",
        "Built for time outdoors, this {brand} {noun} {vp}.",
        "From trailhead to campsite, the {title} offers {np}.",
        "Pack the {title}: it {vp}.",
    ),
    "gift_buyers": (
        "Searching for a {tone}? The {title} {vp}.",
        "The {title} makes a {tone}: it {vp}.",
        "Wrap up the {title} for someone special; it {vp}.",
        "Give the {title}, a {noun} that {vp}.",
        "This {noun} from {brand} is a {tone}, with {np}.",
        "For the person who has everything, the {title} brings {np}.",
        "Birthdays and holidays sorted: the {title} {vp}.",
        "Surprise someone with the {title}, which {vp}.",
    ),
    "eco_conscious": (
        "The {title} is {tone}: it {vp}.",
        "Choosing with care? The {title} {vp}.",
        "{brand} made the {title} with {np}.",
        "The {title} is a {tone} for people who buy less but better; it {vp}.",
        "Start with what it is made of: the {title} {vp}.",
        "For a {noun} you keep for years, the {title} brings {np}.",
        "Made to be used again and again, this {brand} {noun} {vp}.",
        "If materials matter to you, note that the {title} {vp}.",
    ),
    "families": (
        "For busy households, the {title} {vp}.",
        "The {title} is a {tone} {noun} with {np}.",
        "Families will find that the {title} {vp}.",
        "At home with the kids, the {title} offers {np}.",
        "The whole family can use the {title}; it {vp}.",
        "Made for {tone}, this {brand} {noun} {vp}.",
        "Parents looking for a {noun} can count on the {title}, which {vp}.",
        "From weekday mornings to weekends, the {title} {vp}.",
    ),
    "style_seekers": (
        "The {title} is all about {np}.",
        "With {np}, the {title} is a {tone} {noun}.",
        "Looks matter, and the {title} {vp}.",
        "{brand}'s {title} brings {tone} touches and {np}.",
        "Add the {title} to your setup: it {vp}.",
        "Designed to be noticed, this {noun} {vp}.",
        "The {title} pairs {np} with a {tone} silhouette.",
        "For a {tone} {noun}, consider the {title}, which {vp}.",
    ),
}

_CLOSERS: dict[str, tuple[str, ...]] = {
    "default": (
        "A {tone} choice for everyday use.",
        "All in all, a {tone} {noun}.",
        "It is a {tone} option that does the job well.",
        "Simple, {tone} and ready when you are.",
        "A {tone} {noun} worth considering.",
    ),
    "value_seekers": (
        "A {tone} for anyone watching the budget.",
        "It {tone2} without extras you will not use.",
        "A {tone} option that keeps spending in check.",
        "Fair money for what you get, and {tone}.",
        "No frills, just a {tone} {noun}.",
        "That is a {tone} for the price of {price}.",
    ),
    "tech_enthusiasts": (
        "A {tone} {noun} for people who care about the details.",
        "The figures speak for themselves: {tone} and capable.",
        "Expect {tone} results in daily use.",
        "It is a {tone} piece of kit for spec-minded buyers.",
        "Numbers like these make it a {tone} pick.",
    ),
    "outdoor_adventurers": (
        "A {tone} companion for your next trip.",
        "It is {tone} and easy to bring along.",
        "Ready for weekends away and longer trips alike.",
        "Pack it, use it, and head back out: {tone} gear.",
        "A {tone} {noun} for muddy boots and early starts.",
    ),
    "gift_buyers": (
        "A {tone} that feels personal.",
        "Easy to wrap and {tone}.",
        "It is {tone}, whoever is on your list.",
        "Expect a smile when the paper comes off.",
        "A {tone} {noun} for someone you care about.",
    ),
    "eco_conscious": (
        "A {tone} for a lighter footprint at home.",
        "Buy it once and keep it in use: {tone}.",
        "It is a {tone} that fits a considered lifestyle.",
        "Fewer, better things: this {noun} fits that idea.",
        "A {tone} {noun} for people who think before they buy.",
    ),
    "families": (
        "A {tone} {noun} for everyday family life.",
        "It fits neatly into {tone}.",
        "Simple enough for everyone at home.",
        "A {tone} pick for busy days.",
        "It is {tone} and easy to live with.",
    ),
    "style_seekers": (
        "A {tone} addition to any space.",
        "It looks as good as it works: {tone}.",
        "Expect {tone} details from every angle.",
        "A {tone} {noun} for people with an eye for design.",
        "Quietly {tone} and easy to style.",
    ),
}

# Extra fact-sentence frames specific to an audience, mixed with the shared ones below.
_FACT_FRAMES_AUD: dict[str, tuple[str, ...]] = {
    "tech_enthusiasts": ("On the spec sheet: {np1}, {np2} and {np3}.", "Key specs include {np1} and {np2}.",
                         "The numbers: {np1}, plus {np2}."),
    "outdoor_adventurers": ("On the trail, {np1} and {np2} count, and this {noun} has both.",
                            "Expect {np1} and {np2} when you are far from home."),
    "value_seekers": ("For the money you also get {np1} and {np2}.", "Practical extras include {np1} and {np2}."),
    "gift_buyers": ("The lucky recipient gets {np1} and {np2}.", "Its {np1} and {np2} make it easy to love."),
    "eco_conscious": ("The details: {np1}, with {np2}.", "Worth knowing: it has {np1} and {np2}."),
    "families": ("Everyone at home gets {np1} and {np2}.", "Practical for the family: {np1} and {np2}."),
    "style_seekers": ("Visually, it brings {np1} and {np2}.", "The details are {np1} and {np2}."),
    "default": ("Key features include {np1} and {np2}.", "You get {np1} along with {np2}."),
}
_FACT_FRAMES = (
    "{Subj} {vp1} and {vp2}.",
    "{Subj} {vp1}, {vp2} and {vp3}.",
    "With {np1} and {np2}, {subj} {vp3}.",
    "{Np1} and {np2} round out the package.",
    "{AddOn} {subj} {vp1}.",
    "You also get {np1}.",
    "{Subj} {vp1}, while {np2} completes the picture.",
    "There is {np1}, plus {np2}.",
    "Expect {np1} and {np2}.",
    "{Subj} {vp1}; {np2} is part of the deal too.",
)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def price_text(product: ProductUpsert) -> str | None:
    """Price as it appears in prose: '$129.99', '€40.50', else '129.99 CHF'. None when unknown."""
    if product.price is None:
        return None
    sym = _CURRENCY_SYMBOL.get(product.currency)
    amount = f"{product.price:.2f}"
    return f"{sym}{amount}" if sym else f"{amount} {product.currency}"


def product_noun(product: ProductUpsert) -> str:
    """A short prose noun for the product ('tent', 'serum'), from the category spec or the category leaf."""
    spec = category_spec(product.category)
    if spec is not None:
        if spec.noun_attr and isinstance(product.attributes.get(spec.noun_attr), str):
            return str(product.attributes[spec.noun_attr])
        return spec.noun
    if product.category:
        leaf = product.category.split(">")[-1].strip().lower()
        if leaf:
            return leaf[:-1] if leaf.endswith("s") and not leaf.endswith("ss") else leaf
    return "product"


def _value(key: str, value: AttributeValue) -> str | None:
    if isinstance(value, bool):
        return "" if value else None  # only true booleans are mentioned
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


def _phrase_np_vp(key: str, value: AttributeValue, rng: random.Random) -> tuple[str, str] | None:
    v = _value(key, value)
    if v is None:
        return None
    if key in _PHRASES:
        nps, vps = _PHRASES[key]
    else:
        k = key.replace("_", " ")
        nps, vps = (f"a {k} of {{v}}", f"{k}: {{v}}"), (f"has a {k} of {{v}}", f"lists its {k} as {{v}}")
    if isinstance(value, int) and not isinstance(value, bool) and value == 1 and key in _UNIT_SINGULAR:
        plural, single = key, _UNIT_SINGULAR[key]
        nps = tuple(t.replace(plural, single) for t in nps)
        vps = tuple(t.replace(plural, single) for t in vps)
    return rng.choice(nps).format(v=v), rng.choice(vps).format(v=v)


def _ordered_keys(product: ProductUpsert, aud: Audience, rng: random.Random) -> list[str]:
    """Emphasised attributes first (in the audience's order, lightly jittered), then the rest shuffled."""
    emph = [k for k in aud.emphasis if k in product.attributes]
    # Swap neighbours now and then: same priorities, less mechanical ordering across examples.
    for i in range(len(emph) - 1):
        if rng.random() < 0.25:
            emph[i], emph[i + 1] = emph[i + 1], emph[i]
    rest = [k for k in product.attributes if k not in emph]
    rng.shuffle(rest)
    return emph + rest


_WORD = re.compile(r"\S+")


def _words(s: str) -> int:
    return len(_WORD.findall(s))


def write_reference(product: ProductUpsert, audience: str, rng: random.Random) -> str:
    """A 2-4 sentence, 30-90 word description for `audience` using only `product`'s facts.

    Deterministic given `rng`'s state. Raises KeyError for an unknown audience.
    """
    aud = get_audience(audience)
    name = aud.name if aud.name in _OPENERS else "default"
    noun = product_noun(product)
    brand = product.brand or "the maker"
    price = price_text(product)
    tones = list(aud.tone) or ["practical"]

    phrases: list[tuple[str, str]] = []
    for key in _ordered_keys(product, aud, rng):
        ph = _phrase_np_vp(key, product.attributes[key], rng)
        if ph is not None:
            phrases.append(ph)
    if price and (name == "value_seekers" or rng.random() < 0.25):
        at = rng.choice(("a price of {p}", "a {p} price tag", "{p} at checkout"))
        phrases.insert(min(len(phrases), rng.randint(1, 3)), (at.format(p=price), f"sells for {price}"))
    while len(phrases) < 3:  # products with few facts: fall back to the title/category
        phrases.append(("a simple, focused design", "keeps to the essentials") if len(phrases) % 2 == 0
                       else (f"a place in the {noun} range from {brand}", f"sits in the {brand} line-up"))

    def fields(i: int) -> dict[str, str]:
        subj = rng.choice(_SUBJECTS).format(noun=noun, brand=brand)
        return {
            "title": product.title, "noun": noun, "brand": brand, "price": price or "its listed price",
            "tone": rng.choice(tones), "tone2": _tone_verb(name, rng),
            "np": phrases[i % len(phrases)][0], "vp": phrases[i % len(phrases)][1],
            "subj": subj if subj == "It" else subj[0].lower() + subj[1:], "Subj": subj,
            "AddOn": rng.choice(_ADD_ON),
        }

    openers = [t for t in _OPENERS[name] if "{price}" not in t or price]
    closers = [t for t in _CLOSERS[name] if "{price}" not in t or price]
    frames = _FACT_FRAMES + _FACT_FRAMES_AUD.get(name, ())

    sentences = [rng.choice(openers).format(**fields(0))]
    cursor = 1
    n_fact = rng.choice((1, 1, 2)) if len(phrases) > 3 else 1
    for _ in range(n_fact):
        if cursor >= len(phrases):
            break
        sentence, cursor = _fact_sentence(frames, phrases, cursor, fields(cursor), rng)
        sentences.append(sentence)
    if rng.random() < 0.75 or len(sentences) < 2:
        sentences.append(rng.choice(closers).format(**fields(0)))

    # Length control: top up with facts (or a closer) under 30 words, drop middle sentences over 90.
    while sum(map(_words, sentences)) < MIN_WORDS and len(sentences) < 4:
        if cursor < len(phrases):
            sentence, cursor = _fact_sentence(frames, phrases, cursor, fields(cursor), rng)
            sentences.insert(len(sentences) - 1, sentence)
        else:
            sentences.append(rng.choice(closers).format(**fields(0)))
    while sum(map(_words, sentences)) > MAX_WORDS and len(sentences) > 2:
        sentences.pop(len(sentences) // 2)
    text = " ".join(_cap(s) for s in sentences)
    return re.sub(r"\s+([,.;:])", r"\1", text)


def _fact_sentence(frames: tuple[str, ...], phrases: list[tuple[str, str]], cursor: int,
                   f: dict[str, str], rng: random.Random) -> tuple[str, int]:
    left = len(phrases) - cursor
    usable = [t for t in frames if _slots(t) <= left]
    frame = rng.choice(usable or [t for t in frames if _slots(t) <= 1] or frames)
    k = _slots(frame)
    picked = phrases[cursor:cursor + k]
    slot: dict[str, str] = dict(f)
    for j, (np_, vp) in enumerate(picked, 1):
        slot[f"np{j}"], slot[f"vp{j}"] = np_, vp
        slot[f"Np{j}"] = _cap(np_)
    return frame.format(**slot), cursor + max(k, 1)


_SLOT = re.compile(r"\{[nNv]p(\d)\}")


def _slots(frame: str) -> int:
    return max((int(m) for m in _SLOT.findall(frame)), default=0)


def _tone_verb(audience: str, rng: random.Random) -> str:
    if audience == "tech_enthusiasts":
        return rng.choice(("built", "engineered", "designed", "tuned"))
    return rng.choice(("covers the basics", "does what it should", "handles the essentials"))
