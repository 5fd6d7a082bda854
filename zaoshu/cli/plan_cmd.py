"""`zaoshu plan`: what a recipe will ask for, before spending a single token."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from zaoshu.cli import app
from zaoshu.cli.common import console, user_errors
from zaoshu.generator.plan import plan
from zaoshu.recipes import load_recipe


@app.command("plan")
@user_errors
def plan_command(
    recipe: Path = typer.Argument(..., help="Recipe YAML (e.g. prompts/wishes.yaml)."),
    rounds: int | None = typer.Option(None, help="Rounds (default: the recipe's)."),
    seed: int | None = typer.Option(None, help="Seed (default: the recipe's)."),
    limit: int | None = typer.Option(None, help="Keep a seeded, evenly spread sample of N tasks."),
    show: int = typer.Option(0, help="Print K rendered prompts with their user turns."),
) -> None:
    """Count the tasks of a recipe by style, and show rendered prompts."""
    r = load_recipe(recipe)
    p = plan(r, rounds=rounds, seed=seed, limit=limit)
    table = Table(title=f"{r.name}: {len(p.tasks)} tasks ({p.excluded} excluded of {p.total_cells})")
    table.add_column("style")
    table.add_column("tasks", justify="right")
    for style, count in p.by_style().items():
        table.add_row(style, str(count))
    console.print(table)
    for task in p.tasks[:show]:
        console.rule(f"{task.id}  {task.axes}")
        console.print(f"[bold]user:[/] {task.user}")
        console.print(f"[bold]prompt:[/]\n{task.prompt}", markup=True)
