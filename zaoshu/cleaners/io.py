"""Reading records into columns and writing the kept and rejected records back out.

Records are not held in memory: the inputs are cut into chunks (byte ranges of whole lines). The first
pass reads a chunk at a time into the columns cleaning looks at (file, line, id, style and other axes,
finish_reason, assistant text); the second pass streams the chunks again and writes each line by its
row's state: as it is, rewritten (normalized text + `meta.clean`) or with its `reject`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import IO, Any

import orjson
import polars as pl

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.records import assistant_text, check_record, content_id, parse_line


class RowState(IntEnum):
    """What the write pass does with an input line."""

    KEPT = 0  #: kept untouched: the line is written byte for byte
    NORMALIZED = 1  #: kept with its text normalized: rewritten with `meta.clean`
    REJECTED = 2  #: written to the rejects with its `reject` (a bad line: its raw text)


#: the columns of a chunk read (and `file`, the input's index, in front)
SCHEMA = {
    "line": pl.UInt32,
    "id": pl.Utf8,
    "style": pl.Utf8,
    "finish_reason": pl.Utf8,
    "raw": pl.Utf8,
    "bad": pl.Utf8,
}


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


#: bytes of input per chunk: its columns and texts, not the whole input's, are in memory at once
CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class Chunk:
    """Whole lines of one input file: bytes [start, end), the first of them line number `line`."""

    file: int  # index of the file among the inputs
    path: Path
    start: int
    end: int
    line: int


def split_chunks(files: list[Path], size: int | None = None) -> list[Chunk]:
    """Each file cut into chunks of about `size` (CHUNK_BYTES) bytes, each ending at a line end (an
    empty file: one empty chunk)."""
    size = size or CHUNK_BYTES
    chunks: list[Chunk] = []
    for fi, path in enumerate(files):
        total = Path(path).stat().st_size
        with open(path, "rb") as f:
            start, line = 0, 1
            while True:
                f.seek(min(start + size, total))
                f.readline()  # on to the end of the line the cut falls in
                end = f.tell()
                chunks.append(Chunk(fi, Path(path), start, end, line))
                if end >= total:
                    break
                f.seek(start)
                line += f.read(end - start).count(b"\n")
                start = end
    return chunks


def chunk_lines(chunk: Chunk) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes without the newline) for every non-blank line of a chunk."""
    with open(chunk.path, "rb") as f:
        f.seek(chunk.start)
        data = f.read(chunk.end - chunk.start)
    for number, raw in enumerate(data.split(b"\n"), chunk.line):
        if raw.strip():
            yield number, raw


def _text(value: Any) -> str | None:
    return value if value is None or type(value) is str else str(value)


def read_columns(files: list[Path]) -> pl.DataFrame:
    """`read_chunk` over whole files (at least one: `split_chunks` gives every file a chunk)."""
    return pl.concat([read_chunk(c) for c in split_chunks(files)], how="diagonal_relaxed")


def read_chunk(chunk: Chunk, *, skip_bad_lines: bool = False) -> pl.DataFrame:
    """One row per non-blank line of the chunk: file, line, id, style, finish_reason, raw text,
    ax_<axis>, bad.

    A bad line (not UTF-8, not JSON, not a record) raises RecordError naming file and line, or with
    `skip_bad_lines` becomes a row whose `bad` says why (the rejects get it as reason bad_line).
    """
    lines, ids, styles, finishes, texts, bads = [], [], [], [], [], []
    axes: list[dict[str, str | None]] = []  # other axes than style, per row ({} for none)
    path = chunk.path
    for number, raw in chunk_lines(chunk):
        try:
            record = check_record(parse_line(raw, path=path, line=number), path=path, line=number)
        except RecordError as e:
            if not skip_bad_lines:
                raise
            record, bad = {}, str(e)
        else:
            bad = None
        row_axes = record.get("axes") or {}
        lines.append(number)
        ids.append(None if bad else _text(record.get("id")) or content_id(record["messages"]))
        styles.append(_text(row_axes.get("style")))
        finishes.append(_text((record.get("meta") or {}).get("finish_reason")))
        texts.append(assistant_text(record))
        bads.append(bad)
        axes.append({f"ax_{k}": _text(v) for k, v in row_axes.items() if k != "style"} if row_axes else {})
    columns = {
        "line": lines,
        "id": ids,
        "style": styles,
        "finish_reason": finishes,
        "raw": texts,
        "bad": bads,
    }
    frame = pl.DataFrame(columns, schema=SCHEMA)
    frame = frame.select(pl.lit(chunk.file, dtype=pl.UInt16).alias("file"), pl.all())
    if any(axes):
        frame = frame.hstack(pl.from_dicts(axes, infer_schema_length=None).cast(pl.Utf8))
    return frame


def _set_assistant(record: dict[str, Any], text: str) -> str:
    """Replace the last assistant turn's content; returns what it was."""
    for message in reversed(record["messages"]):
        if message.get("role") == "assistant":
            original, message["content"] = message["content"], text
            return original
    return ""


#: the columns of `decisions` that `write_chunk` reads, in this order
DECISION_COLUMNS = ("state", "text", "changes", "reason", "detail", "duplicate_of")


def write_chunk(chunk: Chunk, decisions: pl.DataFrame, kept: IO[bytes], rejected: IO[bytes]) -> None:
    """Pass 2 for one chunk: stream it again and write each line by its row of the chunk's decisions (one
    row per non-blank line, in order; see DECISION_COLUMNS and RowState): a kept line is copied as
    read, the others are rebuilt."""
    states = decisions["state"].to_list()
    changed = pl.col("changes").list.len() > 0  # only then are the text and its changes written
    touched = decisions.filter(pl.col("state") != RowState.KEPT).select(
        pl.when(changed).then("text"), pl.when(changed).then("changes"), *DECISION_COLUMNS[3:]
    )
    touched_rows = iter(touched.rows())
    path = str(chunk.path)
    keep: list[bytes] = []
    drop: list[bytes] = []
    for state, (number, raw) in zip(states, chunk_lines(chunk), strict=True):
        if state == RowState.KEPT:
            keep.append(raw)
            continue
        text, changes, reason, detail, duplicate_of = next(touched_rows)
        info = {"reason": reason, "detail": detail}
        if reason == "bad_line":
            info |= {"file": path, "line": number}
            drop.append(
                orjson.dumps({"reject": info, "raw": raw.decode("utf-8", errors="replace").rstrip("\r")})
            )
            continue
        if state == RowState.NORMALIZED:
            record = orjson.loads(raw)
            original = _set_assistant(record, text)
            record["meta"] = {
                **(record.get("meta") or {}),
                "clean": {"changes": changes, "original": original},
            }
            keep.append(orjson.dumps(record))
            continue
        if duplicate_of is not None:
            info["duplicate_of"] = duplicate_of
        if changes:
            info["normalized"] = text
        info |= {"file": path, "line": number}
        drop.append(_with_reject(info, raw))
    for lines, handle in ((keep, kept), (drop, rejected)):
        if lines:  # a chunk's lines in one write
            handle.write(b"\n".join(lines) + b"\n")


def _with_reject(info: dict[str, Any], raw: bytes) -> bytes:
    """The record's line with `reject` as its first key (a rejects file cleaned again gets the new one).

    The line is not parsed: `{"reject": ...,` goes in front of the rest of the object as it was, which
    keeps the record's own bytes and costs a tenth of a parse and dump. A line that may hold a key
    `reject` already is parsed, so the old one is dropped (a JSON object must not repeat a key)."""
    if b'"reject"' in raw:
        record = orjson.loads(raw)
        return orjson.dumps({"reject": info} | {k: v for k, v in record.items() if k != "reject"})
    return b'{"reject":' + orjson.dumps(info) + b"," + raw.strip()[1:]
