"""What every command shares: a user's mistake becomes a clear message and an exit code, never a traceback.

Exit codes (documented in the README, so scripts can chain `zaoshu run … && next`): 0 all done, 1 some tasks
failed for good (or an unexpected error), 2 bad input, 3 the provider refused the key, 130 interrupted.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from zaoshu.errors import ZaoshuError

err_console = Console(stderr=True, highlight=False)
console = Console(highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

#: set by the root `--debug` option: errors then keep their traceback (for a bug report).
DEBUG = False


def _error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def user_errors(func: F) -> F:
    """Print a ZaoshuError as `error: <file:line: message>` (no traceback) and exit with its code.

    An OS error that slipped past the commands' own checks (a place that cannot be read or written) and any
    other exception are printed the same way, exit 2 and 1: a user never sees a Python traceback unless
    they asked for it with `zaoshu --debug …`.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ZaoshuError as e:
            if DEBUG:
                raise
            _error(str(e))
            sys.exit(e.exit_code)
        except OSError as e:
            if DEBUG:
                raise
            where = f"{e.filename}: " if e.filename else ""
            _error(f"{where}{e.strerror or e}")
            sys.exit(2)
        except (KeyboardInterrupt, SystemExit, typer.Exit, typer.Abort, typer.exceptions.TyperException):
            raise
        except Exception as e:
            if DEBUG:
                raise
            _error(
                f"unexpected {type(e).__name__}: {e} (this is a bug; rerun with --debug for the traceback)"
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Flags:
    """A group of flags several commands take, declared once: name -> (Annotated type, default), and
    `build`, which turns the parsed values into the one options object the command receives as `name`."""

    name: str
    flags: dict[str, tuple[Any, Any]]
    build: Callable[..., Any]


def with_flags(*groups: Flags) -> Callable[[F], F]:
    """Add each group's flags to a command's signature (after its own parameters, for typer to parse) and
    call the command with one built options object per group: a new flag is one line in its group."""

    def wrap(func: F) -> F:
        signature = inspect.signature(func)
        names = {g.name for g in groups}
        # the command's own annotations as objects (the group parameters' types may be imported only
        # for type checking: they are never evaluated)
        own = [
            p.replace(
                annotation=eval(p.annotation, func.__globals__)
                if isinstance(p.annotation, str)
                else p.annotation
            )
            for p in signature.parameters.values()
            if p.name not in names
        ]
        added = [
            inspect.Parameter(flag, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for g in groups
            for flag, (annotation, default) in g.flags.items()
        ]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            for g in groups:
                kwargs[g.name] = g.build(**{flag: kwargs.pop(flag) for flag in g.flags})
            return func(**kwargs)

        parameters = [*own, *added]
        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command  # type: ignore[return-value]

    return wrap
