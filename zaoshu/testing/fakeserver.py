"""An OpenAI-compatible chat server for tests and benchmarks, run in its own process.

It plays a provider with the faults real ones have: latency, 429 + Retry-After (random, or an enforced
requests-per-minute cap the client is not told), 500s, hangs past the client's timeout, malformed bodies,
empty choices, ``finish_reason: content_filter``, connection resets, 400s, 404 for an unknown model and 401
for a wrong key. Which fault a request gets is chosen by a hash of (prompt, how many times the server has
seen that prompt), so a run is reproducible and a retry can succeed.

Replies derive from the prompt: ``echo`` (a short reply quoting the prompt), ``judge`` (a judge's JSON
verdict, see ``judge_reply``) or ``wishes`` (a plausible
Chinese wish for ``对象称谓是：X，祝福场景是：Y``, sometimes with the junk real models add: a stray
``！啦~``, quotes, a ``好的，以下是祝福语：`` preamble, an extra line, exact and near duplicates).

Run: ``python -m zaoshu.testing.fakeserver --port 0 --latency 0.2 --rpm 6000`` (prints ``READY <url>``),
or from Python: ``with FakeServer(latency=0.05, faults={"server_error": 0.1}) as srv: srv.base_url``.
Endpoints: ``POST …/chat/completions`` (any prefix: ``/v1``, zhipuai's ``/api/paas/v4``), ``GET /v1/models``,
``GET /stats`` (counters, by second), ``GET /requests`` (bodies, when ``record`` is on), ``POST /config``
(change settings live), ``POST /reset`` (zero counters and the per-prompt attempt memory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

FAULTS = (
    "rate_limit",  # 429 with Retry-After
    "server_error",  # 500
    "overloaded",  # 503
    "hang",  # sleep `hang_s` (past the client's timeout) before answering
    "malformed",  # 200 with a torn JSON body
    "empty_choices",  # 200 with "choices": []
    "content_filter",  # 200 with finish_reason content_filter
    "reset",  # close the connection without an answer
    "bad_request",  # 400
)


@dataclass
class Settings:
    latency: float = 0.0  # seconds before a normal answer
    rpm: float | None = None  # enforced cap (token bucket, burst = one second's worth); not announced
    burst: float | None = None  # bucket size; default rpm/60
    faults: dict[str, float] = field(default_factory=dict)  # fault name -> share of requests
    retry_after: float = 0.05  # seconds announced by a random 429 (retry-after-ms + Retry-After)
    hang_s: float = 30.0
    reply: str = "echo"  # echo | wishes | judge
    # judge mode: [substring, score] pairs matched against the judged reply (inside <reply>…</reply>); a
    # score may be "junk" (a reply that is not JSON, every time) or "junk_once" (junk on the first try only)
    judge_scores: list[list[Any]] = field(default_factory=list)
    judge_default: Any = 4
    judge_fenced: float = 0.0  # share of judge replies wrapped in ```json fences
    # pairwise: the answer holding this (or any of a list) wins, both or neither: a tie; "@A": always A
    judge_prefer: Any = ""
    api_key: str | None = None  # when set, other keys get 401 (whose body echoes the wrong key)
    models: list[str] | None = None  # when set, other models get 404
    record: bool = False  # keep request bodies for GET /requests
    seed: int = 0


class State:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self.seen: dict[bytes, int] = defaultdict(int)
        self.counts: dict[str, int] = defaultdict(int)
        self.by_second: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # second -> [requests, 429s]
        self.bodies: list[Any] = []
        self.t0: float | None = None
        rate = (self.settings.rpm or 0) / 60
        self.capacity = self.settings.burst or max(1.0, rate)
        self.tokens = self.capacity
        self.refilled = time.monotonic()

    def take_token(self) -> float:
        """0 when the cap admits a request now, else the seconds until it would."""
        rate = self.settings.rpm / 60  # type: ignore[operator]
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose_fault(faults: dict[str, float], prompt: str, nth: int, seed: int) -> str | None:
    u = _unit(seed, prompt, nth, "fault")
    acc = 0.0
    for name in FAULTS:
        acc += faults.get(name, 0.0)
        if u < acc:
            return name
    return None


# ---------------------------------------------------------------- replies

_PROMPT_RE = re.compile(r"对象称谓是：(.+?)，祝福场景是：(.+?)。")
_SCENE_PHRASE = {
    "生日": "生日快乐",
    "谈判顺利": "谈判顺利",
    "乔迁新居": "乔迁之喜",
    "周年纪念": "周年纪念日快乐",
    "新婚快乐": "新婚快乐",
    "家庭和睦": "家庭和睦",
    "比赛取得好成绩": "比赛取得好成绩",
    "发财": "财源广进",
    "工作升职": "升职顺利",
    "康复": "早日康复",
}
_GOOD = ["身体健康", "万事如意", "心想事成", "平安喜乐", "前程似锦", "阖家幸福", "福寿安康", "事业顺遂"]
_GOOD += ["步步高升", "笑口常开", "岁岁无忧", "顺遂无虞", "好运连连", "喜乐常伴"]
_EMOJI = ["🎉", "✨", "🌸", "🎂", "🧧", "🌕", "💐", "🥳", "🍀", "🎊"]
_TAIL = ["呀", "哦", "啦", "呢", "哟"]


def _pick(seq: list[str], h: float, k: int) -> str:
    return seq[int(h * 1e6 * (k + 1)) % len(seq)]


def wish(prompt: str, seed: int = 0) -> str:
    """A plausible wish for the recipient and scene named in the prompt, with occasional junk."""
    m = _PROMPT_RE.search(prompt)
    who, scene = (m.group(1), m.group(2)) if m else ("朋友", "生日")
    phrase = _SCENE_PHRASE.get(scene, scene + ("快乐" if scene.endswith("节") or scene == "除夕" else ""))
    h = _unit(seed, prompt, "wish")
    g1, g2 = _pick(_GOOD, h, 1), _pick(_GOOD, h, 2)
    if g2 == g1:
        g2 = _GOOD[(_GOOD.index(g1) + 3) % len(_GOOD)]
    if "小红书" in prompt:
        text = (
            f"{who}，{phrase}{_pick(_TAIL, h, 3)}{_pick(_EMOJI, h, 4)} 愿你{g1}，{g2}{_pick(_TAIL, h, 5)}～"
        )
    elif "严肃" in prompt:
        text = f"尊敬的{who}：值此{scene}之际，谨致以诚挚的祝福，祝您{g1}、{g2}，诸事顺遂。"
    else:
        text = f"祝{who}{phrase}，{g1}！"
    j = _unit(seed, prompt, "junk")
    if j < 0.10:  # the same wish for every recipient: exact duplicates across the set
        text = f"祝你{phrase}，万事如意！"
    elif j < 0.15:  # near duplicate: one character differs
        text = f"祝你{phrase}，万事如意。"
    elif j < 0.23:
        text = "！啦~" + text
    elif j < 0.31:
        text = f"“{text}”" if j < 0.27 else f'"{text}"'
    elif j < 0.38:
        text = "好的，以下是祝福语：\n" + text
    elif j < 0.44:
        text = text + "\n希望这条祝福能让对方开心！"
    elif j < 0.48:  # too long for its style
        text = text + text
    return text


_REPLY_RE = re.compile(r"<reply>\s*(.*?)\s*</reply>", re.S)
_A_RE = re.compile(r"<answer_a>\s*(.*?)\s*</answer_a>", re.S)
_B_RE = re.compile(r"<answer_b>\s*(.*?)\s*</answer_b>", re.S)


def judge_reply(prompt: str, nth: int, s: Settings) -> str:
    """A judge's verdict: a score set by substrings of the judged reply, or a pairwise winner."""
    a, b = _A_RE.search(prompt), _B_RE.search(prompt)
    if a and b:
        prefer = [s.judge_prefer] if isinstance(s.judge_prefer, str) else list(s.judge_prefer)
        prefer = [p for p in prefer if p]
        pa = any(p in a.group(1) for p in prefer)
        pb = any(p in b.group(1) for p in prefer)
        winner = "A" if pa and not pb else "B" if pb and not pa else "tie"
        if s.judge_prefer in ("@A", "@B"):  # a judge with nothing but position bias
            winner = s.judge_prefer[1]
        return orjson.dumps({"winner": winner, "reason": f"fake judge prefers {s.judge_prefer!r}"}).decode()
    m = _REPLY_RE.search(prompt)
    text = m.group(1) if m else prompt
    value = next((v for sub, v in s.judge_scores if sub in text), s.judge_default)
    if value == "junk" or (value == "junk_once" and nth == 1):
        return "这条祝福写得很好，我给它打 5 分。"
    if value == "junk_once":
        value = s.judge_default
    body = orjson.dumps({"score": value, "reason": f"fake judge: {value}"}).decode()
    if _unit(s.seed, prompt, "fence") < s.judge_fenced:
        body = "```json\n" + body + "\n```"
    return body


def echo(prompt: str, seed: int = 0) -> str:
    return f"回复{int(_unit(seed, prompt, 'echo') * 1e4):04d}：{prompt[:24]}"


# ---------------------------------------------------------------- the app


def make_app(settings: Settings):  # -> web.Application (aiohttp imported lazily for the helper's sake)
    from aiohttp import web

    state = State(settings)
    json_headers = {"Content-Type": "application/json"}

    def error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> web.Response:
        body = orjson.dumps({"error": {"message": message, "type": code, "code": code}})
        return web.Response(status=status, body=body, headers={**json_headers, **(headers or {})})

    def retry_headers(seconds: float) -> dict[str, str]:
        return {
            "retry-after-ms": str(max(1, round(seconds * 1000))),
            "Retry-After": str(max(1, math.ceil(seconds))),
        }

    async def chat(request: web.Request) -> web.StreamResponse:
        s = state.settings
        now = time.monotonic()
        if state.t0 is None:
            state.t0 = now
        second = int(now - state.t0)
        bucket = state.by_second[second]
        bucket[0] += 1
        state.counts["requests"] += 1
        raw = await request.read()
        if s.api_key is not None:
            auth = request.headers.get("Authorization", "")
            given = auth[7:] if auth.startswith("Bearer ") else auth
            if given != s.api_key:
                state.counts["401"] += 1
                # Real servers sometimes echo the key: the client must never print it.
                return error(401, f"Incorrect API key provided: {given}.", "invalid_api_key")
        try:
            body = orjson.loads(raw)
            messages = body["messages"]
            prompt = messages[-1]["content"]
            model = body.get("model", "")
        except Exception:
            state.counts["400"] += 1
            return error(400, "request body is not a chat completion request", "invalid_request_error")
        if s.record:
            state.bodies.append(body)
        if s.models is not None and model not in s.models:
            state.counts["404"] += 1
            return error(404, f"The model `{model}` does not exist", "model_not_found")
        if s.rpm:
            wait = state.take_token()
            if wait > 0:
                state.counts["429"] += 1
                state.counts["429_cap"] += 1
                bucket[1] += 1
                return error(
                    429, "Rate limit reached for requests", "rate_limit_exceeded", retry_headers(wait)
                )
        nth = state.seen[prompt.encode()] = state.seen[prompt.encode()] + 1
        fault = choose_fault(s.faults, prompt, nth, s.seed) if s.faults else None
        if fault:
            state.counts[fault] += 1
        if fault == "rate_limit":
            state.counts["429"] += 1
            bucket[1] += 1
            return error(429, "Rate limit reached", "rate_limit_exceeded", retry_headers(s.retry_after))
        if fault == "bad_request":
            return error(400, "Invalid request: messages[0] is too long", "invalid_request_error")
        if fault == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # aiohttp drops the connection without a reply
        if fault == "hang":
            await asyncio.sleep(s.hang_s)
        elif s.latency:
            await asyncio.sleep(s.latency)
        if fault == "server_error":
            return error(500, "The server had an error while processing your request.", "server_error")
        if fault == "overloaded":
            return error(503, "The engine is currently overloaded.", "overloaded")
        if s.reply == "judge":
            text = judge_reply(prompt, nth, s)
        else:
            text = (wish if s.reply == "wishes" else echo)(prompt, s.seed)
        finish = "content_filter" if fault == "content_filter" else "stop"
        choices = (
            []
            if fault == "empty_choices"
            else [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ]
        )
        p_tokens = sum(len(m.get("content") or "") for m in messages)
        reply = {
            "id": f"chatcmpl-{state.counts['requests']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": p_tokens,
                "completion_tokens": len(text),
                "total_tokens": p_tokens + len(text),
            },
        }
        out = orjson.dumps(reply)
        if fault == "malformed":
            out = out[: len(out) // 2]
        state.counts["200"] += 1
        return web.Response(body=out, headers=json_headers)

    async def models(request: web.Request) -> web.Response:
        names = state.settings.models or ["fake-model"]
        data = [{"id": n, "object": "model", "owned_by": "zaoshu"} for n in names]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), headers=json_headers)

    async def stats(request: web.Request) -> web.Response:
        by_second = {str(k): v for k, v in sorted(state.by_second.items())}
        payload = {**state.counts, "by_second": by_second, "settings": asdict(state.settings)}
        payload["settings"]["api_key"] = None
        return web.Response(body=orjson.dumps(payload), headers=json_headers)

    async def bodies(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(state.bodies), headers=json_headers)

    async def config(request: web.Request) -> web.Response:
        changes = orjson.loads(await request.read())
        for key, value in changes.items():
            if not hasattr(state.settings, key):
                return error(400, f"unknown setting {key!r}", "invalid_request_error")
            setattr(state.settings, key, value)
        state.reset()
        return web.Response(body=b"{}", headers=json_headers)

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.Response(body=b"{}", headers=json_headers)

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_post(r"/{prefix:.*}chat/completions", chat)
    app.router.add_get(r"/{prefix:.*}models", models)
    app.router.add_get("/stats", stats)
    app.router.add_get("/requests", bodies)
    app.router.add_post("/config", config)
    app.router.add_post("/reset", reset)
    return app


async def _serve(settings: Settings, host: str, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(make_app(settings), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    real_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY http://{host}:{real_port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m zaoshu.testing.fakeserver", description=__doc__.split("\n")[0]
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the READY line)")
    p.add_argument("--config", default="{}", help="JSON object of Settings fields")
    p.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU (benchmarks)")
    args = p.parse_args(argv)
    settings = Settings(**orjson.loads(args.config))
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, args.host, args.port))


# ---------------------------------------------------------------- the helper tests use


class FakeServer:
    """Start the server in a separate process (so the client's CPU is measured apart) and talk to it.

    ``with FakeServer(latency=0.01, faults={"server_error": 0.2}) as srv:`` gives ``srv.base_url``
    (``http://127.0.0.1:PORT/v1``), ``srv.stats()``, ``srv.requests()``, ``srv.configure(**changes)``.
    """

    def __init__(self, *, cpu: int | None = None, **settings: Any) -> None:
        self.settings = Settings(**settings)
        self.cpu = cpu
        self.proc: subprocess.Popen[bytes] | None = None
        self.root = ""

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def start(self) -> FakeServer:
        cmd = [sys.executable, "-m", "zaoshu.testing.fakeserver", "--port", "0"]
        cmd += ["--config", orjson.dumps(asdict(self.settings)).decode()]
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"fake server did not start (got {line!r})")
        self.root = line.split(" ", 1)[1]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _call(self, path: str, payload: Any = None) -> Any:
        data = None if payload is None else orjson.dumps(payload)
        req = urllib.request.Request(self.root + path, data=data, method="GET" if data is None else "POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return orjson.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return self._call("/stats")

    def requests(self) -> list[dict[str, Any]]:
        return self._call("/requests")

    def configure(self, **changes: Any) -> None:
        """Change settings (and reset counters): e.g. ``configure(faults={}, rpm=None)``."""
        self._call("/config", changes)

    def reset(self) -> None:
        self._call("/reset", {})

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
