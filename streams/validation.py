"""Raw bytes -> validated event, or a dead letter.

Agents consume raw bytes (``value_serializer="raw"``) and decode them here with `descstream.schemas`,
the one wire contract. A message that does not decode is wrapped in `DeadLetter.of(...)` (original key
and bytes, reason, topic/partition/offset), counted by reason, and sent to the dead-letter topic; the
stream moves on. The reason label is the *kind* of failure (bounded cardinality); the dead letter
carries the full text.
"""

from __future__ import annotations

import re
from typing import Any, Callable, TypeVar

from descstream.schemas import DeadLetter, InvalidEvent, decode_behavior, decode_product, encode

from . import metrics

T = TypeVar("T")

_KIND = re.compile(r"^[A-Za-z_.]+")


def reason_kind(reason: str) -> str:
    """Short label for metrics: `invalid JSON ...` -> `invalid_json`, `price: ...` -> `field:price`."""
    if reason.startswith("invalid JSON"):
        return "invalid_json"
    if reason.startswith("message of"):
        return "too_large"
    if reason.startswith("empty message"):
        return "empty"
    if " must be a JSON object" in reason:
        return "not_object"
    if ":" in reason:
        m = _KIND.match(reason.split(":", 1)[0])
        if m:
            return "field:" + m.group(0)[:40]
    return "invalid"


def dead_letter(*, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str) -> DeadLetter:
    metrics.DEAD_LETTERS.labels(topic=topic, reason=reason_kind(reason)).inc()
    return DeadLetter.of(topic=topic, partition=partition, offset=offset, key=key, value=value or b"", reason=reason)


def decode_or_dead_letter(
    decoder: Callable[[bytes], T], value: bytes | None, *, topic: str, partition: int, offset: int, key: bytes | None
) -> T | DeadLetter:
    try:
        return decoder(value)  # type: ignore[arg-type]
    except InvalidEvent as exc:
        return dead_letter(topic=topic, partition=partition, offset=offset, key=key, value=value, reason=str(exc))
    except Exception as exc:  # a decoder bug must not stop the stream either
        return dead_letter(
            topic=topic, partition=partition, offset=offset, key=key, value=value, reason=f"decoder error: {exc!r}"
        )


def product_decoder(max_bytes: int = 64 * 1024) -> Callable[[bytes], Any]:
    return lambda raw: decode_product(raw, max_bytes)


def behavior_decoder(max_bytes: int = 16 * 1024) -> Callable[[bytes], Any]:
    return lambda raw: decode_behavior(raw, max_bytes)


async def send_dead_letter(dlq_topic: Any, dl: DeadLetter, key: bytes | None) -> None:
    """Send to the faust dead-letter topic (raw bytes, same key as the original)."""
    await dlq_topic.send(key=key, value=encode(dl))


def message_coords(msg: Any) -> tuple[str, int, int, bytes | None]:
    """(topic, partition, offset, key bytes) of a Faust message, for its dead letter."""
    key = msg.key if isinstance(msg.key, (bytes, type(None))) else str(msg.key).encode()
    return msg.topic, msg.partition, msg.offset, key


def event_coords(event: Any) -> tuple[str, int, int, bytes | None]:
    return message_coords(event.message)
