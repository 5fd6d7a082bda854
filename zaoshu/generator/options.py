"""The options of a generation run, in their own module: the providers, the engine and the commands all
take them, and none of those need import another to name them."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zaoshu.generator.redact import safe_url


class GenerateOptions(BaseModel):
    """Everything `zaoshu generate` takes besides the recipe and the output path."""

    model_config = ConfigDict(extra="forbid")

    provider: str = "deepseek"
    model: str | None = None
    base_url: str | None = None
    key_env: str | None = None  # read the key from this variable instead of the profile's
    concurrency: int = Field(64, ge=1, le=4096)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    max_attempts: int = Field(8, ge=1)
    timeout: float = Field(120.0, gt=0)
    backoff: float = Field(0.5, ge=0)  # first retry wait (s); doubles each attempt, plus jitter
    backoff_max: float = Field(30.0, ge=0)
    rounds: int | None = Field(None, ge=1)
    seed: int | None = None
    limit: int | None = Field(None, ge=1)
    dry_run: bool = False
    quiet: bool = False
    prices: Path | None = None
    cache: bool = True  # replies already made for the same request are taken from the response cache
    cache_path: Path | None = None  # the cache's SQLite file [the user's cache dir]
    batch: bool = False  # through the provider's batch API (half price, within a day); see generator/batch.py
    no_wait: bool = False  # --batch: submit and return; a later run collects
    batch_poll: float = Field(30.0, gt=0)  # seconds between polls of a batch
    # --batch: where the unfinished tasks of an expired or cancelled batch go (a new batch, or online now)
    batch_resend: Literal["batch", "online"] = "batch"
    grace: float = Field(10.0, ge=0)  # seconds to wait for in-flight requests after Ctrl-C
    handle_signals: bool = True
    command: str | None = None  # the command line, to print how to resume
    show: int = Field(3, ge=0)  # requests printed by --dry-run
    label: str = "generate"  # what the progress line calls the work (the judge and eval reuse this engine)
    # The embedded provider (llama.cpp on this machine): a GGUF instead of the packaged model, its threads
    # and context size. Other providers ignore them.
    model_path: Path | None = None
    threads: int | None = None  # None: the free cores; checked (and clamped) by the embedded provider
    n_ctx: int = Field(2048, ge=256)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        """A URL the client cannot send to is refused now, not after minutes of retries of requests never
        sent. The message masks credentials: it may be printed."""
        if value is None:
            return None
        try:
            parts = urllib.parse.urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError(f"{safe_url(value)!r} is not a URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{safe_url(value)!r} is not an http(s) URL; write it whole, e.g. http://127.0.0.1:8000/v1"
            )
        return value
