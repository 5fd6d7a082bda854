"""`zaoshu run`: generate -> clean -> report in one folder (thin: it parses and calls `zaoshu.pipeline.run`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.markup import escape

from zaoshu.cli import app
from zaoshu.cli.common import console, user_errors
from zaoshu.generator.providers import provider_names


@app.command("run")
@user_errors
def run_command(
    recipe: Path = typer.Argument(..., help="Recipe YAML (e.g. prompts/wishes.yaml)."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder (raw, clean, rejects, report, summary)."),
    # generation
    provider: str = typer.Option(
        "deepseek", help=f"Provider: {', '.join(provider_names())}. 'embedded' needs no key and no network."
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
    tpm: float | None = typer.Option(None, help="Tokens per minute at most."),
    max_attempts: int = typer.Option(8, help="Attempts per task."),
    timeout: float | None = typer.Option(None, help="Seconds per request [120; embedded: 600]."),
    rounds: int | None = typer.Option(None, help="Rounds (default: the recipe's)."),
    seed: int | None = typer.Option(None, help="Seed (default: the recipe's)."),
    limit: int | None = typer.Option(None, help="Only a seeded, evenly spread sample of N tasks."),
    prices: Path | None = typer.Option(None, help="YAML price table overriding the shipped one."),
    model_path: Path | None = typer.Option(
        None, help="embedded: a GGUF file to serve instead of the packaged Qwen2.5-Coder-1.5B."
    ),
    threads: int = typer.Option(1, help="embedded: llama.cpp threads (1 is fastest on 2 busy cores)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what generate would send; run nothing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    # cleaning
    threshold: float | None = typer.Option(
        None, "--near-dup-threshold", help="Near-dup decision: similarity of the keys [recipe or 0.85]."
    ),
    no_near_dup: bool = typer.Option(False, "--no-near-dup", help="Only exact duplicates."),
    tolerance: float | None = typer.Option(
        None, "--length-tolerance", help="Fraction over max_chars accepted."
    ),
    against: list[Path] = typer.Option(
        [], "--against", help="Also drop duplicates of this published dataset."
    ),
    workers: int = typer.Option(2, "--workers", help="Cleaning threads."),
) -> None:
    """The main job: generate a recipe's records, clean them, write the report. Rerun to resume.

    OUT gets raw.jsonl (+ raw.failures.jsonl, raw.stats.json), clean.jsonl, clean.rejects.jsonl, report/
    and summary.json. Ctrl-C stops cleanly (exit 130); the same command resumes.
    """
    from zaoshu.cleaners import CleanOptions
    from zaoshu.generator.engine import GenerateOptions
    from zaoshu.pipeline import next_commands, run

    generate_options = GenerateOptions(
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
    clean_options = CleanOptions(
        near_dup=False if no_near_dup else None,
        threshold=threshold,
        length_tolerance=tolerance,
        against=list(against),
        workers=workers,
    )
    s = run(recipe, out, generate_options, clean_options)
    if dry_run:
        return
    if s.interrupted:
        raise typer.Exit(130)

    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True, highlight=False)

    reasons = ", ".join(f"{reason} {n}" for reason, n in s.rejected.items())
    if s.cost is not None and s.currency:
        cost = f"{s.cost:.4f} {s.currency}"
    elif s.provider == "embedded":
        cost = "none (a model on this machine)"
    else:
        cost = "n/a (model not in the price table)"
    say("")
    say(
        f"run: {s.tasks} tasks, {s.generated} generated ({s.new} new this run), {s.failed} failed; "
        f"kept {s.kept}, rejected {s.rejected_total}" + (f" ({reasons})" if reasons else "")
    )
    say(
        f"tokens this run: {s.tokens_in:,} in / {s.tokens_out:,} out ({s.tokens_out_per_s:.1f} out/s); "
        f"cost: {cost}; wall time {s.wall_s:.1f} s (generate {s.generate_s:.1f} s, clean {s.clean_s:.1f} s)"
    )
    if s.failed:
        say(f"{s.failed} tasks failed (see {s.paths['failures']}); rerun the same command to retry them.")
    if s.generated:
        say(f"report: {Path(s.paths['report']) / 'report.html'}")
    say(f"summary: {Path(out) / 'summary.json'}")
    if s.kept:
        say("next:")
        for what, command in next_commands(s, recipe):
            console.print(f"  # {escape(what)}\n  {escape(command)}", soft_wrap=True, highlight=False)
