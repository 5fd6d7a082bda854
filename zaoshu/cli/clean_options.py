"""Cleaning flags shared by `zaoshu clean` and `zaoshu run`, declared once so their names, defaults and
help cannot drift; `clean_options()` turns the parsed values into `CleanOptions`, checked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from zaoshu.cli.common import Flags

if TYPE_CHECKING:  # the cleaners (polars, numpy) load when a command runs, not for --help
    from zaoshu.cleaners import CleanOptions

Threshold = Annotated[
    float | None,
    typer.Option(
        "--near-dup-threshold",
        help="Near-dup decision: Indel similarity of the keys, in (0, 1] (recipe, else 0.85).",
    ),
]
LshThreshold = Annotated[
    float | None,
    typer.Option("--lsh-threshold", help="MinHash LSH candidate threshold, in (0, 1) (recipe, else 0.5)."),
]
NumPerm = Annotated[
    int | None, typer.Option("--num-perm", help="MinHash permutations, 8-512 (recipe, else 64).")
]
Ngram = Annotated[
    int | None, typer.Option("--ngram", help="Character n-gram size of the shingles, 1-8 (recipe, else 2).")
]
NoNearDup = Annotated[bool, typer.Option("--no-near-dup", help="Only exact duplicates.")]
Against = Annotated[
    list[Path], typer.Option("--against", help="Also drop duplicates of this published dataset.")
]
Tolerance = Annotated[
    float | None,
    typer.Option("--length-tolerance", help="Fraction over max_chars accepted, 0-10 (recipe, else 0.1)."),
]
SkipBadLines = Annotated[
    bool,
    typer.Option("--skip-bad-lines", help="Send bad lines to the rejects as bad_line instead of stopping."),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        help="Processes for the first pass over inputs past 16 MB, threads for the similarity checks.",
    ),
]
Engine = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Where to clean: local (this machine), or ray (same kept rows; needs zaoshu[ray]).",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", help="Ray cluster to join (HOST:PORT); default: start a local Ray."),
]


def clean_options(
    *,
    threshold: float | None = None,
    lsh_threshold: float | None = None,
    num_perm: int | None = None,
    ngram: int | None = None,
    no_near_dup: bool = False,
    against: list[Path] | None = None,
    tolerance: float | None = None,
    skip_bad_lines: bool = False,
    workers: int = 2,
    engine: str = "local",
    ray_address: str | None = None,
) -> CleanOptions:
    """CleanOptions from the parsed flags; a value out of range is a ZaoshuError naming its flag
    (checked against the defaults here, and again over the recipe's `clean:` block when it is applied)."""
    from zaoshu.cleaners import CleanOptions
    from zaoshu.errors import ZaoshuError

    if engine not in ("local", "ray"):
        raise ZaoshuError(f"--engine: local or ray, got {engine!r}")
    if ray_address and engine != "ray":
        raise ZaoshuError("--ray-address: only with --engine ray")
    if engine == "ray":  # before `zaoshu run` sends a request, not after the generation
        from zaoshu.engines.ray_session import check_reachable, require_ray

        require_ray()
        if ray_address:
            check_reachable(ray_address)
    options = CleanOptions(
        near_dup=False if no_near_dup else None,
        threshold=threshold,
        lsh_threshold=lsh_threshold,
        num_perm=num_perm,
        ngram=ngram,
        length_tolerance=tolerance,
        against=list(against or []),
        skip_bad_lines=skip_bad_lines,
        workers=workers,
        engine=engine,
        ray_address=ray_address,
    )
    options.check()
    return options


#: every cleaning flag, as `zaoshu clean` and `zaoshu run` take it (see `common.with_flags`)
CLEAN = Flags(
    "clean_options",
    {
        "threshold": (Threshold, None),
        "lsh_threshold": (LshThreshold, None),
        "num_perm": (NumPerm, None),
        "ngram": (Ngram, None),
        "no_near_dup": (NoNearDup, False),
        "against": (Against, []),
        "tolerance": (Tolerance, None),
        "skip_bad_lines": (SkipBadLines, False),
        "workers": (Workers, 2),
        "engine": (Engine, "local"),
        "ray_address": (RayAddress, None),
    },
    clean_options,
)
