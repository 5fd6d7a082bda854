"""The recipe's `judge:` block: the rubric, the judge prompts (Jinja) and the judge's sampling, checked on load.

A judge prompt sees the record's axes (each by name, and all as `axes`), `style`, the style's `instruction`
and `max_chars`/`min_chars`, the `user` turn, the `reply`, the rubric as `criteria` (name -> one line) and
the training `system` prompt and the recipe's `vars`. The pairwise prompt (used by `zaoshu eval`) sees `answer_a` and `answer_b`
instead of `reply`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jinja2
from jinja2 import meta as jinja_meta
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zaoshu.errors import RecipeError
from zaoshu.recipes import Recipe, template_env

#: names every judge template may use besides the recipe's axes
JUDGE_NAMES = {
    "axes",
    "style",
    "instruction",
    "max_chars",
    "min_chars",
    "user",
    "reply",
    "criteria",
    "system",
}
PAIR_NAMES = (JUDGE_NAMES - {"reply"}) | {"answer_a", "answer_b"}


class JudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: criterion name -> one line saying what a good reply does
    criteria: dict[str, str] = Field(min_length=1)
    system: str = ""
    prompt: str
    pairwise_prompt: str | None = None
    #: records scored under this are rejected (judge_low); --threshold overrides it
    threshold: int = Field(default=3, ge=1, le=5)
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=300, ge=16)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


def judge_spec(recipe: Recipe) -> JudgeSpec:
    """The recipe's judge block, validated; a recipe without one is an error that names it."""
    path = recipe.path
    if not recipe.judge:
        raise RecipeError(
            f"recipe {recipe.name!r} has no `judge:` block: add one with `criteria` (the rubric, one line "
            "each) and `prompt` (the Jinja judge prompt) to judge its records",
            path=path,
        )
    try:
        spec = JudgeSpec.model_validate(recipe.judge)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RecipeError(f"judge.{where}: {first['msg']}", path=path) from None
    known = set(recipe.values) | set(recipe.vars) | JUDGE_NAMES
    _check(spec.prompt, "judge.prompt", known, recipe)
    for name, line in spec.criteria.items():
        _check(line, f"judge.criteria.{name}", known - {"criteria", "reply"}, recipe)
    _check(spec.system, "judge.system", known, recipe)
    if spec.pairwise_prompt is not None:
        pair_known = set(recipe.values) | set(recipe.vars) | PAIR_NAMES
        _check(spec.pairwise_prompt, "judge.pairwise_prompt", pair_known, recipe)
    return spec


def _check(source: str, key: str, known: set[str], recipe: Recipe) -> None:
    try:
        ast = template_env().parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise RecipeError(
            f"{key}: template syntax error at line {e.lineno}: {e.message}", path=recipe.path
        ) from None
    unknown = sorted(jinja_meta.find_undeclared_variables(ast) - known)
    if unknown:
        raise RecipeError(
            f"{key}: unknown template variable(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            path=recipe.path,
        )


_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


def context(recipe: Recipe, axes: dict[str, str], user: str) -> dict[str, Any]:
    """What a judge template sees of one record (the reply or answers are added by the caller)."""
    style_name = axes.get("style", "")
    style = recipe.styles.get(style_name)
    # The instruction's own variables (a few-shot example) say nothing the judge needs: dropped.
    instruction = re.sub(r"\s+", " ", _TAGS.sub("", style.instruction)).strip() if style else ""
    ctx: dict[str, Any] = {**recipe.vars, **{name: axes.get(name, "") for name in recipe.values}}
    ctx.update(
        axes={k: v for k, v in axes.items() if k != "style"},
        style=style_name,
        instruction=instruction,
        max_chars=style.max_chars if style else None,
        min_chars=style.min_chars if style else None,
        user=user,
        system=recipe.system,
    )
    # A criterion may name the record's values (名字是 {{ assistant_name }}): rendered per record.
    ctx["criteria"] = {k: render(str(v), ctx) for k, v in (recipe.judge.get("criteria") or {}).items()}
    return ctx


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    """Compiled once per process: compiling, not rendering, is what costs (thousands of records)."""
    return template_env().from_string(source)


def render(source: str, ctx: dict[str, Any]) -> str:
    try:
        return _compiled(source).render(ctx).strip()
    except jinja2.TemplateError as e:
        raise RecipeError(f"judge template failed: {e}") from None
