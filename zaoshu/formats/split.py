"""Split a dataset into train and test with a seeded shuffle, optionally stratified by an axis.

A head/tail split puts whatever came last (one style, one generation round) in test. Here the split is a
shuffle from a seed (the same seed gives byte-identical files), and `stratify` keeps every value of an
axis (say style) in both parts when it has at least two records. Rows are checked and kept as they are
(their line ends made LF; a JSON array's items become lines). The worker processes that check the rows
send back only where each row is in the file, and the rows are then copied from the file in their new
order: sending a gigabyte of rows between processes cost more than checking them.
"""

from __future__ import annotations

import functools
import mmap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.files import atomic_write, check_replaceable, check_writable, guard_outputs
from zaoshu.formats.convert import records
from zaoshu.formats.io import Rows
from zaoshu.formats.pieces import pieces
from zaoshu.formats.registry import detect_rows, get_format
from zaoshu.records import Record, ShapeError


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


@dataclass(slots=True)
class Found:
    """Where each checked row is: `length` bytes from `start` in the input file, or in `text` (the items
    of a JSON array, written out as lines); and its value of the stratify axis."""

    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    text: bytearray | None = None


def scan(rows: Rows, fmt: str, axis: str | None) -> Found:
    """Each row checked as `fmt`, where it is, and its value of `axis` (as text) in `keys`."""
    found = Found(text=bytearray() if rows.layout == "array" else None)
    for position, line, _, record in records(rows, fmt, with_id=False, array_lines=True):
        found.starts.append(rows.at if found.text is None else len(found.text))
        found.lengths.append(len(line))  # type: ignore[arg-type]
        if found.text is not None:
            found.text += line  # type: ignore[operator]
        if axis:
            try:
                found.keys.append(stratum(record, axis))
            except ShapeError as e:
                raise rows.error(position, str(e)) from None
    return found


def stratum(record: Record, axis: str) -> str:
    """The record's value of `axis` as text (JSON text unless it is a string): from its axes, else a
    top-level field of the row (formats without a place for it keep it in meta.extra)."""
    axes = record.get("axes") or {}
    if axis in axes:
        value = axes[axis]
    else:
        value = record.get(axis)
        if not isinstance(value, (str, int, float, bool)):
            value = ((record.get("meta") or {}).get("extra") or {}).get(axis)
        if not isinstance(value, (str, int, float, bool)):
            known = f"; its axes are {', '.join(axes)}" if axes else ""
            raise ShapeError(
                f"record has no axis {axis!r} (looked in axes.{axis} and a top-level {axis!r}){known}"
            )
    return value if type(value) is str else orjson.dumps(value).decode()


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
    out_dir = Path(out_dir)
    outputs = [out_dir / "train.jsonl", out_dir / "test.jsonl"]
    guard_outputs(outputs, [input])
    check_replaceable(outputs)
    check_writable(dirs=[out_dir])
    fmt = from_ or detect_rows(Rows.peek(input))
    get_format(fmt)
    if out_dir.exists() and not out_dir.is_dir():
        raise ZaoshuError("output must be a folder (train.jsonl and test.jsonl go inside)", path=out_dir)
    result = Split(*outputs, fmt)
    whole = Found()
    for found in pieces(input, functools.partial(scan, fmt=fmt, axis=stratify)):
        whole.starts += found.starts
        whole.lengths += found.lengths
        whole.keys += found.keys
        whole.text = found.text  # a JSON array is one piece
    n = len(whole.starts)
    if n < 2:
        raise RecordError(f"need at least 2 records to split, found {n}", path=input)
    codes = None
    if stratify:  # the strata's names in sorted order, and each row's number among them
        names, codes = np.unique(np.array(whole.keys), return_inverse=True)
        names = names.tolist()
    train, tests = choose(n, test, seed, codes)
    if codes is not None:
        in_train = np.bincount(codes[train], minlength=len(names))
        in_test = np.bincount(codes[tests], minlength=len(names))
        result.strata = {name: (int(a), int(b)) for name, a, b in zip(names, in_train, in_test, strict=True)}
    starts, lengths = np.array(whole.starts), np.array(whole.lengths)
    with open(input, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        text = mapped if whole.text is None else whole.text
        for path, order in ((result.train, train), (result.test, tests)):
            with atomic_write(path) as out:
                for chunk in np.array_split(order, range(4096, len(order), 4096)):
                    at = zip(starts[chunk].tolist(), lengths[chunk].tolist(), strict=True)
                    out.write(b"\n".join([text[start : start + length] for start, length in at]) + b"\n")
    result.n_train, result.n_test = len(train), len(tests)
    return result
