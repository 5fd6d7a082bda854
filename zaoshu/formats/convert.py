"""Reading any format into records, writing records in any format, and converting file to file.

Every move is the same plain path: read a row, turn it into a record (the source format's `read`), turn
the record into a row (the target format's `write`), `orjson.dumps` it, and write it through one atomic
writer. `read_any` / `write` are the in-memory API other stages use; `convert` and `merge` stream a file
through `translate`, two processes at a time for big files (see `pieces`).
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from zaoshu.errors import RecordError
from zaoshu.files import atomic_write, check_replaceable, check_writable, guard_outputs
from zaoshu.formats.io import Rows
from zaoshu.formats.pieces import pieces
from zaoshu.formats.registry import FORMATS, detect_rows, get_format
from zaoshu.records import Record, ShapeError, content_id


@dataclass(slots=True)
class Written:
    """What a write produced: how many rows, and what the format could not hold (by record count)."""

    path: Path
    fmt: str
    count: int
    lost: Counter = field(default_factory=Counter)
    read: int | None = None  # set when `lost` was counted over more rows than were written (merge)

    def note(self) -> str | None:
        """One line that says what was lost, or None: printed once per command, never per row."""
        if not self.lost:
            return None
        of = f"{self.read} records read" if self.read is not None else f"{self.count} records"
        items = ", ".join(f"{what} ({n} of {of})" for what, n in self.lost.most_common())
        return f"the {self.fmt} format cannot hold everything; changed or dropped: {items}"


def array_output(path: str | Path, fmt: str) -> bool:
    """`.json` files get a JSON array (what XTuner's and LLaMA-Factory's examples use); everything else JSONL."""
    return fmt != "zaoshu" and Path(path).suffix.lower() == ".json"


class Output:
    """Rows written as JSON Lines, or as one JSON array for `.json`."""

    def __init__(self, f: IO[bytes], array: bool) -> None:
        self.f, self.array, self.count = f, array, 0
        if array:
            f.write(b"[\n")

    def write(self, data: bytes | bytearray, rows: int) -> None:
        """`rows` rows, each ending in a LF. In an array they are separated by ",\n": orjson writes no raw
        newline inside JSON text, so every LF is the end of a row."""
        if not rows:
            return
        if self.array:
            self.f.write(b",\n" if self.count else b"")
            data = data[:-1].replace(b"\n", b",\n")
        self.f.write(data)
        self.count += rows

    def close(self) -> None:
        if self.array:
            self.f.write(b"\n]\n" if self.count else b"]\n")


def records(
    rows: Rows, fmt: str, *, with_id: bool, text_ids: bool = False, array_lines: bool = False
) -> Iterator[tuple[int, bytes | None, Any, Record]]:
    """(position, line, the row's own id, record) for each row read as `fmt`; a bad row raises RecordError naming
    its file and line. The line is the row's own text without its line end (JSON Lines), or, with
    `array_lines`, the item of a JSON array as one line (else None). `text_ids`: an id, where a row has
    one, must be a string (merge compares them)."""
    reader = get_format(fmt).read
    for position, raw, row in rows:
        try:
            if type(row) is not dict:
                raise ShapeError(f"expected a JSON object, got {type(row).__name__}")
            key = row.get("id")
            if text_ids and key is not None and (type(key) is not str or not key):
                raise ShapeError("record id must be a non-empty string")
            line = raw.rstrip(b"\r\n") if raw is not None else None
            if line is None and array_lines:
                line = orjson.dumps(row)  # before `reader` reshapes the row
            yield position, line, key, reader(row, with_id)
        except ShapeError as e:
            raise rows.error(position, f"{e} (reading as {fmt})") from None


@dataclass(slots=True)
class Piece:
    """What `translate` made of some rows: their output lines one after the other in `data`, each ending
    in a LF (row i ends at `ends[i]`), and for merge each row's id and content hash.

    One growing buffer rather than a list of lines: the lines kept alive cost fresh memory and their own
    pickling between processes (measured: 2 to 3 us a ~1 KB record, a quarter of a convert's cost)."""

    data: bytearray = field(default_factory=bytearray)
    ends: list[int] = field(default_factory=list)
    keys: list[Any] = field(default_factory=list)
    hashes: list[str | None] = field(default_factory=list)
    lost: Counter = field(default_factory=Counter)

    def add(self, line: bytes) -> None:
        self.data += line
        self.data += b"\n"
        self.ends.append(len(self.data))

    def rows(self, keep: Iterable[int]) -> bytes:
        """The lines of the rows `keep` (indices, in order), one after the other."""
        view, ends = memoryview(self.data), self.ends
        return b"".join(view[ends[i - 1] if i else 0 : ends[i]] for i in keep)


def translate(
    rows: Rows, src: str, dst: str, *, with_id: bool, keys: bool = False, by_content: bool = False
) -> Piece:
    """Rows read as `src`, written as `dst` (an output line each); with `keys`, also what merge dedups by.

    A zaoshu row that keeps its format and has an id is copied as it is (its line end made LF), so a
    merge of records does not reorder their keys.
    """
    target = FORMATS[dst]
    copy = src == dst == "zaoshu"
    piece = Piece()
    for _, line, key, record in records(rows, src, with_id=with_id, text_ids=keys):
        # (a zaoshu line copied as it is loses nothing: the format keeps every field)
        piece.add(line if copy and key and line is not None else target.line(record, piece.lost))
        if keys:
            piece.keys.append(key)
            piece.hashes.append(content_id(record["messages"]) if by_content or key is None else None)
    return piece


def iter_any(path: str | Path, fmt: str | None = None) -> Iterator[Record]:
    """Records from a file in any known format (auto-detected unless `fmt`), ids from `content_id` if absent."""
    rows = Rows(path)
    for *_, record in records(rows, fmt or detect_rows(rows), with_id=True):
        yield record


def read_any(path: str | Path, fmt: str | None = None) -> list[Record]:
    """All records of a file in any known format; an empty file is an error (it is never what was meant)."""
    found = list(iter_any(path, fmt))
    if not found:
        raise RecordError("empty input: no records found", path=path)
    return found


def write(records: Iterable[Record], path: str | Path, fmt: str) -> Written:
    """Write records as `fmt` atomically (`.json` -> JSON array, else JSONL); returns counts and losses."""
    target = get_format(fmt)
    result = Written(Path(path), fmt, 0)
    with atomic_write(path) as f:
        out = Output(f, array_output(path, fmt))
        rows = iter(records)
        while lines := [target.line(record, result.lost) + b"\n" for record in itertools.islice(rows, 4096)]:
            out.write(b"".join(lines), len(lines))
        out.close()
        result.count = out.count
    return result


def convert(src: str | Path, dst: str | Path, to: str, from_: str | None = None) -> Written:
    """Convert a file to format `to` (source format auto-detected unless `from_`)."""
    guard_outputs([dst], [src])
    check_replaceable([dst])
    check_writable([dst])
    get_format(to)
    name = from_ or detect_rows(Rows.peek(src))
    get_format(name)
    work = functools.partial(translate, src=name, dst=to, with_id=to in ("zaoshu", "sharegpt"))
    result = Written(Path(dst), to, 0)
    with atomic_write(dst) as f:
        out = Output(f, array_output(dst, to))
        for piece in pieces(src, work):
            out.write(piece.data, len(piece.ends))
            result.lost.update(piece.lost)
        if not out.count:
            raise RecordError("empty input: no records found", path=src)
        out.close()
    result.count = out.count
    return result
