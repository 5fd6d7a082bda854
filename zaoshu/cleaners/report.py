"""The cleaning report: `report.json` (numbers) and `report.html` (a static page with inline SVG pictures).

The page opens offline (no script, no CDN): length histograms per style against the style's limit, the
recipient × scene heatmap of kept counts (which pairs the data covers, at a glance), reject reasons as bars and a
few sample records per reason.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import orjson
import polars as pl

from zaoshu.cleaners.minhash import codepoints
from zaoshu.cleaners.rules import RuleContext
from zaoshu.cleaners.stats import CleanStats
from zaoshu.files import write_bytes_atomic
from zaoshu.recipes import Recipe, is_excluded

TEMPLATE = "report.html.j2"
DISTINCT_SAMPLE = 100_000


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def svg_bars(items: list[tuple[str, int]], *, width: int = 640, color: str = "#c0392b") -> str:
    """Horizontal bar chart (reject reasons)."""
    if not items:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="30" role="img"><text x="4" y="20">none</text></svg>'
    row, left = 24, 150
    top = max(v for _, v in items) or 1
    h = row * len(items) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" class="bars">']
    for i, (label, value) in enumerate(items):
        y = 5 + i * row
        w = max(1, int((width - left - 80) * value / top))
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{_esc(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{w}" height="{row - 8}" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 4}" y="{y + 15}">{value}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_histogram(lengths: np.ndarray, *, limit: int | None, allowed: int | None, minimum: int) -> str:
    """Length histogram of kept texts with the style's max (solid) and max + tolerance (dashed)."""
    width, height, pad = 640, 220, 36
    top_x = max([int(lengths.max()) if len(lengths) else 1, limit or 0, allowed or 0, 1]) + 2
    step = max(1, math.ceil(top_x / 60))
    bins = np.arange(0, top_x + step, step)
    counts, _ = np.histogram(lengths, bins=bins) if len(lengths) else (np.zeros(len(bins) - 1), None)
    peak = max(int(counts.max()) if len(counts) else 1, 1)
    sx = (width - 2 * pad) / (bins[-1] or 1)
    sy = (height - 2 * pad) / peak
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" class="hist">'
    ]
    for i, c in enumerate(counts):
        if c:
            x = pad + bins[i] * sx
            parts.append(
                f'<rect x="{x:.1f}" y="{height - pad - c * sy:.1f}" width="{max(step * sx - 1, 1):.1f}" '
                f'height="{c * sy:.1f}" fill="#2e86c1"><title>{bins[i]}-{bins[i] + step - 1}: {c}</title></rect>'
            )
    base = height - pad
    parts.append(f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" stroke="#333"/>')
    for t in range(0, int(bins[-1]) + 1, max(step * 5, 5)):
        parts.append(
            f'<text x="{pad + t * sx:.1f}" y="{base + 14}" text-anchor="middle" font-size="10">{t}</text>'
        )
    parts.append(f'<text x="{pad}" y="{pad - 10}" font-size="10">max count {peak}</text>')
    for row, (value, dash, name) in enumerate(
        ((limit, "", "max_chars"), (allowed, ' stroke-dasharray="4 3"', "accepted"))
    ):
        if value:
            x = pad + value * sx
            parts.append(
                f'<line x1="{x:.1f}" y1="{pad - 4}" x2="{x:.1f}" y2="{base}" stroke="#c0392b"{dash}/>'
            )
            anchor, dx = ("end", -3) if x > width * 0.8 else ("start", 3)
            parts.append(
                f'<text x="{x + dx:.1f}" y="{pad + 6 + 12 * row}" font-size="10" fill="#c0392b" '
                f'text-anchor="{anchor}">{name} {value}</text>'
            )
    if minimum:
        x = pad + minimum * sx
        parts.append(
            f'<line x1="{x:.1f}" y1="{pad - 4}" x2="{x:.1f}" y2="{base}" stroke="#7d3c98" stroke-dasharray="2 2"/>'
        )
    parts.append(
        f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle" font-size="11">characters</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def svg_heatmap(
    rows: list[str], cols: list[str], counts: dict[tuple[str, str], int], excluded: set[tuple[str, str]]
) -> str:
    """Kept records per (row value, column value); excluded pairs drawn grey with ×."""
    cell, left, top = 30, 96, 90
    width = left + cell * len(cols) + 10
    height = top + cell * len(rows) + 10
    peak = max(counts.values(), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" class="heat">'
    ]
    for j, c in enumerate(cols):
        x = left + j * cell + cell / 2
        parts.append(
            f'<text transform="translate({x:.0f},{top - 6}) rotate(-60)" font-size="11">{_esc(c)}</text>'
        )
    for i, r in enumerate(rows):
        y = top + i * cell
        parts.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.0f}" text-anchor="end" font-size="11">{_esc(r)}</text>'
        )
        for j, c in enumerate(cols):
            x = left + j * cell
            n = counts.get((r, c), 0)
            if (r, c) in excluded:
                fill, label = "#d5d8dc", "×"
            else:
                shade = int(255 - 200 * (n / peak) ** 0.5)
                fill, label = (f"rgb({shade},{min(255, shade + 25)},255)" if n else "#fdf2e9"), str(n)
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                f"<title>{_esc(r)} × {_esc(c)}: {n}</title></rect>"
            )
            color = "#fff" if n > peak * 0.6 and (r, c) not in excluded else "#333"
            parts.append(
                f'<text x="{x + cell / 2:.0f}" y="{y + cell / 2 + 4:.0f}" text-anchor="middle" font-size="9" fill="{color}">{label}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _distinct2(keys: list[str]) -> float | None:
    """Distinct character bigrams / all bigrams over the texts (a diversity measure; 1.0 = no repeats)."""
    if not keys:
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
) -> dict[str, Any]:
    # only the columns read below: a filter of the whole frame copies every text column
    kept = frame.select("style", "n_chars", "key", "reason").filter(pl.col("reason").is_null())
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
        lo, allowed, declared = ctx.limits.get(style, (ctx.config.min_chars, None, None))
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
        sample = (
            part["key"] if part.height <= DISTINCT_SAMPLE else part["key"].sample(DISTINCT_SAMPLE, seed=0)
        )
        distinct[style] = {
            "distinct_2": _distinct2(sample.to_list()),
            "texts": min(part.height, DISTINCT_SAMPLE),
        }
    by_reason = dict(sorted(stats.rejected.items(), key=lambda kv: -kv[1]))
    sample_rows: dict[str, list[dict[str, Any]]] = {}
    for reason in by_reason:
        part = frame[(frame["reason"] == reason).arg_true().head(samples)]
        sample_rows[reason] = [
            {
                "id": r["id"],
                "style": r["style"],
                "text": r["raw"] if r["raw"] is not None else r["text"],
                "normalized": r["text"],
                "detail": r["detail"],
                "duplicate_of": r["duplicate_of"],
            }
            for r in part.iter_rows(named=True)
        ]
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


def _heatmap(data: dict[str, Any], recipe: Recipe | None) -> tuple[str, str, str] | None:
    cells = data["by_cell"]
    if not cells:
        return None
    axes = [k for k in cells[0] if k not in ("style", "kept", "rejected")]
    if len(axes) < 2:
        return None
    ra, ca = axes[0], axes[1]
    rows = (
        [str(v) for v in recipe.values[ra]]
        if recipe and ra in recipe.values
        else sorted({str(c[ra]) for c in cells if c[ra] is not None})
    )
    cols = (
        [str(v) for v in recipe.values[ca]]
        if recipe and ca in recipe.values
        else sorted({str(c[ca]) for c in cells if c[ca] is not None})
    )
    counts: dict[tuple[str, str], int] = {}
    for c in cells:
        key = (str(c[ra]), str(c[ca]))
        counts[key] = counts.get(key, 0) + int(c["kept"])
    excluded: set[tuple[str, str]] = set()
    if recipe is not None:
        excluded = {(r, c) for r in rows for c in cols if is_excluded(recipe, {ra: r, ca: c})}
    return ra, ca, svg_heatmap(rows, cols, counts, excluded)


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
        hists.append(
            {
                "style": style,
                "info": info,
                "svg": svg_histogram(
                    n, limit=info["max_chars"], allowed=info["allowed"], minimum=info["min_chars"]
                ),
            }
        )
    env = jinja2.Environment(loader=jinja2.PackageLoader("zaoshu.cleaners", "."), autoescape=True)
    page = env.get_template(TEMPLATE).render(
        data=data,
        hists=hists,
        heatmap=_heatmap(data, recipe),
        bars=svg_bars(list(data["by_reason"].items())),
        markup=jinja2.utils.markupsafe.Markup,
    )
    write_bytes_atomic(report_dir / "report.html", page.encode("utf-8"))
