"""`zaoshu judge`: a model scores every record against the recipe's rubric (thin over zaoshu.judging)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zaoshu.cli import app
from zaoshu.cli import options as opt
from zaoshu.cli.common import console, err_console, user_errors

Threshold = Annotated[
    int | None, typer.Option(help="Reject records scored under this (1-5) [the recipe's judge.threshold, 3].")
]
Sample = Annotated[
    int | None,
    typer.Option(help="Judge only a seeded sample of N records and estimate the share under the threshold."),
]


@app.command("judge")
@user_errors
def judge_command(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="Records to judge (JSONL, e.g. clean.jsonl)."
    ),
    out: Path = typer.Option(
        ..., "-o", "--out", help="Kept records (JSONL); rejects, scores and report beside it."
    ),
    recipe: Path = typer.Option(
        ..., "--recipe", "-r", help="Recipe with a `judge:` block (rubric and prompt)."
    ),
    provider: opt.Provider = "deepseek",
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    key_env: opt.KeyEnv = None,
    concurrency: opt.Concurrency = None,
    rpm: opt.Rpm = None,
    tpm: opt.Tpm = None,
    max_attempts: opt.MaxAttempts = 4,
    timeout: opt.Timeout = None,
    prices: opt.Prices = None,
    model_path: opt.ModelPath = None,
    threads: opt.Threads = 1,
    threshold: Threshold = None,
    sample: Sample = None,
    seed: opt.Seed = None,
    dry_run: opt.DryRun = False,
    quiet: opt.Quiet = False,
) -> None:
    """Score every record 1-5 with a judge model; those under the threshold go to the rejects (judge_low).

    A judge reply that is not a JSON object with an integer score 1-5 and a reason is retried, then counted
    as failed (never a pass). Ctrl-C stops cleanly (exit 130); the same command resumes by record id.
    """
    from zaoshu.judging import judge

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
        prices=prices,
        model_path=model_path,
        threads=threads,
        dry_run=dry_run,
        quiet=quiet,
    )
    try:
        s = judge(input_path, out, recipe, options, threshold=threshold, sample=sample, seed=seed or 0)
    except KeyboardInterrupt:
        err_console.print("interrupted before any request was sent")
        raise typer.Exit(130) from None
    if dry_run:
        return
    if s.interrupted:
        raise typer.Exit(130)

    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True, highlight=False)

    cost = f"{s.cost:.4f} {s.currency}" if s.cost is not None and s.currency else "n/a"
    if sample is not None:
        lo, hi = s.under_ci95 or (0.0, 1.0)
        say(
            f"sample: judged {s.judged} of {s.read} (seeded), mean score {s.mean_score}; "
            f"under {s.threshold}: {s.under} ({100 * (s.under_share or 0):.1f} %, 95 % interval "
            f"{100 * lo:.1f}-{100 * hi:.1f} %); {s.failed} failed"
        )
    else:
        say(
            f"judge: read {s.read}, kept {s.kept}, rejected {s.rejected} (judge_low: score < {s.threshold}), "
            f"failed {s.failed}; mean score {s.mean_score}"
        )
    say(
        f"this run: {s.new} judged, tokens {s.tokens_in:,} in / {s.tokens_out:,} out, cost {cost}, {s.wall_s:.1f} s"
    )
    say(f"report: {s.paths['html']}")
    if s.failed:
        say(f"{s.failed} failed (see {s.paths['failures']}); rerun the same command to retry them.")
