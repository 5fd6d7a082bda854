"""Chat clients behind an `Endpoint`: OpenAI-compatible HTTP over aiohttp, and the zhipuai SDK.

Why aiohttp and not `AsyncOpenAI`: measured on loopback (benchmarks/generate.py), the SDK's httpx pool costs
~13 ms of CPU a request and its aiohttp transport still several ms (pydantic models, retries, headers), while
one shared aiohttp session with orjson stays well under a millisecond. The wire format is the same
OpenAI chat-completions JSON, so any OpenAI-compatible server works.

Every failure becomes a `RequestFailed` with a short reason, the HTTP status, whether it is worth a retry
and the server's `Retry-After`; every message passes through `redact`, so neither the key (a server may
echo it, even in a 200 body) nor credentials inside the base URL (`user:pw@`, `?key=`) ever leak.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol, Self

import aiohttp
import orjson

from zaoshu.generator.providers import Endpoint, api_url, safe_url


class RequestFailed(Exception):
    """A request that did not give a usable reply. `reason` is a short machine-readable word."""

    retryable = False
    reason = "failed"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.usage = usage
        self.limits: tuple[float | None, float | None] | None = None  # see parse_limits


class RateLimited(RequestFailed):
    retryable = True
    reason = "rate_limited"


class ServerError(RequestFailed):
    retryable = True
    reason = "server_error"


class RequestTimeout(RequestFailed):
    retryable = True
    reason = "timeout"


class ConnectionFailed(RequestFailed):
    retryable = True
    reason = "connection"


class Unreachable(ConnectionFailed):
    """No connection could be made at all (refused, no such host): a wrong URL or a server not running."""

    reason = "unreachable"


class BadReply(RequestFailed):
    """A 200 whose body is torn, has no choices or no content: worth another try."""

    retryable = True
    reason = "bad_reply"


class ContentFiltered(RequestFailed):
    reason = "content_filter"


class BadRequest(RequestFailed):
    """400/404/422...: the request itself is wrong (model name, parameters); retrying cannot help."""

    reason = "bad_request"


class AuthFailed(RequestFailed):
    """401/403 (the key is refused) or 402 (the account has no balance): the whole run stops."""

    reason = "auth"


@dataclass(slots=True)
class Reply:
    content: str
    finish_reason: str | None
    usage: dict[str, int]
    model: str | None
    limits: tuple[float | None, float | None] | None = None  # see parse_limits


class ChatClient(Protocol):
    """What the engine sends through, whatever the transport: opened and closed as an async context
    manager (its connections or thread pool live that long), `complete` one chat request at a time."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def complete(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Reply: ...


def redact(text: str, endpoint: Endpoint | None) -> str:
    """`text` without the endpoint's secrets or URL credentials, cut to 400 characters (after masking, so a
    key is never cut in half and left showing)."""
    for secret in endpoint.secrets() if endpoint is not None else ():
        if secret in text:
            text = text.replace(secret, "***")
    return safe_url(text)[:400]


def parse_retry_after(headers: Any) -> float | None:
    """`retry-after-ms`, then `Retry-After` as seconds or an HTTP date (what the openai SDK reads)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def parse_limits(headers: Any) -> tuple[float | None, float | None] | None:
    """(requests, tokens) per minute from OpenAI's `x-ratelimit-limit-*` headers, or None without them.

    A limit whose window is longer than a minute (`x-ratelimit-reset-*` past 60 s: some providers count
    requests per day there) is no pacing limit and is left out."""
    if "x-ratelimit-limit-requests" not in headers and "x-ratelimit-limit-tokens" not in headers:
        return None
    out: list[float | None] = []
    for kind in ("requests", "tokens"):
        try:
            limit = float(headers.get(f"x-ratelimit-limit-{kind}") or 0)
        except ValueError:
            limit = 0.0
        reset = _duration(headers.get(f"x-ratelimit-reset-{kind}"))
        out.append(limit if limit > 0 and (reset is None or reset <= 60) else None)
    return (out[0], out[1]) if out != [None, None] else None


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def _duration(value: str | None) -> float | None:
    """OpenAI's reset durations ("1s", "6m0s", "20ms", "1h2m3.5s") or plain seconds, in seconds."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    m = _DURATION.match(value.strip())
    if not m or not any(m.groups()):
        return None
    h, mi, sec, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + sec + ms / 1000


def _error_message(status: int, raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return f"HTTP {status}: {err['message']}"
        if isinstance(err, str):
            return f"HTTP {status}: {err}"
    except orjson.JSONDecodeError:
        pass
    return f"HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"


def status_error(status: int, message: str, retry_after: float | None) -> RequestFailed:
    if status == 429:
        return RateLimited(message, status=status, retry_after=retry_after)
    if status in (401, 402, 403):  # 402: no balance left (DeepSeek): every further request would fail too
        return AuthFailed(message, status=status)
    if status in (408, 409) or status >= 500:
        return ServerError(message, status=status, retry_after=retry_after)
    return BadRequest(message, status=status)


def parse_reply(data: Any, endpoint: Endpoint | None = None) -> Reply:
    """The reply of a chat completion body (already decoded); raises BadReply / ContentFiltered.

    Pass the `endpoint`: an error inside a 200 body is the server's text and may echo the key."""
    if not isinstance(data, dict):
        raise BadReply("malformed body: not a JSON object")
    if data.get("error"):
        err = data["error"]
        text = err.get("message") if isinstance(err, dict) else err
        raise BadReply(redact(f"error in a 200 body: {text}", endpoint))
    usage = data.get("usage") or {}
    usage = {
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
    }
    choices = data.get("choices")
    if not choices:
        raise BadReply("empty choices", usage=usage)
    choice = choices[0]
    finish = choice.get("finish_reason")
    if finish == "content_filter":
        raise ContentFiltered("finish_reason content_filter: the provider filtered the reply", usage=usage)
    content = (choice.get("message") or {}).get("content")
    if not isinstance(content, str) or not content.strip():
        raise BadReply(f"no content in the reply (finish_reason {finish})", usage=usage)
    return Reply(content, finish, usage, data.get("model"))


class OpenAICompatClient:
    """OpenAI chat completions over one shared aiohttp session (keep-alive, connection limit >= C)."""

    def __init__(self, endpoint: Endpoint, *, concurrency: int, timeout: float) -> None:
        self.endpoint = endpoint
        self.url = api_url(endpoint.base_url, "chat/completions")
        self.headers = {"Content-Type": "application/json", **endpoint.headers}
        if endpoint.api_key:
            self.headers["Authorization"] = "Bearer " + endpoint.api_key.reveal()
        self.concurrency = concurrency
        self.timeout = timeout
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OpenAICompatClient:
        connector = aiohttp.TCPConnector(limit=self.concurrency + 8, limit_per_host=0, ttl_dns_cache=600)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": "zaoshu", **self.headers},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def complete(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Reply:
        assert self.session is not None
        body = orjson.dumps({"model": self.endpoint.model, "messages": messages, **params})
        try:
            async with self.session.post(self.url, data=body) as resp:
                raw = await resp.read()
                status = resp.status
                limits = parse_limits(resp.headers)
                if status != 200:
                    message = redact(_error_message(status, raw), self.endpoint)
                    error = status_error(status, message, parse_retry_after(resp.headers))
                    error.limits = limits
                    raise error
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientPayloadError as e:
            raise ConnectionFailed(f"connection broke mid-body ({type(e).__name__})") from None
        except aiohttp.ClientConnectorError as e:
            raise Unreachable(redact(f"cannot connect to {self.url} ({e.os_error})", self.endpoint)) from None
        except aiohttp.ClientError as e:
            raise ConnectionFailed(redact(f"{type(e).__name__}: {e}", self.endpoint)) from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadReply(f"malformed body: not JSON ({len(raw)} bytes)") from None
        reply = parse_reply(data, self.endpoint)
        reply.limits = limits
        return reply


class ZhipuAIClient:
    """The zhipuai SDK (synchronous, httpx) run on a thread pool sized to the concurrency."""

    def __init__(self, endpoint: Endpoint, *, concurrency: int, timeout: float) -> None:
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.timeout = timeout
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="zhipuai"
        )
        self.client: Any = None

    async def __aenter__(self) -> ZhipuAIClient:
        import httpx
        from zhipuai import ZhipuAI

        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self.client = ZhipuAI(
            api_key=self.endpoint.api_key.reveal() if self.endpoint.api_key else "none",
            base_url=self.endpoint.base_url,
            max_retries=0,  # retries are ours (limits.RetryPolicy), the same for every provider
            timeout=self.timeout,
            http_client=httpx.Client(limits=limits, timeout=self.timeout),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.client is not None:
            self.client.close()

    def _call(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Reply:
        from zhipuai.core import _errors as zerr

        try:
            resp = self.client.chat.completions.create(model=self.endpoint.model, messages=messages, **params)
        except zerr.APIStatusError as e:
            status = e.response.status_code
            message = redact(_error_message(status, e.response.content), self.endpoint)
            raise status_error(status, message, parse_retry_after(e.response.headers)) from None
        except zerr.APITimeoutError:
            raise RequestTimeout(f"no answer within {self.timeout:g} s") from None
        except zerr.APIConnectionError as e:
            raise ConnectionFailed(redact(f"{type(e).__name__}: {e}", self.endpoint)) from None
        except (zerr.ZhipuAIError, ValueError) as e:  # torn or unexpected bodies
            raise BadReply(f"malformed body ({type(e).__name__})") from None
        data = resp.model_dump() if hasattr(resp, "model_dump") else resp
        return parse_reply(data, self.endpoint)

    async def complete(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Reply:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._call, messages, params)


def make_client(endpoint: Endpoint, *, concurrency: int, timeout: float) -> ChatClient:
    if endpoint.transport == "zhipuai":
        return ZhipuAIClient(endpoint, concurrency=concurrency, timeout=timeout)
    return OpenAICompatClient(endpoint, concurrency=concurrency, timeout=timeout)
