"""The canonical record (id, recipe, axes, messages, meta) and its JSONL reading and writing.

Every stage reads and writes records through this module, so the format lives in one place:
one JSON object a line, UTF-8, Chinese unescaped, `id` / `recipe` / `axes` / `messages` / `meta`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import orjson

from zaoshu.errors import RecordError
from zaoshu.files import atomic_write

Record = dict[str, Any]
ROLES = ("system", "user", "assistant")


def task_id(recipe: str, axes: dict[str, str], round_: int, seed: int) -> str:
    """Stable id of a task: a hash of recipe name, axis values (style included), round and seed.

    The same recipe and seed give the same ids on every machine, which makes resume exact.
    """
    key = orjson.dumps([recipe, sorted(axes.items()), round_, seed])
    return hashlib.sha256(key).hexdigest()[:20]


def content_id(messages: list[dict[str, Any]]) -> str:
    """Id for a record that came without one (imported data): a hash of its conversation."""
    return hashlib.sha256(orjson.dumps(messages)).hexdigest()[:20]


def request_fingerprint(
    messages: list[dict[str, Any]], *, model: str, params: dict[str, Any], endpoint: str
) -> str:
    """What produced a reply: the request messages, model, sampling parameters and provider endpoint.

    Two requests with the same fingerprint would be answered alike, so a stored reply can stand for a new
    one (resume, the response cache); a changed prompt, model or temperature changes it. The seed that
    names task ids is not part of it: it changes which tasks exist, not how one is asked.
    """
    sampling = {k: v for k, v in sorted(params.items()) if v is not None}
    key = orjson.dumps([messages, model, sampling, endpoint])
    return hashlib.sha256(key).hexdigest()[:16]


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(record: Record) -> bytes:
    """One JSONL line (with its newline); orjson keeps Chinese unescaped."""
    return orjson.dumps(record) + b"\n"


def assistant_text(record: Record) -> str:
    """The last assistant turn's content: what cleaning looks at."""
    for message in reversed(record.get("messages") or ()):
        if message.get("role") == "assistant":
            return message.get("content") or ""
    return ""


class ShapeError(ValueError):
    """A row that is not a record: what is wrong, without the file and line (the caller knows them)."""


_ROLES = frozenset(ROLES)


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """The one definition of a valid conversation: a non-empty list of {role, content: str} turns with at
    least one assistant turn. Raises ShapeError saying what was expected."""
    if type(messages) is not list or not messages:
        raise ShapeError("record has no turns (no 'messages' list, or an empty one)")
    has_assistant = False
    for m in messages:
        # the common case in one expression: this runs for every row of a million-row file
        if type(m) is dict and m.get("role") in _ROLES and type(m.get("content")) is str:
            has_assistant = has_assistant or m["role"] == "assistant"
            continue
        i = messages.index(m)
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise ShapeError(f"messages[{i}] must be an object with role one of {', '.join(ROLES)}")
        raise ShapeError(f"messages[{i}].content must be a string")
    if not has_assistant:
        raise ShapeError("record has no assistant turn")
    return messages


def check_shape(record: Any) -> Record:
    """The one definition of a valid record: a JSON object with valid `messages` (see `check_messages`)
    and, where present, `axes` and `meta` objects. Raises ShapeError saying what was expected."""
    if type(record) is not dict:
        raise ShapeError(f"expected a JSON object, got {type(record).__name__}")
    check_messages(record.get("messages"))
    axes, meta = record.get("axes"), record.get("meta")
    if axes is not None and type(axes) is not dict:
        raise ShapeError("'axes' must be an object (axis name -> value)")
    if meta is not None and type(meta) is not dict:
        raise ShapeError("'meta' must be an object")
    return record


def check_record(record: Any, *, path: str | Path = "<records>", line: int | None = None) -> Record:
    """`check_shape`, raising RecordError that names `path` and `line`."""
    try:
        return check_shape(record)
    except ShapeError as e:
        raise RecordError(str(e), path=path, line=line) from None


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) for every non-blank line of a JSONL file."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                yield number, raw


def parse_line(raw: bytes, *, path: str | Path, line: int) -> Any:
    try:
        return orjson.loads(raw)  # orjson refuses bytes that are not UTF-8, so one pass checks both
    except orjson.JSONDecodeError as e:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as u:
            raise RecordError(
                f"not UTF-8 (byte {u.start}); expected UTF-8 JSON Lines", path=path, line=line
            ) from None
        raise RecordError(
            f"not valid JSON ({e}); expected one JSON object per line", path=path, line=line
        ) from None


def read_records(path: str | Path, *, check: bool = True) -> Iterator[Record]:
    """Yield the records of a JSONL file; a bad line raises RecordError naming the file and line."""
    if not Path(path).is_file():
        raise RecordError("no such file", path=path)
    for number, raw in iter_lines(path):
        record = parse_line(raw, path=path, line=number)
        yield check_record(record, path=path, line=number) if check else record


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write records atomically: a temp file renamed over the target, so a crash never leaves half a file."""
    count = 0
    with atomic_write(path) as f:
        for record in records:
            f.write(dumps(record))
            count += 1
    return count


class AppendSink:
    """Append-only JSONL writer for long runs: each record is flushed as it is written.

    A kill loses at most the line being written; `repair_tail` cuts such a torn line on the next run.
    """

    def __init__(self, path: str | Path, *, fsync_every: int = 64) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._fsync_every = fsync_every
        self._pending = 0

    def write(self, record: Record) -> None:
        self._file.write(dumps(record))
        self._file.flush()
        self._pending += 1
        if self._pending >= self._fsync_every:
            self.sync()

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._pending = 0

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()

    def __enter__(self) -> AppendSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def repair_tail(path: str | Path) -> bool:
    """Cut a torn last line (no newline, or not JSON) left by a kill. Returns True if something was cut."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        data = f.read()
        end = len(data)
        if data.endswith(b"\n"):
            last_start = data.rfind(b"\n", 0, end - 1) + 1
            try:
                orjson.loads(data[last_start:end])
                return False
            except orjson.JSONDecodeError:
                cut = last_start
        else:
            cut = data.rfind(b"\n") + 1
        f.truncate(cut)
        return True
