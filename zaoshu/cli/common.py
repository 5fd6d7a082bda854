"""What every command shares: turning a ZaoshuError into a clear message and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape

from zaoshu.errors import ZaoshuError

err_console = Console(stderr=True, highlight=False)
console = Console(highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Print a ZaoshuError as `error: <file:line: message>` (no traceback) and exit with its code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ZaoshuError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, soft_wrap=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]
