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
MAX_WORDS = 100
MAX_FACT_SENTENCES = 4  # enough frames for every attribute of every catalogue category

_CURRENCY_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£"}

# Per-attribute phrasings. NP = noun phrase ("a weight of 1.6 kg"), VP = verb phrase ("weighs 1.6 kg").
# {v} is the value verbatim. Booleans are only mentioned when true (False facts are not selling points).
_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "weight": (("a weight of {v}", "just {v} on the scale", "a {v} build", "a [carry|total|trail|listed] weight of {v}", "[only|just|a mere] {v} [in weight|to carry]"),
               ("weighs {v}", "comes in at {v}", "tips the scales at {v}", "weighs [only|just|in at] {v}", "keeps the weight to {v}", "[registers|measures] {v} on the scale")),
    "material": (("{v} construction", "a {v} body", "[sturdy|solid|dependable] {v}", "{v} throughout", "a [frame|build|shell] of {v}"),
                 ("is made from {v}", "is built from {v}", "uses {v}", "is crafted [in|from] {v}", "[relies on|is put together from] {v}")),
    "colour": (("a {v} finish", "a {v} colourway", "{v} styling", "a [smart|clean|crisp] {v} look", "a {v} [shade|tone]"),
               ("comes in {v}", "is finished in {v}", "wears a {v} colourway", "[arrives|ships] in {v}", "is dressed in {v}")),
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
    "battery_life": (("{v} of battery life", "up to {v} per charge", "a battery that lasts {v}", "[around|up to] {v} of [playtime|runtime|use] per charge"),
                     ("runs for {v} per charge", "offers {v} of battery life", "lasts up to {v} between charges", "[keeps going|keeps running] for up to {v}")),
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
    "capacity": (("a capacity of {v}", "{v} of capacity", "{v} of [space|room|storage]", "a [roomy|usable|generous] {v} capacity"),
                 ("holds {v}", "offers {v} of capacity", "takes up to {v}", "[swallows|fits] up to {v}", "has room for {v}")),
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
    "assembly": (("assembly {v}",), ("lists assembly as {v}", "has assembly marked as {v}")),
    "pieces": (("{v} pieces", "a {v}-piece build"), ("includes {v} pieces", "comes with {v} pieces")),
    "age_range": (("an age range of {v}", "a {v} age rating"), ("is aimed at ages {v}", "suits builders aged {v}")),
    "minifigures": (("{v} minifigures", "a cast of {v} minifigures"), ("includes {v} minifigures", "comes with {v} minifigures")),
    "theme": (("a {v} theme", "{v} theming"), ("follows a {v} theme", "is themed around {v}")),
    "instructions": (("a {v}", "instructions as a {v}"), ("comes with a {v}", "includes a {v}")),
    "volume": (("{v} of product", "a {v} size"), ("holds {v}", "comes in a {v} size")),
    "skin_type": (("a formula for {v}", "suitability for {v}"), ("is formulated for {v}", "suits {v}")),
    "key_ingredient": (("{v} as its key ingredient", "a {v} formula"), ("is built around {v}", "features {v}")),
    "scent": (("a {v} formula", "a {v} profile"), ("has a {v} formula", "comes in a {v} version")),
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

_SUBJECTS = ("It", "This {noun}", "The {noun}", "The {brand} {noun}", "This one", "The {short}", "It", "The {brand} model",
             "This model", "This {brand} piece")
_ADD_ON = ("On top of that,", "Beyond that,", "Alongside this,", "Plus,", "Better still,", "What is more,", "Also,",
           "In addition,", "Just as usefully,", "Worth noting:", "And", "Elsewhere,", "Meanwhile,", "Add to that:",
           "On the practical side,", "Then there is this:", "Next up,", "Equally,", "Similarly,", "For good measure,",
           "As a bonus,", "Moving on,", "Further,", "Not forgetting,", "Handily,", "Usefully,", "Along the way,")

# Templates may contain alternations `[a|b|c]` (one picked at random; `[|x]` = optional x) so one
# frame yields many surface forms. Fields: {title} (full title), {short} (title without a leading
# brand), {noun}, {brand}, {tone} (adjective), {tonep}/{Tonep} (noun phrase), {np}/{vp} (one fact),
# {price}, {tverb}.
_OPENERS: dict[str, tuple[str, ...]] = {
    "default": (
        "The {title} is a {tone} {noun} with {np}.",
        "[Meet|Say hello to|Introducing] the {title}, a {tone} {noun} that {vp}.",
        "The {short} from {brand} {vp}.",
        "This {noun} from {brand}, the {short}, {vp}.",
        "[Looking for|In the market for|Need] a {tone} {noun}? The {title} {vp}.",
        "{brand}'s {short} [brings|puts] {np} [into|in] a {tone} package.",
        "Here is the {title}: {tonep} with {np}.",
        "The {title} keeps things [simple|uncomplicated|straightforward] and {vp}.",
        "[Simply put|In short|At a glance], the {title} {vp}.",
        "[First things first|To begin with]: the {title} {vp}.",
    ),
    "value_seekers": (
        "At {price}, the {title} {vp}.",
        "The {title} [costs|comes in at|retails for] {price} and {vp}.",
        "For {price} you get the {title}, a {tone} pick that {vp}.",
        "[Priced at|Listed at|Selling for] {price}, this {noun} from {brand} {vp}.",
        "If you want a {tone} {noun}, the {title} at {price} is worth a [look|closer look|second look].",
        "{price} buys you the {title}, which {vp}.",
        "The {title} is {tonep} at {price}.",
        "Spend {price} on the {title} and you get {np}.",
        "[Want|After] {tonep}? The {title} {vp}.",
        "[Budget|Money] matters, and the {title} {vp}.",
    ),
    "tech_enthusiasts": (
        "Spec-wise, the {title} {vp}.",
        "The {title} puts {np} front and centre.",
        "[Start with|Begin with|Lead with] the numbers: the {title} {vp}.",
        "{brand} {tverb} the {short} around {np}.",
        "On paper, the {title} is a {tone} {noun} with {np}.",
        "For anyone who reads the spec sheet first, the {title} {vp}.",
        "The headline [figure|spec|number] on the {title}: {np}.",
        "Under the hood, this {brand} {noun} {vp}.",
        "[Data first|Specs first|Straight to the specs]: the {title} {vp}.",
        "If you compare spec sheets, note that the {title} {vp}.",
    ),
    "outdoor_adventurers": (
        "Out on the [trail|hills|track], the {title} {vp}.",
        "The {title} is a {tone} {noun} with {np}.",
        "Heading [outdoors|out|into the wild|off the beaten path]? The {title} {vp}.",
        "For long days [outside|in the hills|on foot], the {title} brings {np}.",
        "When the weather turns, the {title} {vp}.",
        "Built for time outdoors, this {brand} {noun} {vp}.",
        "From trailhead to campsite, the {title} offers {np}.",
        "Pack the {title}: it {vp}.",
        "[Wild camping|Weekend hikes|Early alpine starts] call for gear like the {title}, which {vp}.",
        "[Miles from anywhere|Far from the car park], the {title} {vp}.",
    ),
    "gift_buyers": (
        "[Searching|Looking|Hunting] for {tonep}? The {title} {vp}.",
        "The {title} makes {tonep}: it {vp}.",
        "Wrap up the {title} for someone special; it {vp}.",
        "Give the {title}, a {tone} {noun} that {vp}.",
        "This {noun} from {brand} is {tonep}, with {np}.",
        "For the person who has everything, the {title} brings {np}.",
        "[Birthdays and holidays sorted|Gift list sorted|One present ticked off]: the {title} {vp}.",
        "Surprise someone with the {title}, which {vp}.",
        "[Stuck for ideas|Not sure what to give]? The {title} {vp}.",
        "Someone on your list will [appreciate|enjoy|welcome] the {title}, which {vp}.",
    ),
    "eco_conscious": (
        "The {title} is {tonep}: it {vp}.",
        "[Choosing with care|Shopping mindfully|Buying with intent]? The {title} {vp}.",
        "{brand} made the {short} with {np}.",
        "The {title} is {tonep} for people who buy less but better; it {vp}.",
        "Start with what it is made of: the {title} {vp}.",
        "For a {noun} you keep in use, the {title} brings {np}.",
        "A {tone} {noun}, this {brand} piece {vp}.",
        "If materials matter to you, note that the {title} {vp}.",
        "[Look closely|Check the label] and you will see that the {title} {vp}.",
        "[Good choices start with the details|Details matter]: the {title} {vp}.",
    ),
    "families": (
        "For busy households, the {title} {vp}.",
        "The {title} is a {tone} {noun} with {np}.",
        "Families will find that the {title} {vp}.",
        "At home with the kids, the {title} offers {np}.",
        "The whole family can use the {title}; it {vp}.",
        "Made for everyday family life, this {brand} {noun} {vp}.",
        "Parents looking for a {tone} {noun} can turn to the {title}, which {vp}.",
        "From weekday mornings to weekends, the {title} {vp}.",
        "[School runs|Rainy afternoons|Family weekends] are easier with the {title}, which {vp}.",
        "[Mum, dad and the kids|Everyone under one roof] can share the {title}; it {vp}.",
    ),
    "style_seekers": (
        "The {title} is all about {np}.",
        "With {np}, the {title} is a {tone} {noun}.",
        "Looks matter, and the {title} {vp}.",
        "{brand}'s {short} brings {tone} touches and {np}.",
        "Add the {title} to your [setup|space|routine]: it {vp}.",
        "Designed to be noticed, this {noun} {vp}.",
        "The {title} pairs {np} with a {tone} silhouette.",
        "For {tonep}, consider the {title}, which {vp}.",
        "[Form meets function|Design comes first] in the {title}, which {vp}.",
        "[Clean-lined|Well-proportioned] and {tone}, the {title} {vp}.",
    ),
}

_CLOSERS: dict[str, tuple[str, ...]] = {
    "default": (
        "{Tonep} for everyday use.",
        "All in all, a {tone} {noun}.",
        "It is {tonep} that does the job [well|nicely|without fuss].",
        "Simple, {tone} and ready when you are.",
        "A {tone} {noun} worth [considering|a look|shortlisting].",
        "[Overall|In short|All told], {tonep}.",
    ),
    "value_seekers": (
        "{Tonep} for anyone watching the budget.",
        "It covers the essentials without extras you will not use.",
        "A {tone} option that keeps spending in check.",
        "Fair money for what you get: {tonep}.",
        "No frills, just a {tone} {noun}.",
        "That is {tonep} for {price}.",
        "[Sensible spending|Smart shopping] starts with [picks|choices] like this.",
    ),
    "tech_enthusiasts": (
        "A {tone} {noun} for people who care about the details.",
        "The figures speak for themselves: {tonep}.",
        "Expect {tone} behaviour in daily use.",
        "It is {tonep} for spec-minded buyers.",
        "Numbers like these make it a {tone} pick.",
        "[Check the spec sheet|Compare the figures] and it holds up as {tonep}.",
    ),
    "outdoor_adventurers": (
        "{Tonep} for your next trip.",
        "It is {tone} and easy to bring along.",
        "Ready for weekends away and longer trips alike.",
        "Pack it, use it, and head back out: {tonep}.",
        "A {tone} {noun} for muddy boots and early starts.",
        "[See you at the summit|Happy trails|Enjoy the journey].",
    ),
    "gift_buyers": (
        "{Tonep} that feels personal.",
        "Easy to wrap and {tone}.",
        "It is {tonep}, whoever is on your list.",
        "Expect a smile when the paper comes off.",
        "A {tone} {noun} for someone you care about.",
        "[Tie a bow on it|Add a card] and you are done.",
    ),
    "eco_conscious": (
        "{Tonep} for a lighter footprint at home.",
        "Buy it once and keep it in use: {tonep}.",
        "It is {tonep} that fits a considered lifestyle.",
        "Fewer, better things: this {noun} fits that idea.",
        "A {tone} {noun} for people who think before they buy.",
        "[Use it often|Care for it] and it will keep earning its place.",
    ),
    "families": (
        "A {tone} {noun} for everyday family life.",
        "It is {tonep} for busy homes.",
        "Simple enough for everyone at home.",
        "{Tonep} for busy days.",
        "It is {tone} and easy to live with.",
        "[One less thing to worry about|Less fuss, more time together].",
    ),
    "style_seekers": (
        "{Tonep} for any space.",
        "It looks as good as it works: {tonep}.",
        "Expect {tone} details from every angle.",
        "A {tone} {noun} for people with an eye for design.",
        "Quietly {tone} and easy to style.",
        "[Style it your way|Let it take centre stage].",
    ),
}

# Extra fact-sentence frames specific to an audience, mixed with the shared ones below.
_FACT_FRAMES_AUD: dict[str, tuple[str, ...]] = {
    "tech_enthusiasts": ("On the spec sheet: {np1}, {np2} and {np3}.", "Key specs include {np1} and {np2}.",
                         "The numbers: {np1}, plus {np2}.", "[Further down|Deeper into] the spec sheet you find {np1}."),
    "outdoor_adventurers": ("On the trail, {np1} and {np2} count, and this {noun} has both.",
                            "Expect {np1} and {np2} when you are far from home.",
                            "[Out there|In the field], {subj} {vp1}."),
    "value_seekers": ("For the money you also get {np1} and {np2}.", "Practical extras include {np1} and {np2}.",
                      "[Nothing fancy|No gimmicks]: {subj} {vp1}."),
    "gift_buyers": ("The lucky recipient gets {np1} and {np2}.", "{Np1} and {np2} make it easy to love.",
                    "[They will also get|Inside the wrapping is] {np1}."),
    "eco_conscious": ("The details: {np1}, with {np2}.", "Worth knowing: it has {np1} and {np2}.",
                      "[On closer inspection|Looking closer], {subj} {vp1}."),
    "families": ("Everyone at home gets {np1} and {np2}.", "Practical for the family: {np1} and {np2}.",
                 "[For the household|At home], {subj} {vp1}."),
    "style_seekers": ("Visually, it brings {np1} and {np2}.", "The details are {np1} and {np2}.",
                      "[Look closer|Up close], {subj} {vp1}."),
    "default": ("Key features include {np1} and {np2}.", "You get {np1} along with {np2}.",
                "[In use|Day to day], {subj} {vp1}."),
}
_FACT_FRAMES = (
    "[Next|Then|After that], {subj} {vp1}.",
    "{Np1}? [Yes|Check|Covered]: {subj} {vp1}.",
    "[Also on the list|Also included|Also part of it] [is|comes] {np1}.",
    "[Another point|One more detail|A further detail]: {subj} {vp1}.",
    "{Subj} {vp1} [as well|too].",
    "[Add|Throw in|Factor in] {np1} and {np2}.",
    "[There is|You will find|It has] {np1}, [and|along with|together with] {np2}.",
    "{Np1} [sits alongside|comes with|joins] {np2}.",
    "{Subj} {vp1}, and [it|it also] {vp2}.",
    "[Practically speaking|In practice|Day to day], {subj} {vp1}.",
    "[Notably|Importantly|Helpfully], {subj} {vp1}.",
    "[The spec list|The listing|The product page] [mentions|shows|notes] {np1} and {np2}.",
    "{Np1}, {np2} and {np3} [complete the rundown|make up the rest|are also on board].",
    "[Look for|Note|Consider] {np1}: {subj} {vp2}.",
    "{Subj} {vp1} and {vp2}.",
    "{Subj} {vp1}, {vp2} and {vp3}.",
    "With {np1} and {np2}, {subj} {vp3}.",
    "{Np1} and {np2} [round out the package|complete the picture|fill in the rest|finish the list].",
    "{AddOn} {subj} {vp1}.",
    "You also get {np1}.",
    "{Subj} {vp1}, while {np2} [completes the picture|rounds things off|adds to the appeal].",
    "You get {np1}, plus {np2}.",
    "[Expect|Count on|Look forward to] {np1} and {np2}.",
    "{Subj} {vp1}; {np2} is part of the [deal|package|offer] too.",
    "[There is more|That is not all]: {subj} {vp1}.",
    "[As for the details|Detail-wise|In terms of detail], {subj} {vp1}.",
)
_ALT = re.compile(r"\[([^\[\]{}]*)\]")


def _expand(template: str, rng: random.Random) -> str:
    """Resolve `[a|b|c]` alternations in a template (before field values are inserted)."""
    return _ALT.sub(lambda m: rng.choice(m.group(1).split("|")), template)


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
    if key == "skin_type" and not v.endswith("types"):
        v = f"{v} skin"
    if key in _PHRASES:
        nps, vps = _PHRASES[key]
    else:
        k = key.replace("_", " ")
        nps, vps = (f"a {k} of {{v}}", f"{k}: {{v}}"), (f"has a {k} of {{v}}", f"lists its {k} as {{v}}")
    if isinstance(value, int) and not isinstance(value, bool) and value == 1 and key in _UNIT_SINGULAR:
        plural, single = key, _UNIT_SINGULAR[key]
        nps = tuple(t.replace(plural, single) for t in nps)
        vps = tuple(t.replace(plural, single) for t in vps)
    np_ = _expand(rng.choice(nps), rng).format(v=v)
    if rng.random() < 0.4:  # a generic verb around a noun phrase: more surface forms, same fact
        vp = _expand(rng.choice(_GENERIC_VERBS), rng) + " " + _expand(rng.choice(nps), rng).format(v=v)
    else:
        vp = _expand(rng.choice(vps), rng).format(v=v)
    return np_, vp


_GENERIC_VERBS = ("has", "offers", "brings", "comes with", "features", "includes", "gives you", "pairs that with",
                  "[also |][offers|provides]", "is specified with", "is listed with", "counts on", "delivers",
                  "backs this with", "combines this with", "sports", "arrives with", "ships with")


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
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def _words(s: str) -> int:
    return len(_WORD.findall(s))


def _short_title(product: ProductUpsert) -> str:
    """The title without a leading brand, so "{brand}'s {short}" does not say the brand twice."""
    t = product.title
    if product.brand and t.lower().startswith(product.brand.lower() + " "):
        return t[len(product.brand) + 1:]
    return t


_AN_WORD = re.compile(r"\b([Aa]) (?=([A-Za-z0-9][\w.-]*))")


def _fix_articles(text: str) -> str:
    """'a easy' -> 'an easy', 'a 8 mm' -> 'an 8 mm', 'a LED' -> 'an LED', but 'a USB port' stays."""

    def repl(m: re.Match[str]) -> str:
        art, word = m.group(1), m.group(2)
        if word.isupper() and len(word) > 1 and word[0].isalpha():
            an = word[0] in "AEFHILMNORSX"
        elif word[0].isdigit():
            an = word[0] == "8" or re.match(r"1[18](?![\d])|1[18][.,]\d", word) is not None
        else:
            low = word.lower()
            an = low[0] in "aeio" or (low[0] == "u" and not low.startswith(("us", "uni", "use", "ut")))
            an = an or low.startswith(("hour", "honest"))
        return (art + "n " if an else art + " ")

    return _AN_WORD.sub(repl, text)


def write_reference(product: ProductUpsert, audience: str, rng: random.Random) -> str:
    """A 2-6 sentence, 30-100 word description for `audience` using only `product`'s facts.

    Deterministic given `rng`'s state. Raises KeyError for an unknown audience. Drafts are checked with
    the faithfulness gate and redrawn (a few times) if they fail, e.g. when a long product noun repeats
    into a 3-word loop: training targets must always be texts the gate would publish.
    """
    from models.gate import check  # local import: gate imports this module for its fallback writer

    text = ""
    for _ in range(12):
        text = _draft(product, audience, rng)
        n_sent = len(_SENTENCE_END.findall(text))
        if 2 <= n_sent <= 6 and MIN_WORDS <= _words(text) <= MAX_WORDS and check(product, audience, text).passed:
            return text
    return text


def _draft(product: ProductUpsert, audience: str, rng: random.Random) -> str:
    aud = get_audience(audience)
    name = aud.name if aud.name in _OPENERS else "default"
    noun = product_noun(product)
    spec = category_spec(product.category)
    skip_key = spec.noun_attr if spec is not None else None  # already said by the noun ("serum")
    brand = product.brand or "the maker"
    price = price_text(product)
    adjs = list(aud.tone_adjectives) or ["practical"]
    tps = list(aud.tone_phrases) or ["a practical choice"]

    openers = [t for t in _OPENERS[name] if "{price}" not in t or price]
    closers = [t for t in _CLOSERS[name] if "{price}" not in t or price]
    frames = _FACT_FRAMES + _FACT_FRAMES_AUD.get(name, ())
    opener = rng.choice(openers)
    closer = rng.choice(closers)
    price_said = "{price}" in opener

    phrases: list[tuple[str, str]] = []
    for key in _ordered_keys(product, aud, rng):
        if key == skip_key:
            continue
        ph = _phrase_np_vp(key, product.attributes[key], rng)
        if ph is not None:
            phrases.append(ph)
    if price and not price_said and (name == "value_seekers" or rng.random() < 0.25):
        at = _expand(rng.choice(("a price of {p}", "a {p} price tag", "[a listed|an asking] price of {p}")), rng)
        phrases.insert(min(len(phrases), rng.randint(1, 3)), (at.format(p=price), f"sells for {price}"))
    while len(phrases) < 3:  # products with few facts: fall back to neutral, fact-free phrases
        phrases.append(("a simple, focused design", "keeps to the essentials") if len(phrases) % 2 == 0
                       else (f"a place in the {brand} range", f"sits in the {brand} line-up"))

    def fields(i: int) -> dict[str, str]:
        subj = rng.choice(_SUBJECTS).format(noun=noun, brand=brand, short=_short_title(product))
        tonep = rng.choice(tps)
        return {
            "title": product.title, "short": _short_title(product), "noun": noun, "brand": brand,
            "price": price or "its listed price", "tone": rng.choice(adjs), "tonep": tonep, "Tonep": _cap(tonep),
            "tverb": rng.choice(("built", "engineered", "designed", "tuned")),
            "np": phrases[i % len(phrases)][0], "vp": phrases[i % len(phrases)][1],
            "subj": "it" if subj == "It" else subj[0].lower() + subj[1:], "Subj": subj,
            "AddOn": rng.choice(_ADD_ON),
        }

    sentences = [_expand(opener, rng).format(**fields(0))]
    used: set[str] = set()
    cursor = 1
    # Every fact gets said (the audience decides the order and emphasis, not what is left out): the
    # generator learns to cover the product's attributes, which evaluation measures as coverage.
    for i in range(MAX_FACT_SENTENCES):
        if cursor >= len(phrases):
            break
        need = -(-(len(phrases) - cursor) // (MAX_FACT_SENTENCES - i))  # facts per sentence to say them all
        sentence, cursor = _fact_sentence(frames, phrases, cursor, fields(cursor), rng, used, min(need, 3))
        sentences.append(sentence)
    with_closer = rng.random() < 0.6 or len(sentences) < 2
    if with_closer:
        sentences.append(_expand(closer, rng).format(**fields(0)))

    # Length control: top up with facts (or a closer) under 30 words, drop middle sentences over 90.
    while sum(map(_words, sentences)) < MIN_WORDS and len(sentences) < 4:
        if cursor < len(phrases):
            sentence, cursor = _fact_sentence(frames, phrases, cursor, fields(cursor), rng, used)
            sentences.insert(len(sentences) - 1 if with_closer else len(sentences), sentence)
        else:
            others = [c for c in closers if c != closer] or closers
            sentences.append(_expand(rng.choice(others), rng).format(**fields(0)))
    if with_closer and sum(map(_words, sentences)) > MAX_WORDS:
        sentences.pop()  # the closer goes before any fact does
    while sum(map(_words, sentences)) > MAX_WORDS and len(sentences) > 2:
        sentences.pop(len(sentences) // 2)
    text = " ".join(_cap(s) for s in sentences)
    return _fix_articles(re.sub(r"\s+([,.;:])", r"\1", text))


def _fact_sentence(frames: tuple[str, ...], phrases: list[tuple[str, str]], cursor: int,
                   f: dict[str, str], rng: random.Random, used: set[str], min_slots: int = 0) -> tuple[str, int]:
    left = len(phrases) - cursor
    usable = [t for t in frames if min_slots <= _slots(t) <= left and t not in used]
    frame = rng.choice(usable or [t for t in frames if _slots(t) <= left])
    used.add(frame)
    k = _slots(frame)
    picked = phrases[cursor:cursor + k]
    slot: dict[str, str] = dict(f)
    for j, (np_, vp) in enumerate(picked, 1):
        slot[f"np{j}"], slot[f"vp{j}"] = np_, vp
        slot[f"Np{j}"] = _cap(np_)
    return _expand(frame, rng).format(**slot), cursor + max(k, 1)


_SLOT = re.compile(r"\{[nNv]p(\d)\}")


def _slots(frame: str) -> int:
    return max((int(m) for m in _SLOT.findall(frame)), default=0)
