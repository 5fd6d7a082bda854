"""`evaluate()`: did training help? BASE and TUNED answer the same inputs with the same system prompt and
sampling; the answers are checked by the recipe's cleaning rules and, with a judge, scored one by one and
compared pairwise in both orders.

DIR/answers.jsonl   one line per input: the input, each model's answer, rule verdicts, judge verdicts
DIR/eval.json       metrics per model (overall, per style, per axis cell), the pairwise summary, timings
DIR/report.html     the metrics side by side, a bar chart per style, the inputs where the models differ most
DIR/judge/          the judge's own files (scores, failures, pairwise verdicts), resumable
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from zaoshu.errors import ZaoshuError
from zaoshu.evaluate.answer import Sampling, answer_local, answer_provider
from zaoshu.evaluate.inputs import EvalInput, read_inputs
from zaoshu.evaluate.metrics import metrics, rule_verdicts
from zaoshu.evaluate.report import differ_most, write_html
from zaoshu.files import write_bytes_atomic
from zaoshu.generator.engine import GenerateOptions
from zaoshu.recipes import Recipe, load_recipe
from zaoshu.records import read_records


@dataclass
class EvalOptions:
    models: list[str]
    out_dir: Path
    recipe: Recipe | str | Path
    inputs: Path | None = None
    adapter: Path | None = None
    sampling: Sampling = field(default_factory=Sampling)
    template: str | None = None
    limit: int | None = None
    #: answer through this provider (models are its model names) instead of transformers here
    provider: GenerateOptions | None = None
    #: judge the answers (scores and pairwise) with this provider
    judge: GenerateOptions | None = None


@dataclass
class Contender:
    label: str  # base | tuned
    model: str
    adapter: Path | None = None

    @property
    def name(self) -> str:
        return self.model + (f" + {self.adapter}" if self.adapter else "")


def contenders(models: list[str], adapter: Path | None) -> tuple[list[Contender], list[str]]:
    """(BASE, TUNED) from the --model flags and --adapter, and notes to print."""
    notes: list[str] = []
    if len(models) == 1 and adapter is not None:
        pair = [Contender("base", models[0]), Contender("tuned", models[0], adapter)]
    elif len(models) == 2:
        pair = [Contender("base", models[0]), Contender("tuned", models[1], adapter)]
        if Path(models[0]).resolve() == Path(models[1]).resolve() and adapter is None:
            notes.append(
                "the two --model are the same path: comparing a model with itself (a check of the judge: "
                "expect a win rate near 0.5)"
            )
    else:
        raise ZaoshuError(
            "give two --model (BASE then TUNED), or one --model with --adapter (TUNED = it + adapter)"
        )
    return pair, notes


def _judge_scores(
    label: str,
    inputs: list[EvalInput],
    answers: list[str],
    recipe: Recipe,
    options: GenerateOptions,
    work: Path,
) -> tuple[list[int | None], list[str | None]]:
    from zaoshu.judging import judge

    records = [
        {
            "id": item.id,
            "recipe": recipe.name,
            "axes": item.axes,
            "messages": ([{"role": "system", "content": item.system}] if item.system else [])
            + [{"role": "user", "content": item.user}, {"role": "assistant", "content": answer or " "}],
        }
        for item, answer in zip(inputs, answers, strict=True)
    ]
    src = work / f"{label}.answers.jsonl"
    src.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(src, b"".join(orjson.dumps(r) + b"\n" for r in records))
    judge(src, work / f"{label}.judged.jsonl", recipe, options)
    got = {r["id"]: r["meta"]["judge"] for r in read_records(work / f"{label}.judged.scores.jsonl")}
    return [got[i.id]["score"] if i.id in got else None for i in inputs], [
        got[i.id]["reason"] if i.id in got else None for i in inputs
    ]


def evaluate(o: EvalOptions, echo: Any = None) -> dict[str, Any]:
    say = echo or (lambda _line: None)
    recipe = o.recipe if isinstance(o.recipe, Recipe) else load_recipe(o.recipe)
    pair, notes = contenders(o.models, o.adapter)
    for note in notes:
        say(f"note: {note}")
    if o.judge is not None:
        from zaoshu.judging import judge_spec

        judge_spec(recipe)  # no rubric: stop before the models load
    inputs = read_inputs(o.inputs, recipe, o.limit)
    out = Path(o.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    answers: dict[str, list[str]] = {}
    timing: dict[str, float] = {}
    for c in pair:
        say(f"{c.label}: {c.name} answers {len(inputs)} inputs")
        t0 = time.monotonic()
        if o.provider is not None:
            answers[c.label] = answer_provider(
                c.model, inputs, o.sampling, o.provider, out / f"{c.label}.provider.jsonl", recipe
            )
            timing[c.label] = round(time.monotonic() - t0, 3)
        else:
            answers[c.label], spent = answer_local(
                Path(c.model), c.adapter, inputs, o.sampling, template=o.template
            )
            timing[c.label] = round(spent, 3)  # generation only: loading the model is not per input
    verdicts = {c.label: rule_verdicts(inputs, answers[c.label], recipe) for c in pair}
    scores: dict[str, list[int | None]] = {c.label: [None] * len(inputs) for c in pair}
    reasons: dict[str, list[str | None]] = {c.label: [None] * len(inputs) for c in pair}
    pair_summary: dict[str, Any] | None = None
    pair_verdicts: dict[str, list[dict[str, Any]]] = {}
    if o.judge is not None:
        for c in pair:
            say(f"judge: scoring {c.label}'s answers")
            scores[c.label], reasons[c.label] = _judge_scores(
                c.label, inputs, answers[c.label], recipe, o.judge, out / "judge"
            )
        from zaoshu.evaluate.pairwise import pairwise
        from zaoshu.judging.spec import judge_spec

        if judge_spec(recipe).pairwise_prompt:
            say("judge: pairwise, both orders")
            pair_summary, pair_verdicts, _ = pairwise(
                inputs, answers["base"], answers["tuned"], recipe, o.judge, out / "judge" / "pairwise.jsonl"
            )
    result: dict[str, Any] = {
        "recipe": recipe.name,
        "inputs": len(inputs),
        "inputs_file": str(o.inputs) if o.inputs else "recipe eval_inputs",
        "sampling": asdict(o.sampling),
        "models": {
            c.label: {"model": c.model, "adapter": str(c.adapter) if c.adapter else None} for c in pair
        },
        "notes": notes,
        "metrics": {
            c.label: metrics(inputs, answers[c.label], verdicts[c.label], scores[c.label], recipe)
            for c in pair
        },
        "pairwise": pair_summary,
        "seconds": timing,
        "seconds_per_100_inputs": {k: round(v * 100 / len(inputs), 2) for k, v in timing.items()},
    }
    rows = []
    for i, item in enumerate(inputs):
        row: dict[str, Any] = {"id": item.id, "input": item.user, "axes": item.axes, "system": item.system}
        if item.reference is not None:
            row["reference"] = item.reference
        for c in pair:
            v = verdicts[c.label][i]
            row[c.label] = {
                "answer": answers[c.label][i],
                "rules": {"kept": v is None, "reason": v[0] if v else None, "detail": v[1] if v else None},
                "judge": {"score": scores[c.label][i], "reason": reasons[c.label][i]}
                if o.judge is not None
                else None,
            }
        if pair_verdicts.get(item.id):
            row["pairwise"] = pair_verdicts[item.id]
        rows.append(row)
    write_bytes_atomic(out / "answers.jsonl", b"".join(orjson.dumps(r) + b"\n" for r in rows))
    result["differ_most"] = [r["id"] for r in differ_most(rows)]
    write_bytes_atomic(out / "eval.json", orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    write_html(out / "report.html", result, rows)
    return result
