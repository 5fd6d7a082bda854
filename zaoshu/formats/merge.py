"""Merge many files (any known format, JSON arrays or JSONL, files, folders or globs) into one,
dropping duplicate records: same id, or the same conversation when the source has no id.

Seed 002 saved one JSON file per generation round and merged the folder by hand; this is that step,
with counts per file and an error that names the file and line of a bad row.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.files import check_writable, guard_outputs
from zaoshu.formats.convert import ArrayWriter, Written, array_output, atomic_output
from zaoshu.formats.engine import Job, discard, run, scratch_dir, select
from zaoshu.formats.io import Rows
from zaoshu.formats.registry import detect_rows, get_format

#: file types a folder or glob contributes
SUFFIXES = (".jsonl", ".json")


@dataclass(slots=True)
class FileCount:
    path: str
    fmt: str
    read: int = 0
    kept: int = 0

    @property
    def duplicates(self) -> int:
        return self.read - self.kept


@dataclass(slots=True)
class Merged:
    written: Written
    files: list[FileCount] = field(default_factory=list)

    @property
    def read(self) -> int:
        return sum(f.read for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)


def expand(inputs: list[str | Path]) -> list[Path]:
    """Files from paths, folders (their *.json / *.jsonl, recursively, sorted) and globs; each file once."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            inside = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
            if not inside:
                raise ZaoshuError("folder holds no .json or .jsonl files", path=p)
            found.extend(f for f in inside if not f.name.startswith("."))
        elif glob.has_magic(str(item)):
            matched = sorted(Path(m) for m in glob.glob(str(item), recursive=True) if Path(m).is_file())
            if not matched:
                raise ZaoshuError(f"no file matches the pattern {str(item)!r}")
            found.extend(matched)
        else:
            raise ZaoshuError("no such file or folder", path=p)
    unique: list[Path] = []
    seen: set[Path] = set()
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _format_of(path: Path, fmt: str | None) -> str:
    rows = Rows.peek(path)
    if not rows.head(1):
        return "empty"
    return fmt or detect_rows(rows)


def merge(
    inputs: list[str | Path], output: str | Path, *, to: str = "zaoshu", from_: str | None = None
) -> Merged:
    """Merge `inputs` into `output` (written as `to`); the first record with a given id wins."""
    get_format(to)
    files = expand(inputs)
    guard_outputs([output], [*inputs, *files])  # merging into an input would drop it and overwrite it
    check_writable([output])
    if not files:
        raise ZaoshuError("nothing to merge: no input files")
    formats = {f: _format_of(f, from_) for f in files}  # every file checked before anything is written
    # Records without an id are compared by content, also with the records that have one.
    by_content = any(fmt not in ("zaoshu", "empty") for fmt in formats.values())
    seen: set[str] = set()
    seen_content: dict[str, bool] = {}
    result = Merged(Written(Path(output), to, 0))
    with atomic_output(output) as fh, scratch_dir(output) as parts:
        writer = ArrayWriter(fh, array_output(output, to))
        for f in files:
            count = FileCount(str(f), formats[f])
            result.files.append(count)
            if count.fmt == "empty":
                continue
            job = Job(
                src=count.fmt,
                dst=to,
                mode="merge",
                array_out=writer.array,
                parts_dir=parts,
                content=by_content,
            )
            for chunk in run(f, job):
                count.read += chunk.rows
                result.written.lost.update(chunk.lost)
                keep = _new_rows(chunk.keys, chunk.content, by_content, seen, seen_content)
                count.kept += len(keep)
                if keep:
                    writer.emit(select(chunk, keep))
                else:
                    discard(chunk)
        if not any(c.read for c in result.files):
            raise RecordError("empty input: no records in any file", path=files[0])
        writer.close()
    result.written.count = sum(c.kept for c in result.files)
    result.written.read = result.read  # what could not be held was counted over every row read
    return result


def _new_rows(
    ids: list[str | None], hashes: list[str], by_content: bool, seen: set[str], seen_content: dict[str, bool]
) -> list[int]:
    """Indices of the rows not seen before.

    Two records are the same when they share an id, or when one of them has no id and their
    conversations are equal (in either order of the files). `seen_content` maps a conversation hash to
    whether a record without an id had it.
    """
    keep: list[int] = []
    if not by_content and None not in ids:  # the common case: every row has an id
        fresh = set(ids)
        if len(fresh) == len(ids) and seen.isdisjoint(fresh):  # no repeat at all: set operations only
            seen |= fresh
            return list(range(len(ids)))
        for i, key in enumerate(ids):
            if key not in seen:
                seen.add(key)  # type: ignore[arg-type]
                keep.append(i)
        return keep
    hashed = iter(hashes)
    for i, key in enumerate(ids):
        digest = next(hashed) if by_content or key is None else None
        if key is not None:
            duplicate = key in seen or (digest is not None and seen_content.get(digest, False))
        else:
            duplicate = digest in seen_content
        if not duplicate:
            keep.append(i)
            if key is not None:
                seen.add(key)
            if digest is not None:
                seen_content[digest] = seen_content.get(digest, False) or key is None
    return keep
