"""`zaoshu run`: generate -> clean -> report in one folder (thin: it parses and calls `zaoshu.pipeline.run`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from zaoshu.cli import app
from zaoshu.cli import clean_options as co
from zaoshu.cli import options as opt

if TYPE_CHECKING:  # the cleaners (polars, numpy) load when a command runs, not for --help
    from zaoshu.cleaners import CleanOptions

from zaoshu.cli.common import console, err_console, user_errors, with_flags
from zaoshu.generator.engine import GenerateOptions


@app.command("run")
@user_errors
@with_flags(opt.GENERATE, co.CLEAN)
def run_command(
    recipe: Path = typer.Argument(..., help="Recipe YAML (e.g. prompts/wishes.yaml)."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder (raw, clean, rejects, report, summary)."),
    allow_outside_files: opt.AllowOutsideFiles = False,
    # judging (after clean; only with --judge-provider)
    judge_provider: Annotated[
        str | None, typer.Option(help="Judge the clean records with this provider (see `zaoshu judge`).")
    ] = None,
    judge_model: Annotated[str | None, typer.Option(help="The judge's model.")] = None,
    judge_base_url: Annotated[str | None, typer.Option(help="The judge provider's base URL.")] = None,
    judge_concurrency: Annotated[int | None, typer.Option(help="Judge requests in flight.")] = None,
    judge_threshold: Annotated[
        int | None, typer.Option(help="Reject records the judge scores under this.")
    ] = None,
    *,
    generate_options: GenerateOptions,
    clean_options: CleanOptions,
) -> None:
    """The main job: generate a recipe's records, clean them, write the report. Rerun to resume.

    OUT gets raw.jsonl (+ raw.failures.jsonl, raw.stats.json), clean.jsonl, clean.rejects.jsonl, report/
    and summary.json. Ctrl-C stops cleanly (exit 130); the same command resumes. Exit 0 when every task is
    done, 1 when some failed for good.
    """
    from zaoshu.pipeline import next_commands, run
    from zaoshu.recipes import load_recipe

    loaded = load_recipe(recipe, allow_outside_files=allow_outside_files)
    judge_options = None
    if judge_provider is not None:
        judge_options = opt.generate_options(
            provider=judge_provider,
            model=judge_model,
            base_url=judge_base_url,
            concurrency=judge_concurrency,
            max_attempts=generate_options.max_attempts,
            prices=generate_options.prices,
            model_path=generate_options.model_path,
            threads=generate_options.threads,
            quiet=generate_options.quiet,
        )
    try:
        s = run(loaded, out, generate_options, clean_options, judge_options, judge_threshold)
    except KeyboardInterrupt:  # outside the send loop: model download/join, server start-up, cleaning
        from zaoshu.generator.providers import safe_command

        resume = safe_command(shlex.join(["zaoshu", *sys.argv[1:]]))
        err_console.print(
            f"interrupted; what was generated is kept in {escape(str(Path(out) / 'raw.jsonl'))}. "
            f"Resume with the same command:\n  {escape(resume)}",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(130) from None
    if generate_options.dry_run:
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
    if s.judge:
        j = s.judge
        say(
            f"judge: kept {j['kept']} of {j['read']}, rejected {j['rejected']} (judge_low: score < "
            f"{j['threshold']}), failed {j['failed']}; mean score {j['mean_score']}; report {j['paths']['html']}"
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
    if s.failed:  # `zaoshu run … && next` must not go on with tasks missing
        raise typer.Exit(1)
