"""Numbers only from the facts, enforced while decoding (`DecodingConfig.numbers_from_facts`).

Invented numbers ("2.5 kg" for a 3.1 kg tent) are the generator's most common hallucination and the gate's
most common rejection. SmolLM2's tokenizer writes every digit, "." and "," as its own token, so decoding
can keep each number it writes on a path to one of the product's numbers (the set the gate accepts,
`models.gate.fact_numbers`): a digit is allowed only if the number so far plus that digit is still the start
of a fact number, and a number may only end (any non-digit token) once it *is* a fact number. "." and ","
inside a number follow the same rule (a decimal point or thousands separator when a fact continues that
way; otherwise only after a complete number, as punctuation). The gate still checks every text: this
only stops the model from writing what the gate would reject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

DIGITS = "0123456789"


@dataclass(frozen=True)
class FactNumbers:
    """A product's numbers: canonical (as the gate compares them) and the written forms decoding may
    produce ("149" also as "149.0"/"149.00", "4.5" also as "4.50")."""

    canonical: frozenset[str]
    written: frozenset[str]

    @classmethod
    def of(cls, canonical: frozenset[str] | Sequence[str]) -> "FactNumbers":
        written: set[str] = set()
        for n in canonical:
            written.add(n)
            written.update((n + "0",) if "." in n else (n + ".0", n + ".00"))
        return cls(frozenset(canonical), frozenset(written))

    @classmethod
    def of_product(cls, product: Any) -> "FactNumbers":
        from models.gate import fact_numbers

        return cls.of(fact_numbers(product))


@dataclass(frozen=True)
class NumberTokens:
    """The tokenizer's digit, '.' and ',' token ids (built once per tokenizer)."""

    digit: dict[int, str]
    dot: frozenset[int]
    comma: frozenset[int]

    @classmethod
    def of(cls, tokenizer: Any) -> "NumberTokens":
        vocab = tokenizer.get_vocab()
        ids = sorted(vocab.values())
        texts = tokenizer.batch_decode([[i] for i in ids])
        return cls(digit={i: t for i, t in zip(ids, texts) if len(t) == 1 and t in DIGITS},
                   dot=frozenset(i for i, t in zip(ids, texts) if t == "."),
                   comma=frozenset(i for i, t in zip(ids, texts) if t == ","))

    def number_so_far(self, history: Sequence[int]) -> str:
        """The number the row is in the middle of writing ("" if none): trailing digits/'.'/',' from the
        first digit, commas dropped ("1,29" -> "129"). Two separators in a row mean the first was
        punctuation, so no number is in progress after them ("38.." -> "")."""
        chars: list[str] = []
        for t in reversed(history):
            if t in self.digit:
                chars.append(self.digit[t])
            elif t in self.dot:
                chars.append(".")
            elif t in self.comma:
                chars.append(",")
            else:
                break
        text = "".join(reversed(chars))
        for double in ("..", ".,", ",.", ",,"):
            if double in text:
                text = text[text.rindex(double) + 2 :]
        return text.lstrip(".,").replace(",", "")


def allowed_tokens(nt: NumberTokens, so_far: str, numbers: FactNumbers) -> tuple[frozenset[int], bool]:
    """(number tokens allowed next, whether any other token may follow) for a row whose current number
    is `so_far` (`NumberTokens.number_so_far`)."""
    from models.gate import canonical_number

    facts = numbers.written

    def viable(prefix: str) -> bool:
        return any(f.startswith(prefix) for f in facts)

    def complete(number: str) -> bool:
        return bool(number) and number[-1] != "." and canonical_number(number) in numbers.canonical

    if not so_far:
        return frozenset(i for i, d in nt.digit.items() if viable(d)), True
    allowed = {i for i, d in nt.digit.items() if viable(so_far + d)}
    if so_far.endswith("."):  # a decimal point, or the full stop after a complete number
        return frozenset(allowed), complete(so_far[:-1])
    done = complete(so_far)
    if done or viable(so_far + "."):
        allowed |= nt.dot
    if done or any(f.startswith(so_far) and len(f) - len(so_far) >= 3 and f[len(so_far):][:3].isdigit() for f in facts):
        allowed |= nt.comma
    return frozenset(allowed), done


def apply(logits: Any, histories: Sequence[Sequence[int]], nt: NumberTokens,
          numbers: Sequence[FactNumbers | None]) -> Any:
    """Mask each row's logits (in place) so that the number it is writing stays a fact number
    (`numbers[b]` None = row b is not constrained)."""
    import torch

    for b, hist in enumerate(histories):
        if numbers[b] is None:
            continue
        ok, others = allowed_tokens(nt, nt.number_so_far(hist), numbers[b])
        if not ok and not others:  # cannot happen for a prefix we allowed; never leave a row without a token
            ok, others = allowed_tokens(nt, "", numbers[b])
        if others:  # not inside an unfinished number: only digits that cannot start a fact number are out
            banned = [i for i in nt.digit if i not in ok]
            if banned:
                logits[b, torch.tensor(banned, dtype=torch.long, device=logits.device)] = float("-inf")
        else:  # inside an unfinished number: only the tokens that continue it
            idx = torch.tensor(sorted(ok), dtype=torch.long, device=logits.device)
            keep = logits[b, idx].clone()
            logits[b] = float("-inf")
            logits[b, idx] = keep
    return logits
