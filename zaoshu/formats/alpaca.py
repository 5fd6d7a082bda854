"""`alpaca`: `{"instruction", "input", "output", "system"?, "history"?}` (Stanford Alpaca, LLaMA-Factory).

`history` holds the earlier turns as `[[user, assistant], ...]`; the user turn is the instruction and, when
there is one, a newline and the input (as LLaMA-Factory joins them). Fields the format has no place for
(COIG-CQIA's task_type, domain, ...) are kept in `meta.extra`.
"""

from __future__ import annotations

from typing import Any

from zaoshu.formats.base import Format, Lost, Row, new_record, pairs, text
from zaoshu.records import Record, ShapeError, check_messages

_KEYS = {"instruction", "input", "output", "system", "history"}


def matches(row: Any) -> bool:
    return isinstance(row, dict) and "instruction" in row and "output" in row


def read(row: Row, with_id: bool = True) -> Record:
    messages: list[dict[str, Any]] = []
    system = text(row.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    history = row.get("history") or []
    if not isinstance(history, list):
        raise ShapeError("history must be a list of [user, assistant] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ShapeError(f"history[{i}] must be a [user, assistant] pair")
        messages.append({"role": "user", "content": text(pair[0], f"history[{i}][0]")})
        messages.append({"role": "assistant", "content": text(pair[1], f"history[{i}][1]")})
    instruction = text(row.get("instruction"), "instruction")
    extra_input = text(row.get("input"), "input")
    user = f"{instruction}\n{extra_input}" if extra_input else instruction
    if not user and not row.get("output"):
        raise ShapeError("record has no turns (instruction and output are empty)")
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": text(row.get("output"), "output")})
    check_messages(messages)
    record = new_record(messages, row_id=row.get("id"), with_id=with_id)
    extra = {k: v for k, v in row.items() if k not in _KEYS and k != "id"}
    if extra:
        record["meta"]["extra"] = extra
    return record


def write(record: Record, lost: Lost) -> Row:
    system_text, grouped = pairs(record, lost)
    if any("loss" in answer for _, _, answer in grouped):
        lost["loss flags"] += 1
    *history, (_, user_text, last) = grouped
    row: dict[str, Any] = {"instruction": user_text, "input": "", "output": last["content"]}
    if system_text:
        row["system"] = system_text
    if history:
        row["history"] = [[u, a["content"]] for _, u, a in history]
    return row


FORMAT = Format(
    "alpaca",
    'Alpaca / LLaMA-Factory {"instruction", "input", "output", "system"?, "history"?}',
    matches,
    read,
    write,
)
