"""Pairwise judging of TUNED against BASE, each input asked in both orders (A/B and B/A) so a judge that
favours a position favours both models once; ties allowed. Win rate = (wins + ties / 2) / verdicts.

Runs through the generation engine like `zaoshu judge` (providers, retries, resume by id, cost); a reply
that is not {"winner": "A" | "B" | "tie", "reason": ...} is retried, then counted as failed, not as a tie.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zaoshu.evaluate.inputs import EvalInput
from zaoshu.generator.clients import BadReply
from zaoshu.generator.engine import GenerateOptions, GenerateStats, agenerate
from zaoshu.judging.spec import context, judge_spec, render
from zaoshu.judging.verdict import parse_pair
from zaoshu.recipes import Recipe
from zaoshu.records import iter_lines, parse_line


@dataclass(frozen=True)
class PairTask:
    id: str  # <input id>:<order>, order "ab" (A = base) or "ba" (A = tuned)
    recipe: str
    axes: dict[str, str]
    prompt: str
    request: list[dict[str, str]] = field(repr=False)
    order: str = "ab"

    @property
    def user(self) -> str:
        return self.prompt

    def to_record(self, reply: str, meta: dict[str, Any]) -> dict[str, Any]:
        verdict = parse_pair(reply)
        a_is_tuned = self.order == "ba"
        winner = verdict["winner"]
        if winner != "tie":
            winner = "tuned" if (winner == "A") == a_is_tuned else "base"
        return {
            "id": self.id,
            "axes": self.axes,
            "messages": [*self.request, {"role": "assistant", "content": reply}],
            "meta": meta,
            "pair": {
                "order": self.order,
                "said": verdict["winner"],
                "winner": winner,
                "reason": verdict["reason"],
            },
        }


def pair_tasks(inputs: list[EvalInput], base: list[str], tuned: list[str], recipe: Recipe) -> list[PairTask]:
    spec = judge_spec(recipe)
    if not spec.pairwise_prompt:
        from zaoshu.errors import RecipeError

        raise RecipeError(
            "judge.pairwise_prompt: needed for a pairwise judge in `zaoshu eval`", path=recipe.path
        )
    tasks = []
    for item, b, t in zip(inputs, base, tuned, strict=True):
        ctx = context(recipe, item.axes, item.user)
        system = render(spec.system, ctx) if spec.system else ""
        for order, (a, bb) in (("ab", (b, t)), ("ba", (t, b))):
            prompt = render(spec.pairwise_prompt, {**ctx, "answer_a": a, "answer_b": bb})
            request = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            tasks.append(PairTask(f"{item.id}:{order}", recipe.name, item.axes, prompt, request, order))
    return tasks


def pairwise(
    inputs: list[EvalInput],
    base: list[str],
    tuned: list[str],
    recipe: Recipe,
    options: GenerateOptions,
    out: Path,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], GenerateStats]:
    """(summary, verdicts per input id, the engine's stats). Summary: win rate of TUNED over BASE overall
    and per order, ties, and how often the two orders agree."""
    spec = judge_spec(recipe)

    def check(reply: Any) -> None:
        try:
            parse_pair(reply.content)
        except BadReply as e:
            raise BadReply(str(e), usage=reply.usage) from None

    tasks = pair_tasks(inputs, base, tuned, recipe)
    options = options.model_copy(update={"label": "compare"})
    stats = asyncio.run(agenerate(recipe, out, options, tasks=tasks, params=spec.params(), check_reply=check))
    got: dict[str, dict[str, Any]] = {}
    if out.exists():
        for number, raw in iter_lines(out):
            row = parse_line(raw, path=out, line=number)
            got[row["id"]] = {**row["pair"], "id": row["id"], "model": row["meta"].get("model")}
    per_input: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        if task.id in got:
            per_input.setdefault(task.id.rsplit(":", 1)[0], []).append(got[task.id])
    not_longer = {i.id for i, b, t in zip(inputs, base, tuned, strict=True) if len(t) <= len(b)}
    summary = summarize([v for t in tasks if (v := got.get(t.id))], per_input)
    # A length check in the spirit of AlpacaEval's length control: the win rate where TUNED is not longer.
    summary["win_rate_tuned_not_longer"] = _rate(
        [v for k, vs in per_input.items() if k in not_longer for v in vs]
    )
    summary["inputs_tuned_not_longer"] = len(not_longer)
    return summary, per_input, stats


def _rate(verdicts: list[dict[str, Any]]) -> float | None:
    if not verdicts:
        return None
    wins = sum(1 for v in verdicts if v["winner"] == "tuned")
    ties = sum(1 for v in verdicts if v["winner"] == "tie")
    return round((wins + ties / 2) / len(verdicts), 4)


def summarize(verdicts: list[dict[str, Any]], per_input: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    both = [v for v in per_input.values() if len(v) == 2]
    agree = sum(1 for a, b in both if a["winner"] == b["winner"])
    return {
        "verdicts": len(verdicts),
        "win_rate_tuned": _rate(verdicts),
        "win_rate_tuned_ab": _rate([v for v in verdicts if v["order"] == "ab"]),
        "win_rate_tuned_ba": _rate([v for v in verdicts if v["order"] == "ba"]),
        "tuned_wins": sum(1 for v in verdicts if v["winner"] == "tuned"),
        "base_wins": sum(1 for v in verdicts if v["winner"] == "base"),
        "ties": sum(1 for v in verdicts if v["winner"] == "tie"),
        "orders_agree": round(agree / len(both), 4) if both else None,
    }
