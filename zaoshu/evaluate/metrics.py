"""Metrics of one model's answers: the recipe's cleaning rules (pass rate, share rejected per reason),
length against the style's limit, distinct-2, and, with a judge, the mean score; overall, per style and
per axis cell."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from zaoshu.evaluate.inputs import EvalInput
from zaoshu.recipes import Recipe


def rule_verdicts(
    inputs: list[EvalInput], answers: list[str], recipe: Recipe
) -> list[tuple[str, str] | None]:
    """Per answer: None when the recipe's rules keep it, else (reason, detail). Dedup is not applied: two
    models answering alike is no fault of either."""
    from zaoshu.cleaners import judge as rules_check

    out = []
    for item, answer in zip(inputs, answers, strict=True):
        record = {
            "id": item.id,
            "recipe": recipe.name,
            "axes": item.axes,
            "messages": [
                {"role": "user", "content": item.user},
                {"role": "assistant", "content": answer or " "},
            ],
            "meta": {"finish_reason": "stop"},
        }
        out.append(rules_check(record, recipe=recipe))
    return out


def distinct_2(texts: list[str]) -> float:
    """Distinct character bigrams over all bigrams: 1.0 when no two answers share wording, near 0 for one
    answer repeated."""
    grams: list[str] = [t[i : i + 2] for t in texts for i in range(len(t) - 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def _block(
    rows: list[tuple[EvalInput, str, tuple[str, str] | None, int | None]], recipe: Recipe
) -> dict[str, Any]:
    n = len(rows)
    reasons = Counter(v[0] for _, _, v, _ in rows if v is not None)
    lengths = [len(a) for _, a, _, _ in rows]
    over = 0
    for item, answer, _, _ in rows:
        style = recipe.styles.get(item.axes.get("style", ""))
        if style is not None and style.max_chars and len(answer) > style.max_chars:
            over += 1
    scores = [s for *_, s in rows if s is not None]
    return {
        "n": n,
        "pass_rate": round(sum(1 for _, _, v, _ in rows if v is None) / n, 4) if n else None,
        "rejected_share": {k: round(v / n, 4) for k, v in reasons.most_common()},
        "mean_chars": round(sum(lengths) / n, 1) if n else None,
        "over_max_chars": round(over / n, 4) if n else None,
        "distinct_2": distinct_2([a for _, a, _, _ in rows]),
        "judge_mean": round(sum(scores) / len(scores), 3) if scores else None,
    }


def metrics(
    inputs: list[EvalInput],
    answers: list[str],
    verdicts: list[tuple[str, str] | None],
    scores: list[int | None],
    recipe: Recipe,
) -> dict[str, Any]:
    rows = list(zip(inputs, answers, verdicts, scores, strict=True))
    by_style: dict[str, list[Any]] = defaultdict(list)
    by_cell: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        axes = row[0].axes
        by_style[axes.get("style", "(none)")].append(row)
        by_cell[" · ".join(f"{v}" for k, v in sorted(axes.items()) if k != "style") or "(none)"].append(row)
    return {
        "overall": _block(rows, recipe),
        "by_style": {k: _block(v, recipe) for k, v in sorted(by_style.items())},
        "by_cell": {k: _block(v, recipe) for k, v in sorted(by_cell.items())},
    }
