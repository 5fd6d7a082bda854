"""Provider batch APIs (`--batch`): the same completions at about half the price, within a day.

OpenAI, DashScope (Qwen) and Zhipu share the shape: upload a JSONL of `{custom_id, method, url, body}` to
`/files` (purpose `batch`), create a batch on `/batches`, poll it, download its output and error files.
This module speaks that OpenAI-compatible HTTP for all of them.

Never submitting a task twice, even across `kill -9`, rests on `<stem>.batches.json`, rewritten atomically
at every step of every batch:
- `uploading` (the task ids, before the upload): a kill here submitted nothing; the next run drops the
  entry and sends those tasks again (the uploaded file, if any, is left unused).
- `submitting` (with the uploaded file's id, before the batch is created): the next run looks for a batch
  made from that file (`GET /batches`) and attaches to it; only if there is none does it create one.
- `created` (with the batch id): the next run polls it. `collected`: its output is in the records.
Collecting appends each output line as a record (meta `batch_id`) unless its id is already in the output,
so a kill while downloading or writing is redone without duplicates; error lines become failures. An
expired or cancelled batch gives what it finished; its other tasks go into a new batch, or (option
`batch_resend="online"`) back to the caller, which sends them online in the same run. Either way the old
entry is saved as collected before they go anywhere, so a kill in between leaves them as tasks never sent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from rich.console import Console

from zaoshu.errors import ZaoshuError
from zaoshu.files import write_bytes_atomic
from zaoshu.generator.clients import RequestFailed, _error_message, parse_reply, redact
from zaoshu.generator.providers import Endpoint, api_url
from zaoshu.records import AppendSink, utc_now

MB = 1024 * 1024


@dataclass(frozen=True)
class BatchSpec:
    url: str  # the endpoint each line names
    max_requests: int  # per input file
    max_bytes: int


BATCH_APIS = {
    "openai": BatchSpec("/v1/chat/completions", 50_000, 200 * MB),
    "qwen": BatchSpec("/v1/chat/completions", 50_000, 500 * MB),
    "zhipu": BatchSpec("/v4/chat/completions", 50_000, 100 * MB),
    "zhipuai": BatchSpec("/v4/chat/completions", 50_000, 100 * MB),
}
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def batch_spec(provider: str) -> BatchSpec:
    spec = BATCH_APIS.get(provider)
    if spec is None:
        raise ZaoshuError(
            f"provider {provider!r} has no batch API; --batch works with {', '.join(sorted(BATCH_APIS))} "
            "(or drop --batch to send the requests online)"
        )
    return spec


def batches_path(out: Path) -> Path:
    """raw.jsonl -> raw.batches.json."""
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.stem
    return out.with_name(stem + ".batches.json")


class BatchState:
    """The batches of one output file, saved atomically after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches: list[dict[str, Any]] = []
        if path.exists():
            try:
                data = orjson.loads(path.read_bytes())
                self.batches = list(data["batches"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise ZaoshuError(
                    "not a batch state file (it records which batches were submitted; do not edit it)",
                    path=path,
                ) from None

    def save(self) -> None:
        write_bytes_atomic(self.path, orjson.dumps({"batches": self.batches}, option=orjson.OPT_INDENT_2))

    def open_ids(self) -> set[str]:
        """Task ids in batches not yet collected."""
        return {i for b in self.batches if b["state"] != "collected" for i in b["tasks"]}


class BatchAPI:
    """The five calls, over one aiohttp session; errors are ZaoshuErrors with the server's message."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: Endpoint) -> None:
        self.session = session
        self.endpoint = endpoint

    def url(self, path: str) -> str:
        return api_url(self.endpoint.base_url, path)

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        async with self.session.request(method, self.url(path), **kw) as resp:
            raw = await resp.read()
            if resp.status != 200:
                message = redact(_error_message(resp.status, raw), self.endpoint)
                raise ZaoshuError(f"batch API {method} {path}: {message}")
            return orjson.loads(raw)

    async def upload(self, data: bytes, name: str) -> str:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", data, filename=name, content_type="application/jsonl")
        return (await self._json("POST", "files", data=form))["id"]

    async def create(self, file_id: str, url: str, metadata: dict[str, str]) -> dict[str, Any]:
        body = {"input_file_id": file_id, "endpoint": url, "completion_window": "24h", "metadata": metadata}
        return await self._json("POST", "batches", data=orjson.dumps(body))

    async def get(self, batch_id: str) -> dict[str, Any]:
        return await self._json("GET", f"batches/{batch_id}")

    async def find(self, file_id: str) -> dict[str, Any] | None:
        """The batch created from `file_id`, if any (the last 100 batches are searched)."""
        listing = await self._json("GET", "batches", params={"limit": "100"})
        return next((b for b in listing.get("data", []) if b.get("input_file_id") == file_id), None)

    async def content(self, file_id: str) -> bytes:
        async with self.session.get(self.url(f"files/{file_id}/content")) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise ZaoshuError(f"batch API files/{file_id}/content: {_error_message(resp.status, raw)}")
            return raw


def request_lines(tasks: list[Any], model: str, params: dict[str, Any], spec: BatchSpec) -> list[list[bytes]]:
    """The tasks as batch input lines, split by the provider's per-file limits (requests and bytes)."""
    chunks: list[list[bytes]] = [[]]
    size = 0
    for task in tasks:
        body = {"model": model, "messages": task.request, **params}
        line = orjson.dumps({"custom_id": task.id, "method": "POST", "url": spec.url, "body": body}) + b"\n"
        if chunks[-1] and (len(chunks[-1]) >= spec.max_requests or size + len(line) > spec.max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line)
    return [c for c in chunks if c]


class BatchRun:
    """Submit, poll and collect the batches of one output file."""

    def __init__(
        self,
        api: BatchAPI,
        spec: BatchSpec,
        state: BatchState,
        tasks: dict[str, Any],
        done: set[str],
        sink: AppendSink,
        fail_sink: AppendSink,
        options: Any,
        params: dict[str, Any],
        stats: Any,
        price: Any,
        console: Console,
    ) -> None:
        self.api, self.spec, self.state = api, spec, state
        self.tasks = tasks  # id -> Task, every task not in the output when the run started
        self.done = done  # ids in the output (before and during this run)
        self.sink, self.fail_sink = sink, fail_sink
        self.options, self.params, self.stats, self.price = options, params, stats, price
        self.console = console
        self.t0 = time.monotonic()
        self.fingerprints: dict[str, str] = {}  # id -> request fingerprint, kept in each record's meta
        self.online: list[Any] = []  # tasks of expired or cancelled batches, for the caller to send online

    async def reattach(self) -> None:
        """Finish what a killed run left: drop uploads never submitted, find batches created from a file."""
        keep = []
        for entry in self.state.batches:
            if entry["state"] == "uploading":
                continue  # nothing was submitted: these tasks are sent again
            if entry["state"] == "submitting":
                found = await self.api.find(entry["input_file_id"])
                if found is None:
                    found = await self.api.create(entry["input_file_id"], self.spec.url, {"zaoshu": "1"})
                entry.update(state="created", id=found["id"], status=found.get("status"))
            keep.append(entry)
        self.state.batches = keep
        self.state.save()

    async def submit(self, tasks: list[Any]) -> None:
        model = self.api.endpoint.model
        for lines in request_lines(tasks, model, self.params, self.spec):
            ids = [orjson.loads(line)["custom_id"] for line in lines]
            entry: dict[str, Any] = {
                "state": "uploading",
                "tasks": ids,
                "model": model,
                "created_at": utc_now(),
            }
            self.state.batches.append(entry)
            self.state.save()
            name = f"{self.state.path.stem}-{len(self.state.batches)}.jsonl"
            entry.update(state="submitting", input_file_id=await self.api.upload(b"".join(lines), name))
            self.state.save()
            batch = await self.api.create(entry["input_file_id"], self.spec.url, {"zaoshu": "1"})
            entry.update(state="created", id=batch["id"], status=batch.get("status"))
            self.state.save()
            self.say(f"submitted batch {batch['id']}: {len(ids)} requests")

    async def wait(self) -> None:
        """Poll until every batch is collected; expired or cancelled tasks go into new batches, or into
        `self.online` when the options say so."""
        while True:
            open_batches = [b for b in self.state.batches if b["state"] == "created"]
            if not open_batches:
                return
            resend: list[Any] = []
            for entry in open_batches:
                batch = await self.api.get(entry["id"])
                entry["status"] = batch.get("status")
                if batch.get("status") in TERMINAL:
                    resend += await self.collect(entry, batch)
                    entry["state"] = "collected"
                    self.state.save()
                else:
                    self.progress(entry, batch)
            if resend and self.options.batch_resend == "online":
                self.say(f"{len(resend)} tasks of expired or cancelled batches are sent again online")
                self.online += resend
            elif resend:
                self.say(f"{len(resend)} tasks of expired or cancelled batches are sent again in a new batch")
                await self.submit(resend)
            elif any(b["state"] == "created" for b in self.state.batches):
                await asyncio.sleep(self.options.batch_poll)

    async def collect(self, entry: dict[str, Any], batch: dict[str, Any]) -> list[Any]:
        """Records from the output file, failures from the error file; returns the tasks to send again."""
        seen: set[str] = set()
        malformed = 0
        for key in ("output_file_id", "error_file_id"):
            if not batch.get(key):
                continue
            for raw in (await self.api.content(batch[key])).splitlines():
                if not raw.strip():
                    continue
                try:
                    line = orjson.loads(raw)
                    cid = line["custom_id"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    malformed += 1
                    continue
                if cid in seen or cid not in self.tasks:
                    continue
                seen.add(cid)
                self.take(cid, line, entry["id"])
        missing = [self.tasks[i] for i in entry["tasks"] if i not in seen and i not in self.done]
        status = batch.get("status")
        if status in ("expired", "cancelled"):
            return missing
        errors = (batch.get("errors") or {}).get("data") or []
        for task in missing:  # a failed batch, or a completed one that lost some lines (torn, absent)
            why = f"{malformed} malformed line(s) in the output" if malformed else "no line in the output"
            if status == "failed" and errors:
                why = "; ".join(str(e.get("message") or e) for e in errors[:3] if isinstance(e, dict))
            self.fail(task, "batch_missing", None, f"batch {entry['id']} ({status}): {why}")
        return []

    def take(self, cid: str, line: dict[str, Any], batch_id: str) -> None:
        task = self.tasks[cid]
        response = line.get("response") or {}
        status = response.get("status_code")
        if status != 200 or line.get("error"):
            err = line.get("error") or (response.get("body") or {}).get("error") or {}
            message = err.get("message") if isinstance(err, dict) else str(err)
            self.fail(task, "batch_error", status, f"batch {batch_id}: {message or 'error'}")
            return
        try:
            reply = parse_reply(response.get("body"), self.api.endpoint)
        except RequestFailed as e:
            self.fail(task, e.reason, status, f"batch {batch_id}: {e}")
            return
        if cid in self.done:
            return  # written before a kill: collected again, not written twice
        usage = reply.usage
        meta = {
            "provider": self.api.endpoint.provider,
            "model": self.api.endpoint.model,
            "usage": usage,
            "batch_id": batch_id,
            "finish_reason": reply.finish_reason,
            "created_at": utc_now(),
        }
        if cid in self.fingerprints:
            meta["fingerprint"] = self.fingerprints[cid]
        self.sink.write(task.to_record(reply.content, meta))
        self.done.add(cid)
        self.stats.done += 1
        self.stats.tokens_in += usage["prompt_tokens"]
        self.stats.tokens_out += usage["completion_tokens"]
        if self.price is not None:
            self.stats.cost = (self.stats.cost or 0.0) + self.price.batch_cost(
                usage["prompt_tokens"], usage["completion_tokens"]
            )
            self.stats.cost_online = (self.stats.cost_online or 0.0) + self.price.cost(
                usage["prompt_tokens"], usage["completion_tokens"]
            )

    def fail(self, task: Any, reason: str, status: int | None, message: str) -> None:
        if task.id in self.done:
            return
        self.fail_sink.write(
            {
                "id": task.id,
                "recipe": task.recipe,
                "axes": task.axes,
                "error_class": "BatchFailed",
                "reason": reason,
                "status": status,
                "message": message,
                "attempts": 1,
                "provider": self.api.endpoint.provider,
                "model": self.api.endpoint.model,
                "created_at": utc_now(),
                "prompt": task.prompt,
            }
        )
        self.stats.failed += 1

    def progress(self, entry: dict[str, Any], batch: dict[str, Any]) -> None:
        counts = batch.get("request_counts") or {}
        self.say(
            f"batch {entry['id']}: {batch.get('status')}, {counts.get('completed', 0)}/"
            f"{counts.get('total', len(entry['tasks']))} done, {counts.get('failed', 0)} failed, "
            f"{time.monotonic() - self.t0:.0f} s"
        )

    def say(self, text: str) -> None:
        if not self.options.quiet:
            self.console.print(text, markup=False)


async def run_batches(
    provider: Any,
    tasks: list[Any],
    out: Path,
    options: Any,
    params: dict[str, Any],
    stats: Any,
    done: set[str],
    price: Any,
    console: Console,
    fingerprints: dict[str, str] | None = None,
) -> list[Any]:
    """Submit the tasks not in `out` nor in a batch already, then (unless `no_wait`) poll and collect.

    Returns the tasks of expired or cancelled batches to send online (`batch_resend="online"`), else []."""
    spec = batch_spec(options.provider)
    from zaoshu.generator.engine import side_paths

    failures_path, _ = side_paths(out)
    state = BatchState(batches_path(out))
    async with provider.open(options) as endpoint:
        stats.model = endpoint.model
        headers = {"Authorization": "Bearer " + endpoint.api_key.reveal()} if endpoint.api_key else {}
        timeout = aiohttp.ClientTimeout(total=max(options.timeout, 600))
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            with AppendSink(out) as sink, AppendSink(failures_path) as fail_sink:
                run = BatchRun(
                    BatchAPI(session, endpoint),
                    spec,
                    state,
                    {t.id: t for t in tasks},
                    done,
                    sink,
                    fail_sink,
                    options,
                    params,
                    stats,
                    price,
                    console,
                )
                run.fingerprints = fingerprints or {}
                await run.reattach()
                pending = state.open_ids()
                new = [t for t in tasks if t.id not in pending]
                if new:
                    await run.submit(new)
                if options.no_wait:
                    open_n = sum(b["state"] == "created" for b in state.batches)
                    run.say(
                        f"{open_n} batch(es) submitted and recorded in {state.path}; rerun the same command "
                        "to collect them"
                    )
                    return []
                await run.wait()
                return run.online
