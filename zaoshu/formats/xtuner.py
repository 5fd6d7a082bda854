"""`xtuner`: `{"conversation": [{"system"?, "input", "output", "output_with_loss"?}, ...]}`.

A turn's `system` opens that turn, as in XTuner's own `openai_map_fn`; `output_with_loss` is the loss
flag of the assistant turn. Some hand-made XTuner files keep `src_input` (the generation prompt) and
`style_name` in each turn: they come back as `meta.prompt` and `axes.style`.
"""

from __future__ import annotations

from typing import Any

from zaoshu.formats.base import Format, Lost, Row, new_record, text, turn_list, turns
from zaoshu.records import Record, ShapeError, check_messages

_TURN_KEYS = {"system", "input", "output", "output_with_loss", "src_input", "style_name"}


def matches(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("conversation"), list)


def read(row: Row, with_id: bool = True) -> Record:
    conversation = turn_list(row, "conversation")
    messages: list[dict[str, Any]] = []
    axes: dict[str, str] = {}
    meta: dict[str, Any] = {}
    extra_turns: list[dict[str, Any]] = []
    for i, turn in enumerate(conversation):
        where = f"conversation[{i}]"
        if not isinstance(turn, dict):
            raise ShapeError(f"{where} must be an object with input and output")
        if "output" not in turn:
            raise ShapeError(f"{where} has no 'output'")
        system = text(turn.get("system"), f"{where}.system")
        user = text(turn.get("input"), f"{where}.input")
        if system:
            messages.append({"role": "system", "content": system})
        # An empty input after the first turn is how XTuner writes two assistant turns in a row.
        if user or i == 0:
            messages.append({"role": "user", "content": user})
        answer: dict[str, Any] = {"role": "assistant", "content": text(turn["output"], f"{where}.output")}
        if "output_with_loss" in turn:
            answer["loss"] = str(turn["output_with_loss"]).lower() == "true"
        messages.append(answer)
        if isinstance(turn.get("src_input"), str):
            meta.setdefault("prompt", turn["src_input"])
        if isinstance(turn.get("style_name"), str):
            axes.setdefault("style", turn["style_name"])
        extra = {k: v for k, v in turn.items() if k not in _TURN_KEYS}
        if extra:
            extra_turns.append({"turn": i, **extra})
    check_messages(messages)
    record = new_record(messages, row_id=row.get("id"), with_id=with_id)
    record["axes"] = axes
    extra_row = {k: v for k, v in row.items() if k not in ("conversation", "id")}
    if extra_row:
        meta["extra"] = extra_row
    if extra_turns:
        meta["extra_turns"] = extra_turns
    record["meta"] = meta
    return record


def write(record: Record, lost: Lost) -> Row:
    conversation = []
    for system, user, answer in turns(record, lost):
        turn: dict[str, Any] = {"system": system} if system else {}
        turn["input"] = user
        turn["output"] = answer["content"]
        if "loss" in answer:
            turn["output_with_loss"] = bool(answer["loss"])
        conversation.append(turn)
    return {"conversation": conversation}


FORMAT = Format(
    "xtuner",
    'XTuner single/multi-turn {"conversation": [{"system", "input", "output"}, ...]}',
    matches,
    read,
    write,
)
