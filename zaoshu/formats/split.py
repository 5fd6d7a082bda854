"""Split a dataset into train and test with a seeded shuffle, optionally stratified by an axis.

A head/tail split puts whatever came last (one style, one generation round) in test. Here the split is a
shuffle from a seed (the same seed gives byte-identical files), and `stratify` keeps every value of an
axis (say style) in both parts when it has at least two records. Rows are checked and kept as they are
(their line ends made LF; a JSON array's items become lines), in memory: a million ~1 KB records hold
about a gigabyte.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.files import atomic_write, check_replaceable, check_writable, guard_outputs
from zaoshu.formats.convert import Output, Piece, records
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


def scan(rows: Rows, fmt: str, axis: str | None) -> Piece:
    """Each row checked as `fmt` and kept as a line, with its value of `axis` (as text) in `keys`."""
    piece = Piece()
    for position, line, _, record in records(rows, fmt, with_id=False, array_lines=True):
        piece.lines.append(line)  # type: ignore[arg-type]
        if axis:
            try:
                piece.keys.append(stratum(record, axis))
            except ShapeError as e:
                raise rows.error(position, str(e)) from None
    return piece


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
    guard_outputs([Path(out_dir) / "train.jsonl", Path(out_dir) / "test.jsonl"], [input])
    check_replaceable([Path(out_dir) / "train.jsonl", Path(out_dir) / "test.jsonl"])
    check_writable(dirs=[out_dir])
    fmt = from_ or detect_rows(Rows.peek(input))
    get_format(fmt)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ZaoshuError("output must be a folder (train.jsonl and test.jsonl go inside)", path=out_dir)
    result = Split(out_dir / "train.jsonl", out_dir / "test.jsonl", fmt)
    lines: list[bytes] = []
    values: list[str] = []
    for piece in pieces(input, functools.partial(scan, fmt=fmt, axis=stratify)):
        lines += piece.lines
        values += piece.keys
    n = len(lines)
    if n < 2:
        raise RecordError(f"need at least 2 records to split, found {n}", path=input)
    codes = None
    if stratify:  # the strata's names in sorted order, and each row's number among them
        names, codes = np.unique(np.array(values), return_inverse=True)
        names = names.tolist()
    train, tests = choose(n, test, seed, codes)
    if codes is not None:
        in_train = np.bincount(codes[train], minlength=len(names))
        in_test = np.bincount(codes[tests], minlength=len(names))
        result.strata = {name: (int(a), int(b)) for name, a, b in zip(names, in_train, in_test, strict=True)}
    for path, order in ((result.train, train), (result.test, tests)):
        with atomic_write(path) as f:
            out = Output(f, array=False)
            for start in range(0, len(order), 4096):
                out.write(list(map(lines.__getitem__, order[start : start + 4096].tolist())))
    result.n_train, result.n_test = len(train), len(tests)
    return result
