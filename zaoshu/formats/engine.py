"""The chunk engine behind convert, merge and split: a JSON Lines file cut at line boundaries into
chunks that worker processes parse with orjson, in order, so a million records take seconds.

One function (`process`) turns rows into output for every mode, in a worker or in-process (small
files, JSON arrays); the parent only stitches results together, adds line numbers to errors and sums
the loss tallies. Modes:
- convert: each row read as `src` and written as `dst` (bytes out);
- merge:   the same, plus each record's id for the parent's dedup;
- scan:    rows checked, kept as they are (file offsets out), plus an axis value for stratified split.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from zaoshu.errors import RecordError
from zaoshu.formats.base import RowError, check_messages, note_dropped_fields
from zaoshu.formats.io import BOM, Rows, json_error
from zaoshu.formats.registry import FORMATS
from zaoshu.records import content_id

Mode = Literal["convert", "merge", "scan"]
#: files smaller than this are done in-process (starting workers costs more than it saves)
PARALLEL_FROM = 8 << 20
CHUNK = 16 << 20


@dataclass(frozen=True, slots=True)
class Job:
    src: str
    dst: str | None = None
    mode: Mode = "convert"
    axis: str | None = None
    array_out: bool = False


@dataclass(slots=True)
class Out:
    """What one chunk gave: output bytes (convert/merge) or row spans in the file (scan)."""

    blob: bytes = b""
    ends: array = field(default_factory=lambda: array("Q"))  # merge: end of each row in blob
    spans: array = field(default_factory=lambda: array("Q"))  # scan: start, end of each row in the file
    keys: list[Any] = field(default_factory=list)  # merge: ids; scan: axis values
    rows: int = 0
    lost: Counter = field(default_factory=Counter)
    newlines: int = 0
    error: tuple[int, str] | None = None  # (position in the chunk, message)


def _axis_value(row: dict[str, Any], record: dict[str, Any], axis: str) -> Any:
    axes = record.get("axes") or {}
    if axis in axes:
        return axes[axis]
    if axis in row and isinstance(row[axis], (str, int, float, bool)):
        return row[axis]
    raise RowError(f"record has no axis {axis!r} (looked in axes.{axis} and a top-level {axis!r})")


def process(items: Iterable[tuple[int, Any, int]], job: Job, src_path: str) -> Out:
    """Read, check and write rows; `items` are (position, raw bytes or parsed row, file offset)."""
    out = Out()
    reader = FORMATS[job.src].read
    writer = FORMATS[job.dst].write if job.dst else None
    with_id = job.mode == "merge" or job.dst in ("zaoshu", "sharegpt")
    same = job.src == job.dst == "zaoshu"
    fast_openai = job.src == "zaoshu" and job.dst == "openai"
    loads, dumps = orjson.loads, orjson.dumps
    parts: list[bytes] = []
    sep = b",\n" if job.array_out else b"\n"
    size = 0
    position = 0
    try:
        for position, raw, offset in items:
            if isinstance(raw, bytes):
                try:
                    row = loads(raw)
                except orjson.JSONDecodeError as e:
                    out.error = (position, str(json_error(raw, e, None, None)))  # type: ignore[arg-type]
                    return out
            else:
                row = raw
            if not isinstance(row, dict):
                raise RowError(f"expected a JSON object, got {type(row).__name__}")
            if job.mode == "scan":
                record = reader(row, False)
                if job.axis:
                    out.keys.append(_axis_value(row, record, job.axis))
                out.spans.append(offset)
                out.spans.append(offset + len(raw))
                out.rows += 1
                continue
            if same and row.get("id") and isinstance(raw, bytes):
                check_messages(row.get("messages"))
                line = raw.rstrip(b"\r")
                key = row["id"]
            elif fast_openai:
                check_messages(row.get("messages"))
                note_dropped_fields(row, out.lost)
                line = dumps({"messages": row["messages"]})
                key = row.get("id")
            else:
                record = reader(row, with_id)
                key = record.get("id")
                line = dumps(writer(record, out.lost))  # type: ignore[misc]
            if job.mode == "merge":
                if not key:
                    key = content_id(row["messages"])
                elif not isinstance(key, str):
                    raise RowError("record id must be a string")
                out.keys.append(key)
            parts.append(line)
            size += len(line) + len(sep)
            out.ends.append(size)
            out.rows += 1
    except RowError as e:
        out.error = (position, str(e))
        return out
    if parts:
        out.blob = sep.join(parts) + sep
    return out


def _lines(data: bytes, base: int) -> Iterator[tuple[int, bytes, int]]:
    offset = base
    for number, raw in enumerate(data.split(b"\n"), 1):
        if raw and not raw.isspace():
            yield number, raw, offset
        offset += len(raw) + 1


def _run_chunk(args: tuple[str, int, int, Job]) -> Out:
    path, start, end, job = args
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    base = start
    if start == 0 and data.startswith(BOM):
        data, base = data[3:], 3
    out = process(_lines(data, base), job, path)
    out.newlines = data.count(b"\n")
    return out


def _bounds(path: str, size: int, chunk: int) -> list[tuple[int, int]]:
    cuts = [0]
    with open(path, "rb") as f:
        while cuts[-1] + chunk < size:
            f.seek(cuts[-1] + chunk)
            f.readline()
            pos = f.tell()
            if pos >= size:
                break
            cuts.append(pos)
    cuts.append(size)
    return list(itertools.pairwise(cuts))


def workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def run(path: str | Path, job: Job, *, parallel: bool | None = None) -> Iterator[Out]:
    """The results of `job` over a file, chunk by chunk in file order; raises RecordError at a bad row."""
    path = str(path)
    rows = Rows.peek(path, 1 << 16)
    if rows.layout == "array":
        rows = Rows(path)
        items = ((i, row, -1) for i, row in enumerate(rows))
        out = process(items, job, path)
        if out.error:
            line, where = rows.where(out.error[0])
            raise RecordError((f"{where}: " if where else "") + out.error[1], path=path, line=line)
        yield out
        return
    size = os.path.getsize(path)
    chunks = [(path, s, e, job) for s, e in _bounds(path, size, CHUNK)]
    use_pool = (size >= PARALLEL_FROM and workers() > 1) if parallel is None else parallel
    lines_before = 0
    if not use_pool:
        results: Iterable[Out] = map(_run_chunk, chunks)
        pool = None
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(workers())
        results = pool.imap(_run_chunk, chunks)
    try:
        for out in results:
            if out.error:
                raise RecordError(out.error[1], path=path, line=lines_before + out.error[0])
            lines_before += out.newlines
            yield out
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
