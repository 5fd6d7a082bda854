"""`zaoshu generate`: send a recipe's tasks to a provider, appending records as they finish."""

from __future__ import annotations

from pathlib import Path

import typer

from zaoshu.cli import app
from zaoshu.cli import options as opt
from zaoshu.cli.common import err_console, user_errors
from zaoshu.generator.engine import generate
from zaoshu.recipes import load_recipe


@app.command("generate")
@user_errors
def generate_command(
    recipe: Path = typer.Argument(..., help="Recipe YAML (e.g. prompts/wishes.yaml)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output JSONL (appended; rerun to resume)."),
    provider: opt.Provider = "deepseek",
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    key_env: opt.KeyEnv = None,
    concurrency: opt.Concurrency = None,
    rpm: opt.Rpm = None,
    tpm: opt.Tpm = None,
    max_attempts: opt.MaxAttempts = 8,
    timeout: opt.Timeout = None,
    rounds: opt.Rounds = None,
    seed: opt.Seed = None,
    limit: opt.Limit = None,
    prices: opt.Prices = None,
    model_path: opt.ModelPath = None,
    threads: opt.Threads = 1,
    dry_run: opt.DryRun = False,
    quiet: opt.Quiet = False,
    allow_outside_files: opt.AllowOutsideFiles = False,
) -> None:
    """Generate records: plan the recipe, send the tasks not yet in OUT, append each reply as it finishes.

    Failures go to <stem>.failures.jsonl, a summary to <stem>.stats.json. Ctrl-C stops cleanly (exit 130);
    rerunning the same command resumes. Exit 0 when every task is done, 1 when some failed for good.
    """
    options = opt.generate_options(
        provider=provider,
        model=model,
        base_url=base_url,
        key_env=key_env,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        max_attempts=max_attempts,
        timeout=timeout,
        rounds=rounds,
        seed=seed,
        limit=limit,
        prices=prices,
        model_path=model_path,
        threads=threads,
        dry_run=dry_run,
        quiet=quiet,
    )
    loaded = load_recipe(recipe, allow_outside_files=allow_outside_files)
    try:
        stats = generate(loaded, out, options)
    except KeyboardInterrupt:  # before sending started (planning, reading the output): nothing to flush
        err_console.print("interrupted before any request was sent")
        raise typer.Exit(130) from None
    if stats.interrupted:
        raise typer.Exit(130)
    if stats.failed:  # `zaoshu generate … && next` must not go on with tasks missing
        raise typer.Exit(1)
