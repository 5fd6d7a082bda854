"""A person's review of cleaned data: accept a rejected record, reject a kept one, with a note.

Decisions live in an append-only `review.jsonl` beside the data (one JSON object a line: id, action,
note, who, at), never as edits of clean.jsonl: the cleaning stays reproducible and the review can be
read, audited and replayed. The last decision about an id wins. `zaoshu clean` and split / convert /
publish apply them; inside a run folder the file is picked up without being named.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import polars as pl

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.records import Record, content_id, dumps, iter_lines, parse_line, utc_now

REVIEW_FILE = "review.jsonl"
ACTIONS = ("accept", "reject")
#: the reject reason a reviewer's rejection gets (in rejects files and reports).
REVIEW_REASON = "review"


@dataclass(frozen=True)
class Decision:
    id: str
    action: str  # accept | reject
    note: str = ""
    who: str = ""
    at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ZaoshuError(f"review action must be one of {', '.join(ACTIONS)}, got {self.action!r}")
        if not self.id:
            raise ZaoshuError("a review decision needs the record's id")


@dataclass
class ReviewCounts:
    """What a review changed: rejected records accepted, kept records rejected."""

    accepted: int = 0
    rejected: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def record_key(record: Record) -> str:
    """The id a decision names: the record's `id`, else the hash of its conversation (imported data)."""
    rid = record.get("id")
    return str(rid) if rid else content_id(record.get("messages") or [])


def append_decision(path: str | Path, decision: Decision) -> None:
    """Append one decision under an exclusive lock, so two reviewers at once never lose or tear a line.

    O_APPEND puts each write at the end; the lock keeps a write whole even where a line is larger than
    what the OS writes atomically, and fsync keeps it once the reviewer saw it acknowledged.
    """
    path = Path(path)
    line = orjson.dumps(asdict(decision)) + b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise ZaoshuError(f"cannot write the review file: {e.strerror}", path=path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A torn last line (a writer killed mid-line, never acknowledged) is cut, as every writer holds
        # the lock; it would otherwise swallow this line.
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            os.ftruncate(fd, size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def read_decisions(path: str | Path) -> dict[str, Decision]:
    """id -> its latest decision. A torn last line (a kill mid-append) is ignored; any other bad line
    is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ZaoshuError("review file not found", path=path)
    lines = list(iter_lines(path))
    out: dict[str, Decision] = {}
    for i, (number, raw) in enumerate(lines):
        try:
            value = parse_line(raw, path=path, line=number)
        except RecordError:
            if i == len(lines) - 1 and not raw.endswith(b"\n"):
                break
            raise
        if not isinstance(value, dict):
            raise RecordError("expected a JSON object", path=path, line=number)
        try:
            decision = Decision(**{k: value[k] for k in ("id", "action", "note", "who", "at") if k in value})
        except (TypeError, ZaoshuError) as e:
            raise RecordError(f"not a review decision ({e})", path=path, line=number) from None
        out[decision.id] = decision
    return out


def apply_decisions(records: Iterable[Record], decisions: dict[str, Decision]) -> Iterator[Record]:
    """The records with the reviewers' decisions applied (new dicts, the inputs are left as they are).

    A record is rejected when it carries a `reject` object. Accepting one removes it (and notes the
    review in meta.review); rejecting a kept one adds `reject` with reason "review" and the note.
    """
    for record in records:
        decision = decisions.get(record_key(record))
        rejected = "reject" in record
        if decision is None or (decision.action == "accept") != rejected:
            yield record
            continue
        review = {"action": decision.action, "note": decision.note, "who": decision.who, "at": decision.at}
        out = {k: v for k, v in record.items() if k != "reject"}
        if decision.action == "accept":
            review["was"] = record["reject"]
            out["meta"] = {**(record.get("meta") or {}), "review": review}
        else:
            out = {"reject": {"reason": REVIEW_REASON, "detail": decision.note, "who": decision.who}, **out}
        yield out


def apply_to_frame(frame: pl.DataFrame, decisions: dict[str, Decision]) -> tuple[pl.DataFrame, ReviewCounts]:
    """The cleaning frame's verdicts (columns id, reason, detail, duplicate_of) overridden by the review."""
    accept = [d.id for d in decisions.values() if d.action == "accept"]
    reject = {d.id: d.note for d in decisions.values() if d.action == "reject"}
    is_accepted = pl.col("id").is_in(accept) & pl.col("reason").is_not_null()
    is_rejected = pl.col("id").is_in(list(reject)) & pl.col("reason").is_null()
    counts = frame.select(a=is_accepted.sum(), r=is_rejected.sum()).row(0)
    note = pl.col("id").replace_strict(reject, default=None, return_dtype=pl.Utf8)
    frame = frame.with_columns(
        reason=pl.when(is_accepted)
        .then(None)
        .when(is_rejected)
        .then(pl.lit(REVIEW_REASON))
        .otherwise(pl.col("reason")),
        detail=pl.when(is_accepted).then(None).when(is_rejected).then(note).otherwise(pl.col("detail")),
        duplicate_of=pl.when(is_accepted | is_rejected).then(None).otherwise(pl.col("duplicate_of")),
    )
    return frame, ReviewCounts(accepted=int(counts[0] or 0), rejected=int(counts[1] or 0))


def default_review(*near: str | Path | None) -> Path | None:
    """review.jsonl in the folder of the first of `near` that has one (the data's run folder)."""
    for p in near:
        if p is None:
            continue
        p = Path(p)
        for folder in (p, p.parent) if p.is_dir() else (p.parent,):
            if (folder / REVIEW_FILE).is_file():
                return folder / REVIEW_FILE
    return None


def rejects_beside(path: Path) -> Path:
    """Where `zaoshu clean -o X.jsonl` put the records it rejected."""
    return path.with_name(path.stem + ".rejects.jsonl")


def write_reviewed(path: Path, decisions: dict[str, Decision], out: IO[bytes]) -> ReviewCounts:
    """Write the kept records of `path` after review to `out`, one at a time: those reviewers rejected
    dropped, and those they accepted out of the rejects file beside it added."""
    from zaoshu.formats.convert import iter_any

    counts = ReviewCounts()
    have: set[str] = set()
    for record in apply_decisions(iter_any(path), decisions):
        if "reject" in record:
            counts.rejected += 1
        else:
            have.add(record_key(record))
            out.write(dumps(record))
    rejects = rejects_beside(path)
    wanted = {k for k, d in decisions.items() if d.action == "accept"} - have
    if rejects.is_file() and wanted:
        for record in apply_decisions(_accepted_rejects(rejects, wanted), decisions):
            if "reject" not in record:
                counts.accepted += 1
                out.write(dumps(record))
    return counts


def _accepted_rejects(path: Path, wanted: set[str]) -> Iterator[Record]:
    for number, raw in iter_lines(path):
        try:
            record = parse_line(raw, path=path, line=number)
        except RecordError:
            continue  # a bad line in the rejects file is its own reject (bad_line), never accepted here
        if isinstance(record, dict) and record.get("messages") and record_key(record) in wanted:
            yield record


@contextlib.contextmanager
def reviewed_input(
    path: str | Path, review: str | Path | None, *, say: Any = None
) -> Iterator[tuple[Path, ReviewCounts | None]]:
    """`path`, or a temporary copy of it with the review applied, for commands that read a dataset.

    The copy goes in a hidden folder beside the data, so what looks for files next to the data (the
    recipe, stats and report a dataset card describes) still finds them; it is removed afterwards.
    A folder (publish's train/test splits) gets each of its JSONL files reviewed.
    """
    path = Path(path)
    if review is None:
        yield path, None
        return
    decisions = read_decisions(review)
    parent = path if path.is_dir() else path.parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".zaoshu-review-", dir=parent))
    except OSError:
        tmp = Path(tempfile.mkdtemp(prefix="zaoshu-review-"))
    try:
        total = ReviewCounts()
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for f in files:
            if f.name.endswith(".rejects.jsonl") or f.name == REVIEW_FILE:
                continue
            with open(tmp / f.name, "wb") as out:
                counts = write_reviewed(f, decisions, out)
            total.accepted += counts.accepted
            total.rejected += counts.rejected
        if say is not None:
            say(f"review {review}: {total.accepted} accepted, {total.rejected} rejected by reviewers")
        yield (tmp if path.is_dir() else tmp / path.name), total
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
