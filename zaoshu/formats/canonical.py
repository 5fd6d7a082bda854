"""`zaoshu`: the canonical record (id, recipe, axes, messages, meta; see records.py), one JSON object a line."""

from __future__ import annotations

from typing import Any

from zaoshu.formats.base import RECORD_KEYS, Format, Lost, Row
from zaoshu.records import Record, check_shape, content_id

_MARKERS = ("id", "recipe", "axes", "meta")
_ORDER = list(RECORD_KEYS)


def matches(row: Any) -> bool:
    return isinstance(row, dict) and "messages" in row and any(k in row for k in _MARKERS)


def read(row: Row, with_id: bool = True) -> Record:
    check_shape(row)
    if not row.get("id") and with_id:
        row["id"] = content_id(row["messages"])
    row.setdefault("recipe", None)
    for key in ("axes", "meta"):
        if row.get(key) is None:
            row[key] = {}
    if list(row)[:5] != _ORDER:
        row = {**{k: row.get(k) for k in RECORD_KEYS}, **row}
    return row


def write(record: Record, lost: Lost) -> Row:
    return record


FORMAT = Format(
    "zaoshu", "zaoshu records: id, recipe, axes, messages, meta", matches, read, write, keeps=RECORD_KEYS
)
