"""Split a dataset into train and test with a seeded shuffle, optionally stratified by an axis.

Seed 000 split head/tail 70/30, so the test part was whatever came last (one style, one round). Here
the split is a shuffle from a seed (the same seed gives byte-identical files), and `stratify` keeps
every value of an axis (say style) in both parts when it has at least two records. Rows are kept as
they are: the worker processes check each row and note where it is; the parent only shuffles offsets.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.files import check_writable, guard_outputs
from zaoshu.formats.convert import atomic_output
from zaoshu.formats.engine import Job, run, workers, writev
from zaoshu.formats.io import Rows
from zaoshu.formats.registry import detect_rows, get_format


@dataclass(slots=True)
class Split:
    train: Path
    test: Path
    fmt: str
    n_train: int = 0
    n_test: int = 0
    #: axis value -> (train, test), when stratified
    strata: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def single(self) -> list[str]:
        """Strata with one record: they can only be in train."""
        return [k for k, (a, b) in self.strata.items() if a + b == 1]


def _test_count(n: int, test: float) -> int:
    """How many of n rows go to test: the rounded share, but at least one on each side when n >= 2."""
    if n < 2:
        return 0
    return min(max(round(n * test), 1), n - 1)


def strata(chunks: list[tuple[array, list[str]]]) -> tuple[np.ndarray, list[str]]:
    """(code of each row's stratum, stratum names) from each chunk's local codes and values; the codes
    number the names in sorted order."""
    names = sorted({name for _, local in chunks for name in local})
    index = {name: i for i, name in enumerate(names)}
    parts = [
        np.array([index[name] for name in local], dtype=np.int64)[np.frombuffer(codes, dtype=np.uint32)]
        for codes, local in chunks
        if len(codes)
    ]
    return (np.concatenate(parts) if parts else np.empty(0, np.int64)), names


def choose(n: int, test: float, seed: int, codes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), each in shuffled order; the same seed gives the same choice.

    Strata (`codes`, numbered in sorted order of their value) are shuffled one after the other with
    one seeded generator, so the result depends only on the rows, the seed and the fraction.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    if codes is None:
        order = rng.permutation(n)
        k = _test_count(n, test)
        return order[k:], order[:k]
    by_code = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[by_code], np.arange(int(codes.max()) + 2))
    train: list[np.ndarray] = []
    tests: list[np.ndarray] = []
    for code in range(len(bounds) - 1):
        members = rng.permutation(by_code[bounds[code] : bounds[code + 1]])
        k = _test_count(len(members), test)
        tests.append(members[:k])
        train.append(members[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(tests))


def split(
    input: str | Path,
    out_dir: str | Path,
    *,
    test: float = 0.1,
    seed: int = 0,
    stratify: str | None = None,
    from_: str | None = None,
) -> Split:
    """Write `out_dir/train.jsonl` and `out_dir/test.jsonl`; rows keep the input's format and bytes."""
    if not 0 < test < 1:
        raise ZaoshuError(f"--test must be a fraction between 0 and 1, got {test}")
    guard_outputs([Path(out_dir) / "train.jsonl", Path(out_dir) / "test.jsonl"], [input])
    check_writable(dirs=[out_dir])
    rows = Rows.peek(input)
    fmt = from_ or detect_rows(rows)
    get_format(fmt)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ZaoshuError("output must be a folder (train.jsonl and test.jsonl go inside)", path=out_dir)
    result = Split(out_dir / "train.jsonl", out_dir / "test.jsonl", fmt)
    job = Job(src=fmt, mode="scan", axis=stratify)
    spans = array("Q")
    chunks: list[tuple[array, list[str]]] = []
    for chunk in run(input, job):
        spans.extend(chunk.spans)
        chunks.append((chunk.codes, chunk.keys))
    n = len(spans) // 2
    if n < 2:
        raise RecordError(f"need at least 2 records to split, found {n}", path=input)
    codes, names = strata(chunks) if stratify else (None, [])
    train, tests = choose(n, test, seed, codes)
    if codes is not None:
        in_train = np.bincount(codes[train], minlength=len(names))
        in_test = np.bincount(codes[tests], minlength=len(names))
        result.strata = {name: (int(a), int(b)) for name, a, b in zip(names, in_train, in_test, strict=True)}
    _write(input, spans, rows.layout == "array", [(result.train, train), (result.test, tests)])
    result.n_train, result.n_test = len(train), len(tests)
    return result


def _write(input: str | Path, spans: array, is_array: bool, parts: list[tuple[Path, np.ndarray]]) -> None:
    if is_array:
        # A JSON array has no lines to copy: each item becomes one JSON line of the same format.
        items = [orjson.dumps(row) for _, row in Rows(input)]
        for path, order in parts:
            with atomic_output(path) as f:
                f.writelines(items[i] + b"\n" for i in order.tolist())
        return
    size = os.path.getsize(input)
    table = np.frombuffer(spans, dtype=np.uint64).reshape(-1, 2).astype(np.int64)
    starts, nexts = table[:, 0], table[:, 1]
    with open(input, "rb") as src:
        mm = mmap.mmap(src.fileno(), size, access=mmap.ACCESS_READ)
    try:
        # Rows are written with LF ends: a row that has one is copied with it; a CRLF row, or a last
        # row without a line end, is copied without its end and gets a LF of its own.
        data = np.frombuffer(mm, dtype=np.uint8)
        lf = data[nexts - 1] == 10
        ends = nexts - lf
        cr = data[ends - 1] == 13
        ends -= cr
        plain = lf & ~cr
        del data  # the mmap cannot close while a view of it lives
        view = memoryview(mm)
        try:
            for path, order in parts:
                with atomic_output(path) as f:
                    _copy_rows(f.fileno(), view, starts[order], ends[order], plain[order])
        finally:
            view.release()
    finally:
        with contextlib.suppress(BufferError):  # a failed write's traceback still holds row views
            mm.close()


#: rows per writev call (at most two buffers a row: IOV_MAX is 1024 on Linux)
_BLOCK = 512


#: rows a thread writes at least (fewer rows are written by one thread)
_PER_THREAD = 1 << 16


def _copy_rows(fd: int, view: memoryview, starts: np.ndarray, ends: np.ndarray, plain: np.ndarray) -> None:
    """Write the rows view[start:end] + LF, in order, with writev: the kernel copies straight from the
    mapped input (a bytes object per row and a joined block cost three times as much).

    Big outputs are written by one thread per core, each its share of the rows at its own offset
    (pwritev): the copying happens in the kernel without the GIL, and it is the one part of a split
    that no worker process can take over.
    """
    n = len(starts)
    threads = min(workers(), n // _PER_THREAD) if hasattr(os, "pwritev") else 1
    if threads <= 1:
        _copy_part(fd, view, starts, ends, plain, None)
        return
    at = np.concatenate(([0], np.cumsum(ends - starts + 1)))  # where each row goes in the file
    cuts = [n * i // threads // _BLOCK * _BLOCK for i in range(threads)] + [n]
    with ThreadPoolExecutor(threads) as pool:
        done = [
            pool.submit(_copy_part, fd, view, starts[a:b], ends[a:b], plain[a:b], int(at[a]))
            for a, b in itertools.pairwise(cuts)
        ]
        for future in done:
            future.result()


def _copy_part(
    fd: int, view: memoryview, starts: np.ndarray, ends: np.ndarray, plain: np.ndarray, at: int | None
) -> None:
    """`_copy_rows` for some rows: at file offset `at`, or where the file is (None)."""
    for block in range(0, len(starts), _BLOCK):
        s = starts[block : block + _BLOCK]
        e = ends[block : block + _BLOCK]
        if plain[block : block + _BLOCK].all():  # each row's LF is the byte after it
            buffers = [view[a:b] for a, b in zip(s.tolist(), (e + 1).tolist(), strict=True)]
        else:
            buffers = []
            for a, b in zip(s.tolist(), e.tolist(), strict=True):
                buffers.append(view[a:b])
                buffers.append(b"\n")
        total = int((e - s).sum()) + len(s)
        if at is None:
            writev(fd, buffers, total)
            continue
        done = os.pwritev(fd, buffers, at)
        if done < total:  # a short write (a full disk, a signal): the rest the plain way
            rest = memoryview(b"".join(buffers))[done:]
            while rest:
                wrote = os.pwrite(fd, rest, at + done)
                rest, done = rest[wrote:], done + wrote
        at += total
