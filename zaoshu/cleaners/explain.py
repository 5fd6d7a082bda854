"""Why a row was dropped as a near duplicate: `<out>.dups.jsonl`, one line per near-duplicate reject.

Each line names the removed record (`id`, file, line), the record it was kept as (`kept`), their
similarity, the check that linked them (`similarity >= t`, the short-text `edit distance 1`, or
`through other copies`: a chain of checked pairs), and the vetoes that were checked between the two
(`vetoes`) with the one that refused the pair directly if the cluster's vote kept it anyway (`vetoed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from zaoshu.cleaners.config import NearDupConfig
from zaoshu.cleaners.verify import VETOES
from zaoshu.files import atomic_write


@dataclass
class Explained:
    frame: pl.DataFrame  # _row, id, kept, similarity, check, vetoed
    checked: list[str]  # the vetoes checked between every pair (the same for all rows)


def explain_frame(
    ids: pl.Series,
    kept_ids: pl.Series,
    keys: pl.Series,
    kept_keys: pl.Series,
    similarity: np.ndarray,
    codes: np.ndarray,
    rows: np.ndarray,
    config: NearDupConfig,
    *,
    axes: bool,
    workers: int = 2,
) -> Explained:
    """One row per near duplicate (all arguments aligned): the columns of `<out>.dups.jsonl`.

    `codes` are the veto codes of each pair (PASS unless the cluster's vote kept a refused pair);
    `rows` are the frame rows of the removed records (for their file and line)."""
    a = keys.to_numpy().astype(object)
    b = kept_keys.to_numpy().astype(object)
    short = (keys.str.len_chars() < config.short_chars) | (kept_keys.str.len_chars() < config.short_chars)
    dist = process.cpdist(a, b, scorer=Levenshtein.distance, workers=workers) if len(a) else np.zeros(0)
    check = np.where(
        similarity >= config.threshold,
        f"similarity >= {config.threshold}",
        np.where(short.to_numpy() & (dist <= 1), "edit distance 1 (short text)", "through other copies"),
    )
    guarded = axes and config.axis_guard  # the axis guard stands in for the veto (see near_heads)
    checked = ["axis"] if guarded else [*VETOES, "chain"] if config.veto else []
    names = pl.Series([None, *VETOES], dtype=pl.Utf8)
    frame = pl.DataFrame(
        {
            "_row": rows,
            "id": ids,
            "kept": kept_ids,
            "similarity": np.round(similarity, 4),
            "check": pl.Series(check, dtype=pl.Categorical),
            "vetoed": names.gather(codes.astype(np.int64)) if len(a) else pl.Series([], dtype=pl.Utf8),
        },
        schema_overrides={"_row": pl.UInt32},
    )
    return Explained(frame, checked)


def write_dups(path: Path, explained: Explained, frame: pl.DataFrame, names: list[str]) -> None:
    """Write the explanations in input order, with each removed record's file and line."""
    where = frame.select(
        pl.col("file").replace_strict(dict(enumerate(names)), return_dtype=pl.Utf8).alias("file"), "line"
    ).with_row_index("_row")
    out = explained.frame.join(where, on="_row", how="left").sort("_row").drop("_row")
    with atomic_write(path) as handle:
        for lo in range(0, out.height, 100_000):
            part = out.slice(lo, 100_000).with_columns(
                pl.col("check").cast(pl.Utf8),
                pl.lit(explained.checked, dtype=pl.List(pl.Utf8)).alias("vetoes"),
            )
            part.select("id", "kept", "similarity", "check", "vetoes", "vetoed", "file", "line").write_ndjson(
                handle
            )
