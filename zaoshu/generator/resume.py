"""What a rerun may trust in an existing output: only its own records, and only those today's plan would ask alike.

`generate -o FILE` appends to FILE and skips the tasks already there. Before anything touches FILE it must be
proven a record JSONL (a recipe or a notes file given as `-o` by mistake is refused, never cut or appended
to). Each record carries `meta.fingerprint` (`records.request_fingerprint`: the request messages, model,
sampling parameters and endpoint); a record whose fingerprint differs from what the same task would be sent
today (an edited prompt, another model, temperature or provider) is not counted as done: it is moved to
`<stem>.superseded.jsonl` (kept, never deleted) and its task is generated again. A record without a
fingerprint (written by an older zaoshu) cannot be judged and is kept as done, and the run says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.files import atomic_write
from zaoshu.records import check_record, iter_lines, request_fingerprint

FINGERPRINT = "fingerprint"


def fingerprint(request: list[dict[str, str]], *, model: str, params: dict[str, Any], endpoint: str) -> str:
    """`request_fingerprint` of a planned request, hashed from a copy of its texts.

    Why a copy: serializing a non-ASCII str leaves a UTF-8 copy of it cached on the str object (CPython's
    cache, filled by orjson), which for every prompt of a 100k-task plan is ~50 MB held until the task is
    sent; the copies are freed at once. The same bytes are hashed, so the fingerprint is the same."""
    fresh = [{k: v.encode().decode() for k, v in m.items()} for m in request]
    return request_fingerprint(fresh, model=model, params=params, endpoint=endpoint)


def superseded_path(out: Path) -> Path:
    """raw.jsonl -> raw.superseded.jsonl."""
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.stem
    return out.with_name(stem + ".superseded.jsonl")


def prove_record_file(path: Path) -> None:
    """Raise unless an existing `path` is a record JSONL (a torn last line, left by a kill, is allowed).

    Runs before `repair_tail`, which would otherwise cut the last line of any file given as `-o`.
    """
    if not path.exists() or path.is_dir():
        return
    lines = list(iter_lines(path))
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size:
            f.seek(size - 1)
        ends_with_newline = f.read(1) == b"\n" if size else True
    for index, (number, raw) in enumerate(lines):
        last = index == len(lines) - 1
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if last and (not ends_with_newline or raw.lstrip().startswith(b"{")):
                return  # a torn last line: repair_tail cuts it and the task is redone
            record = None
        try:
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise RecordError("not a record (no JSON object with an 'id')", path=path, line=number)
            check_record(record, path=path, line=number)
        except RecordError as e:
            raise ZaoshuError(
                f"the output exists and is not a record JSONL ({e}); generate appends to its own output "
                "only, so nothing was changed: choose another -o",
                path=path,
            ) from None


@dataclass
class Resume:
    """What an existing output holds, compared with today's plan."""

    done: set[str] = field(default_factory=set)  # ids whose record stands for today's request
    changed: set[str] = field(default_factory=set)  # ids whose record came from another request
    unmarked: int = 0  # records without a fingerprint (an older zaoshu), kept as done
    foreign: int = 0  # records whose id is not in today's plan (another seed, rounds, limit or axes)


def scan(path: Path, fingerprints: dict[str, str]) -> Resume:
    """Sort the records of `path` by today's plan (`fingerprints`: task id -> today's fingerprint)."""
    result = Resume()
    if not path.exists():
        return result
    for _, raw in iter_lines(path):
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # the torn last line `prove_record_file` let through (a dry run does not cut it)
        rid = record.get("id") if isinstance(record, dict) else None
        if not isinstance(rid, str):
            continue
        today = fingerprints.get(rid)
        if today is None:
            result.foreign += 1
            result.done.add(rid)
            continue
        meta = record.get("meta")
        stored = meta.get(FINGERPRINT) if isinstance(meta, dict) else None
        if stored is None:
            result.unmarked += 1
            result.done.add(rid)
        elif stored == today:
            result.done.add(rid)
            result.changed.discard(rid)  # a later line (a regeneration) stands
        elif rid not in result.done:
            result.changed.add(rid)
    return result


def move_superseded(path: Path, changed: set[str], fingerprints: dict[str, str]) -> int:
    """Move the records of `changed` ids out of `path` into `<stem>.superseded.jsonl`; returns how many.

    The superseded file is appended (earlier moves stay); `path` is rewritten atomically without them.
    """
    moved: list[bytes] = []
    target = superseded_path(path)
    with atomic_write(path) as keep:
        for _, raw in iter_lines(path):
            record: Any = orjson.loads(raw)
            rid = record.get("id") if isinstance(record, dict) else None
            meta = record.get("meta") if isinstance(record, dict) else None
            stale = (
                rid in changed
                and isinstance(meta, dict)
                and meta.get(FINGERPRINT) not in (None, fingerprints.get(rid))
            )
            line = raw if raw.endswith(b"\n") else raw + b"\n"
            if stale:
                moved.append(line)
            else:
                keep.write(line)
        # Written before `path` is replaced: a crash in between leaves a record twice, never none.
        old = target.read_bytes() if target.exists() else b""
        with atomic_write(target) as f:
            f.write(old + b"".join(moved))
    return len(moved)
