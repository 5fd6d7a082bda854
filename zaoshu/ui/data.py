"""The records `zaoshu ui` shows: kept and rejected, one polars frame, filtered and paged per request.

A record file is read once into columns (id, status, reason, axes, judge score, texts) plus each line's
byte offset, so a table page is a polars filter and slice (milliseconds at 100k records) and a record
page reads its one line back. A line that is not a record (torn by a kill, not JSON) becomes a row of its
own with status "torn", so the rest stays browsable. Files are read again when they change on disk; the
reviewers' decisions (review.jsonl) are laid over the statuses at query time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from zaoshu.errors import ZaoshuError
from zaoshu.records import Record, content_id
from zaoshu.review import REVIEW_FILE, Decision, read_decisions, rejects_beside

PAGE = 50
#: files of a run folder that hold no records to look at.
NOT_RECORDS = (REVIEW_FILE, "raw.failures.jsonl")


def find_files(source: Path) -> list[Path]:
    """The record files of a run folder (clean + rejects, else raw, else every *.jsonl) or one file (+ its
    rejects file beside it)."""
    if source.is_file():
        rejects = rejects_beside(source)
        return [source, rejects] if rejects.is_file() and rejects != source else [source]
    if not source.is_dir():
        raise ZaoshuError("no such file or folder", path=source)
    clean, rejects = source / "clean.jsonl", source / "clean.rejects.jsonl"
    found = [p for p in (clean, rejects) if p.is_file()]
    if not found and (source / "raw.jsonl").is_file():
        found = [source / "raw.jsonl"]
    if not found:
        found = [p for p in sorted(source.glob("*.jsonl")) if p.name not in NOT_RECORDS]
    if not found:
        raise ZaoshuError("no record files here (clean.jsonl, raw.jsonl or any *.jsonl)", path=source)
    return found


def _text(record: Record, role: str) -> str:
    for m in reversed(record.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == role and isinstance(m.get("content"), str):
            return m["content"]
    return ""


def _row(record: Any, fi: int, number: int, offset: int, size: int) -> dict[str, Any]:
    base = {"file": fi, "line": number, "offset": offset, "size": size}
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        return {**base, "status": "torn", "reason": "not_a_record", "detail": "no messages list"}
    reject = record.get("reject") if isinstance(record.get("reject"), dict) else None
    axes = record.get("axes") if isinstance(record.get("axes"), dict) else {}
    judge = (record.get("meta") or {}).get("judge") if isinstance(record.get("meta"), dict) else None
    score = judge.get("score") if isinstance(judge, dict) else None
    return {
        **base,
        "key": str(record.get("id") or content_id(record["messages"])),
        "status": "rejected" if reject else "kept",
        "reason": reject.get("reason") if reject else None,
        "detail": str(reject.get("detail")) if reject and reject.get("detail") is not None else None,
        "duplicate_of": reject.get("duplicate_of") if reject else None,
        "style": None if axes.get("style") is None else str(axes.get("style")),
        "score": float(score) if isinstance(score, int | float) else None,
        "user": _text(record, "user"),
        "text": _text(record, "assistant"),
        **{f"ax_{k}": str(v) for k, v in axes.items() if k != "style"},
    }


def read_frame(files: list[Path]) -> pl.DataFrame:
    """One row per non-blank line of `files`, torn lines included (status "torn", the error as detail)."""
    rows: list[dict[str, Any]] = []
    for fi, path in enumerate(files):
        offset = 0
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                size = len(raw)
                if raw.strip():
                    try:
                        row = _row(orjson.loads(raw), fi, number, offset, size)
                    except orjson.JSONDecodeError as e:
                        row = {"file": fi, "line": number, "offset": offset, "size": size, "status": "torn",
                               "reason": "torn_line", "detail": f"not JSON: {e}",
                               "text": raw[:200].decode("utf-8", "replace")}  # fmt: skip
                    rows.append(row)
                offset += size
    schema = {"file": pl.Int32, "line": pl.Int64, "offset": pl.Int64, "size": pl.Int64, "key": pl.Utf8,
              "status": pl.Utf8, "reason": pl.Utf8, "detail": pl.Utf8, "duplicate_of": pl.Utf8,
              "style": pl.Utf8, "score": pl.Float64, "user": pl.Utf8, "text": pl.Utf8}  # fmt: skip
    axes = sorted({k for r in rows for k in r if k.startswith("ax_")})
    data = {c: [r.get(c) for r in rows] for c in [*schema, *axes]}
    frame = pl.DataFrame(data, schema={**schema, **dict.fromkeys(axes, pl.Utf8)})
    # what text search looks in, lowercased once here instead of on every query
    hay = pl.concat_str(pl.col("user").fill_null(""), pl.col("text").fill_null(""), separator="\n")
    return frame.with_columns(hay=hay.str.to_lowercase())


@dataclass
class Query:
    """A table's filters, from the page's query string."""

    status: str = ""
    reason: str = ""
    style: str = ""
    axes: dict[str, str] = field(default_factory=dict)
    q: str = ""
    score_min: float | None = None
    score_max: float | None = None
    page: int = 1

    @classmethod
    def parse(cls, params: dict[str, str]) -> Query:
        def number(name: str) -> float | None:
            try:
                return float(params[name]) if params.get(name, "").strip() else None
            except ValueError:
                return None

        try:
            page = max(1, int(params.get("page") or 1))
        except ValueError:
            page = 1
        return cls(
            status=params.get("status", ""),
            reason=params.get("reason", ""),
            style=params.get("style", ""),
            axes={k[2:]: v for k, v in params.items() if k.startswith("a_") and v},
            q=params.get("q", "").strip(),
            score_min=number("score_min"),
            score_max=number("score_max"),
            page=page,
        )

    def params(self, **change: Any) -> dict[str, Any]:
        """The query string of this query with some fields changed (for paging links)."""
        out: dict[str, Any] = {"status": self.status, "reason": self.reason, "style": self.style, "q": self.q,
                               "score_min": self.score_min, "score_max": self.score_max, "page": self.page,
                               **{f"a_{k}": v for k, v in self.axes.items()}}  # fmt: skip
        out.update(change)
        return {k: v for k, v in out.items() if v not in (None, "")}


class DataStore:
    """The records of one source, read again when a file changes; the review file laid over them."""

    def __init__(self, source: Path, review: Path | None = None) -> None:
        self.source = Path(source)
        self.files = find_files(self.source)
        folder = self.source if self.source.is_dir() else self.source.parent
        self.review = review or folder / REVIEW_FILE
        self._lock = threading.Lock()
        self._stamp: tuple[Any, ...] = ()
        self._review_stamp: tuple[Any, ...] = ()
        self._frame = pl.DataFrame()
        self._decisions: dict[str, Decision] = {}
        self.review_error: str | None = None

    @staticmethod
    def _stat(paths: list[Path]) -> tuple[Any, ...]:
        out = []
        for p in paths:
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def frame(self) -> pl.DataFrame:
        """All rows with `review` (the latest decision) and `now` (the status after review)."""
        with self._lock:
            stamp = self._stat(self.files)
            if stamp != self._stamp:
                self._frame = read_frame(self.files)
                self._stamp = stamp
            rstamp = self._stat([self.review])
            if rstamp != self._review_stamp:
                try:
                    self._decisions = read_decisions(self.review) if self.review.is_file() else {}
                    self.review_error = None
                except ZaoshuError as e:
                    self.review_error = str(e)
                self._review_stamp = rstamp
            frame, decisions = self._frame, self._decisions
        if frame.is_empty():
            return frame.with_columns(review=pl.lit(None, pl.Utf8), now=pl.col("status"))
        action = {k: d.action for k, d in decisions.items()}
        review = pl.col("key").replace_strict(action, default=None, return_dtype=pl.Utf8)
        return (
            frame.with_columns(review=review)
            .with_columns(
                now=pl.when((pl.col("review") == "accept") & (pl.col("status") == "rejected"))
                .then(pl.lit("kept"))
                .when((pl.col("review") == "reject") & (pl.col("status") == "kept"))
                .then(pl.lit("rejected"))
                .otherwise(pl.col("status"))
            )
            .with_columns(
                reason=pl.when((pl.col("now") == "rejected") & pl.col("reason").is_null())
                .then(pl.lit("review"))
                .otherwise(pl.col("reason"))
            )
        )

    def decisions(self) -> dict[str, Decision]:
        self.frame()
        return self._decisions

    def axes(self, frame: pl.DataFrame) -> list[str]:
        return [c[3:] for c in frame.columns if c.startswith("ax_")]

    def filtered(self, query: Query) -> pl.DataFrame:
        frame = self.frame()
        if frame.is_empty():
            return frame
        conds: list[pl.Expr] = []
        if query.status == "reviewed":
            conds.append(pl.col("review").is_not_null())
        elif query.status:
            conds.append(pl.col("now") == query.status)
        if query.reason:
            conds.append(pl.col("reason") == query.reason)
        if query.style:
            conds.append(pl.col("style") == query.style)
        for axis, value in query.axes.items():
            if f"ax_{axis}" in frame.columns:
                conds.append(pl.col(f"ax_{axis}") == value)
            else:
                conds.append(pl.lit(False))
        if query.score_min is not None:
            conds.append(pl.col("score") >= query.score_min)
        if query.score_max is not None:
            conds.append(pl.col("score") <= query.score_max)
        if query.q:
            needle = query.q.lower()
            conds.append(
                pl.col("hay").str.contains(needle, literal=True) | (pl.col("key") == query.q).fill_null(False)
            )
        return frame.filter(pl.all_horizontal(conds)) if conds else frame

    def page(self, query: Query) -> tuple[pl.DataFrame, int]:
        rows = self.filtered(query)
        return rows.slice((query.page - 1) * PAGE, PAGE), rows.height

    def choices(self) -> dict[str, list[str]]:
        """Values a filter can take: statuses, reasons, styles, each axis's values."""
        frame = self.frame()
        if frame.is_empty():
            return {}
        out = {
            "reason": sorted(frame["reason"].drop_nulls().unique().to_list()),
            "style": sorted(frame["style"].drop_nulls().unique().to_list()),
        }
        for axis in self.axes(frame):
            out[f"a_{axis}"] = sorted(frame[f"ax_{axis}"].drop_nulls().unique().to_list())
        return out

    def record(self, key: str) -> tuple[dict[str, Any], Record | None] | None:
        """(row, the record parsed from its line) for an id, or None if no row has it."""
        frame = self.frame()
        if frame.is_empty():
            return None
        hit = frame.filter(pl.col("key") == key)
        if hit.is_empty():
            return None
        row = hit.row(0, named=True)
        return row, self.read_line(row)

    def read_line(self, row: dict[str, Any]) -> Record | None:
        with open(self.files[row["file"]], "rb") as f:
            f.seek(row["offset"])
            raw = f.read(row["size"])
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def overview(self, recipe_values: dict[str, list[Any]] | None = None) -> dict[str, Any]:
        """Counts, reject reasons and the first-two-axes heatmap of kept records (after review)."""
        frame = self.frame()
        if frame.is_empty():
            return {"counts": {}, "reasons": [], "heatmap": None, "torn": 0}
        counts = dict(frame.group_by("now").len().iter_rows())
        reasons = (
            frame.filter(pl.col("now") == "rejected")
            .group_by("reason")
            .len()
            .sort("len", descending=True)
            .rows()
        )
        axes = self.axes(frame)
        order = {a: [str(v) for v in vs] for a, vs in (recipe_values or {}).items()}
        axes = [a for a in order if a in axes] + [a for a in axes if a not in order]
        heatmap = None
        if len(axes) >= 2:
            ra, ca = axes[0], axes[1]
            kept = frame.filter(pl.col("now") == "kept")
            cells = {
                (r, c): n for r, c, n in kept.group_by(f"ax_{ra}", f"ax_{ca}").len().iter_rows() if r and c
            }
            rows, cols = (
                _ordered(frame[f"ax_{a}"].drop_nulls().unique().to_list(), order.get(a, [])) for a in (ra, ca)
            )
            top = max(cells.values(), default=0)
            heatmap = {"row_axis": ra, "col_axis": ca, "rows": rows, "cols": cols, "cells": cells, "top": top}
        return {
            "counts": counts,
            "total": frame.height,
            "reasons": reasons,
            "heatmap": heatmap,
            "torn": int((frame["status"] == "torn").sum()),
            "reviewed": int(frame["review"].is_not_null().sum()),
        }


def _ordered(seen: list[str], declared: list[str]) -> list[str]:
    """The recipe's order of an axis's values, then values only the data has."""
    have = set(seen)
    return [v for v in declared if v in have] + sorted(have - set(declared))
