"""`zaoshu convert | merge | split | publish`: reshape, combine, split and publish datasets."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from zaoshu.cli import app
from zaoshu.cli.common import console, err_console, user_errors
from zaoshu.errors import ZaoshuError
from zaoshu.files import guard_outputs
from zaoshu.formats import FORMATS

FORMAT_HELP = f"one of: {', '.join(FORMATS)}"


def _check_format(name: str | None, option: str) -> str | None:
    if name is not None and name not in FORMATS:
        raise ZaoshuError(f"{option}: unknown format {name!r}; known formats: {', '.join(FORMATS)}")
    return name


def _note(text: str | None) -> None:
    if text:
        err_console.print(f"[yellow]note:[/] {escape(text)}", markup=True, soft_wrap=True)


Review = typer.Option(
    None, "--review", help="Reviewers' decisions to apply (default: review.jsonl beside the data, if there)."
)


def _reviewed(input: Path, review: Path | None) -> AbstractContextManager[tuple[Path, Any]]:
    """The data with reviewers' decisions applied (a temp copy), or `input` when there are none."""
    from zaoshu.review import default_review, reviewed_input

    return reviewed_input(input, review or default_review(input), say=_note)


@app.command("convert")
@user_errors
def convert_command(
    input: Path = typer.Argument(..., help="Input file (JSONL or JSON array)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.json: a JSON array, else JSONL)."),
    to: str = typer.Option(..., "--to", help=f"Output format, {FORMAT_HELP}."),
    from_: str | None = typer.Option(
        None, "--from", help=f"Input format (default: detected), {FORMAT_HELP}."
    ),
    review: Path | None = Review,
) -> None:
    """Convert a dataset between zaoshu records, openai, xtuner, alpaca and sharegpt."""
    from zaoshu.formats import convert

    _check_format(to, "--to")
    _check_format(from_, "--from")
    guard_outputs([output], [input, review])  # here too: with a review, convert sees a temp copy
    with _reviewed(input, review) as (source, counts):
        written = convert(source, output, to, None if counts else from_)
    console.print(f"wrote {written.count} records to {escape(str(output))} ({to})")
    _note(written.note())


@app.command("merge")
@user_errors
def merge_command(
    inputs: list[str] = typer.Argument(..., help="Files, folders (their *.json / *.jsonl) or globs."),
    output: Path = typer.Option(..., "-o", "--output", help="Merged file."),
    to: str = typer.Option("zaoshu", "--to", help=f"Output format, {FORMAT_HELP}."),
    from_: str | None = typer.Option(
        None, "--from", help="Input format for every file (default: detected per file)."
    ),
) -> None:
    """Merge datasets in any known format into one file, dropping duplicates (same id or same content)."""
    from zaoshu.formats.merge import merge

    _check_format(to, "--to")
    _check_format(from_, "--from")
    result = merge(inputs, output, to=to, from_=from_)
    width = max(len(f.path) for f in result.files)
    for f in result.files:
        console.print(
            f"{escape(f.path):<{width}}  {f.fmt:<8}  read {f.read:>8}  kept {f.kept:>8}  duplicates {f.duplicates:>7}",
            soft_wrap=True,
        )
    console.print(
        f"wrote {result.written.count} records to {escape(str(output))} ({to}): read {result.read}, "
        f"dropped {result.duplicates} duplicates",
        soft_wrap=True,
    )
    _note(result.written.note())


@app.command("split")
@user_errors
def split_command(
    input: Path = typer.Argument(..., help="Dataset file (any known format)."),
    out_dir: Path = typer.Option(..., "-o", "--output", help="Folder for train.jsonl and test.jsonl."),
    test: float = typer.Option(0.1, "--test", help="Share of records for the test split."),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed: the same seed gives byte-identical files."),
    stratify: str | None = typer.Option(
        None, "--stratify", help="Axis (e.g. style) whose every value is in both parts."
    ),
    from_: str | None = typer.Option(
        None, "--from", help=f"Input format (default: detected), {FORMAT_HELP}."
    ),
    review: Path | None = Review,
) -> None:
    """Split a dataset into train and test with a seeded shuffle, optionally stratified by an axis."""
    from zaoshu.formats.split import split

    _check_format(from_, "--from")
    # here too: with a review, split sees a temp copy of the data
    guard_outputs([out_dir / "train.jsonl", out_dir / "test.jsonl"], [input, review])
    with _reviewed(input, review) as (source, counts):
        result = split(
            source, out_dir, test=test, seed=seed, stratify=stratify, from_=None if counts else from_
        )
    console.print(
        f"train {result.n_train} → {escape(str(result.train))}, test {result.n_test} → {escape(str(result.test))}"
    )
    if result.strata:
        table = Table(title=f"by {stratify}")
        for column in (stratify or "", "train", "test"):
            table.add_column(column, justify="left" if column == stratify else "right")
        for key, (a, b) in result.strata.items():
            table.add_row(escape(key), str(a), str(b))
        console.print(table)
    total = result.n_train + result.n_test
    share = result.n_test / total if total else 0.0
    if stratify and abs(share - test) > max(0.02, 0.2 * test):
        # every value of the axis keeps at least one record on each side, so small strata tip the share
        _note(
            f"test holds {share:.0%} of the records ({result.n_test} of {total}) where {test:.0%} was asked: "
            f"each of the {len(result.strata)} {stratify} values keeps at least one record in test. "
            "Use fewer, larger values, or no --stratify, to get closer"
        )
    if result.single:
        _note(
            f"{len(result.single)} {stratify} value(s) have one record and are only in train: {', '.join(result.single[:10])}"
        )


@app.command("publish")
@user_errors
def publish_command(
    input: Path = typer.Argument(..., help="Dataset file, or a split folder (train.jsonl, test.jsonl)."),
    repo: str = typer.Option(..., "--repo", help="Hugging Face dataset repo, OWNER/NAME."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the dataset folder here and stop (no upload)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Build the folder in a temp dir, show it, do not upload."
    ),
    recipe: Path | None = typer.Option(
        None, "--recipe", help="Recipe for the card (default: prompts/<recipe>.yaml)."
    ),
    stats: Path | None = typer.Option(
        None, "--stats", help="Generation stats JSON (default: *.stats.json beside the data)."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Cleaning report.json (default: *.report/report.json beside the data)."
    ),
    license: str = typer.Option(
        "other", "--license", help="License id for the card (e.g. cc-by-4.0, apache-2.0)."
    ),
    language: list[str] | None = typer.Option(
        None, "--language", help="Language code(s) (default: detected)."
    ),
    meta: bool = typer.Option(
        True, "--meta/--no-meta", help="Keep each record's meta (prompt, model, usage) as a JSON column."
    ),
    review: Path | None = Review,
) -> None:
    """Publish a dataset on the Hugging Face Hub: parquet per split, a generated dataset card, upload (HF_TOKEN)."""
    from zaoshu.publish import publish

    if out is not None:  # here too: with a review, publish sees a temp copy of the data
        guard_outputs([], [input, review, recipe, stats, report], output_dirs=[out])
    with _reviewed(input, review) as (source, _):
        result = publish(
            source,
            repo,
            private=private,
            out=out,
            dry_run=dry_run,
            recipe=recipe,
            stats=stats,
            report=report,
            license=license,
            language=language or None,
            with_meta=meta,
        )
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    where = "" if result.url else f" {escape(str(result.folder))}"
    console.print(f"dataset folder{where}: {counts}")
    for name, size in result.files:
        console.print(f"  {escape(name)}  {size:,} bytes")
    if result.url:
        console.print(f"uploaded to https://huggingface.co/datasets/{repo}: {escape(result.url)}")
    else:
        console.print(
            f"not uploaded ({'--dry-run' if dry_run else '--out'}); to publish: "
            f"HF_TOKEN=... zaoshu publish {escape(str(input))} --repo {repo}"
        )
