"""Reading a judge's reply: a JSON object with an integer `score` 1-5 and a `reason`, maybe in ```json fences.

Anything else (prose, a torn object, score 9, a score as text) raises BadReply, which the engine retries
like a torn body and, once the attempts are spent, records as a failure: a reply never passes by default.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from zaoshu.generator.clients import BadReply

_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.S)


def _object(content: str) -> dict[str, Any]:
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadReply(f"judge reply is not a JSON object: {content[:80]!r}") from None
    if not isinstance(data, dict):
        raise BadReply(f"judge reply is JSON but not an object: {content[:80]!r}")
    return data


def _score(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadReply(f"judge {what} {value!r} is not an integer 1-5")
    if not 1 <= value <= 5:
        raise BadReply(f"judge {what} {value} is outside 1-5")
    return value


def parse_score(content: str) -> dict[str, Any]:
    """{"score": 1-5, "reason": str, "scores"?: {criterion: 1-5}} from a judge's reply, or BadReply."""
    data = _object(content)
    out: dict[str, Any] = {"score": _score(data.get("score"), "score")}
    reason = data.get("reason")
    if not isinstance(reason, str):
        raise BadReply("judge reply has no string `reason`")
    out["reason"] = reason.strip()
    scores = data.get("scores")
    if scores is not None:
        if not isinstance(scores, dict):
            raise BadReply("judge `scores` is not an object")
        out["scores"] = {str(k): _score(v, f"scores.{k}") for k, v in scores.items()}
    return out


def parse_pair(content: str) -> dict[str, Any]:
    """{"winner": "A" | "B" | "tie", "reason": str} from a pairwise judge's reply, or BadReply."""
    data = _object(content)
    winner = str(data.get("winner", "")).strip().upper()
    if winner in ("TIE", "平局", "EQUAL"):
        winner = "tie"
    if winner not in ("A", "B", "tie"):
        raise BadReply(f"pairwise judge winner {data.get('winner')!r} is not A, B or tie")
    reason = data.get("reason")
    return {"winner": winner, "reason": reason.strip() if isinstance(reason, str) else ""}
