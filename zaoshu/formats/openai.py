"""`openai`: `{"messages": [{role, content}, ...]}` a line; assistant turns may carry XTuner's `loss`."""

from __future__ import annotations

from typing import Any

from zaoshu.formats.base import Format, Lost, Row, new_record
from zaoshu.records import Record, check_messages

_ZAOSHU_KEYS = ("id", "recipe", "axes", "meta")


def matches(row: Any) -> bool:
    return (
        isinstance(row, dict)
        and isinstance(row.get("messages"), list)
        and not any(k in row for k in _ZAOSHU_KEYS)
    )


def read(row: Row, with_id: bool = True) -> Record:
    messages = check_messages(row.get("messages"))
    for m in messages:
        if "loss" in m and not isinstance(m["loss"], bool):
            # XTuner reads str(loss).lower() == "true"; keep that meaning but store a real boolean
            m["loss"] = str(m["loss"]).lower() == "true"
    record = new_record(messages, with_id=with_id)
    extra = {k: v for k, v in row.items() if k != "messages"}
    if extra:
        record["meta"]["extra"] = extra
    return record


def write(record: Record, lost: Lost) -> Row:
    return {"messages": record["messages"]}


FORMAT = Format(
    "openai",
    'OpenAI chat fine-tuning lines {"messages": [...]}, XTuner custom SFT (per-turn "loss")',
    matches,
    read,
    write,
)
