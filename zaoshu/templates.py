"""The one Jinja2 environment for recipe templates: sandboxed, and bounded in time and output size.

A recipe is shared like a script, so its templates are untrusted: the sandbox blocks attribute escapes, and
this module bounds what the sandbox lets through: `{{ 'a' * 10**8 }}` (memory), `{{ 9 ** 99999999 }}` (CPU),
nested `range` loops and recursive macros (time: every loop item and call is counted and the clock read), and
any render longer than `MAX_CHARS` characters.
Every failure is a `RenderError` that the caller turns into a message naming the recipe file and key.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

MAX_CHARS = 200_000  # one rendered prompt; far above any real prompt, far below a memory problem
MAX_SECONDS = 2.0  # one render; real templates take microseconds
MAX_STEPS = 1_000_000  # range() items and calls (macros too) summed over one render
MAX_EXPONENT = 4096


class RenderError(Exception):
    """A template went past a bound (too long, too slow, too large) while rendering."""


@dataclass
class _Budget:
    deadline: float
    steps: int = 0


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("zaoshu_render_budget", default=None)


def _spend(steps: int) -> None:
    budget = _budget.get()
    if budget is None:
        return
    budget.steps += steps
    if budget.steps > MAX_STEPS:
        raise RenderError(f"more than {MAX_STEPS:,} loop items and calls in one render")
    if time.monotonic() > budget.deadline:
        raise RenderError(f"render took longer than {MAX_SECONDS:g} s")


def _bounded_range(*args: int) -> range:
    values = range(*args)
    _spend(len(values))
    return values


def _too_long(value: Any, times: Any) -> bool:
    return isinstance(value, str | list | tuple) and isinstance(times, int) and len(value) * times > MAX_CHARS


class RecipeEnvironment(SandboxedEnvironment):
    """SandboxedEnvironment whose `*` and `**` cannot build huge values and whose `range` is metered."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = _bounded_range

    def call(self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # every call counts: a macro calling itself twice per level would otherwise run for hours
        _spend(1)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*" and (_too_long(left, right) or _too_long(right, left)):
            raise RenderError(f"a repetition (`*`) would build more than {MAX_CHARS:,} characters")
        if (
            operator == "**"
            and isinstance(right, int)
            and isinstance(left, int)
            and abs(left) > 1
            and abs(right) > MAX_EXPONENT
        ):
            raise RenderError(f"a power (`**`) with an exponent above {MAX_EXPONENT}")
        return super().call_binop(context, operator, left, right)


def render_bounded(template: jinja2.Template, context: dict[str, Any]) -> str:
    """Render `template`, stopping with RenderError past `MAX_CHARS` characters or `MAX_SECONDS` seconds."""
    token = _budget.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))
    try:
        parts: list[str] = []
        append = parts.append
        size = 0
        # the template's own render function, streamed: a long output stops at the bound, not at the end
        for chunk in template.root_render_func(template.new_context(context)):
            size += len(chunk)
            if size > MAX_CHARS:
                raise RenderError(f"the rendered text is longer than {MAX_CHARS:,} characters")
            append(chunk)
        _spend(0)
        return "".join(parts)
    finally:
        _budget.reset(token)
