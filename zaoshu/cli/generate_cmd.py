"""`zaoshu generate`: send a recipe's tasks to a provider, appending records as they finish."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from zaoshu.cli import app
from zaoshu.cli.common import err_console, user_errors
from zaoshu.generator.engine import GenerateOptions, generate
from zaoshu.generator.providers import provider_names


@app.command("generate")
@user_errors
def generate_command(
    recipe: Path = typer.Argument(..., help="Recipe YAML (e.g. prompts/wishes.yaml)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output JSONL (appended; rerun to resume)."),
    provider: str = typer.Option(
        "deepseek", help=f"Provider profile: {', '.join(provider_names())}. Keys come from its variable."
    ),
    model: str | None = typer.Option(None, help="Model name (default: the provider's)."),
    base_url: str | None = typer.Option(None, help="Override the provider's base URL."),
    key_env: str | None = typer.Option(
        None, help="Read the key from this variable instead of the profile's."
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", help="Most requests in flight [64; embedded: 1]."
    ),
    rpm: float | None = typer.Option(None, help="Requests per minute at most."),
    tpm: float | None = typer.Option(None, help="Tokens per minute at most (prompt estimate + max_tokens)."),
    max_attempts: int = typer.Option(8, help="Attempts per task (429, 5xx, timeouts, resets are retried)."),
    timeout: float | None = typer.Option(None, help="Seconds per request [120; embedded: 600]."),
    rounds: int | None = typer.Option(None, help="Rounds (default: the recipe's)."),
    seed: int | None = typer.Option(None, help="Seed (default: the recipe's)."),
    limit: int | None = typer.Option(None, help="Only a seeded, evenly spread sample of N tasks."),
    prices: Path | None = typer.Option(None, help="YAML price table overriding the shipped one."),
    model_path: Path | None = typer.Option(
        None, help="embedded: a GGUF file to serve instead of the packaged Qwen2.5-Coder-1.5B."
    ),
    threads: int = typer.Option(1, help="embedded: llama.cpp threads (1 is fastest on 2 busy cores)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be sent; send nothing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Generate records: plan the recipe, send the tasks not yet in OUT, append each reply as it finishes.

    Failures go to <stem>.failures.jsonl, a summary to <stem>.stats.json. Ctrl-C stops cleanly (exit 130);
    rerunning the same command resumes.
    """
    options = GenerateOptions(
        provider=provider,
        model=model,
        base_url=base_url,
        key_env=key_env,
        **({"concurrency": concurrency} if concurrency is not None else {}),  # unset: the provider's default
        rpm=rpm,
        tpm=tpm,
        max_attempts=max_attempts,
        **({"timeout": timeout} if timeout is not None else {}),
        rounds=rounds,
        seed=seed,
        limit=limit,
        prices=prices,
        model_path=model_path,
        threads=threads,
        dry_run=dry_run,
        quiet=quiet,
        command=shlex.join(["zaoshu", *sys.argv[1:]]),
    )
    try:
        stats = generate(recipe, out, options)
    except KeyboardInterrupt:  # before sending started (planning, reading the output): nothing to flush
        err_console.print("interrupted before any request was sent")
        raise typer.Exit(130) from None
    if stats.interrupted:
        raise typer.Exit(130)
