"""One error type for everything a user can fix: it always says where (file, line, key) and what was expected."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


class ZaoshuError(Exception):
    """A user-facing error: the CLI prints its message (no traceback) and exits non-zero."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        super().__init__(where + message)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        """Pickled with its path and line, so an error raised in a worker process arrives whole."""
        return functools.partial(type(self), self.message, path=self.path, line=self.line), ()


class RecordError(ZaoshuError):
    """A JSONL line that is not a valid record (torn, not JSON, not UTF-8, missing turns)."""


class RecipeError(ZaoshuError):
    """A recipe that does not validate; the message names the key path."""


class AuthError(ZaoshuError):
    """The provider refused the key (401/403): the whole run stops; the key itself is never shown."""

    exit_code = 3
