"""Audience segments: who a description is written for.

The definitions live in `audiences.toml` next to this module so product people can edit them without
touching code; this module loads, validates and caches them. Stream workers call
`audiences_for_category` per product, so the lookup is cached and allocation-light.
"""

from __future__ import annotations

try:  # Python 3.11+; the NGC Triton image runs 3.10, where `tomli` is the same parser
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from descstream.schemas import DEFAULT_AUDIENCE

AUDIENCES_PATH = Path(__file__).with_name("audiences.toml")


@dataclass(frozen=True)
class Audience:
    """One audience segment.

    `emphasis` orders which facts the writers put first; `tone_adjectives` / `tone_phrases` are the
    non-factual words the reference writer may use for this voice (never numbers, brands, materials or
    colours, so they cannot break the faithfulness gate); `tone` is both together. `categories` are
    category prefixes ("*" = all) where the audience is relevant.
    """

    name: str
    label: str
    cares_about: str
    emphasis: tuple[str, ...]
    tone_adjectives: tuple[str, ...]
    tone_phrases: tuple[str, ...]
    categories: tuple[str, ...]

    @property
    def tone(self) -> tuple[str, ...]:
        return self.tone_adjectives + self.tone_phrases

    def matches(self, category: str | None) -> bool:
        """True if this audience is relevant for `category` (prefix match on the " > " path)."""
        if "*" in self.categories:
            return True
        if not category:
            return False
        cat = category.strip().lower()
        for prefix in self.categories:
            p = prefix.lower()
            if cat == p or cat.startswith(p + " >") or cat.startswith(p + ">"):
                return True
        return False


def _parse(data: dict, source: str) -> dict[str, Audience]:
    out: dict[str, Audience] = {}
    for name, spec in data.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{source}: audience {name!r} must be a table")
        try:
            out[name] = Audience(
                name=name,
                label=str(spec["label"]),
                cares_about=str(spec["cares_about"]),
                emphasis=tuple(str(x) for x in spec.get("emphasis", ())),
                tone_adjectives=tuple(str(x) for x in spec.get("tone_adjectives", ())),
                tone_phrases=tuple(str(x) for x in spec.get("tone_phrases", ())),
                categories=tuple(str(x) for x in spec.get("categories", ("*",))),
            )
        except KeyError as exc:
            raise ValueError(f"{source}: audience {name!r} is missing {exc.args[0]!r}") from None
    if DEFAULT_AUDIENCE not in out:
        raise ValueError(f"{source}: the {DEFAULT_AUDIENCE!r} audience is required")
    return out


@lru_cache(maxsize=8)
def _load(path: str) -> dict[str, Audience]:
    with open(path, "rb") as fh:
        return _parse(tomllib.load(fh), path)


def load_audiences(path: str | Path | None = None) -> dict[str, Audience]:
    """All audiences by name (cached per path). `default` is always present and first."""
    audiences = _load(str(path or AUDIENCES_PATH))
    return dict(audiences)  # a copy: callers may not mutate the cache


def get_audience(name: str) -> Audience:
    """The audience called `name`; `KeyError` listing the known names if there is none."""
    audiences = _load(str(AUDIENCES_PATH))
    try:
        return audiences[name]
    except KeyError:
        raise KeyError(f"unknown audience {name!r}; known audiences: {', '.join(sorted(audiences))}") from None


@lru_cache(maxsize=4096)
def _for_category(category: str | None) -> tuple[str, ...]:
    audiences = _load(str(AUDIENCES_PATH))
    rest = [n for n, a in audiences.items() if n != DEFAULT_AUDIENCE and a.matches(category)]
    return (DEFAULT_AUDIENCE, *rest)


def audiences_for_category(category: str | None) -> list[str]:
    """Audience names relevant for a category, `default` first, then in file order."""
    return list(_for_category(category))
