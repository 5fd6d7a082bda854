"""Options shared by `zaoshu generate` and `zaoshu run`, declared once so their flags and help never drift."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from zaoshu.cli.common import Flags
from zaoshu.errors import ZaoshuError
from zaoshu.generator.engine import GenerateOptions
from zaoshu.generator.providers import provider_names

Provider = Annotated[
    str,
    typer.Option(
        help=f"Provider: {', '.join(provider_names())}. Keys come from its variable; 'embedded' needs none."
    ),
]
Model = Annotated[str | None, typer.Option(help="Model name (default: the provider's).")]
BaseUrl = Annotated[str | None, typer.Option(help="Override the provider's base URL.")]
KeyEnv = Annotated[str | None, typer.Option(help="Read the key from this variable instead of the profile's.")]
Concurrency = Annotated[
    int | None, typer.Option("--concurrency", "-c", help="Most requests in flight [64; embedded: 1].")
]
Rpm = Annotated[float | None, typer.Option(help="Requests per minute at most.")]
Tpm = Annotated[float | None, typer.Option(help="Tokens per minute at most (prompt estimate + max_tokens).")]
MaxAttempts = Annotated[int, typer.Option(help="Attempts per task (429, 5xx, timeouts, resets are retried).")]
Timeout = Annotated[float | None, typer.Option(help="Seconds per request [120; embedded: 600].")]
Rounds = Annotated[int | None, typer.Option(help="Rounds (default: the recipe's).")]
Seed = Annotated[int | None, typer.Option(help="Seed (default: the recipe's).")]
Limit = Annotated[int | None, typer.Option(help="Only a seeded, evenly spread sample of N tasks.")]
Prices = Annotated[Path | None, typer.Option(help="YAML price table overriding the shipped one.")]
ModelPath = Annotated[
    Path | None,
    typer.Option(help="embedded: a GGUF file to serve instead of the packaged Qwen2.5-Coder-1.5B."),
]
Threads = Annotated[
    int | None,
    typer.Option(help="embedded: llama.cpp threads [the cores not busy now; more than are free is slower]."),
]
NoCache = Annotated[
    bool,
    typer.Option(
        "--no-cache", help="Send every request: do not take replies from the response cache nor store them."
    ),
]
Batch = Annotated[
    bool,
    typer.Option(
        "--batch",
        help="Send through the provider's batch API (openai, qwen, zhipu: about half the price, within 24 h); "
        "rerun the same command to resume or collect.",
    ),
]
NoWait = Annotated[bool, typer.Option("--no-wait", help="--batch: submit and exit; a later run collects.")]
BatchResend = Annotated[
    str,
    typer.Option(
        "--batch-resend",
        help="--batch: where the unfinished tasks of an expired or cancelled batch go: 'batch' (a new batch) "
        "or 'online' (sent at once at the online price).",
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print what would be sent; send nothing.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar (the summary is still printed).")]
AllowOutsideFiles = Annotated[
    bool,
    typer.Option(
        "--allow-outside-files",
        help="Let the recipe read `{file: …}` values outside its own folder (refused by default: a shared "
        "recipe must not send local files to a provider).",
    ),
]


def generate_options(**given: Any) -> GenerateOptions:
    """GenerateOptions from the parsed flags; flags left unset fall back to the provider's defaults."""
    given = {k: v for k, v in given.items() if not (k in ("concurrency", "timeout") and v is None)}
    if "no_cache" in given:
        given["cache"] = not given.pop("no_cache")
    try:
        return GenerateOptions(**given, command=shlex.join(["zaoshu", *sys.argv[1:]]))
    except ValidationError as e:
        problems = "; ".join(
            f"--{'-'.join(map(str, err['loc'])).replace('_', '-')}: {err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        )
        raise ZaoshuError(problems) from None


#: every generation flag, as `zaoshu generate` and `zaoshu run` take it (see `common.with_flags`)
GENERATE = Flags(
    "generate_options",
    {
        "provider": (Provider, "deepseek"),
        "model": (Model, None),
        "base_url": (BaseUrl, None),
        "key_env": (KeyEnv, None),
        "concurrency": (Concurrency, None),
        "rpm": (Rpm, None),
        "tpm": (Tpm, None),
        "max_attempts": (MaxAttempts, 8),
        "timeout": (Timeout, None),
        "rounds": (Rounds, None),
        "seed": (Seed, None),
        "limit": (Limit, None),
        "prices": (Prices, None),
        "model_path": (ModelPath, None),
        "threads": (Threads, None),
        "no_cache": (NoCache, False),
        "batch": (Batch, False),
        "no_wait": (NoWait, False),
        "batch_resend": (BatchResend, "batch"),
        "dry_run": (DryRun, False),
        "quiet": (Quiet, False),
    },
    generate_options,
)
