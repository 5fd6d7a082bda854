"""`zaoshu ui`: browse, review and chat in a local web app (thin: it parses and starts the server)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer
from rich.markup import escape

from zaoshu.cli import app
from zaoshu.cli.common import console, err_console, user_errors
from zaoshu.errors import ZaoshuError

LOCAL = ("127.0.0.1", "localhost", "::1")


@app.command("ui")
@user_errors
def ui_command(
    source: Path | None = typer.Argument(None, help="A `zaoshu run` folder, or any record JSONL file."),
    model: list[Path] = typer.Option([], "--model", help="Model folder to chat with (once or more)."),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="LoRA adapter: the first --model with it is added beside the base."
    ),
    provider: list[str] = typer.Option(
        [], "--provider", help="An API model to chat with, NAME or NAME:MODEL (key from its env variable)."
    ),
    base_url: str | None = typer.Option(None, "--base-url", help="Base URL for --provider."),
    recipe: Path | None = typer.Option(
        None, "--recipe", help="Recipe: system prompt and eval_inputs (default: found by the data's recipe)."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (default: this machine only)."
    ),
    port: int = typer.Option(7860, "--port", help="Port."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Longest chat answer, in tokens."),
) -> None:
    """Look through records (filter, review: accept / reject with a note) and chat with models, in a browser."""
    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise ZaoshuError(
            f'zaoshu ui needs {", ".join(missing)}; install the ui extra: pip install -e ".[ui]"'
        )
    if source is not None and not source.exists():
        raise ZaoshuError("no such run folder or record file", path=source)
    import uvicorn

    from zaoshu.ui.app import create_app
    from zaoshu.ui.models import ChatModel
    from zaoshu.ui.recipe import find_ui_recipe

    models = [ChatModel(m.name or str(m), path=m, max_new_tokens=max_new_tokens) for m in model]
    if adapter is not None:
        if not model:
            raise ZaoshuError("--adapter needs a --model (the base it was trained on)")
        base = model[0]
        models.append(
            ChatModel(
                f"{base.name} + {adapter.name}", path=base, adapter=adapter, max_new_tokens=max_new_tokens
            )
        )
    models += [ChatModel(p, provider=p, base_url=base_url) for p in provider]
    found = find_ui_recipe(source, recipe)
    if host not in LOCAL:
        err_console.print(
            f"[yellow]warning:[/] listening on {escape(host)}: anyone who can reach this address can read the "
            "data, write review decisions and use the models; there is no login.",
            markup=True,
            soft_wrap=True,
        )
    console.print(f"zaoshu ui on http://{host if ':' not in host else f'[{host}]'}:{port}/", markup=False)
    uvicorn.run(create_app(source, models=models, recipe=found), host=host, port=port, log_level="warning")
