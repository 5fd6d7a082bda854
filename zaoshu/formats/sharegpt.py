"""`sharegpt`: `{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]}` (LLaMA-Factory, FastChat).

A top-level `system` (LLaMA-Factory's variant) becomes the first turn; `id` is kept both ways.
"""

from __future__ import annotations

from typing import Any

from zaoshu.formats.base import Format, Lost, Row, new_record, text, turn_list
from zaoshu.records import Record, ShapeError, check_messages

_FROM = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_TO = {"user": "human", "assistant": "gpt", "system": "system"}


def matches(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("conversations"), list)


def read(row: Row, with_id: bool = True) -> Record:
    conversations = turn_list(row, "conversations")
    messages: list[dict[str, Any]] = []
    system = text(row.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(conversations):
        if not isinstance(turn, dict):
            raise ShapeError(f"conversations[{i}] must be an object with from and value")
        role = _FROM.get(turn.get("from"))  # type: ignore[arg-type]
        if role is None:
            raise ShapeError(
                f"conversations[{i}].from is {turn.get('from')!r}; expected one of human, gpt, system"
            )
        messages.append({"role": role, "content": text(turn.get("value"), f"conversations[{i}].value")})
    check_messages(messages)
    record = new_record(messages, row_id=row.get("id"), with_id=with_id)
    extra = {k: v for k, v in row.items() if k not in ("conversations", "system", "id")}
    if extra:
        record["meta"]["extra"] = extra
    return record


def write(record: Record, lost: Lost) -> Row:
    if any("loss" in m for m in record["messages"]):
        lost["loss flags"] += 1
    row: dict[str, Any] = {}
    if record.get("id"):
        row["id"] = record["id"]
    row["conversations"] = [{"from": _TO[m["role"]], "value": m["content"]} for m in record["messages"]]
    return row


FORMAT = Format(
    "sharegpt",
    'ShareGPT {"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]}',
    matches,
    read,
    write,
    keeps=("id",),
)
