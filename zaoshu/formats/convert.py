"""Reading any format into records, writing records in any format, and converting file to file.

`read_any` / `write` are the in-memory API other stages use (the trainer writes XTuner's data file with
`write(records, path, "openai")`); `convert` streams a file through the chunk engine.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.files import check_writable, guard_outputs
from zaoshu.formats.base import RowError, dropped_fields
from zaoshu.formats.engine import Job, Out, emit, run, scratch_dir
from zaoshu.formats.io import Rows
from zaoshu.formats.registry import detect_rows, get_format
from zaoshu.records import Record


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
    """`.json` files get a JSON array (what seeds 001/002 and LLaMA-Factory use); everything else JSONL."""
    return fmt != "zaoshu" and Path(path).suffix.lower() == ".json"


@contextmanager
def atomic_output(path: str | Path) -> Iterator[IO[bytes]]:
    """A file that appears at `path` only when the block succeeds (a temp file renamed over it)."""
    path = Path(path)
    if path.is_dir():
        raise ZaoshuError("output is a folder; give a file name", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ArrayWriter:
    """Writes chunk outputs (each row ending in the separator) as JSONL or as one JSON array."""

    def __init__(self, f: IO[bytes], array: bool) -> None:
        self.f, self.array, self.started = f, array, False
        if array:
            f.write(b"[\n")

    def write(self, blob: bytes) -> None:
        self.emit(Out(blob=blob, size=len(blob)))

    def emit(self, out: Out) -> None:
        if not out.size:
            return
        if self.array and self.started:
            self.f.write(b",\n")
        emit(out, self.f, trim=2 if self.array else 0)  # an array drops the chunk's trailing ",\n"
        self.started = True

    def close(self) -> None:
        if self.array:
            self.f.write(b"\n]\n" if self.started else b"]\n")


def iter_any(path: str | Path, fmt: str | None = None) -> Iterator[Record]:
    """Records from a file in any known format (auto-detected unless `fmt`), ids from `content_id` if absent."""
    rows = Rows(path)
    name = fmt or detect_rows(rows)
    reader = get_format(name).read
    for position, row in rows:
        try:
            if not isinstance(row, dict):
                raise RowError(f"expected a JSON object, got {type(row).__name__}")
            yield reader(row, True)
        except RowError as e:
            line, where = rows.where(position)
            raise RecordError(
                (f"{where}: " if where else "") + f"{e} (reading as {name})", path=path, line=line
            ) from None


def read_any(path: str | Path, fmt: str | None = None) -> list[Record]:
    """All records of a file in any known format; an empty file is an error (it is never what was meant)."""
    records = list(iter_any(path, fmt))
    if not records:
        raise RecordError("empty input: no records found", path=path)
    return records


def write(records: Iterable[Record], path: str | Path, fmt: str) -> Written:
    """Write records as `fmt` atomically (`.json` -> JSON array, else JSONL); returns counts and losses."""
    target = get_format(fmt)
    writer, drops = target.write, dropped_fields(target.keeps)
    result = Written(Path(path), fmt, 0)
    with atomic_output(path) as f:
        out = ArrayWriter(f, array_output(path, fmt))
        sep = b",\n" if out.array else b"\n"
        buffer: list[bytes] = []
        for record in records:
            for name in drops:
                if record.get(name):
                    result.lost[name] += 1
            buffer.append(orjson.dumps(writer(record, result.lost)) + sep)
            result.count += 1
            if len(buffer) >= 4096:
                out.write(b"".join(buffer))
                buffer.clear()
        out.write(b"".join(buffer))
        out.close()
    return result


def convert(src: str | Path, dst: str | Path, to: str, from_: str | None = None) -> Written:
    """Convert a file to format `to` (source format auto-detected unless `from_`)."""
    guard_outputs([dst], [src])
    check_writable([dst])
    get_format(to)
    name = from_ or detect_rows(Rows.peek(src))
    get_format(name)
    result = Written(Path(dst), to, 0)
    with atomic_output(dst) as f, scratch_dir(dst) as parts:
        job = Job(src=name, dst=to, mode="convert", array_out=array_output(dst, to), parts_dir=parts)
        out = ArrayWriter(f, job.array_out)
        for chunk in run(src, job):
            out.emit(chunk)
            result.count += chunk.rows
            result.lost.update(chunk.lost)
        if result.count == 0:
            raise RecordError("empty input: no records found", path=src)
        out.close()
    return result
