"""Importers for a platform's own (facts, audience, description) data.

Real users bring their own catalogue and copy; these readers turn common file shapes into
`dataset.Example`s. A bad line never aborts an import: it is recorded as a `LineError` (1-based line
number + reason) so a 100k-line file with a few broken rows still trains, and the rows can be fixed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from descstream.schemas import DEFAULT_AUDIENCE, AttributeValue, ProductUpsert

from models.audiences import load_audiences
from models.catalogue import FIXED_UPDATED_AT
from models.dataset import Example


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str


@dataclass
class ImportReport:
    """What an importer read: the good examples and one error per bad line."""

    examples: list[Example] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)

    def __iter__(self):  # `examples, errors = read_pairs_csv(...)` works too
        return iter((self.examples, self.errors))


class _BadRow(ValueError):
    pass


def _stable_id(prefix: str, *parts: str) -> str:
    h = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()
    return f"{prefix}-{h}"


def _check_audience(audience: Any) -> str:
    aud = str(audience or DEFAULT_AUDIENCE).strip() or DEFAULT_AUDIENCE
    if aud not in load_audiences():
        raise _BadRow(f"unknown audience {aud!r} (known: {', '.join(sorted(load_audiences()))})")
    return aud


def _check_text(text: Any, name: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise _BadRow(f"missing or empty {name!r}")
    return text.strip()


def _product(data: dict[str, Any]) -> ProductUpsert:
    """A ProductUpsert from a facts dict; fills product_id (stable hash of the facts), version, updated_at."""
    data = {k: v for k, v in data.items() if v is not None and v != ""}
    if "title" not in data:
        raise _BadRow("missing 'title'")
    data.setdefault("product_id", _stable_id("imp", str(data.get("title")), str(data.get("brand", "")),
                                             str(data.get("category", ""))))
    data.setdefault("version", 1)
    data.setdefault("updated_at", FIXED_UPDATED_AT)
    try:
        return ProductUpsert.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "product"
        raise _BadRow(f"{loc}: {err['msg']}") from None


def read_pairs_jsonl(path: str | Path) -> ImportReport:
    """Read JSONL, one example per line, in either shape:

    - nested (what `dataset.save_jsonl` writes): `{"product": {<ProductUpsert wire JSON>},
      "audience": "default", "text": "..."}` (`"description"` is accepted for `"text"`);
    - flat: `{"product_id"?, "title", "category"?, "brand"?, "price"?, "currency"?, "attributes"?: {..},
      "seller_description"?, "audience"?, "description": "<target text>"}`.

    In the flat shape `description` is the *target* (the text to learn), and the seller's own copy,
    if any, goes in `seller_description`. Missing `audience` means "default"; a missing
    `product_id` is derived from title/brand/category so repeated products group together.
    """
    def example(row: dict[str, Any]) -> Example:
        if isinstance(row.get("product"), dict):
            product = _product(dict(row["product"]))
            text = _check_text(row.get("text", row.get("description")), "text")
        else:
            facts = {k: row.get(k) for k in ("product_id", "title", "category", "brand", "price",
                                               "currency", "attributes")}
            facts["description"] = row.get("seller_description") or ""
            product = _product(facts)
            text = _check_text(row.get("description", row.get("text")), "description")
        return Example(product, _check_audience(row.get("audience")), text)

    return _read_json_lines(path, example)


def _read_json_lines(path: str | Path, example: Callable[[dict[str, Any]], Example]) -> ImportReport:
    """One JSON object per line -> `example(row)`; a bad line becomes a `LineError`, never an exception."""
    report = ImportReport()
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _BadRow(f"invalid JSON: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise _BadRow("line is not a JSON object")
                report.examples.append(example(row))
            except _BadRow as exc:
                report.errors.append(LineError(i, str(exc)))
    return report


def parse_attributes(raw: str) -> dict[str, AttributeValue]:
    """CSV attribute cell -> dict. Either a JSON object or `k=v;k=v` (values typed: int, float, bool, str).

    In `k=v` form, "true"/"false"/"yes"/"no" become bools and plain numbers become int/float;
    "1.6 kg" stays a string.
    """
    raw = (raw or "").strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _BadRow(f"attributes: invalid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise _BadRow("attributes: JSON must be an object")
        return data
    out: dict[str, AttributeValue] = {}
    for part in raw.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise _BadRow(f"attributes: {part.strip()!r} is not key=value")
        k, v = (x.strip() for x in part.split("=", 1))
        if not k:
            raise _BadRow("attributes: empty key")
        out[k] = _typed(v)
    return out


def _typed(v: str) -> AttributeValue:
    low = v.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    try:
        return int(v)
    except ValueError:
        pass
    try:
        f = float(v)
        if f == f and abs(f) != float("inf"):
            return f
    except ValueError:
        pass
    return v


CSV_COLUMNS = ("product_id", "title", "category", "brand", "price", "currency", "attributes", "audience", "description")


def read_pairs_csv(path: str | Path) -> ImportReport:
    """Read a CSV with a header row and columns
    `product_id,title,category,brand,price,currency,attributes,audience,description`
    (optional extra column `seller_description`).

    - `attributes`: a JSON object (`{"colour": "red", "weight": "1.6 kg"}`) or `k=v;k=v`.
    - `description`: the target text to learn; `audience` empty means "default".
    - `product_id`, `category`, `brand`, `price`, `currency` may be empty (currency defaults to USD).
    Line numbers in errors are physical file lines (the header is line 1).
    """
    report = ImportReport()
    with open(path, "r", encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"title", "description"} - set(reader.fieldnames or ())
        if missing:
            report.errors.append(LineError(1, f"header lacks required columns: {', '.join(sorted(missing))}"))
            return report
        line = reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num
            try:
                if None in row:
                    raise _BadRow("more fields than header columns")
                price_raw = (row.get("price") or "").strip()
                try:
                    price = float(price_raw) if price_raw else None
                except ValueError:
                    raise _BadRow(f"price: {price_raw!r} is not a number") from None
                facts = {
                    "product_id": (row.get("product_id") or "").strip() or None,
                    "title": row.get("title"), "category": row.get("category"), "brand": row.get("brand"),
                    "price": price, "currency": (row.get("currency") or "").strip().upper() or None,
                    "attributes": parse_attributes(row.get("attributes") or ""),
                    "description": row.get("seller_description") or "",
                }
                product = _product(facts)
                text = _check_text(row.get("description"), "description")
                report.examples.append(Example(product, _check_audience(row.get("audience")), text))
            except _BadRow as exc:
                report.errors.append(LineError(start, str(exc)))
    return report


def read_advertisegen(path: str | Path, *, category_key: str = "类型") -> ImportReport:
    """Read AdvertiseGen-style JSONL: `{"content": "类型#上衣*材质#牛仔布*颜色#白色", "summary": "..."}`.

    `content` is `key#value` pairs joined by `*`. `类型` (type) becomes the category; every other key
    becomes an attribute (repeated keys such as two `风格` are joined with "、"). The title is the
    first few attribute values followed by the category (e.g. "白色牛仔布上衣"). `summary` is the
    target text; audience is "default". The product id is a hash of `content`, so the several
    summaries AdvertiseGen has for one content string stay in one split.
    """
    def example(row: dict[str, Any]) -> Example:
        content = row.get("content")
        if not isinstance(content, str) or not content.strip():
            raise _BadRow("missing or empty 'content'")
        summary = _check_text(row.get("summary"), "summary")
        category: str | None = None
        attrs: dict[str, AttributeValue] = {}
        for pair in content.split("*"):
            if not pair.strip():
                continue
            if "#" not in pair:
                raise _BadRow(f"content pair {pair!r} is not key#value")
            k, v = (x.strip() for x in pair.split("#", 1))
            if not k or not v:
                raise _BadRow(f"content pair {pair!r} has an empty key or value")
            if k == category_key and category is None:
                category = v
            elif k in attrs:
                attrs[k] = f"{attrs[k]}、{v}"
            else:
                attrs[k] = v
        values = [str(v) for v in attrs.values()][:3]
        title = "".join(values) + (category or "") or content[:100]
        product = _product({
            "product_id": _stable_id("adv", content), "title": title[:300], "category": category,
            "attributes": attrs,
        })
        return Example(product, DEFAULT_AUDIENCE, summary)

    return _read_json_lines(path, example)
