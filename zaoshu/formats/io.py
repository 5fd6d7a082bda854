"""Reading rows from a file: JSON Lines, a JSON array, or one JSON object; every error names file and line.

Formats are decided row by row (see `registry.detect_rows`); this module only turns bytes into parsed rows
and says precisely where bytes are not UTF-8 or not JSON.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

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


def utf8_error(offset: int, path: str | Path, line: int | None) -> RecordError:
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
        return utf8_error(bad, path, line)
    return RecordError(f"not valid JSON ({err.msg}); expected one JSON object per line", path=path, line=line)


def check_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise RecordError("is a folder; give a file (merge reads folders)", path=path)
    if not p.is_file():
        raise RecordError("no such file", path=path)
    return p


def layout_of(head: bytes) -> Layout:
    """'array' when the file is one JSON document (an array, or one pretty-printed object), else 'jsonl'."""
    head = head.lstrip()
    if head[:1] == b"[":
        return "array"
    if head[:1] == b"{":
        try:
            orjson.loads(head.split(b"\n", 1)[0])
        except orjson.JSONDecodeError:
            return "array"  # a pretty-printed object, or broken JSONL: parse_document says which
    return "jsonl"


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
            raise utf8_error(bad - start, path, data.count(b"\n", 0, bad) + 1) from None
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


def _first_bytes(f: IO[bytes], nbytes: int) -> bytes:
    """`nbytes` of a file, or its whole first line when that is longer (a layout needs the whole line)."""
    data = f.read(nbytes)
    return data if b"\n" in data else data + f.readline()


class Rows:
    """The parsed rows of one file, each with the raw line it came from, and a way to name where row i is.

    JSON Lines are read line by line as they are iterated (a million records never sit in memory); a JSON
    document is read whole. `peek` holds only the first rows, for detection.
    """

    def __init__(
        self, path: str | Path, head: bytes | None = None, layout: Layout | None = None, offset: int = 0
    ) -> None:
        self.path = str(path)
        self.offset = offset  # where `head` starts in the file
        self.at = offset  # where the JSON line last iterated starts in the file
        self.head_bytes = head  # set by peek: these bytes are all the rows this object holds
        if head is None:
            with open(check_path(path), "rb") as f:
                head = _first_bytes(f, 1 << 16)
        self.layout: Layout = layout or layout_of(head.removeprefix(BOM))
        self._data: bytes | None = None

    @classmethod
    def peek(cls, path: str | Path, nbytes: int = 1 << 20) -> Rows:
        """The first rows of a JSON Lines file without reading it all (a JSON document is read whole)."""
        with open(check_path(path), "rb") as f:
            data = _first_bytes(f, nbytes)
            more = f.read(1)
        data = data.removeprefix(BOM)
        if more and layout_of(data) == "jsonl":
            return cls(path, data[: data.rfind(b"\n") + 1] or data)
        return cls(path) if more else cls(path, data)

    @property
    def data(self) -> bytes:
        """The whole file (JSON documents only; JSON Lines are streamed)."""
        if self._data is None:
            self._data = self.head_bytes if self.head_bytes is not None else Path(self.path).read_bytes()
            self._data = self._data.removeprefix(BOM)
        return self._data

    def __iter__(self) -> Iterator[tuple[int, bytes | None, Any]]:
        """(position, raw line or None, row): a line number for JSON Lines, an item index for arrays."""
        if self.layout == "array":
            for position, row in enumerate(parse_document(self.data, self.path)):
                yield position, None, row
            return
        with io.BytesIO(self.head_bytes) if self.head_bytes is not None else open(self.path, "rb") as f:
            loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
            at = self.offset
            for number, raw in enumerate(f, 1):
                self.at, at = at, at + len(raw)
                if number == 1 and raw.startswith(BOM):
                    raw, self.at = raw[len(BOM) :], self.at + len(BOM)
                try:
                    yield number, raw, loads(raw)
                except JSONDecodeError as e:
                    if raw.isspace():  # a blank line
                        continue
                    raise json_error(raw, e, self.path, number) from None

    def head(self, n: int) -> list[tuple[int, Any]]:
        return [(position, row) for position, _, row in itertools.islice(self, n)]

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

    def error(self, position: int, message: str) -> RecordError:
        """A RecordError about the row at `position`, naming its file and line."""
        line, item = self.where(position)
        return RecordError((f"{item}: " if item else "") + message, path=self.path, line=line)
