"""`zaoshu cache info|clear`: the response cache that keeps reruns from paying twice for a request."""

from __future__ import annotations

import typer

from zaoshu.cli import app
from zaoshu.cli.common import user_errors

cache_app = typer.Typer(
    help="The response cache: replies already paid for, reused when the same request is made again.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.1f} MB"


@cache_app.command("info")
@user_errors
def info_command() -> None:
    """Where the cache is, how many replies it holds and how big it is."""
    from zaoshu.generator.cache import ResponseCache

    cache = ResponseCache()
    if not cache.path.exists():
        typer.echo(f"{cache.path}: empty (no cache yet)")
        return
    with cache:
        i = cache.info()
    typer.echo(
        f"{i['path']}: {i['entries']:,} replies, {_mb(i['bytes'])} stored ({_mb(i['file_bytes'])} on disk), "
        f"bounded at {_mb(i['max_bytes'])} (ZAOSHU_CACHE_MAX_MB)"
    )


@cache_app.command("clear")
@user_errors
def clear_command() -> None:
    """Remove every cached reply (the next runs send all their requests again)."""
    from zaoshu.generator.cache import ResponseCache

    cache = ResponseCache()
    if not cache.path.exists():
        typer.echo(f"{cache.path}: nothing to clear")
        return
    with cache:
        n = cache.clear()
    typer.echo(f"{cache.path}: removed {n:,} replies")
