"""Merge many files (any known format, JSON arrays or JSONL, files, folders or globs) into one,
dropping duplicate records: same id, or the same conversation when the source has no id.

Generation rounds often leave one file each; this merges such a folder, with counts per file and an error
that names the file and line of a bad row.
"""

from __future__ import annotations

import functools
import glob
from dataclasses import dataclass, field
from pathlib import Path

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.files import atomic_write, check_replaceable, check_writable, guard_outputs
from zaoshu.formats.convert import Output, Written, array_output, translate
from zaoshu.formats.io import Rows
from zaoshu.formats.pieces import pieces
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
    unique: dict[Path, Path] = {}
    for f in found:
        unique.setdefault(f.resolve(), f)  # the first mention of a file wins
    return list(unique.values())


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
    check_replaceable([output])
    check_writable([output])
    if not files:
        raise ZaoshuError("nothing to merge: no input files")
    formats = {f: _format_of(f, from_) for f in files}  # every file checked before anything is written
    # Records without an id are compared by content, also with the records that have one.
    by_content = any(fmt not in ("zaoshu", "empty") for fmt in formats.values())
    seen = Seen()
    result = Merged(Written(Path(output), to, 0))
    with atomic_write(output) as f:
        out = Output(f, array_output(output, to))
        for path in files:
            count = FileCount(str(path), formats[path])
            result.files.append(count)
            if count.fmt == "empty":
                continue
            work = functools.partial(
                translate, src=count.fmt, dst=to, with_id=True, keys=True, by_content=by_content
            )
            for piece in pieces(path, work):
                count.read += len(piece.ends)
                result.written.lost.update(piece.lost)
                keep = seen.new_rows(piece.keys, piece.hashes)
                count.kept += len(keep)
                out.write(piece.data if len(keep) == len(piece.ends) else piece.rows(keep), len(keep))
        if not any(c.read for c in result.files):
            raise RecordError("empty input: no records in any file", path=files[0])
        out.close()
    result.written.count = out.count
    result.written.read = result.read  # what could not be held was counted over every row read
    return result


class Seen:
    """The records merged so far. Two records are the same when they share an id, or when one of them
    has no id and their conversations are equal (in either order of the files)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        #: conversation hash -> whether a record without an id had it
        self.content: dict[str, bool] = {}

    def new_rows(self, keys: list[str | None], hashes: list[str | None]) -> list[int]:
        """Indices of the rows not seen before; set operations alone when every row has a new id."""
        if not any(hashes) and None not in keys:
            fresh = set(keys)
            if len(fresh) == len(keys) and self.ids.isdisjoint(fresh):
                self.ids |= fresh  # type: ignore[arg-type]
                return list(range(len(keys)))
        return [
            i for i, (key, digest) in enumerate(zip(keys, hashes, strict=True)) if self.first(key, digest)
        ]

    def first(self, key: str | None, digest: str | None) -> bool:
        """True (and remembered) when the record with this id and content hash was not seen before."""
        if key is not None:
            if key in self.ids or (digest is not None and self.content.get(digest, False)):
                return False
            self.ids.add(key)
        elif digest in self.content:
            return False
        if digest is not None:
            self.content[digest] = self.content.get(digest, False) or key is None
        return True
