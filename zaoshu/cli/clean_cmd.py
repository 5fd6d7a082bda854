"""`zaoshu clean`: normalize, filter and deduplicate generated records (thin: it parses and calls the API)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from zaoshu.cli import app
from zaoshu.cli import clean_options as co
from zaoshu.cli import options as opt
from zaoshu.cli.common import console, user_errors, with_flags

if TYPE_CHECKING:  # the cleaners (polars, numpy) load when a command runs, not for --help
    from zaoshu.cleaners import CleanOptions


@app.command("clean")
@user_errors
@with_flags(co.CLEAN)
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
    review: Path | None = typer.Option(
        None, "--review", help="Reviewers' decisions (default: review.jsonl beside --out, if there)."
    ),
    allow_outside_files: opt.AllowOutsideFiles = False,
    *,
    clean_options: CleanOptions,
) -> None:
    """Clean generated records: normalize, apply the recipe's rules, drop exact and near duplicates."""
    from zaoshu.engines import clean
    from zaoshu.recipes import load_recipe
    from zaoshu.review import default_review

    stats = clean(
        inputs,
        out,
        recipe=load_recipe(recipe, allow_outside_files=allow_outside_files) if recipe else None,
        rejects=rejects,
        report_dir=report,
        options=clean_options,
        review=review or default_review(out),
    )
    console.print(f"report: {stats.report}/report.html", soft_wrap=True, markup=False)
    console.print(stats.summary(), soft_wrap=True, markup=False)
