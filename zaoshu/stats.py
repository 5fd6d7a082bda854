"""The one way a stage counts: a dataclass of named counters and timers, written and read as JSON.

Every stage (generate, clean, judge, run) subclasses `Stats` with its own fields; the base gives them the
same JSON (`to_dict`, `to_json`, `write`) and the same reading back (`read`, by field name), and a timer
that fills a `*_s` field. A reader (the dataset card, the UI) reads a field by its name, so renaming a field
is a change a test sees, not a card that silently loses a line.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Self

import orjson

from zaoshu.errors import ZaoshuError
from zaoshu.files import write_bytes_atomic


@dataclass
class Stats:
    """Base of every stage's stats: subclasses declare counters (int), timers (float seconds, named `*_s`)
    and labels as dataclass fields. Fields whose name starts with `_` are bookkeeping and never written."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"

    def write(self, path: Path) -> None:
        write_bytes_atomic(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> Self:
        """The stats written by `write`, by field name: unknown names (a newer zaoshu) are ignored and
        missing ones (an older one) keep their defaults."""
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as e:
            raise ZaoshuError(f"cannot read it as JSON: {e}", path=path) from None
        if not isinstance(data, dict):
            raise ZaoshuError("stats must be a JSON object", path=path)
        names = {f.name for f in fields(cls) if not f.name.startswith("_")}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as e:  # a required field is missing
            raise ZaoshuError(f"not the stats of this stage: {e}", path=path) from None

    @contextlib.contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Time the block into the float field `name` (seconds, 3 decimals), even when it raises."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            setattr(self, name, round(time.monotonic() - t0, 3))
