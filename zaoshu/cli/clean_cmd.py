"""`zaoshu clean`: normalize, filter and deduplicate generated records (thin: it parses and calls the API)."""

from __future__ import annotations

from pathlib import Path

import typer

from zaoshu.cli import app
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
    threshold: float | None = typer.Option(
        None,
        "--near-dup-threshold",
        help="Near-dup decision: Indel similarity of the keys (recipe, else 0.85).",
    ),
    lsh_threshold: float | None = typer.Option(
        None, "--lsh-threshold", help="MinHash LSH candidate threshold (recipe, else 0.5)."
    ),
    num_perm: int | None = typer.Option(None, "--num-perm", help="MinHash permutations (recipe, else 64)."),
    ngram: int | None = typer.Option(
        None, "--ngram", help="Character n-gram size of the shingles (recipe, else 2)."
    ),
    no_near_dup: bool = typer.Option(False, "--no-near-dup", help="Only exact duplicates."),
    against: list[Path] = typer.Option(
        [], "--against", help="Also drop duplicates of this published dataset."
    ),
    tolerance: float | None = typer.Option(
        None, "--length-tolerance", help="Fraction over max_chars accepted."
    ),
    skip_bad_lines: bool = typer.Option(
        False, "--skip-bad-lines", help="Send bad lines to the rejects as bad_line."
    ),
    workers: int = typer.Option(2, "--workers", help="Threads for signatures and similarity checks."),
) -> None:
    """Clean generated records: normalize, apply the recipe's rules, drop exact and near duplicates."""
    from zaoshu.cleaners import CleanOptions, clean
    from zaoshu.recipes import load_recipe

    options = CleanOptions(
        near_dup=False if no_near_dup else None,
        threshold=threshold,
        lsh_threshold=lsh_threshold,
        num_perm=num_perm,
        ngram=ngram,
        length_tolerance=tolerance,
        against=list(against),
        skip_bad_lines=skip_bad_lines,
        workers=workers,
    )
    stats = clean(
        inputs,
        out,
        recipe=load_recipe(recipe) if recipe else None,
        rejects=rejects,
        report_dir=report,
        options=options,
    )
    console.print(f"report: {stats.report}/report.html", soft_wrap=True, markup=False)
    console.print(stats.summary(), soft_wrap=True, markup=False)
