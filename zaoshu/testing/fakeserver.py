"""An OpenAI-compatible chat server for tests and benchmarks, run in its own process.

It plays a provider with the faults real ones have: latency, 429 + Retry-After (random, or an enforced
cap: requests and/or tokens per minute, token buckets holding one second of burst, told to the client in
``x-ratelimit-*`` headers or not, and a schedule that changes the cap mid-run), 500s, hangs past the client's timeout, malformed bodies,
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
``GET /stats`` (counters; by second: requests and 429s, 200s and tokens charged), ``GET /requests`` (bodies, when ``record`` is on), ``POST /config``
(change settings live), ``POST /reset`` (zero counters and the per-prompt attempt memory); the batch API:
``POST …/files`` (purpose ``batch``), ``GET …/files/{id}/content``, ``POST/GET …/batches``,
``GET …/batches/{id}``, ``POST …/batches/{id}/cancel``, with a fast completion window.
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
    rpm: float | None = None  # enforced cap (token bucket, burst = one second's worth)
    burst: float | None = None  # bucket size; default rpm/60
    tpm: float | None = None  # enforced tokens/minute (prompt tokens + max_tokens, charged on admission)
    announce: bool = False  # send x-ratelimit-{limit,remaining,reset}-{requests,tokens} as OpenAI does
    # [[seconds after the first request, rpm], ...]: the request cap changes at those times (None: no cap)
    schedule: list[list[float | None]] | None = None
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
    # Batch API (/files, /batches): a batch completes `batch_window` seconds after it is created; a share
    # `batch_fail` of its lines answer an error; the first `batch_expire` batches expire with half their
    # lines done; `batch_malformed` output lines are torn JSON; uploads and downloads take `batch_delay`
    # and `download_delay` seconds (to kill a client in the middle of one).
    batch_window: float = 0.5
    batch_fail: float = 0.0
    batch_expire: int = 0
    batch_malformed: int = 0
    batch_delay: float = 0.0
    download_delay: float = 0.0


class Bucket:
    """A token bucket refilled at `per_minute / 60` a second, holding `capacity` (one second's worth)."""

    def __init__(self, per_minute: float, capacity: float | None = None) -> None:
        self.per_minute = per_minute
        self.capacity = capacity or max(1.0, per_minute / 60)
        self.level = self.capacity
        self.refilled = time.monotonic()

    def set_rate(self, per_minute: float) -> None:
        """A new cap (a schedule step): the bucket keeps its level, clipped to the new size."""
        self._refill(time.monotonic())
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute / 60)
        self.level = min(self.level, self.capacity)

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.refilled) * self.per_minute / 60)
        self.refilled = now

    def wait(self, cost: float = 1.0) -> float:
        """0 when `cost` fits now (then it is taken), else the seconds until it would."""
        self._refill(time.monotonic())
        cost = min(cost, self.capacity)
        if self.level >= cost:
            self.level -= cost
            return 0.0
        return (cost - self.level) / (self.per_minute / 60)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        self._refill(time.monotonic())
        return (self.capacity - self.level) / (self.per_minute / 60)


class State:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self.seen: dict[bytes, int] = defaultdict(int)
        self.counts: dict[str, int] = defaultdict(int)
        self.by_second: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # second -> [requests, 429s]
        self.admitted: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # second -> [200s, tokens charged]
        self.bodies: list[Any] = []
        self.t0: float | None = None
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        s = self.settings
        self.requests = Bucket(s.rpm, s.burst) if s.rpm else None
        self.tokens = Bucket(s.tpm) if s.tpm else None
        self.steps = sorted(s.schedule or [], key=lambda step: step[0] or 0.0)

    def follow_schedule(self, elapsed: float) -> None:
        while self.steps and (self.steps[0][0] or 0.0) <= elapsed:
            rpm = self.steps.pop(0)[1]
            if not rpm:
                self.requests = None
            elif self.requests is None:
                self.requests = Bucket(rpm)
            else:
                self.requests.set_rate(rpm)

    def limit_headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the caps in force."""
        headers = {}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(round(bucket.per_minute))
                headers[f"x-ratelimit-remaining-{kind}"] = str(int(bucket.level))
                headers[f"x-ratelimit-reset-{kind}"] = f"{bucket.reset_s():.3f}s"
        return headers


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
        if state.steps:
            state.follow_schedule(now - state.t0)
        charge = 0
        if state.tokens is not None:  # what OpenAI charges on admission: the prompt and max_tokens
            charge = sum(len(m.get("content") or "") for m in messages) + int(body.get("max_tokens") or 0)
        limits = state.limit_headers if s.announce else None
        for kind, cap, amount in (("requests", state.requests, 1), ("tokens", state.tokens, charge)):
            wait = cap.wait(amount) if cap is not None else 0.0
            if wait > 0:
                state.counts["429"] += 1
                state.counts["429_cap"] += 1
                state.counts[f"429_{kind}"] += 1
                bucket[1] += 1
                headers = {**retry_headers(wait), **(limits() if limits else {})}
                return error(429, f"Rate limit reached for {kind}", "rate_limit_exceeded", headers)
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
        admitted = state.admitted[second]
        admitted[0] += 1
        admitted[1] += charge
        return web.Response(body=out, headers={**json_headers, **limits()} if limits else json_headers)

    def completion(body: dict[str, Any]) -> dict[str, Any]:
        """A chat completion for a batch line (the same replies as /chat/completions, without faults)."""
        s = state.settings
        messages = body["messages"]
        text = (wish if s.reply == "wishes" else echo)(messages[-1]["content"], s.seed)
        p_tokens = sum(len(m.get("content") or "") for m in messages)
        return {
            "id": f"chatcmpl-b{len(state.files)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": p_tokens,
                "completion_tokens": len(text),
                "total_tokens": p_tokens + len(text),
            },
        }

    def finish_batch(batch: dict[str, Any]) -> None:
        """Run a batch whose window has passed: output and error files, or expiry with half done."""
        s = state.settings
        lines = state.files[batch["input_file_id"]].splitlines()
        expire = int(batch["id"].split("_")[-1]) <= s.batch_expire
        if expire:
            lines = lines[: len(lines) // 2]
        out, errors = [], []
        for i, raw in enumerate(lines):
            line = orjson.loads(raw)
            cid = line["custom_id"]
            if _unit(s.seed, cid, "batch") < s.batch_fail:
                err = {"code": "server_error", "message": "The model failed on this request."}
                errors.append({"id": f"req-{i}", "custom_id": cid, "response": None, "error": err})
                continue
            resp = {"status_code": 200, "request_id": f"req-{i}", "body": completion(line["body"])}
            out.append(orjson.dumps({"id": f"req-{i}", "custom_id": cid, "response": resp, "error": None}))
        for i in range(min(s.batch_malformed, len(out))):
            out[i] = out[i][: len(out[i]) // 2]
        counts = {"total": len(state.files[batch["input_file_id"]].splitlines())}
        counts.update(completed=len(out), failed=len(errors))
        batch["request_counts"] = counts
        if out:
            batch["output_file_id"] = new_file(b"\n".join(out) + b"\n")
        if errors:
            batch["error_file_id"] = new_file(b"\n".join(map(orjson.dumps, errors)) + b"\n")
        batch["status"] = "expired" if expire else "completed"

    def new_file(data: bytes) -> str:
        fid = f"file-{len(state.files) + 1}"
        state.files[fid] = data
        return fid

    async def upload(request: web.Request) -> web.Response:
        state.counts["uploads_started"] += 1
        if state.settings.batch_delay:
            await asyncio.sleep(state.settings.batch_delay)
        form = await request.post()
        field = form.get("file")
        if form.get("purpose") != "batch" or field is None or not hasattr(field, "file"):
            return error(400, "expected multipart with purpose=batch and a file", "invalid_request_error")
        data = field.file.read()
        state.counts["files"] += 1
        fid = new_file(data)
        payload = {"id": fid, "object": "file", "bytes": len(data), "purpose": "batch"}
        return web.Response(body=orjson.dumps(payload), headers=json_headers)

    async def file_content(request: web.Request) -> web.Response:
        state.counts["downloads_started"] += 1
        if state.settings.download_delay:
            await asyncio.sleep(state.settings.download_delay)
        data = state.files.get(request.match_info["fid"])
        if data is None:
            return error(404, "no such file", "not_found")
        return web.Response(body=data, content_type="application/octet-stream")

    def batch_view(batch: dict[str, Any]) -> dict[str, Any]:
        if (
            batch["status"] == "in_progress"
            and time.time() - batch["created_at"] >= state.settings.batch_window
        ):
            finish_batch(batch)
        return batch

    async def create_batch(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if body.get("input_file_id") not in state.files:
            return error(400, "input_file_id not found", "invalid_request_error")
        state.counts["batches"] += 1
        bid = f"batch_{len(state.batches) + 1}"
        batch = {
            "id": bid,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress",
            "created_at": time.time(),
            "output_file_id": None,
            "error_file_id": None,
            "metadata": body.get("metadata"),
            "request_counts": {
                "total": len(state.files[body["input_file_id"]].splitlines()),
                "completed": 0,
                "failed": 0,
            },
        }
        state.batches[bid] = batch
        return web.Response(body=orjson.dumps(batch), headers=json_headers)

    async def get_batch(request: web.Request) -> web.Response:
        batch = state.batches.get(request.match_info["bid"])
        if batch is None:
            return error(404, "no such batch", "not_found")
        return web.Response(body=orjson.dumps(batch_view(batch)), headers=json_headers)

    async def list_batches(request: web.Request) -> web.Response:
        data = [batch_view(b) for b in reversed(state.batches.values())]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), headers=json_headers)

    async def cancel_batch(request: web.Request) -> web.Response:
        batch = state.batches.get(request.match_info["bid"])
        if batch is None:
            return error(404, "no such batch", "not_found")
        if batch["status"] == "in_progress":
            batch["status"] = "cancelled"
        return web.Response(body=orjson.dumps(batch), headers=json_headers)

    async def models(request: web.Request) -> web.Response:
        names = state.settings.models or ["fake-model"]
        data = [{"id": n, "object": "model", "owned_by": "zaoshu"} for n in names]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), headers=json_headers)

    async def stats(request: web.Request) -> web.Response:
        by_second = {str(k): v for k, v in sorted(state.by_second.items())}
        admitted = {str(k): v for k, v in sorted(state.admitted.items())}
        payload = {**state.counts, "by_second": by_second, "admitted": admitted}
        payload["settings"] = asdict(state.settings)
        payload["settings"]["api_key"] = None
        return web.Response(body=orjson.dumps(payload), headers=json_headers)

    async def bodies(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(state.bodies), headers=json_headers)

    async def config(request: web.Request) -> web.Response:
        changes = orjson.loads(await request.read())
        keep = changes.pop("keep_state", False)
        for key, value in changes.items():
            if not hasattr(state.settings, key):
                return error(400, f"unknown setting {key!r}", "invalid_request_error")
            setattr(state.settings, key, value)
        if not keep:
            state.reset()
        return web.Response(body=b"{}", headers=json_headers)

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.Response(body=b"{}", headers=json_headers)

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_post(r"/{prefix:.*}chat/completions", chat)
    app.router.add_get(r"/{prefix:.*}models", models)
    app.router.add_post(r"/{prefix:.*}files", upload)
    app.router.add_get(r"/{prefix:.*}files/{fid}/content", file_content)
    app.router.add_post(r"/{prefix:.*}batches", create_batch)
    app.router.add_get(r"/{prefix:.*}batches", list_batches)
    app.router.add_get(r"/{prefix:.*}batches/{bid}", get_batch)
    app.router.add_post(r"/{prefix:.*}batches/{bid}/cancel", cancel_batch)
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
        """Change settings (and reset counters and batches unless ``keep_state=True``): e.g.
        ``configure(faults={}, rpm=None)``."""
        self._call("/config", changes)

    def reset(self) -> None:
        self._call("/reset", {})

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
