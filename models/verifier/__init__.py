"""The verifier: reads a description against its product's facts the way a merchandising editor does.

One contract for every caller (the publishing gate, `descstream verify`, `descstream eval`, candidate
ranking): `verify(product, audience, text) -> Verdict`, where a verdict lists typed span errors.

Two readers:
- span-level rules (`models.verifier.rules`): values bound to their attribute, unit and currency,
  product type, exact names, audience words, seller-text echoes, the gate's claims and vocabularies;
- a learned sentence-level reader (`models.verifier.learned`, FactCC-style MiniLM cross-encoder over
  (facts, sentence)), served by Triton as `fact_verifier`. A sentence it scores at or above its threshold,
  where no rule already found an error, is reported as `invented` with its probability.

Error types (`docs/labelling-guide.md` defines them with examples): `misbound`, `invented`,
`wrong_type`, `wrong_name`, `nonsense`, `injection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from descstream.schemas import ProductUpsert

from models.verifier.rules import SpanError, all_errors

ERROR_TYPES = ("misbound", "invented", "wrong_type", "wrong_name", "nonsense", "injection")

# Scores (facts_text, sentence) pairs -> probability each sentence is unsupported; None = rules only.
SentenceScorer = Callable[[Sequence[tuple[str, str]]], Sequence[float]]


@dataclass(frozen=True)
class Verdict:
    """`ok` is True only when no error was found."""

    errors: tuple[SpanError, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> list[dict[str, str]]:
        return [{"type": e.type, "span": e.span, "why": e.why} for e in self.errors]


def _learned_errors(items: Sequence[tuple[ProductUpsert, str, list[SpanError]]], scorer: SentenceScorer,
                    threshold: float) -> list[list[SpanError]]:
    from models.verifier.learned import facts_text, split_sentences

    pairs: list[tuple[str, str]] = []
    owners: list[int] = []
    for i, (product, text, _) in enumerate(items):
        facts = facts_text(product)
        for sentence in split_sentences(text):
            pairs.append((facts, sentence))
            owners.append(i)
    probs = list(scorer(pairs)) if pairs else []
    out: list[list[SpanError]] = [[] for _ in items]
    for (facts, sentence), owner, p in zip(pairs, owners, probs):
        if p < threshold:
            continue
        ruled = items[owner][2]
        if any(e.span and e.span.lower() in sentence.lower() for e in ruled):
            continue  # a rule already marked this sentence, with a precise span
        out[owner].append(SpanError("invented", sentence, f"sentence not supported by the facts (p={p:.2f})"))
    return out


def verify_many(items: Sequence[tuple[ProductUpsert, str, str]], scorer: SentenceScorer | None = None,
                threshold: float = 0.5) -> list[Verdict]:
    """Verdicts for many (product, audience, text) triples; all sentences go to `scorer` in one batch."""
    ruled = [(p, t, all_errors(p, a, t)) for p, a, t in items]
    extra = _learned_errors(ruled, scorer, threshold) if scorer is not None else [[] for _ in ruled]
    return [Verdict(tuple(errs + more)) for (_, _, errs), more in zip(ruled, extra)]


def verify(product: ProductUpsert, audience: str, text: str, scorer: SentenceScorer | None = None,
           threshold: float = 0.5) -> Verdict:
    """Is `text` a faithful description of `product`? Every error found is reported."""
    return verify_many([(product, audience, text)], scorer, threshold)[0]


def best_candidate(product: ProductUpsert, audience: str, candidates: Sequence[str | None],
                   scorer: SentenceScorer | None = None, threshold: float = 0.5) -> tuple[int, Verdict | None]:
    """The candidate to publish: the first with no error, else the one with the fewest errors (the gate
    then falls back); (-1, None) when no candidate has text. Candidates come from one batch of k seeds."""
    scored = [(i, v) for i, v in zip((i for i, c in enumerate(candidates) if c),
                                     verify_many([(product, audience, c) for c in candidates if c], scorer, threshold))]
    if not scored:
        return -1, None
    return min(scored, key=lambda iv: (len(iv[1].errors), iv[0]))
