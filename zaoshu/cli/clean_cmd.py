"""`zaoshu clean`: normalize, filter and deduplicate generated records (thin: it parses and calls the API)."""

from __future__ import annotations

from pathlib import Path

import typer

from zaoshu.cli import app
from zaoshu.cli import clean_options as co
from zaoshu.cli import options as opt
from zaoshu.cli.common import console, user_errors


@app.command("clean")
@user_errors
def clean_cmd(
    inputs: list[Path] = typer.Argument(
        ..., help="Record JSONL files or folders (all *.jsonl inside, sorted)."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Kept records (JSONL)."),
    recipe: Path | None = typer.Option(
        None, "--recipe", help="Recipe whose `clean:` rules, styles and axes apply."
    ),
    rejects: Path | None = typer.Option(
        None, "--rejects", help="Rejected records (default: <out stem>.rejects.jsonl)."
    ),
    report: Path | None = typer.Option(None, "--report", help="Report folder (default: <out stem>.report/)."),
    threshold: co.Threshold = None,
    lsh_threshold: co.LshThreshold = None,
    num_perm: co.NumPerm = None,
    ngram: co.Ngram = None,
    no_near_dup: co.NoNearDup = False,
    against: co.Against = [],  # noqa: B006 - typer reads the default; never mutated
    tolerance: co.Tolerance = None,
    skip_bad_lines: co.SkipBadLines = False,
    workers: co.Workers = 2,
    review: Path | None = typer.Option(
        None, "--review", help="Reviewers' decisions (default: review.jsonl beside --out, if there)."
    ),
    allow_outside_files: opt.AllowOutsideFiles = False,
) -> None:
    """Clean generated records: normalize, apply the recipe's rules, drop exact and near duplicates."""
    from zaoshu.cleaners import clean
    from zaoshu.recipes import load_recipe
    from zaoshu.review import default_review

    options = co.clean_options(
        threshold=threshold,
        lsh_threshold=lsh_threshold,
        num_perm=num_perm,
        ngram=ngram,
        no_near_dup=no_near_dup,
        against=against,
        tolerance=tolerance,
        skip_bad_lines=skip_bad_lines,
        workers=workers,
    )
    stats = clean(
        inputs,
        out,
        recipe=load_recipe(recipe, allow_outside_files=allow_outside_files) if recipe else None,
        rejects=rejects,
        report_dir=report,
        options=options,
        review=review or default_review(out),
    )
    console.print(f"report: {stats.report}/report.html", soft_wrap=True, markup=False)
    console.print(stats.summary(), soft_wrap=True, markup=False)
