"""Reading rows from a file: JSON Lines, a JSON array, or one JSON object; every error names file and line.

Formats are decided row by row (see `detect`); this module only turns bytes into parsed rows and says
precisely where bytes are not UTF-8 or not JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson

from zaoshu.errors import RecordError

BOM = b"\xef\xbb\xbf"
Layout = Literal["jsonl", "array"]


def not_utf8(raw: bytes) -> int | None:
    """Offset of the first byte that is not UTF-8, or None."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start
    return None


def utf8_error(raw: bytes, offset: int, path: str | Path, line: int | None) -> RecordError:
    return RecordError(
        f"not UTF-8 (byte {offset} of the line); expected UTF-8 text. If the file is GBK, convert it first: "
        "iconv -f GBK -t UTF-8 IN > OUT",
        path=path,
        line=line,
    )


def json_error(raw: bytes, err: orjson.JSONDecodeError, path: str | Path, line: int | None) -> RecordError:
    """The error for a line that orjson refused: non-UTF-8 bytes get their own, actionable message."""
    bad = not_utf8(raw)
    if bad is not None:
        return utf8_error(raw, bad, path, line)
    return RecordError(f"not valid JSON ({err.msg}); expected one JSON object per line", path=path, line=line)


def read_bytes(path: str | Path) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise RecordError("is a folder; give a file (merge reads folders)", path=path)
    if not p.is_file():
        raise RecordError("no such file", path=path)
    data = p.read_bytes()
    return data[3:] if data.startswith(BOM) else data


def layout_of(data: bytes) -> Layout:
    """'array' when the file is one JSON document (an array, or one pretty-printed object), else 'jsonl'."""
    head = data.lstrip()[:1]
    if head == b"[":
        return "array"
    if head == b"{":
        first = data.lstrip().split(b"\n", 1)[0]
        try:
            orjson.loads(first)
        except orjson.JSONDecodeError:
            return "array"  # a pretty-printed object, or broken JSONL: parse_document says which
    return "jsonl"


def line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def array_item_lines(data: bytes) -> list[int]:
    """The line where each item of a JSON array starts (slow; only used to point at a bad item)."""
    text = data.decode("utf-8")
    decoder = json.JSONDecoder()
    lines: list[int] = []
    i = text.index("[") + 1
    line = text.count("\n", 0, i) + 1
    last = i
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return lines
        line += text.count("\n", last, i)
        last = i
        lines.append(line)
        _, i = decoder.raw_decode(text, i)


def parse_document(data: bytes, path: str | Path) -> list[Any]:
    """Rows of a file that is one JSON document: the array's items, or [the object]."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        bad = not_utf8(data)
        if bad is not None:
            start = data.rfind(b"\n", 0, bad) + 1
            raise utf8_error(data, bad - start, path, line_of_offset(data, bad)) from None
        if data.lstrip()[:1] == b"{":
            # Most likely JSON Lines with a broken first line, not a pretty-printed object.
            raise RecordError(
                f"not valid JSON ({e.msg}); expected JSON Lines or a JSON array", path=path, line=1
            ) from None
        raise RecordError(f"not valid JSON ({e.msg}, column {e.colno})", path=path, line=e.lineno) from None
    if isinstance(doc, dict):
        return [doc]
    if not isinstance(doc, list):
        raise RecordError(f"expected a JSON array of objects, got {type(doc).__name__}", path=path)
    return doc


def iter_jsonl(data: bytes, path: str | Path, *, first_line: int = 1) -> Iterator[tuple[int, Any]]:
    """(line number, row) for every non-blank line."""
    loads = orjson.loads
    for number, raw in enumerate(data.split(b"\n"), first_line):
        if not raw or raw.isspace():
            continue
        try:
            yield number, loads(raw)
        except orjson.JSONDecodeError as e:
            raise json_error(raw, e, path, number) from None


class Rows:
    """The parsed rows of one file, with a way to name where row i came from."""

    def __init__(self, path: str | Path, data: bytes | None = None) -> None:
        self.path = str(path)
        self.data = read_bytes(path) if data is None else data
        self.layout: Layout = layout_of(self.data)

    @classmethod
    def peek(cls, path: str | Path, nbytes: int = 1 << 20) -> Rows:
        """The first rows of a JSON Lines file without reading it all (a JSON document is read whole)."""
        p = Path(path)
        if not p.is_file():
            read_bytes(path)  # raises the right error
        with open(p, "rb") as f:
            data = f.read(nbytes)
            if b"\n" not in data:
                data += f.readline()  # a first line longer than nbytes: read it whole
            if data.startswith(BOM):
                data = data[3:]
            more = f.read(1)
        if more and layout_of(data) == "jsonl":
            cut = data.rfind(b"\n")
            return cls(path, data[: cut + 1] if cut >= 0 else data)
        return cls(path) if more else cls(path, data)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        """(position, row): a line number for JSONL, an item index for arrays (see `where`)."""
        if self.layout == "jsonl":
            yield from iter_jsonl(self.data, self.path)
        else:
            yield from enumerate(parse_document(self.data, self.path))

    def head(self, n: int) -> list[tuple[int, Any]]:
        out = []
        for item in self:
            out.append(item)
            if len(out) >= n:
                break
        return out

    def where(self, position: int) -> tuple[int | None, str | None]:
        """(line, extra text) for an error about the row at `position`."""
        if self.layout == "jsonl":
            return position, None
        try:
            lines = array_item_lines(self.data)
            line = lines[position] if position < len(lines) else None
        except (ValueError, UnicodeDecodeError):
            line = None
        return line, f"item {position} of the JSON array"
