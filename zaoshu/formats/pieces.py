"""A function over a file's rows, piece by piece, in file order: the one place convert, merge and split
get a second core.

A big JSON Lines file is cut at line boundaries into pieces that two worker processes read, parse and turn
into output lines; the parent only writes what comes back. Parsing and writing JSON cost ~5 us a
~1 KB record, so one process alone stays under the 100k records/s a million-record dataset needs; two
processes pass it. A small file, or a file that is one JSON document, is one piece done in-process.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from zaoshu.errors import RecordError
from zaoshu.formats.io import Rows

T = TypeVar("T")
#: bytes a worker reads at a time
PIECE = 16 << 20
#: files smaller than this are done in-process (starting workers costs more than it saves)
PARALLEL_FROM = 8 << 20
PROCESSES = 2


def pieces(path: str | Path, work: Callable[[Rows], T]) -> Iterator[T]:
    """`work(rows)` for each piece of the file at `path`, in order. `work` must be picklable (a
    module-level function or a partial of one); a RecordError it raises names the file's own line."""
    path = str(path)
    rows = Rows(path)
    size = os.path.getsize(path)
    if rows.layout == "array" or size < PARALLEL_FROM:
        yield work(rows)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(PROCESSES) as pool:
        yield from pool.imap(functools.partial(_piece, work, path), _ranges(path, size))


def _piece(work: Callable[[Rows], T], path: str, span: tuple[int, int]) -> T:
    start, end = span
    with open(path, "rb") as f:
        f.seek(start)
        rows = Rows(path, f.read(end - start), layout="jsonl", offset=start)
    try:
        return work(rows)
    except RecordError as e:
        if e.line is None or start == 0:
            raise
        raise RecordError(e.message, path=e.path, line=e.line + _lines_before(path, start)) from None


def _ranges(path: str, size: int) -> list[tuple[int, int]]:
    """Byte ranges of about PIECE bytes, each ending at a line end."""
    cuts = [0]
    with open(path, "rb") as f:
        while cuts[-1] + PIECE < size:
            f.seek(cuts[-1] + PIECE)
            f.readline()
            if f.tell() >= size:
                break
            cuts.append(f.tell())
    cuts.append(size)
    return list(itertools.pairwise(cuts))


def _lines_before(path: str, offset: int) -> int:
    """How many lines the file has before `offset` (counted only for an error's line number)."""
    with open(path, "rb") as f:
        return sum(
            block.count(b"\n") for block in iter(lambda: f.read(min(offset - f.tell(), 16 << 20)), b"")
        )
