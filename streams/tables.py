"""Writing Faust tables from outside a single-event iteration (`take_events()` batches).

Faust derives a table key's changelog partition (and RocksDB column) from the *current event*. For a
key that came in on partition P we know P, so we bind the current event to an event of partition P for
the duration of the write. The key must belong to P (true here: tables are keyed like their source
topic: user id for profiles, product id for products).
"""

from __future__ import annotations

import weakref
from typing import Any

from faust.streams import _current_event  # noqa: PLC2701 - the documented accessor is read-only


def table_set(table: Any, event: Any, key: Any, value: Any) -> None:
    token = _current_event.set(weakref.ref(event))
    try:
        table[key] = value
    finally:
        _current_event.reset(token)


def table_set_many(table: Any, event: Any, items: Any) -> None:
    """`table_set` for many (key, value) pairs of the event's partition, binding the event once."""
    token = _current_event.set(weakref.ref(event))
    try:
        for key, value in items:
            table[key] = value
    finally:
        _current_event.reset(token)


def table_get(table: Any, event: Any, key: Any) -> Any:
    token = _current_event.set(weakref.ref(event))
    try:
        return table.get(key)
    finally:
        _current_event.reset(token)


def raw_table(table: Any) -> Any:
    """Make a table's keys and values raw bytes (Faust defaults `bytes` to json); call before first use."""
    table.key_serializer = "raw"
    table.value_serializer = "raw"
    return table
