"""`zaoshu generate`: send a recipe's tasks to a provider, appending records as they finish."""

from __future__ import annotations

from pathlib import Path

import typer

from zaoshu.cli import app
from zaoshu.cli import options as opt
from zaoshu.cli.common import err_console, user_errors, with_flags
from zaoshu.generator.engine import GenerateOptions, generate
from zaoshu.recipes import load_recipe


@app.command("generate")
@user_errors
@with_flags(opt.GENERATE)
def generate_command(
    recipe: Path = typer.Argument(..., help="Recipe YAML (e.g. prompts/wishes.yaml)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output JSONL (appended; rerun to resume)."),
    allow_outside_files: opt.AllowOutsideFiles = False,
    *,
    generate_options: GenerateOptions,
) -> None:
    """Generate records: plan the recipe, send the tasks not yet in OUT, append each reply as it finishes.

    Failures go to <stem>.failures.jsonl, a summary to <stem>.stats.json. Ctrl-C stops cleanly (exit 130);
    rerunning the same command resumes. Exit 0 when every task is done, 1 when some failed for good.
    """
    loaded = load_recipe(recipe, allow_outside_files=allow_outside_files)
    try:
        stats = generate(loaded, out, generate_options)
    except KeyboardInterrupt:  # before sending started (planning, reading the output): nothing to flush
        err_console.print("interrupted before any request was sent")
        raise typer.Exit(130) from None
    if stats.interrupted:
        raise typer.Exit(130)
    if stats.failed:  # `zaoshu generate … && next` must not go on with tasks missing
        raise typer.Exit(1)
