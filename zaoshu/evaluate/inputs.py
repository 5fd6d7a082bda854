"""What `zaoshu eval` asks: the user turns of a split's test.jsonl, or the recipe's `eval_inputs`.

Each input keeps its axes (from the record, or found in the text of an eval input by the recipe's axis
values and style names), so the cleaning rules and the judge can check the answers against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zaoshu.errors import ZaoshuError
from zaoshu.recipes import Recipe
from zaoshu.records import content_id, iter_lines, parse_line


@dataclass
class EvalInput:
    id: str
    user: str
    system: str = ""
    axes: dict[str, str] = field(default_factory=dict)
    reference: str | None = None  # the test record's own answer, when there is one


def _user_and_system(record: dict[str, Any]) -> tuple[str | None, str, str | None]:
    user = system = reference = None
    for m in record.get("messages") or ():
        if not isinstance(m, dict):
            continue
        role, content = m.get("role"), m.get("content")
        if role == "system" and system is None:
            system = content
        elif role == "user":
            user, reference = content, None
        elif role == "assistant" and user is not None:
            reference = content
    return user, str(system or ""), reference


def guess_axes(text: str, recipe: Recipe | None) -> dict[str, str]:
    """Axis values and the style named in a free user turn (the longest value found wins)."""
    if recipe is None:
        return {}
    out: dict[str, str] = {}
    for axis, values in recipe.values.items():
        found = [str(v) for v in values if str(v) in text]
        if found:
            out[axis] = max(found, key=len)
    styles = [s for s in recipe.styles if s in text]
    if styles:
        out["style"] = max(styles, key=len)
    elif len(recipe.styles) >= 1 and "正常" in recipe.styles:
        out["style"] = "正常"  # a wish asked plainly (祝姐姐生日快乐) is the plain style
    return out


def read_inputs(path: Path | None, recipe: Recipe | None, limit: int | None = None) -> list[EvalInput]:
    """Inputs from a JSONL of records (each needs a user turn) or, without a path, the recipe's eval_inputs."""
    inputs: list[EvalInput] = []
    if path is not None:
        if not path.is_file():
            raise ZaoshuError("inputs file not found", path=path)
        for number, raw in iter_lines(path):
            record = parse_line(raw, path=path, line=number)
            if not isinstance(record, dict):
                raise ZaoshuError("expected a JSON object (a record with messages)", path=path, line=number)
            user, system, reference = _user_and_system(record)
            if not isinstance(user, str) or not user.strip():
                raise ZaoshuError(
                    "record has no user turn to ask the models (messages with role 'user')",
                    path=path,
                    line=number,
                )
            axes = {str(k): str(v) for k, v in (record.get("axes") or {}).items()} or guess_axes(user, recipe)
            rid = str(record.get("id") or content_id(record.get("messages") or []))
            inputs.append(EvalInput(rid, user, system, axes, reference))
    elif recipe is not None and recipe.eval_inputs:
        for text in recipe.eval_inputs:
            rid = content_id([{"role": "user", "content": text}])
            inputs.append(EvalInput(rid, text, recipe.system, guess_axes(text, recipe)))
    else:
        raise ZaoshuError(
            "nothing to ask: give --inputs (a split's test.jsonl) or a --recipe with eval_inputs"
        )
    if not inputs:
        raise ZaoshuError("the inputs file holds no records", path=path)
    seen: dict[str, int] = {}
    for item in inputs:  # ids name answers and verdicts (and resume them): one per input
        seen[item.id] = seen.get(item.id, 0) + 1
        if seen[item.id] > 1:
            item.id = f"{item.id}-{seen[item.id]}"
    return inputs[:limit] if limit else inputs
