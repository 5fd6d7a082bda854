"""Reading records into columns and writing the kept and rejected records back out.

Records are not held in memory: the first pass keeps only the columns cleaning looks at (id, axes,
assistant text, finish_reason), the second pass streams the input again and writes each line as it is
(kept, untouched), rewritten (kept, normalized text + `meta.clean`) or with its `reject`.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.records import ROLES, check_record, content_id, dumps, parse_line

CHUNK = 100_000
#: rows per parsed frame: small enough that preparing the last one (after the last line) is short.
READ_CHUNK = 25_000


def expand_inputs(inputs: list[Path], *, exclude: set[Path]) -> list[Path]:
    """Files as given; folders become their `*.jsonl` files in sorted order (outputs left out)."""
    files: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.glob("*.jsonl") if p.resolve() not in exclude)
            if not found:
                raise ZaoshuError("folder has no *.jsonl files", path=item)
            files.extend(found)
        elif item.is_file():
            if item.resolve() in exclude:
                raise ZaoshuError("input is also an output of this run; choose another -o", path=item)
            files.append(item)
        else:
            raise ZaoshuError("no such file or folder", path=item)
    return files


_ROLES = frozenset(ROLES)
_EMPTY: dict[str, Any] = {}


PARALLEL_MIN_BYTES = 32 << 20


def _scan(fi: int, path: Path, start: int, end: int | None, skip_bad_lines: bool) -> dict[str, Any]:
    """All chunks of `_chunks` in one dict (what a worker process sends back)."""
    chunks = list(_chunks(fi, path, start, end, skip_bad_lines))
    return {"chunks": chunks, "lines": chunks[-1]["lines"] if chunks else 0}


def _chunks(
    fi: int, path: Path, start: int, end: int | None, skip_bad_lines: bool
) -> Iterator[dict[str, Any]]:
    """Parse the lines of `path` that start in [start, end) into plain Python lists, READ_CHUNK rows at a
    time (memory stays flat); `lines` = physical lines seen so far, to number lines globally."""
    f_line: list[int] = []
    f_id: list[str | None] = []
    f_finish: list[Any] = []
    f_raw: list[str] = []
    f_bad: list[str | None] = []
    axes_rows: list[dict[str, Any]] = []
    loads = orjson.loads
    roles, empty = _ROLES, _EMPTY
    number = 0
    with open(path, "rb") as handle:
        handle.seek(start)
        lines: Iterator[bytes] = handle if end is None else _until(handle, end - start)
        for number, raw in enumerate(lines, 1):
            if raw == b"\n" or raw.isspace():
                continue
            bad = None
            got = None
            try:  # the shape `records.check_record` asks for, inline: this runs once per input line
                record = loads(raw)
                text = None
                for m in record["messages"]:
                    role = m["role"]
                    if role not in roles or m["content"].__class__ is not str:
                        raise ValueError
                    if role == "assistant":
                        text = m["content"]
                axes = record.get("axes") or empty
                meta = record.get("meta")
                if text is not None and axes.__class__ is dict:
                    got = text, axes, meta.get("finish_reason") if meta.__class__ is dict else None
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                got = None
            if got is None:
                try:  # the precise message: not UTF-8, not JSON, which key is wrong
                    check_record(parse_line(raw, path=path, line=number), path=path, line=number)
                    raise RecordError("'axes' must be an object", path=path, line=number)
                except RecordError as e:
                    if not skip_bad_lines:
                        raise
                    bad = str(e)
                text, axes, finish, rid = "", _EMPTY, None, None
            else:
                text, axes, finish = got
                rid = record.get("id") or content_id(record["messages"])
            f_line.append(number)
            f_id.append(rid)
            f_finish.append(finish)
            f_raw.append(text)
            f_bad.append(bad)
            axes_rows.append(axes)
            if len(axes_rows) >= READ_CHUNK:
                yield _pack(f_line, f_id, f_finish, f_raw, f_bad, axes_rows, number)
                f_line, f_id, f_finish, f_raw, f_bad, axes_rows = [], [], [], [], [], []
    yield _pack(f_line, f_id, f_finish, f_raw, f_bad, axes_rows, number)


def _until(handle: Any, size: int) -> Iterator[bytes]:
    """The lines of an open file that start within the next `size` bytes."""
    pos = 0
    for raw in handle:
        if pos >= size:
            return
        pos += len(raw)
        yield raw


def _pack(*columns: Any) -> dict[str, Any]:
    f_line, f_id, f_finish, f_raw, f_bad, axes_rows, number = columns
    names = sorted({k for a in axes_rows for k in a})
    axes = {n: _strings([a.get(n) for a in axes_rows]) for n in names}
    return {"line": f_line, "id": f_id, "finish_reason": _strings(f_finish), "raw": f_raw, "bad": f_bad,
            "axes": axes, "lines": number}  # fmt: skip


def _strings(column: list[Any]) -> list[str | None]:
    """Values as str (None stays None); one set comprehension when they already are (the usual case)."""
    if {v.__class__ for v in column} <= {str, type(None)}:
        return column
    return [None if v is None else v if v.__class__ is str else str(v) for v in column]


def _scan_job(job: tuple[int, Path, int, int | None, bool]) -> dict[str, Any]:
    """In a worker: errors come back as data (the parent reads the file again to raise the first one)."""
    try:
        return _scan(*job)
    except RecordError as e:
        return {"error": e.line}


def _ranges(path: Path, parts: int) -> list[tuple[int, int | None]]:
    """`parts` byte ranges of a file, each starting at a line start."""
    size = path.stat().st_size
    if parts <= 1 or size < PARALLEL_MIN_BYTES:
        return [(0, None)]
    cuts = [0]
    with open(path, "rb") as handle:
        for k in range(1, parts):
            handle.seek(size * k // parts)
            handle.readline()
            cuts.append(handle.tell())
    cuts = sorted(set(cuts))
    return [(a, b) for a, b in zip(cuts, [*cuts[1:], None], strict=True)]


def read_columns(files: list[Path], *, skip_bad_lines: bool = False, workers: int = 1) -> pl.DataFrame:
    """One row per non-blank input line: file, line, id, style, finish_reason, raw text, ax_<axis>, bad."""
    frames = list(iter_frames(files, skip_bad_lines=skip_bad_lines, workers=workers))
    if not frames:
        return empty_frame()
    return pl.concat(frames, how="diagonal_relaxed")


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=_SCHEMA | {"id": pl.Utf8, "raw": pl.Utf8})


def iter_frames(
    files: list[Path], *, skip_bad_lines: bool = False, workers: int = 1
) -> Iterator[pl.DataFrame]:
    """`read_columns` as frames of up to READ_CHUNK rows, in input order (their axis columns may differ).

    Large files are parsed in `workers` processes over byte ranges (JSON parsing is the cost here);
    a bad line found there is reported by reading that file again in order, so the error is the first one.
    Parsed in this process, each frame is yielded as soon as its lines are parsed, so a caller can work
    on it (polars, numpy: no GIL) while the next lines are parsed.
    """
    jobs = [
        (fi, path, a, b, skip_bad_lines) for fi, path in enumerate(files) for a, b in _ranges(path, workers)
    ]
    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("fork")  # children run orjson only, never polars
        with ctx.Pool(min(workers, len(jobs))) as pool:
            parts = pool.map(_scan_job, jobs, chunksize=1)
    else:
        parts = [_LazyParts(job) for job in jobs]

    offset: dict[int, int] = {}
    for job, part in zip(jobs, parts, strict=True):
        fi, path = job[0], job[1]
        if "error" in part:
            _scan(fi, path, 0, None, skip_bad_lines)  # raises at the first bad line of the file
        base = offset.get(fi, 0)
        seen = 0
        for chunk in part["chunks"]:
            seen = chunk["lines"]
            if chunk["line"]:
                yield _frame(fi, chunk, base)
        offset[fi] = base + seen


class _LazyParts(dict):
    """A job run in this process: chunks become frames one at a time instead of all lists at once."""

    def __init__(self, job: tuple[int, Path, int, int | None, bool]) -> None:
        super().__init__(chunks=_chunks(*job))


def _frame(fi: int, chunk: dict[str, Any], base: int) -> pl.DataFrame:
    lines = np.asarray(chunk["line"], dtype=np.int64) + base
    data: dict[str, Any] = {
        "file": [fi] * len(lines),
        "line": lines,
        "id": chunk["id"],
        "finish_reason": chunk["finish_reason"],
        "raw": chunk["raw"],
        "bad": chunk["bad"],
    }
    for name, column in chunk["axes"].items():
        data["style" if name == "style" else f"ax_{name}"] = column
    if "style" not in data:
        data["style"] = [None] * len(lines)
    return pl.DataFrame(data, schema_overrides=_SCHEMA)


_SCHEMA = {
    "file": pl.UInt16,
    "line": pl.UInt32,
    "style": pl.Utf8,
    "finish_reason": pl.Utf8,
    "bad": pl.Utf8,
}


def _set_assistant(record: dict[str, Any], text: str) -> str:
    """Replace the last assistant turn's content; returns what it was."""
    for message in reversed(record["messages"]):
        if message.get("role") == "assistant":
            original, message["content"] = message["content"], text
            return original
    return ""


class Outputs:
    """The kept and rejects files, written to temp files and renamed into place only on success."""

    def __init__(self, out: Path, rejects: Path) -> None:
        self.targets = [Path(out), Path(rejects)]
        self.tmps = [p.with_name(p.name + ".tmp") for p in self.targets]
        for p in self.targets:
            p.parent.mkdir(parents=True, exist_ok=True)
        self.kept = open(self.tmps[0], "wb")  # noqa: SIM115 - closed in commit/abort
        self.rejected = open(self.tmps[1], "wb")  # noqa: SIM115

    def commit(self) -> None:
        self.kept.close()
        self.rejected.close()
        for tmp, target in zip(self.tmps, self.targets, strict=False):
            os.replace(tmp, target)

    def abort(self) -> None:
        self.kept.close()
        self.rejected.close()
        for tmp in self.tmps:
            tmp.unlink(missing_ok=True)


def write_outputs(
    files: list[Path], decisions: pl.DataFrame, outputs: Outputs, *, stop: threading.Event | None = None
) -> None:
    """Second pass: stream the inputs again and route each line by its row of `decisions`.

    `decisions` has one row per input row, in input order: status (0 keep as is, 1 keep rewritten,
    2 reject), text, changes, raw, reason, detail, duplicate_of, file, line. A kept line that was not
    normalized is written byte for byte; a rejected one is its record with the `reject` object (built
    for all of them at once in polars, `_reject_heads`) spliced in front; only normalized and bad lines
    become Python objects. Lines are written in batches. A set `stop` ends it within 8192 lines (it runs
    in a thread beside the report; an error or Ctrl-C there stops it).
    """
    stop = stop or threading.Event()
    status_arr = decisions["status"].to_numpy()
    touched = np.flatnonzero(status_arr != 0)
    status = status_arr.astype(np.uint8).tobytes()  # bytes: indexing gives a plain int, fast per line
    names = [str(p) for p in files]
    heads = (
        h
        for lo in range(0, len(touched), CHUNK)
        for h in _reject_heads(decisions, touched[lo : lo + CHUNK], names)
    )
    routed = (decisions["status"] == 1) | (decisions["reason"] == "bad_line").fill_null(False)
    slow = routed.arg_true().to_numpy()
    cols = ["text", "changes", "raw", "reason", "detail", "duplicate_of"]
    details = _rows(decisions, slow, cols)
    kept_buf: list[bytes] = []
    rej_buf: list[bytes] = []
    row = -1
    k = -1
    for path in files:
        name = str(path)
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if raw.isspace():
                    continue
                row += 1
                if status[row] == 0:
                    kept_buf.append(raw if raw.endswith(b"\n") else raw + b"\n")
                    if len(kept_buf) >= 8192:
                        if stop.is_set():
                            raise ZaoshuError("writing stopped", path=path)
                        outputs.kept.write(b"".join(kept_buf))
                        kept_buf.clear()
                    continue
                k += 1
                head = next(heads)
                body = raw.strip()
                if head is not None and b'"reject"' not in body:
                    rej_buf.append(head + (b"," if body != b"{}" else b"") + body[1:] + b"\n")
                else:
                    got = (
                        next(details) if head is None else _rows(decisions, np.array([row]), cols).__next__()
                    )
                    _route(raw, name, number, status[row], got, kept_buf, rej_buf)
                if not k & 8191:
                    if stop.is_set():
                        raise ZaoshuError("writing stopped", path=path)
                    outputs.kept.write(b"".join(kept_buf))
                    kept_buf.clear()
                    outputs.rejected.write(b"".join(rej_buf))
                    rej_buf.clear()
    outputs.kept.write(b"".join(kept_buf))
    outputs.rejected.write(b"".join(rej_buf))


def _reject_heads(decisions: pl.DataFrame, touched: np.ndarray, names: list[str]) -> list[bytes | None]:
    """For each touched row: `{"reject":{...}` (the start of its rejects line), or None where `_route`
    decides (a kept normalized row, a bad line). The same keys in the same order as `_route` writes,
    strings JSON-encoded by polars (escapes as orjson's)."""

    def pair(expr: pl.Expr) -> pl.Expr:  # '"name":value'
        return pl.struct(expr).struct.json_encode().str.slice(1).str.strip_suffix("}")

    part = decisions[touched]
    if "file" not in part.columns:
        return [None] * len(touched)
    head = part.select(
        pl.when((pl.col("status") == 2) & (pl.col("reason") != "bad_line")).then(
            pl.concat_str(
                pl.lit('{"reject":{'),
                pair(pl.col("reason")),
                pl.lit(","),
                pair(pl.col("detail")),
                pl.when(pl.col("duplicate_of").is_not_null()).then(
                    pl.lit(",") + pair(pl.col("duplicate_of"))
                ),
                pl.when(pl.col("changes").list.len() > 0).then(
                    pl.lit(",") + pair(pl.col("text").alias("normalized"))
                ),
                pl.lit(","),
                pair(
                    pl.col("file").replace_strict(dict(enumerate(names)), return_dtype=pl.Utf8).alias("file")
                ),
                pl.lit(',"line":'),
                pl.col("line").cast(pl.Utf8),
                pl.lit("}"),
                ignore_nulls=True,
            )
        )
    ).to_series()
    return head.cast(pl.Binary).to_list()


def _route(
    raw: bytes,
    path: str,
    number: int,
    status: int,
    row: tuple[Any, ...],
    kept: list[bytes],
    rejected: list[bytes],
) -> None:
    text, changes, original, reason, detail, dup = row
    if reason == "bad_line":
        info = {"reason": reason, "detail": detail, "file": path, "line": number}
        rejected.append(dumps({"reject": info, "raw": raw.decode("utf-8", errors="replace").rstrip("\r\n")}))
        return
    if status == 1:
        record = orjson.loads(raw)
        original = _set_assistant(record, text)
        record.setdefault("meta", {})["clean"] = {"changes": changes, "original": original}
        kept.append(dumps(record))
        return
    info = {"reason": reason, "detail": detail}
    if dup is not None:
        info["duplicate_of"] = dup
    if changes:
        info["normalized"] = text
    info["file"] = path
    info["line"] = number
    body = raw.strip()
    if b'"reject"' in body:  # a rejects file cleaned again: replace the old reject properly
        record = orjson.loads(body)
        record["reject"] = info
        rejected.append(dumps(record))
        return
    # The record whole, with `reject` spliced in as its first key (no re-parse of the record).
    rejected.append(b'{"reject":' + orjson.dumps(info) + (b"," if body != b"{}" else b"") + body[1:] + b"\n")


def _rows(frame: pl.DataFrame, rows: np.ndarray, cols: list[str]) -> Iterator[tuple[Any, ...]]:
    for lo in range(0, len(rows), CHUNK):
        part = frame[rows[lo : lo + CHUNK]].select(cols)
        yield from zip(*(part[c].to_list() for c in cols), strict=True)
