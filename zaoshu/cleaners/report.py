"""The cleaning report: `report.json` (numbers) and `report.html` (a static page with inline SVG pictures).

The page opens offline (no script, no CDN): length histograms per style against the style's limit, the
recipient × scene heatmap of kept counts (which pairs the data covers, at a glance), reject reasons as bars and a
few sample records per reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import orjson
import polars as pl

from zaoshu.cleaners.minhash import codepoints
from zaoshu.cleaners.rules import RuleContext, StyleLimits
from zaoshu.cleaners.stats import CleanStats
from zaoshu.files import write_bytes_atomic
from zaoshu.recipes import Recipe, is_excluded

TEMPLATE = "report.html.j2"
DISTINCT_SAMPLE = 100_000


def histogram(lengths: np.ndarray, *, limit: int | None, allowed: int | None, minimum: int) -> dict[str, Any]:
    """The bins of a length histogram (about 60, wide enough to show the limits) for `report_svg.j2`."""
    top_x = max([int(lengths.max()) if len(lengths) else 1, limit or 0, allowed or 0, 1]) + 2
    step = max(1, math.ceil(top_x / 60))
    bins = np.arange(0, top_x + step, step)
    counts = np.histogram(lengths, bins=bins)[0] if len(lengths) else np.zeros(len(bins) - 1, dtype=int)
    return {
        "bins": bins.tolist(),
        "bars": [(b, c) for b, c in zip(bins.tolist(), counts.tolist(), strict=False) if c],
        "step": step,
        "peak": max(int(counts.max()) if len(counts) else 1, 1),
        "limit": limit,
        "allowed": allowed,
        "minimum": minimum,
    }


def _distinct2(keys: pl.Series) -> float | None:
    """Distinct character bigrams / all bigrams over the texts (a diversity measure; 1.0 = no repeats)."""
    if keys.is_empty():
        return None
    cps, offsets = codepoints(keys)
    if len(cps) < 2:
        return None
    grams = (cps[:-1].astype(np.uint64) << np.uint64(21)) | cps[1:].astype(np.uint64)
    inside = np.ones(len(grams), dtype=bool)
    ends = offsets[1:-1] - 1
    inside[ends[(ends >= 0) & (ends < len(grams))]] = False
    grams = grams[inside]
    return round(pl.Series(grams).n_unique() / len(grams), 4) if len(grams) else None


def build(
    frame: pl.DataFrame,
    stats: CleanStats,
    *,
    ctx: RuleContext,
    recipe: Recipe | None,
    near: dict[str, Any],
    samples: int,
    keys: pl.Series,
) -> dict[str, Any]:
    """report.json's numbers. `keys`: the distinct dedup keys, which `key_id` indexes (for the
    diversity measure)."""
    # only the columns read below: a filter of the whole frame copies every text column
    kept = frame.select("style", "n_chars", "key_id", "reason").filter(pl.col("reason").is_null())
    axes = [c[3:] for c in frame.columns if c.startswith("ax_")]
    if recipe is not None:
        axes = [a for a in recipe.values if a in axes] + [a for a in axes if a not in recipe.values]
    by_cell: list[dict[str, Any]] = []
    if axes:
        cols = [f"ax_{a}" for a in axes] + ["style"]
        cells = (
            frame.group_by(cols)
            .agg(kept=pl.col("reason").is_null().sum(), rejected=pl.col("reason").is_not_null().sum())
            .sort(cols, nulls_last=True)
        )
        by_cell = [
            {
                **{a: r[f"ax_{a}"] for a in axes},
                "style": r["style"],
                "kept": r["kept"],
                "rejected": r["rejected"],
            }
            for r in cells.iter_rows(named=True)
        ]
    lengths: dict[str, Any] = {}
    distinct: dict[str, Any] = {}
    for style in sorted(set(frame["style"].drop_nulls().to_list()) | set(ctx.limits)):
        part = kept.filter(pl.col("style") == style)
        n = part["n_chars"].to_numpy()
        lo, allowed, declared = ctx.limits.get(style, StyleLimits(ctx.config.min_chars, None, None))
        lengths[style] = {
            "kept": len(n),
            "min": int(n.min()) if len(n) else None,
            "mean": round(float(n.mean()), 1) if len(n) else None,
            "p50": int(np.percentile(n, 50)) if len(n) else None,
            "p90": int(np.percentile(n, 90)) if len(n) else None,
            "max": int(n.max()) if len(n) else None,
            "min_chars": lo,
            "max_chars": declared,
            "allowed": allowed,
        }
        ids = (
            part["key_id"]
            if part.height <= DISTINCT_SAMPLE
            else part["key_id"].sample(DISTINCT_SAMPLE, seed=0)
        )
        sample = keys.gather(ids.drop_nulls())
        distinct[style] = {
            "distinct_2": _distinct2(sample),
            "texts": min(part.height, DISTINCT_SAMPLE),
        }
    by_reason = dict(stats.rejected)  # most first, as `CleanStats.count` sorts them
    sample_rows: dict[str, list[dict[str, Any]]] = {}
    for reason in by_reason:
        part = frame[(frame["reason"] == reason).arg_true().head(samples)]
        text, normalized = pl.coalesce("raw", "text").alias("text"), pl.col("text").alias("normalized")
        sample_rows[reason] = part.select(
            "id", "style", text, normalized, "detail", "duplicate_of"
        ).to_dicts()
    return {
        "counts": {
            "read": stats.read,
            "kept": stats.kept,
            "normalized": stats.normalized,
            "rejected": stats.rejected_total,
            **({"reviewed": stats.reviewed} if stats.reviewed else {}),  # a person's decisions applied
        },
        "by_reason": by_reason,
        "by_style": {s: v["kept"] for s, v in lengths.items()},
        "by_cell": by_cell,
        "length": lengths,
        "distinct": distinct,
        "near_dup": near,
        "samples": sample_rows,
        "settings": ctx.config.model_dump(mode="json"),
        "recipe": recipe.name if recipe else None,
        "outputs": {"kept": stats.out, "rejects": stats.rejects},
        "seconds": dict(stats.seconds),
    }


def _heatmap(data: dict[str, Any], recipe: Recipe | None) -> dict[str, Any] | None:
    """Kept counts over the first two axes, rows and columns in the recipe's order, for `report_svg.j2`."""
    cells = data["by_cell"]
    axes = [k for k in cells[0] if k not in ("style", "kept", "rejected")] if cells else []
    if len(axes) < 2:
        return None
    names = []
    for axis in axes[:2]:
        if recipe and axis in recipe.values:
            names.append([str(v) for v in recipe.values[axis]])
        else:
            names.append(sorted({str(c[axis]) for c in cells if c[axis] is not None}))
    (ra, ca), (rows, cols) = axes[:2], names
    counts: dict[tuple[str, str], int] = {}
    for c in cells:
        key = (str(c[ra]), str(c[ca]))
        counts[key] = counts.get(key, 0) + int(c["kept"])
    excluded: set[tuple[str, str]] = set()
    if recipe is not None:
        excluded = {(r, c) for r in rows for c in cols if is_excluded(recipe, {ra: r, ca: c})}
    peak = max(counts.values(), default=0) or 1
    return {
        "axes": (ra, ca),
        "rows": rows,
        "cols": cols,
        "counts": counts,
        "excluded": excluded,
        "peak": peak,
    }


def write_report(report_dir: Path, frame: pl.DataFrame, data: dict[str, Any], recipe: Recipe | None) -> None:
    """Write report.json (`data`, from `build`) and report.html into `report_dir` (each atomically)."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(
        report_dir / "report.json", orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    kept = frame.select("style", "n_chars", "reason").filter(pl.col("reason").is_null())
    hists = []
    for style, info in data["length"].items():
        n = kept.filter(pl.col("style") == style)["n_chars"].to_numpy()
        shape = histogram(n, limit=info["max_chars"], allowed=info["allowed"], minimum=info["min_chars"])
        hists.append({"style": style, "info": info, "shape": shape})
    env = jinja2.Environment(loader=jinja2.PackageLoader("zaoshu.cleaners", "."), autoescape=True)
    page = env.get_template(TEMPLATE).render(data=data, hists=hists, heatmap=_heatmap(data, recipe))
    write_bytes_atomic(report_dir / "report.html", page.encode("utf-8"))
