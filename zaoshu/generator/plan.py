"""Plan: cross a recipe's axes and styles into tasks, each with its rendered prompt and user turn.

Every random choice of a task (few-shot examples, injection, user template) comes from an RNG seeded by
the task id, so the same recipe and seed always give the same prompts, on any machine, in any order.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jinja2

from zaoshu.errors import RecipeError
from zaoshu.recipes import AxisValue, Recipe, is_excluded, template_env
from zaoshu.records import Record, task_id, utc_now
from zaoshu.templates import RenderError, render_bounded


@dataclass(frozen=True, slots=True)
class Task:
    """One request to make: the prompt to send and the conversation the record will hold."""

    id: str
    recipe: str
    axes: dict[str, str]  # axis -> value name, plus "style"
    round: int
    system: str  # the training system prompt (goes into the record)
    user: str  # the human-like user turn (goes into the record)
    prompt: str  # the generation prompt actually sent
    request: list[dict[str, str]] = field(repr=False)  # messages sent to the API

    def to_record(self, reply: str, meta: dict[str, Any]) -> Record:
        """The canonical record (see records.py) for this task and a reply; `meta` adds provider, usage, latency..."""
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self.user})
        messages.append({"role": "assistant", "content": reply})
        return {
            "id": self.id,
            "recipe": self.recipe,
            "axes": self.axes,
            "messages": messages,
            "meta": {"prompt": self.prompt, **meta, "created_at": meta.get("created_at") or utc_now()},
        }


@dataclass(slots=True)
class Plan:
    tasks: list[Task]
    excluded: int
    total_cells: int

    def by_style(self) -> dict[str, int]:
        return dict(Counter(t.axes["style"] for t in self.tasks))


@functools.lru_cache(maxsize=512)
def _compiled(source: str) -> Any:
    """Compile each template once per process: compiling is what made planning slow."""
    return template_env().from_string(source)


def _render(source: str, context: dict[str, Any], recipe: Recipe, key: str) -> str:
    """Render one template of `recipe` (bounded in time and size); any failure names the file and key.

    Load-time checks catch most mistakes; what only shows at render time (`{{ 1/0 }}`, `{{ scene + 1 }}`,
    an unsafe attribute, a huge repetition) is a RecipeError here, never a traceback."""
    try:
        return render_bounded(_compiled(source), context).strip()
    except (
        jinja2.TemplateError,
        RenderError,
        ArithmeticError,
        TypeError,
        ValueError,
        LookupError,
        RecursionError,
    ) as e:
        what = f"{type(e).__name__}: {e}" if not isinstance(e, jinja2.TemplateError | RenderError) else str(e)
        raise RecipeError(
            f"{key}: template failed for axes {_axes_of(context)}: {what}", path=recipe.path
        ) from None


def _axes_of(context: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in context.items() if isinstance(v, AxisValue)}


def make_task(
    recipe: Recipe,
    values: dict[str, AxisValue],
    style_name: str,
    round_: int,
    seed: int,
    axes: dict[str, str] | None = None,
) -> Task:
    """One task; `axes` (the values' names and the style) when the caller has built it already."""
    style = recipe.styles[style_name]
    if axes is None:
        axes = {name: str(v) for name, v in values.items()}
        axes["style"] = style_name
    tid = task_id(recipe.name, axes, round_, seed)
    rng = random.Random(int(tid, 16))
    pool = recipe.examples[style_name]
    examples = rng.sample(pool, min(style.n_examples, len(pool))) if pool and style.n_examples else []
    injection = rng.choice(recipe.injections)
    template_index = rng.randrange(len(style.user_templates))
    user_template = style.user_templates[template_index]
    context: dict[str, Any] = {
        **recipe.vars,
        **values,
        "style": style_name,
        "examples": examples,
        "example": examples[0] if examples else "",
        "injection": injection,
        "max_chars": style.max_chars,
        "min_chars": style.min_chars,
        "round": round_,
        "system": recipe.system,
    }
    context["instruction"] = _render(style.instruction, context, recipe, f"styles.{style_name}.instruction")
    prompt = _render(recipe.prompt, context, recipe, "prompt")
    request = []
    if recipe.generation_system:
        request.append({"role": "system", "content": recipe.generation_system})
    request.append({"role": "user", "content": prompt})
    return Task(
        id=tid,
        recipe=recipe.name,
        axes=axes,
        round=round_,
        system=recipe.system,
        user=_render(user_template, context, recipe, f"styles.{style_name}.user_templates[{template_index}]"),
        prompt=prompt,
        request=request,
    )


def plan(
    recipe: Recipe, *, rounds: int | None = None, seed: int | None = None, limit: int | None = None
) -> Plan:
    """All tasks of a recipe: rounds × styles × the cross product of its axes, minus exclusions.

    `limit` keeps a seeded, evenly spread sample (in plan order) rather than the first N, so a small
    trial run still covers many recipients, scenes and styles.
    """
    rounds = recipe.rounds if rounds is None else rounds
    seed = recipe.seed if seed is None else seed
    names = list(recipe.values)
    # One plain str per axis value, shared by every task that has it: a 100k-task plan would otherwise
    # hold 100k copies of each name (tens of MB).
    plain = {v: str(v) for values in recipe.values.values() for v in values}
    tasks: list[Task] = []
    excluded = total = 0
    for round_ in range(rounds):
        for style_name in recipe.styles:
            for combo in itertools.product(*(recipe.values[n] for n in names)):
                values = dict(zip(names, combo, strict=True))
                total += 1
                axes = {n: plain[v] for n, v in values.items()}
                axes["style"] = style_name
                if is_excluded(recipe, axes):
                    excluded += 1
                    continue
                tasks.append(make_task(recipe, values, style_name, round_, seed, axes))
    if limit is not None and limit < len(tasks):
        keep = sorted(random.Random(seed).sample(range(len(tasks)), limit))
        tasks = [tasks[i] for i in keep]
    return Plan(tasks=tasks, excluded=excluded, total_cells=total)
