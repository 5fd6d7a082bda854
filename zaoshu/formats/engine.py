"""The chunk engine behind convert, merge and split: a JSON Lines file cut at line boundaries into
chunks that worker processes parse with orjson, in order, so a million records take seconds.

One function (`process`) turns rows into output for every mode, in a worker or in-process (small
files, JSON arrays); the parent only stitches results together, adds line numbers to errors and sums
the loss tallies. Modes:
- convert: each row read as `src` and written as `dst` (bytes out);
- merge:   the same, plus each record's id for the parent's dedup;
- scan:    rows checked, kept as they are (file offsets out), plus an axis value for stratified split.
Rows that stay as they are (scan, and zaoshu -> zaoshu in convert/merge) leave the worker as file
offsets only; the parent writes them from the mapped input with writev, so their bytes are copied
once, by the kernel. What costs per row (measured, ~1 KB records): orjson.loads ~1.9 us, the turn
checks ~0.6 us, writing a row ~0.5-0.9 us; a list of a chunk's row bytes costs page faults, hence
one bytearray per chunk and lines read from a BytesIO.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import mmap
import multiprocessing
import os
import shutil
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import orjson

from zaoshu.errors import RecordError
from zaoshu.formats.base import RowError, check_messages, dropped_fields
from zaoshu.formats.io import BOM, Rows, json_error
from zaoshu.formats.registry import FORMATS
from zaoshu.records import content_id

Mode = Literal["convert", "merge", "scan"]
#: files smaller than this are done in-process (starting workers costs more than it saves)
PARALLEL_FROM = 8 << 20
CHUNK = 16 << 20
#: marks a span that points into a chunk's blob rather than into the input file
BLOB = 1 << 63
NEWLINE = orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True, slots=True)
class Job:
    src: str
    dst: str | None = None
    mode: Mode = "convert"
    axis: str | None = None
    array_out: bool = False
    #: merge: also a hash of each conversation, to find a record without an id among records with one
    content: bool = False
    #: a worker writes its output here (a part file per chunk) instead of sending it back through a pipe
    parts_dir: str | None = None


@dataclass(slots=True)
class Out:
    """What one chunk gave: output bytes (convert/merge) or row spans in the file (scan)."""

    blob: bytes | bytearray = b""
    part: str | None = None  # a file holding the output instead of blob (parallel runs)
    size: int = 0  # bytes of output
    ends: array = field(default_factory=lambda: array("Q"))  # merge: end of each row in blob
    spans: array = field(default_factory=lambda: array("Q"))  # scan: start of each row, start of the next
    keys: list[Any] = field(default_factory=list)  # merge: the source's ids (None: none); scan: axis values
    codes: array = field(
        default_factory=lambda: array("I")
    )  # scan: each row's axis value, as an index in keys
    content: list[str] = field(default_factory=list)  # merge: conversation hashes (for rows without an id)
    rows: int = 0
    lost: Counter = field(default_factory=Counter)
    error: tuple[int, str] | None = None  # (position in the chunk, message)
    #: rows copied as they are (zaoshu -> zaoshu): spans (start, end) per row point into this file,
    #: or, with the BLOB bit set in both, into blob (rows that had to be rewritten)
    source: str | None = None


def _axis_value(row: dict[str, Any], record: dict[str, Any], axis: str) -> Any:
    axes = record.get("axes") or {}
    if axis in axes:
        return axes[axis]
    if axis in row and isinstance(row[axis], (str, int, float, bool)):
        return row[axis]
    known = f"; its axes are {', '.join(axes)}" if axes else ""
    raise RowError(f"record has no axis {axis!r} (looked in axes.{axis} and a top-level {axis!r}){known}")


def _stratum(row: dict[str, Any], record: dict[str, Any], axis: str) -> str:
    """The row's value of `axis` as a string (JSON text unless it is one)."""
    axes = record.get("axes")
    value = axes[axis] if type(axes) is dict and axis in axes else _axis_value(row, record, axis)
    return value if type(value) is str else orjson.dumps(value).decode()


def process(items: Iterable[tuple[Any, ...]], job: Job, src_path: str, base: int | None = None) -> Out:
    """Read, check and write rows; `items` are (position, raw bytes or parsed row).

    Blank lines are skipped. Scan here serves JSON arrays; JSON Lines chunks go to `_scan_lines`.
    """
    out = Out()
    try:
        if job.mode == "scan":
            _scan(items, job, out)
        elif job.mode == "convert" and job.src == "zaoshu" and job.dst != "zaoshu":
            _convert_records(items, job, out)
        else:
            _convert(items, job, out, src_path if base is not None else None, base or 0)
    except _BadRow as e:
        out.error = (e.position, e.message)
    return out


class _BadRow(Exception):
    def __init__(self, position: int, message: str) -> None:
        self.position, self.message = position, message


def _parse(position: int, raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise _BadRow(position, str(json_error(raw, e, None, None))) from None  # type: ignore[arg-type]
    if not isinstance(raw, dict):
        raise _BadRow(position, f"expected a JSON object, got {type(raw).__name__}")
    return raw


def _check_row(
    row: dict[str, Any],
    position: int,
    reader: Any,
    canonical: bool,
    axis: str | None,
    local: dict[Any, int],
    codes: list[int],
) -> None:
    """Validate one row (zaoshu rows without building a record) and note its stratum's code for split."""
    try:
        if canonical:
            check_messages(row.get("messages"))
            record = row
        else:
            record = reader(row, False)
        if axis:
            key = _stratum(row, record, axis)
            code = local.get(key)
            if code is None:
                code = local[key] = len(local)
            codes.append(code)
    except RowError as e:
        raise _BadRow(position, str(e)) from None


def _scan_lines(data: bytes, base: int, job: Job, out: Out) -> None:
    """scan over a chunk of JSON Lines (`data`, starting at file offset `base`).

    Lines come from a BytesIO: each is freed before the next is made, where a split() list would
    allocate the whole chunk again. A span is (start, start of the next line): the parent drops the
    line end when it copies the row.
    """
    reader = FORMATS[job.src].read
    canonical = job.src == "zaoshu"
    axis = job.axis
    loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
    add = out.spans.append
    codes, local = out.codes, {}
    offset = base
    for number, raw in enumerate(io.BytesIO(data), 1):
        try:
            row = loads(raw)
        except JSONDecodeError:
            if raw.isspace():  # a blank line
                offset += len(raw)
                continue
            row = _parse(number, raw)
        if type(row) is not dict:
            row = _parse(number, row)
        _check_row(row, number, reader, canonical, axis, local, codes)
        add(offset)
        offset += len(raw)
        add(offset)
    out.rows = len(out.spans) // 2
    out.keys = list(local)


def _scan(items: Iterable[tuple[int, Any]], job: Job, out: Out) -> None:
    """scan over the parsed items of a JSON array (no spans: the caller re-reads the items)."""
    reader = FORMATS[job.src].read
    canonical = job.src == "zaoshu"
    spans, axis = out.spans, job.axis
    # axis values travel as small codes plus this chunk's list of values (out.keys), not one string a row
    codes, local = out.codes, {}
    for position, raw in items:
        row = _parse(position, raw)
        _check_row(row, position, reader, canonical, axis, local, codes)
        spans.append(0)
        spans.append(0)
    out.rows = len(spans) // 2
    out.keys = list(local)


def _convert(items: Iterable[tuple[Any, ...]], job: Job, out: Out, source: str | None, base: int) -> None:
    """convert/merge; with `source` (the items are that file's lines from offset `base`), rows that
    stay as they are (zaoshu -> zaoshu) are noted as spans of the file, not copied (see `Out.source`)."""
    reader = FORMATS[job.src].read
    target = FORMATS[job.dst or job.src]
    writer = target.write
    merging = job.mode == "merge"
    with_id = merging or job.dst in ("zaoshu", "sharegpt")
    same = job.src == job.dst == "zaoshu"
    # zaoshu rows go to the writers as they are: writers read only id, recipe, axes, messages, meta
    direct = job.src == "zaoshu" and not same
    drops = dropped_fields(target.keeps)
    dropped = dict.fromkeys(drops, 0)
    loads, dumps, JSONDecodeError = orjson.loads, orjson.dumps, orjson.JSONDecodeError
    buf = bytearray()
    keys, ends, lost, hashes = out.keys, out.ends, out.lost, out.content
    content = job.content
    rows = 0
    spans = out.spans if same and source is not None and not job.array_out else None
    add = out.spans.append
    offset = base
    for position, raw in items:
        try:
            row = loads(raw) if type(raw) is bytes else raw
        except JSONDecodeError:
            if not raw.strip():
                offset += len(raw)
                continue  # a blank line
            row = _parse(position, raw)
        if type(row) is not dict:
            row = _parse(position, row)
        try:
            key = row.get("id")
            if same and key and type(raw) is bytes:  # copied as it is
                messages = check_messages(row.get("messages"))
                line = raw if raw.endswith(b"}\n") else _lf(raw)
            else:
                if direct:
                    record = row
                    messages = check_messages(row.get("messages"))
                    if with_id and not key:
                        row["id"] = content_id(messages)
                else:
                    record = reader(row, with_id)
                    messages = record["messages"]
                for name in drops:
                    if record.get(name):
                        dropped[name] += 1
                line = dumps(writer(record, lost), option=NEWLINE)
            if merging:
                if key is not None and (type(key) is not str or not key):
                    raise RowError("record id must be a non-empty string")
                keys.append(key)
                if content or key is None:
                    hashes.append(content_id(messages))
        except RowError as e:
            raise _BadRow(position, str(e)) from None
        rows += 1
        if spans is not None:
            if line is raw:  # copied as it is: only where it is
                add(offset)
                offset += len(raw)
                add(offset)
                continue
            add(BLOB | len(buf))
            buf += line
            add(BLOB | len(buf))
            offset += len(raw)
            continue
        buf += line
        if merging:
            ends.append(len(buf))
    for name, n in dropped.items():
        if n:
            lost[name] += n
    out.rows = rows
    if spans is not None:
        out.source = source
        table = np.frombuffer(spans, dtype=np.uint64).reshape(-1, 2) & ~np.uint64(BLOB)
        out.size = int((table[:, 1] - table[:, 0]).sum())
        if buf:
            out.blob = buf
        return
    if rows and job.array_out:  # see _convert_records
        buf = buf.replace(b"\n", b",\n")
        out.ends = array("Q", (end + i for i, end in enumerate(ends, 1)))
    if rows:
        out.blob = buf
        out.size = len(buf)


def _lf(raw: bytes) -> bytes:
    """A line as it is, its end made one LF (a CRLF line, or a last line without one)."""
    line = raw[:-1] if raw.endswith(b"\n") else raw
    return (line[:-1] if line.endswith(b"\r") else line) + b"\n"


_XTUNER = b'{"conversation":[{"system":"%s","input":"%s","output":"%s"}]}\n'
_XTUNER_NO_SYSTEM = b'{"conversation":[{"input":"%s","output":"%s"}]}\n'
_ALPACA = b'{"instruction":"%s","input":"","output":"%s","system":"%s"}\n'
_ALPACA_NO_SYSTEM = b'{"instruction":"%s","input":"","output":"%s"}\n'
_SHAREGPT = (
    b'{"id":"%s","conversations":[{"from":"system","value":"%s"},{"from":"human","value":"%s"},'
    b'{"from":"gpt","value":"%s"}]}\n'
)


def _recipe_turns(messages: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """(system, user, assistant) when `messages` is what a recipe makes: those three turns holding
    only role and content, content text. Checked in one expression, as `check_messages` would pass them."""
    if type(messages) is not list or len(messages) != 3:
        return None
    system, user, answer = messages
    if (
        type(system) is dict
        and type(user) is dict
        and type(answer) is dict
        and len(system) == 2
        and len(user) == 2
        and len(answer) == 2
        and system.get("role") == "system"
        and user.get("role") == "user"
        and answer.get("role") == "assistant"
        and type(system.get("content")) is str
        and type(user.get("content")) is str
        and type(answer.get("content")) is str
    ):
        return system, user, answer
    return None


def _one_exchange(fmt: str, row: dict[str, Any], s: str, u: str, a: str, dumps: Any) -> bytes | None:
    """The line the format's writer would give for a recipe's record (system `s`, user `u`,
    assistant `a`, see `_recipe_turns`), from a template; None where the template does not fit.

    The strings are encoded by one orjson call on a list of them: in that JSON text a quote is
    escaped inside a string, so '","' occurs only between two strings and splitting there gives
    each string's encoding.
    """
    if fmt == "xtuner":
        if s:
            return _XTUNER % tuple(dumps([s, u, a])[2:-2].split(b'","'))
        return _XTUNER_NO_SYSTEM % tuple(dumps([u, a])[2:-2].split(b'","'))
    if fmt == "alpaca":
        if s:
            return _ALPACA % tuple(dumps([u, a, s])[2:-2].split(b'","'))
        return _ALPACA_NO_SYSTEM % tuple(dumps([u, a])[2:-2].split(b'","'))
    rid = row["id"]  # sharegpt: set from the content when the row had none
    if type(rid) is not str:
        return None
    return _SHAREGPT % tuple(dumps([rid, s, u, a])[2:-2].split(b'","'))


def _convert_records(items: Iterable[tuple[Any, ...]], job: Job, out: Out) -> None:
    """zaoshu rows to another format: `_convert`'s work for the commonest case, with less per row."""
    target = FORMATS[job.dst or "openai"]
    writer, lost = target.write, out.lost
    need_id = job.dst == "sharegpt"
    fast = job.dst if job.dst in ("xtuner", "alpaca", "sharegpt") else None
    loads, dumps, JSONDecodeError = orjson.loads, orjson.dumps, orjson.JSONDecodeError
    # One growing buffer, not a list of row bytes joined at the end: a chunk's thousands of live
    # ~1 KB objects fragmented malloc's heap and cost a page fault every other row (2-3 us of
    # system time a record in the workers, a third of the whole cost).
    buf = bytearray()
    rows = 0
    n_id = n_recipe = n_axes = n_meta = 0
    for position, raw in items:
        try:
            row = loads(raw)
        except (JSONDecodeError, TypeError):
            if type(raw) is bytes and not raw.strip():
                continue  # a blank line
            row = _parse(position, raw)
        if type(row) is not dict:
            row = _parse(position, row)
        messages = row.get("messages")
        turns = _recipe_turns(messages)
        if turns is None:
            try:
                check_messages(messages)
            except RowError as e:
                raise _BadRow(position, str(e)) from None
        get = row.get
        if get("id"):
            n_id += 1
        elif need_id:
            row["id"] = content_id(messages)
        if get("recipe"):
            n_recipe += 1
        if get("axes"):
            n_axes += 1
        if get("meta"):
            n_meta += 1
        if fast and turns is not None:
            system, user, answer = turns
            line = _one_exchange(fast, row, system["content"], user["content"], answer["content"], dumps)
            if line is not None:
                buf += line
                rows += 1
                continue
        buf += dumps(writer(row, lost), option=NEWLINE)
        rows += 1
    for name, n in (("id", n_id), ("recipe", n_recipe), ("axes", n_axes), ("meta", n_meta)):
        if n and name not in target.keeps:
            lost[name] += n
    out.rows = rows
    if rows:
        # JSON text holds no raw newline (orjson escapes it, input lines were cut at it): each one ends a row
        out.blob = buf.replace(b"\n", b",\n") if job.array_out else buf
        out.size = len(out.blob)


def _run_chunk(args: tuple[str, int, int, Job]) -> Out:
    path, start, end, job = args
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    base = start
    if start == 0 and data.startswith(BOM):
        data, base = data[3:], 3
    if job.mode == "scan":
        out = Out()
        try:
            _scan_lines(data, base, job, out)
        except _BadRow as e:
            out.error = (e.position, e.message)
    else:
        # lines from a BytesIO: each freed before the next is read (a split() list is the whole chunk again)
        out = process(enumerate(io.BytesIO(data), 1), job, path, base)
    if job.parts_dir and out.blob:
        out.part = os.path.join(job.parts_dir, f"part-{start:016d}")
        with open(out.part, "wb") as f:
            f.write(out.blob)
        out.blob = b""
    return out


def _bounds(path: str, size: int, chunk: int) -> list[tuple[int, int]]:
    cuts = [0]
    with open(path, "rb") as f:
        while cuts[-1] + chunk < size:
            f.seek(cuts[-1] + chunk)
            f.readline()
            pos = f.tell()
            if pos >= size:
                break
            cuts.append(pos)
    cuts.append(size)
    return list(itertools.pairwise(cuts))


def workers() -> int:
    """One worker per core this process may use (at most 8: the parent's stitching caps the gain)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def run(path: str | Path, job: Job, *, parallel: bool | None = None) -> Iterator[Out]:
    """The results of `job` over a file, chunk by chunk in file order; raises RecordError at a bad row."""
    path = str(path)
    rows = Rows.peek(path, 1 << 16)
    if rows.layout == "array":
        rows = Rows(path)
        out = process(iter(rows), job, path)
        if out.error:
            line, where = rows.where(out.error[0])
            raise RecordError((f"{where}: " if where else "") + out.error[1], path=path, line=line)
        yield out
        return
    size = os.path.getsize(path)
    chunks = [(path, s, e, job) for s, e in _bounds(path, size, CHUNK)]
    use_pool = (size >= PARALLEL_FROM and workers() > 1) if parallel is None else parallel
    if not use_pool:
        results: Iterable[Out] = map(
            _run_chunk, [(p, s, e, replace(j, parts_dir=None)) for p, s, e, j in chunks]
        )
        pool = None
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(workers())
        results = pool.imap(_run_chunk, chunks)
    try:
        for (_, start, _, _), out in zip(chunks, results, strict=False):  # stops at an error
            if out.error:
                line = _lines_before(path, start) + out.error[0]
                raise RecordError(out.error[1], path=path, line=line)
            yield out
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _lines_before(path: str, offset: int) -> int:
    """How many lines the file has before `offset` (only counted for an error's line number)."""
    count = 0
    with open(path, "rb") as f:
        while offset > 0:
            block = f.read(min(offset, 16 << 20))
            if not block:
                break
            count += block.count(b"\n")
            offset -= len(block)
    return count


def select(out: Out, keep: list[int]) -> Out:
    """The chunk output with only the rows at the indices `keep` (merge's dedup)."""
    if len(keep) == out.rows:
        return out
    if out.source is None:
        data, ends = load(out), out.ends
        blob = b"".join(data[(ends[i - 1] if i else 0) : ends[i]] for i in keep)
        return Out(blob=blob, size=len(blob), rows=len(keep))
    table = np.frombuffer(out.spans, dtype=np.uint64).reshape(-1, 2)[np.asarray(keep, dtype=np.intp)]
    size = int(np.diff(table & ~np.uint64(BLOB), axis=1).sum())
    return Out(
        blob=out.blob,
        part=out.part,
        size=size,
        spans=array("Q", table.tobytes()),
        rows=len(keep),
        source=out.source,
    )


def discard(out: Out) -> None:
    """Drop a chunk's output (removing its part file)."""
    if out.part is not None:
        os.unlink(out.part)
        out.part = None


def emit(out: Out, f: IO[bytes], *, trim: int = 0) -> None:
    """Write a chunk's output to `f` (without its last `trim` bytes), from memory or from its part file,
    or for rows noted as spans, from the input file itself."""
    if out.source is not None:
        _emit_spans(out, f)
        return
    if out.part is None:
        f.write(memoryview(out.blob)[: out.size - trim])
        return
    f.flush()
    with open(out.part, "rb") as part:
        left = out.size - trim
        try:
            while left > 0:
                sent = os.copy_file_range(part.fileno(), f.fileno(), left)
                if sent == 0:
                    break
                left -= sent
        except (AttributeError, OSError):
            part.seek(out.size - trim - left)
            f.write(part.read(left))
    os.unlink(out.part)


def _emit_spans(out: Out, f: IO[bytes]) -> None:
    """Write rows noted as spans: runs of adjacent rows of the input file go out as one buffer each,
    straight from the mapped file with writev (the kernel copies once; no part file in between)."""
    blob = load(out)
    table = np.frombuffer(out.spans, dtype=np.uint64).reshape(-1, 2)
    if not len(table):
        return
    in_blob = table[:, 0] >= np.uint64(BLOB)
    starts = (table[:, 0] & ~np.uint64(BLOB)).astype(np.int64)
    ends = (table[:, 1] & ~np.uint64(BLOB)).astype(np.int64)
    # a run goes on while the next row starts where this one ends, in the same place
    joined = (in_blob[1:] == in_blob[:-1]) & (starts[1:] == ends[:-1])
    first = np.flatnonzero(np.concatenate(([True], ~joined)))
    last = np.concatenate((first[1:] - 1, [len(table) - 1]))
    runs = zip(starts[first].tolist(), ends[last].tolist(), in_blob[first].tolist(), strict=True)
    f.flush()
    size = os.path.getsize(out.source)
    with open(out.source, "rb") as src:
        mm = mmap.mmap(src.fileno(), size, access=mmap.ACCESS_READ)
    try:
        with memoryview(mm) as file_view, memoryview(blob) as blob_view:
            buffers: list[Any] = []
            total = 0
            for a, b, from_blob in runs:
                buffers.append(blob_view[a:b] if from_blob else file_view[a:b])
                total += b - a
                if len(buffers) == 1024:  # IOV_MAX on Linux
                    writev(f.fileno(), buffers, total)
                    buffers, total = [], 0
            writev(f.fileno(), buffers, total)
            del buffers
    finally:
        with contextlib.suppress(BufferError):  # a failed write's traceback still holds views
            mm.close()


def writev(fd: int, buffers: list[Any], total: int) -> None:
    """Write `buffers` (`total` bytes in all) to `fd` in one system call where the OS has writev."""
    done = os.writev(fd, buffers) if hasattr(os, "writev") and buffers else 0
    if done < total:  # no writev, or a short write (a full disk, a signal): the rest the plain way
        rest = memoryview(b"".join(buffers))[done:]
        while rest:
            rest = rest[os.write(fd, rest) :]


def load(out: Out) -> bytes:
    """A chunk's output bytes (reading and removing its part file if it has one)."""
    if out.part is None:
        return out.blob
    with open(out.part, "rb") as part:
        data = part.read()
    os.unlink(out.part)
    return data


@contextmanager
def scratch_dir(near: str | Path) -> Iterator[str]:
    """A temporary folder beside `near` (same file system, so part files copy cheaply), always removed."""
    parent = Path(near).parent
    parent.mkdir(parents=True, exist_ok=True)
    path = tempfile.mkdtemp(prefix=".zaoshu-parts-", dir=parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
