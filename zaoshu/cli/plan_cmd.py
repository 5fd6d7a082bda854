"""`zaoshu plan`: what a recipe will ask for, before spending a single token."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from zaoshu.cli import app
from zaoshu.cli import options as opt
from zaoshu.cli.common import console, user_errors
from zaoshu.generator.plan import plan
from zaoshu.recipes import load_recipe


@app.command("plan")
@user_errors
def plan_command(
    recipe: Path = typer.Argument(..., help="Recipe YAML (e.g. prompts/wishes.yaml)."),
    rounds: int | None = typer.Option(None, min=1, help="Rounds (default: the recipe's)."),
    seed: int | None = typer.Option(None, help="Seed (default: the recipe's)."),
    limit: int | None = typer.Option(None, min=1, help="Keep a seeded, evenly spread sample of N tasks."),
    show: int = typer.Option(0, min=0, help="Print K rendered prompts with their user turns."),
    allow_outside_files: opt.AllowOutsideFiles = False,
) -> None:
    """Count the tasks of a recipe by style, and show rendered prompts."""
    # Recipe text (names, axis values, prompts) is printed as Text / markup=False: a prompt may well
    # contain "[/x]" or "[name]", which rich would otherwise read as markup (and fail on, or swallow).
    from zaoshu.cleaners import CleanOptions, load_config

    r = load_recipe(recipe, allow_outside_files=allow_outside_files)
    CleanOptions().apply(load_config(r))  # the `clean:` block, checked as `clean` and `run` would
    p = plan(r, rounds=rounds, seed=seed, limit=limit)
    table = Table(title=Text(f"{r.name}: {len(p.tasks)} tasks ({p.excluded} excluded of {p.total_cells})"))
    table.add_column("style")
    table.add_column("tasks", justify="right")
    for style, count in p.by_style().items():
        table.add_row(Text(style), str(count))
    console.print(table)
    for task in p.tasks[:show]:
        console.rule(Text(f"{task.id}  {task.axes}"))
        console.print(Text.assemble(("user:", "bold"), " ", task.user))
        console.print(Text.assemble(("prompt:", "bold"), "\n", task.prompt))
