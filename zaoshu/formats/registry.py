"""The formats by name, and auto-detection from a file's first rows."""

from __future__ import annotations

from pathlib import Path

from zaoshu.errors import ZaoshuError
from zaoshu.formats import alpaca, canonical, openai, sharegpt, xtuner
from zaoshu.formats.base import Format
from zaoshu.formats.io import Rows

FORMATS: dict[str, Format] = {
    f.name: f for f in (canonical.FORMAT, openai.FORMAT, xtuner.FORMAT, alpaca.FORMAT, sharegpt.FORMAT)
}
#: how many rows auto-detection looks at
SAMPLE = 50


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ZaoshuError(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}") from None


def _describe(row: object) -> str:
    if isinstance(row, dict):
        return f"an object with keys {', '.join(list(row)[:8]) or '(none)'}"
    return f"a JSON {type(row).__name__}"


def detect_rows(rows: Rows, sample: int = SAMPLE) -> str:
    """The one format that the sampled rows match; a clear error when none or several do.

    A row that matches no format among rows of one format (a record that lost its turns) does not make
    the file unknown: the reader reports it later with its line and what is missing.
    """
    head = rows.head(sample)
    if not head:
        raise ZaoshuError("empty input: no records found", path=rows.path)
    found: dict[str, int] = {}  # format -> position of the first row that matched it
    unmatched: tuple[int, object] | None = None
    for position, row in head:
        names = [f.name for f in FORMATS.values() if f.matches(row)]
        if len(names) > 1:
            raise rows.error(position, f"could be {' or '.join(names)} (ambiguous); say which with --from")
        if names:
            found.setdefault(names[0], position)
        elif unmatched is None:
            unmatched = (position, row)
    if not found:
        assert unmatched is not None
        raise rows.error(
            unmatched[0],
            f"is {_describe(unmatched[1])}, which is no known format; expected one of: "
            + "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values()),
        )
    if len(found) > 1:
        places = {name: rows.where(position) for name, position in found.items()}
        where = [f"{name} at {item or f'line {line}'}" for name, (line, item) in places.items()]
        raise ZaoshuError(
            f"rows in different formats ({', '.join(where)}); one file holds one format: "
            "split it, or say which with --from",
            path=rows.path,
        )
    return next(iter(found))


def detect_format(path: str | Path) -> str:
    """The format of a file (JSONL, JSON array or one object), judged from its first rows."""
    return detect_rows(Rows.peek(path))
