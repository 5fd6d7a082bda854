"""The `zaoshu` command: thin typer wrappers that parse options and call the Python API.

Each stage's commands live in their own module and register on the one `app`.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="zaoshu",
    help="造数: turn a recipe into clean supervised fine-tuning data and hand it to XTuner.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from zaoshu import __version__

        typer.echo(f"zaoshu {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of an error."),
) -> None:
    """造数: recipe -> generate -> clean -> convert / publish / train."""
    from zaoshu.cli import common

    common.DEBUG = debug


# Registering modules: importing them adds their commands to `app`.
from zaoshu.cli import (  # noqa: E402,F401
    cache_cmd,
    clean_cmd,
    eval_cmd,
    formats_cmd,
    generate_cmd,
    judge_cmd,
    plan_cmd,
    run_cmd,
    train_cmd,
    ui_cmd,
)


def main() -> None:
    app()
