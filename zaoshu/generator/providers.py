"""Providers: named profiles (base URL, key variable, default model), never guessed from a model name.

A provider is an object with a lifecycle. The engine does::

    provider = get_provider(options.provider)
    async with provider.open(options) as endpoint:   # may start something (a local server) and stop it after
        client = make_client(endpoint, ...)          # the OpenAI-compatible path, or the zhipuai SDK

`open` yields an `Endpoint` (base_url, api_key as a `Secret`, model, transport). Adding a provider needs no
change to the engine: subclass `Provider`, implement `open`, `describe` (for `--dry-run`; it must not start
anything) and optionally `check` (cheap checks run before planning, e.g. a missing key) and the class
attribute `option_defaults` (options it changes when the user did not set them, e.g. concurrency 1), then
register it by name::

    class Embedded(Provider):
        name = "embedded"
        def describe(self, options): return {"base_url": "(started on a free loopback port)", "model": ...}
        @asynccontextmanager
        async def open(self, options):
            server = start_llama_server(...)            # pick a free 127.0.0.1 port, wait until ready
            try:
                yield Endpoint(provider=self.name, base_url=server.url + "/v1", model=..., api_key=None)
            finally:
                server.stop()

    register_provider("embedded", Embedded)                      # a factory (class or function)
    register_provider("embedded", "zaoshu.embedded:Embedded")    # or lazily, by "module:attribute"

Keys come only from the environment (`Profile.key_env`) and travel wrapped in `Secret`, whose repr is
`***`; a missing variable is a `ZaoshuError` before any request (`local` needs none).
"""

from __future__ import annotations

import importlib
import os
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from zaoshu.errors import ZaoshuError
from zaoshu.generator.options import GenerateOptions
from zaoshu.generator.redact import Secret as Secret
from zaoshu.generator.redact import safe_command as safe_command
from zaoshu.generator.redact import safe_url as safe_url
from zaoshu.generator.redact import url_secrets as url_secrets


def api_url(base_url: str, path: str) -> str:
    """`base_url` + `/path`, keeping a query string where it belongs (`.../v1?key=K` -> `.../v1/models?key=K`)."""
    base, sep, query = base_url.partition("?")
    return base.rstrip("/") + "/" + path.lstrip("/") + sep + query


@dataclass(frozen=True)
class Endpoint:
    """Where and how to send chat requests; what a provider's `open` yields."""

    provider: str
    base_url: str
    model: str
    api_key: Secret | None = None
    key_env: str | None = None  # named in error messages ("the key in $DEEPSEEK_API_KEY was refused")
    transport: str = "openai"  # "openai" (OpenAI-compatible HTTP) or "zhipuai" (the zhipuai SDK)
    headers: dict[str, str] = field(default_factory=dict)
    # A server this run started itself (embedded) can say why a request failed: given the failure, the
    # reason to stop the whole run (it crashed, it hangs), or None to retry as usual.
    diagnose: Callable[[Exception], str | None] | None = field(default=None, compare=False)

    def secrets(self) -> list[str]:
        """What must never be printed: the key and any credentials inside the base URL."""
        key = [self.api_key.reveal()] if self.api_key else []
        return key + url_secrets(self.base_url)


@dataclass(frozen=True)
class Profile:
    name: str
    base_url: str
    key_env: str | None
    default_model: str | None
    transport: str = "openai"
    note: str = ""


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", "deepseek-chat"),
        Profile(
            "qwen",
            "https://dashscope.aliyuncs.com/compatible-mode/v1",
            "DASHSCOPE_API_KEY",
            "qwen-plus",
            note="DashScope OpenAI-compatible mode",
        ),
        Profile("moonshot", "https://api.moonshot.cn/v1", "MOONSHOT_API_KEY", "moonshot-v1-8k"),
        Profile("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini"),
        Profile(
            "zhipu",
            "https://open.bigmodel.cn/api/paas/v4",
            "ZHIPUAI_API_KEY",
            "glm-4-flash",
            note="Zhipu's OpenAI-compatible endpoint",
        ),
        Profile(
            "zhipuai",
            "https://open.bigmodel.cn/api/paas/v4",
            "ZHIPUAI_API_KEY",
            "glm-4-flash",
            transport="zhipuai",
            note="through the zhipuai SDK",
        ),
        Profile(
            "local",
            "http://127.0.0.1:8000/v1",
            None,
            None,
            note="vLLM / Ollama (:11434/v1) / llama.cpp (:8080/v1) server; no key; model from /models if not given",
        ),
    )
}


class Provider:
    """Base class: `open(options)` is an async context manager yielding an `Endpoint`."""

    name: str = ""

    def describe(self, options: GenerateOptions) -> dict[str, Any]:
        """What `open` would use, without side effects (for `--dry-run` and messages)."""
        raise NotImplementedError

    def check(self, options: GenerateOptions) -> None:
        """Raise ZaoshuError for what can be known wrong before planning (a missing key variable)."""

    def open(self, options: GenerateOptions) -> AbstractAsyncContextManager[Endpoint]:
        raise NotImplementedError


class ProfileProvider(Provider):
    """A hosted or local OpenAI-compatible API (or zhipuai's SDK) described by a `Profile`."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.name = profile.name

    def _key_env(self, options: GenerateOptions) -> str | None:
        return getattr(options, "key_env", None) or self.profile.key_env

    def describe(self, options: GenerateOptions) -> dict[str, Any]:
        key_env = self._key_env(options)
        return {
            "provider": self.name,
            "base_url": safe_url(options.base_url or self.profile.base_url),
            "model": options.model or self.profile.default_model or "(first model the server lists)",
            "key_env": key_env,
            "key_set": bool(key_env and os.environ.get(key_env)),
            "transport": self.profile.transport,
        }

    def check(self, options: GenerateOptions) -> None:
        key = self.api_key(options)
        base_url = options.base_url or self.profile.base_url
        if key and urllib.parse.urlsplit(base_url).username is not None:
            # aiohttp refuses a request with both; say which two before anything is sent
            raise ZaoshuError(
                f"--base-url {safe_url(base_url)} carries credentials (user:password@) and a key is set in "
                f"${self._key_env(options)}: an HTTP request carries one Authorization, not both. Drop the "
                "credentials from the URL, or unset the key (or pass --key-env for another variable)"
            )

    def api_key(self, options: GenerateOptions) -> Secret | None:
        key_env = self._key_env(options)
        if key_env is None:
            return None
        value = os.environ.get(key_env, "").strip()
        if not value:
            if self.profile.key_env is None:  # local with an explicit --key-env that is unset: no key
                return None
            raise ZaoshuError(
                f"provider {self.name!r} needs an API key in the environment variable {key_env}, which is "
                f"not set; export {key_env}=... (or choose another --provider; 'local' needs no key)"
            )
        return Secret(value)

    @asynccontextmanager
    async def open(self, options: GenerateOptions) -> AsyncIterator[Endpoint]:
        key = self.api_key(options)
        base_url = options.base_url or self.profile.base_url
        base, sep, query = base_url.partition("?")
        base_url = base.rstrip("/") + sep + query
        model = options.model or self.profile.default_model
        if model is None:
            model = await first_served_model(base_url, key, options.timeout)
        yield Endpoint(
            provider=self.name,
            base_url=base_url,
            model=model,
            api_key=key,
            key_env=self._key_env(options),
            transport=self.profile.transport,
        )


async def first_served_model(base_url: str, key: Secret | None, timeout: float) -> str:
    """The first model a local server lists at GET /models (vLLM, Ollama and llama.cpp all serve it)."""
    import aiohttp

    headers = {"Authorization": f"Bearer {key.reveal()}"} if key else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=min(timeout, 30))) as session,
            session.get(api_url(base_url, "models"), headers=headers) as resp,
        ):
            data = await resp.json(content_type=None)
        return data["data"][0]["id"]
    except Exception as e:
        raise ZaoshuError(
            f"could not list the models of {safe_url(api_url(base_url, 'models'))} ({type(e).__name__}); "
            "is the server running? pass --model NAME to skip this"
        ) from None


Factory = Callable[[], Provider]
_REGISTRY: dict[str, Factory | str] = {}


def register_provider(name: str, factory: Factory | str, *, replace: bool = False) -> None:
    """Register a provider by name: a factory (a class or function returning a Provider) or a lazy
    "module:attribute" path imported on first use."""
    existing = _REGISTRY.get(name)
    # A lazy "module:attribute" entry is a placeholder that the module replaces when it is imported.
    if existing is not None and not replace and not isinstance(existing, str):
        raise ValueError(f"provider {name!r} is already registered")
    _REGISTRY[name] = factory


def provider_names() -> list[str]:
    return sorted(_REGISTRY)


def get_provider(name: str) -> Provider:
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ZaoshuError(f"unknown provider {name!r}; choose one of: {', '.join(provider_names())}")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ZaoshuError(f"provider {name!r} could not be loaded from {module}:{attr} ({e})") from None
    return factory()  # type: ignore[operator]


for _profile in PROFILES.values():
    register_provider(_profile.name, lambda p=_profile: ProfileProvider(p))

# Providers that live in their own modules, imported only when chosen (llama.cpp start-up code is heavy).
register_provider("embedded", "zaoshu.generator.embedded:Embedded")
