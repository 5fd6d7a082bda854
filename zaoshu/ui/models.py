"""The models `zaoshu ui` chats with: local Hugging Face folders (optionally with a LoRA adapter) or an
OpenAI-compatible provider, each answering as a stream of text pieces.

A local model is checked before it is loaded (a config.json, weight files, and weights that fit in the
memory this machine has free), so a wrong folder or a model too big gives a message in the page instead
of a traceback or a machine swapping to a halt; the server keeps running either way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from zaoshu.errors import ZaoshuError

WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin", "model*.bin", "*.pt", "*.gguf")
#: float32 on CPU: a bf16 / fp16 checkpoint takes twice its file size once loaded, plus working room.
HEADROOM = 1.2


def available_memory() -> int:
    """Bytes this machine can give a model now (MemAvailable), or a large number where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 62


def gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def check_model_dir(path: Path, *, memory: int | None = None) -> int:
    """Raise a ZaoshuError saying what is wrong with a model folder; returns the bytes it needs."""
    if not path.is_dir():
        raise ZaoshuError("model folder not found", path=path)
    if not (path / "config.json").is_file():
        raise ZaoshuError("not a Hugging Face model folder: no config.json", path=path)
    weights = [f for g in WEIGHT_GLOBS for f in path.glob(g) if f.is_file()]
    if not weights:
        raise ZaoshuError(
            "the model folder has no weights (*.safetensors or pytorch_model*.bin); "
            "a merged model or a base model is needed here",
            path=path,
        )
    size = sum(f.stat().st_size for f in weights)
    try:
        dtype = orjson.loads((path / "config.json").read_bytes()).get("torch_dtype")
    except (orjson.JSONDecodeError, AttributeError):
        dtype = None
    need = int(size * (2 if dtype in ("bfloat16", "float16") else 1) * HEADROOM)
    free = available_memory() if memory is None else memory
    if need > free:
        raise ZaoshuError(
            f"model too big for this machine: it needs about {gib(need)} of memory to run on CPU, "
            f"{gib(free)} is free; use a smaller model or a machine with more memory",
            path=path,
        )
    return need


@dataclass
class ChatModel:
    """One model of the chat page. Loaded on first use; one answer at a time."""

    name: str
    path: Path | None = None
    adapter: Path | None = None
    provider: str | None = None  # "PROVIDER" or "PROVIDER:MODEL"
    base_url: str | None = None
    max_new_tokens: int = 256
    _session: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    error: str | None = None

    @property
    def label(self) -> str:
        return self.name

    def _load(self) -> Any:
        if self._session is None:
            from zaoshu.trainer.chat import ChatSession

            assert self.path is not None
            check_model_dir(self.path)
            if self.adapter is not None and not (self.adapter / "adapter_config.json").is_file():
                raise ZaoshuError("not a LoRA adapter folder: no adapter_config.json", path=self.adapter)
            try:
                self._session = ChatSession(
                    self.path, adapter=self.adapter, max_new_tokens=self.max_new_tokens
                )
            except ZaoshuError:
                raise
            except (OSError, ValueError, RuntimeError) as e:
                raise ZaoshuError(f"the model could not be loaded: {e}", path=self.path) from None
        return self._session

    def stream(
        self, system: str, messages: list[dict[str, str]], *, temperature: float = 0.7
    ) -> Iterator[str]:
        """The answer to the last user message, piece by piece as it is generated."""
        if self.provider:
            yield from provider_stream(
                self.provider, system, messages, temperature=temperature, base_url=self.base_url
            )
            return
        with self._lock:
            session = self._load()
            session.max_new_tokens = self.max_new_tokens
            yield from _local_stream(session, system, messages, temperature)


def _local_stream(
    session: Any, system: str, messages: list[dict[str, str]], temperature: float
) -> Iterator[str]:
    import torch
    from transformers import TextIteratorStreamer

    session.system = system
    session.history = [
        (u["content"], a["content"])
        for u, a in zip(messages[:-1:2], messages[1:-1:2], strict=False)
        if u.get("role") == "user" and a.get("role") == "assistant"
    ]
    prompt = session.prompt(messages[-1]["content"])
    add_special = session.xtuner_template is not None
    ids = session.tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special).to(session.device)
    streamer = TextIteratorStreamer(
        session.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300
    )
    kwargs: dict[str, Any] = {
        **ids,
        "streamer": streamer,
        "max_new_tokens": session.max_new_tokens,
        "do_sample": temperature > 0,
        "pad_token_id": session.tokenizer.pad_token_id
        if session.tokenizer.pad_token_id is not None
        else session.tokenizer.eos_token_id,
    }
    if temperature > 0:
        kwargs["temperature"] = temperature
    if session.stop_words:
        kwargs.update(stop_strings=session.stop_words, tokenizer=session.tokenizer)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            with torch.no_grad():
                session.model.generate(**kwargs)
        except BaseException as e:  # shown in the page; the streamer is ended so the reader stops
            failure.append(e)
            streamer.end()

    thread = threading.Thread(target=work, name="zaoshu-ui-generate", daemon=True)
    thread.start()
    for piece in streamer:
        if piece:
            yield piece
    thread.join()
    if failure:
        raise ZaoshuError(f"generation failed: {failure[0]}")


def provider_stream(
    spec: str,
    system: str,
    messages: list[dict[str, str]],
    *,
    temperature: float = 0.7,
    base_url: str | None = None,
) -> Iterator[str]:
    """Stream an answer from an OpenAI-compatible provider (`--provider NAME[:MODEL]`), key from env."""
    import asyncio

    import httpx

    from zaoshu.generator.engine import GenerateOptions
    from zaoshu.generator.providers import api_url, get_provider

    name, _, model = spec.partition(":")
    options = GenerateOptions(provider=name, model=model or None, base_url=base_url)

    async def endpoint() -> Any:
        async with get_provider(name).open(options) as ep:
            return ep

    ep = asyncio.run(endpoint())
    if ep.transport != "openai":
        raise ZaoshuError(f"provider {name!r} is not OpenAI-compatible; chat supports those only")
    headers = {**ep.headers, **({"Authorization": f"Bearer {ep.api_key.reveal()}"} if ep.api_key else {})}
    body = {
        "model": ep.model,
        "messages": ([{"role": "system", "content": system}] if system else []) + messages,
        "temperature": temperature,
        "stream": True,
    }
    try:
        with (
            httpx.Client(timeout=120) as client,
            client.stream("POST", api_url(ep.base_url, "chat/completions"), json=body, headers=headers) as r,
        ):
            if r.status_code != 200:
                raise ZaoshuError(f"provider {name} answered HTTP {r.status_code}")
            if "text/event-stream" not in r.headers.get("content-type", ""):
                data = orjson.loads(r.read())
                yield data["choices"][0]["message"]["content"]
                return
            for line in r.iter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                delta = orjson.loads(line[5:])["choices"][0].get("delta") or {}
                if delta.get("content"):
                    yield delta["content"]
    except httpx.HTTPError as e:
        raise ZaoshuError(f"provider {name} could not be reached: {type(e).__name__}") from None
