"""What every format shares: the `Format` contract (row -> record, record -> row) and the loss tally.

A format is two plain functions over one row, so the same code serves the in-memory API (`read_any`,
`write`) and the streaming commands (convert, merge, split). A reader raises `records.ShapeError` for a
row that does not fit; the caller adds the file and line. What a format cannot hold is
counted in a `Lost` tally instead of warned about per row (fields not in `Format.keeps`, such as meta
in alpaca, by the caller; loss flags or reshaped turns by the writer); the command prints it once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from zaoshu.records import Record, ShapeError, content_id

Row = dict[str, Any]
#: what a writer dropped, by a short human name ("meta", "loss flags") -> number of records
Lost = Counter

#: keys of the canonical record; anything else in a zaoshu row is kept as it is
RECORD_KEYS = ("id", "recipe", "axes", "messages", "meta")


@dataclass(frozen=True, slots=True)
class Format:
    """One on-disk shape of a conversation dataset.

    `matches(row)` says whether a parsed row looks like this format (for auto-detection); `read(row, with_id)`
    turns a row into a canonical record (an id from `content_id` when the row has none, if asked);
    `write(record, lost)` turns a record into a row, counting in `lost` how it had to reshape the
    conversation; the fields it drops (those not in `keeps`) are counted by the caller, once per chunk.
    """

    name: str
    description: str
    matches: Callable[[Any], bool]
    read: Callable[[Row, bool], Record]
    write: Callable[[Record, Lost], Row]
    #: the canonical fields besides messages that the format keeps; the others are counted as dropped
    keeps: tuple[str, ...] = ()

    def line(self, record: Record, lost: Lost) -> bytes:
        """The record as one line of this format (no line end), counting in `lost` what it could not hold."""
        for name in ("id", "recipe", "axes", "meta"):
            if name not in self.keeps and record.get(name):
                lost[name] += 1
        return orjson.dumps(self.write(record, lost))


def new_record(messages: list[dict[str, Any]], *, row_id: Any = None, with_id: bool = True) -> Record:
    """A canonical record for imported data: the id is the row's own, or a hash of the conversation."""
    rid = row_id if isinstance(row_id, str) and row_id else None
    if rid is None and with_id:
        rid = content_id(messages)
    return {"id": rid, "recipe": None, "axes": {}, "messages": messages, "meta": {}}


def text(value: Any, where: str) -> str:
    """A string field; None counts as empty (many exported datasets write null for a blank input)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ShapeError(f"{where} must be a string, got {type(value).__name__}")
    return value


def turn_list(row: Row, key: str) -> list[Any]:
    """The non-empty list of turns at `row[key]`."""
    value = row.get(key)
    if not isinstance(value, list) or not value:
        raise ShapeError(f"record has no turns (expected a non-empty {key!r} list)")
    return value


def turns(record: Record, lost: Lost) -> list[tuple[str, str, dict[str, Any]]]:
    """Group a conversation into (system, user, assistant message) turns, the way XTuner's openai_map_fn does.

    A system turn belongs to the turn that follows it; consecutive turns of one role are joined with a
    newline; an assistant turn with no user turn before it gets an empty input; a last user turn with no
    answer cannot be kept. Every change of shape is counted in `lost`.
    """
    out: list[tuple[str, str, dict[str, Any]]] = []
    system: list[str] = []
    user: list[str] = []
    for m in record["messages"]:
        role = m["role"]
        if role == "system":
            system.append(m["content"])
        elif role == "user":
            user.append(m["content"])
        else:
            if len(user) > 1:
                lost["consecutive user turns (joined with a newline)"] += 1
            if len(system) > 1:
                lost["consecutive system turns (joined with a newline)"] += 1
            out.append(("\n".join(system), "\n".join(user), m))
            system, user = [], []
    if user or system:
        lost["turns after the last answer (dropped)"] += 1
    return out


def pairs(record: Record, lost: Lost) -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
    """(system, turns) for formats with one system prompt (alpaca): later system turns move to the front."""
    grouped = turns(record, lost)
    systems = [s for s, _, _ in grouped if s]
    if len(systems) > 1 or (systems and not grouped[0][0]):
        lost["system turns inside the conversation (moved to the front)"] += 1
    return "\n".join(systems), grouped
