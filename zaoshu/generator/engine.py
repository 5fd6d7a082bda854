"""The async run: plan -> requests -> records, crash-safe and resumable.

`generate(recipe, out, options)` plans the recipe, skips the ids already in `out`, and sends the rest
through a fixed pool of workers (never one coroutine per task, so 100k tasks cost no more memory than
100). Each request passes the `limits.Gate` (adaptive window, cool-down, rpm/tpm) and the tenacity
`RetryPolicy`; each finished task is appended to `out` at once (`AppendSink`), each failed one to
`<stem>.failures.jsonl` at once too, with its error class, reason, message and attempts, so the failures of a
run that is killed (even `kill -9`) are there to read. A 401/402/403 stops everything.
Ctrl-C / SIGTERM stop sending, wait up to `grace` seconds for what is in flight, flush and return with
`interrupted=True` (the CLI exits 130); a second Ctrl-C stops at once. Rerunning the same command resumes:
done ids are skipped, failures are retried, a torn last line (of either file) is cut. When a run ends
(finished, interrupted or stopped) the failures file is compacted: one line per id, the latest failure, and
none for an id that is done by now; only between a kill and the next run can it list an id twice or one
already done. `<stem>.stats.json` holds the same numbers as the returned `GenerateStats` (a `zaoshu.stats.Stats`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from zaoshu.errors import AuthError, ZaoshuError
from zaoshu.files import atomic_write, check_writable, guard_outputs
from zaoshu.generator.batch import batch_spec, run_batches
from zaoshu.generator.cache import RunCache, open_run_cache, serve_hits
from zaoshu.generator.clients import (
    AuthFailed,
    BadReply,
    ChatClient,
    ConnectionFailed,
    ContentFiltered,
    RateLimited,
    RequestFailed,
    RequestTimeout,
    Unreachable,
    make_client,
)
from zaoshu.generator.costs import estimate_tokens, load_prices, price_for
from zaoshu.generator.limits import Gate, RetryPolicy, Stopped
from zaoshu.generator.options import GenerateOptions as GenerateOptions
from zaoshu.generator.plan import Plan, Task, plan
from zaoshu.generator.providers import (
    Endpoint,
    Provider,
    api_url,
    get_provider,
    safe_command,
    safe_url,
)
from zaoshu.generator.resume import (
    FINGERPRINT,
    Resume,
    fingerprint,
    move_superseded,
    prove_record_file,
    scan,
    superseded_path,
)
from zaoshu.recipes import Recipe, load_recipe
from zaoshu.records import (
    AppendSink,
    iter_lines,
    parse_line,
    repair_tail,
    utc_now,
)
from zaoshu.stats import Stats


@dataclass
class GenerateStats(Stats):
    """What a run did; also written to `<stem>.stats.json`."""

    tasks: int = 0  # planned
    skipped_resume: int = 0  # already in the output
    todo: int = 0
    done: int = 0  # records written by this run
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0  # answers 429
    attempts: int = 0  # HTTP requests sent
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None
    currency: str | None = None
    wall_s: float = 0.0  # the whole call: planning, resume scan, sending, flushing
    send_s: float = 0.0  # the sending phase alone
    req_s: float = 0.0  # finished tasks (done + failed) per second of the whole call
    superseded: int = 0  # records of another request (edited prompt, model...) moved aside and redone
    interrupted: bool = False
    dry_run: bool = False
    provider: str = ""
    model: str = ""
    output: str = ""
    failures: str = ""
    started_at: str = field(default_factory=utc_now)
    window_min: int = 0  # the smallest concurrency the 429 logic went down to
    cache_hits: int = 0  # records written from the response cache (counted in `done`, not sent)
    cache_saved: float | None = None  # what those replies cost when they were made
    cost_online: float | None = None  # --batch: what the same replies would have cost online


def side_paths(out: Path) -> tuple[Path, Path]:
    """raw.jsonl -> (raw.failures.jsonl, raw.stats.json)."""
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.stem
    return out.with_name(stem + ".failures.jsonl"), out.with_name(stem + ".stats.json")


def request_params(recipe: Recipe) -> dict[str, Any]:
    """Sampling parameters sent as real API parameters (never inside a message)."""
    m = recipe.model
    params = {"temperature": m.temperature, "top_p": m.top_p, "max_tokens": m.max_tokens}
    return {k: v for k, v in params.items() if v is not None}


def plan_fingerprints(
    provider: Provider, options: GenerateOptions, tasks: list[Task], params: dict[str, Any]
) -> dict[str, str]:
    """Task id -> what today's request for it would be (`request_fingerprint`), known before sending.

    The model and endpoint are the provider's description (no server started, no key read), so a finished
    run can be recognised without opening the provider; a key in the base URL never enters it.
    """
    info = provider.describe(options)
    endpoint = f"{info.get('provider')} {str(info.get('base_url') or '').rstrip('/')}"
    model = str(info.get("model") or "")
    return {t.id: fingerprint(t.request, model=model, params=params, endpoint=endpoint) for t in tasks}


def _report_resume(console: Console, out: Path, found: Resume, options: GenerateOptions) -> int:
    """Say what the existing output holds that today's plan would not ask alike; returns the stale count."""
    if found.changed:
        console.print(
            f"[yellow]note:[/] {escape(str(out))}: {len(found.changed)} records were made by another request "
            "(the prompt, model, sampling parameters or provider changed since); they are not counted as done: "
            + (
                "a real run would generate them again"
                if options.dry_run
                else f"moved to {escape(str(superseded_path(out)))} and generated again"
            ),
            soft_wrap=True,
        )
    if found.unmarked:
        console.print(
            f"[yellow]note:[/] {escape(str(out))}: {found.unmarked} records carry no fingerprint (written by an "
            "older zaoshu), so a change of prompt or model cannot be seen; they are kept as done. To make "
            "them again, write to a new -o.",
            soft_wrap=True,
        )
    if found.foreign:
        console.print(
            f"[yellow]note:[/] {escape(str(out))}: {found.foreign} records are not in this plan (another "
            "--seed, --rounds, --limit or axis values); they stay in the file beside this plan's records. "
            "For a separate dataset, write to a new -o.",
            soft_wrap=True,
        )
    return len(found.changed)


class _Run:
    def __init__(
        self,
        tasks: collections.deque[Task],
        endpoint: Endpoint,
        client: ChatClient,
        options: GenerateOptions,
        params: dict[str, Any],
        stats: GenerateStats,
        sink: AppendSink,
        fail_sink: AppendSink,
        fingerprints: dict[str, str],
        cache: RunCache | None = None,
    ) -> None:
        self.tasks = tasks
        self.fingerprints = fingerprints
        self.endpoint = endpoint
        self.client = client
        self.options = options
        self.params = params
        self.stats = stats
        self.sink = sink
        self.fail_sink = fail_sink
        self.cache = cache
        self.gate = Gate(
            options.concurrency, rpm=options.rpm, tpm=options.tpm, max_tokens=params.get("max_tokens")
        )
        self.policy = RetryPolicy(
            options.max_attempts, initial=options.backoff, maximum=options.backoff_max, jitter=options.backoff
        )
        self.done_ids: set[str] = set()
        self.auth_error: AuthFailed | None = None
        self.unreachable: Unreachable | None = None
        self.server_down: str | None = None  # why the run's own server (embedded) cannot answer any more
        self.answers = 0  # HTTP answers of any kind: once one came, the endpoint is reachable
        self.refused = 0
        self.crash: BaseException | None = None
        self.failures_existed = False
        self.track_done = False
        self.hard = False
        self.stop_event = asyncio.Event()
        #: raises BadReply for a 200 whose content the caller cannot use (retried like a torn body)
        self.check_reply: Callable[[Any], None] | None = None
        self.price = price_for(load_prices(options.prices), endpoint.model)
        stats.window_min = options.concurrency
        stats.currency = self.price.currency if self.price else None
        # What an earlier phase of the same run (a batch) cost is kept: this one adds to it.
        stats.cost = (stats.cost or 0.0) if self.price else stats.cost

    # ---------------------------------------------------------------- control

    def request_stop(self, *, hard: bool = False) -> None:
        self.gate.stopping = True
        self.hard = self.hard or hard
        self.stop_event.set()

    def on_signal(self) -> None:
        if self.gate.stopping:
            self.request_stop(hard=True)  # a second Ctrl-C: do not wait for what is in flight
        else:
            self.stats.interrupted = True
            self.request_stop()

    async def run(self) -> None:
        n = min(self.options.concurrency, len(self.tasks))
        self.track_done = self.failures_existed
        workers = [asyncio.create_task(self._worker()) for _ in range(n)]
        all_done = asyncio.gather(*workers, return_exceptions=True)
        stop = asyncio.create_task(self.stop_event.wait())
        watch = asyncio.create_task(self.gate.watch())
        try:
            await asyncio.wait([all_done, stop], return_when=asyncio.FIRST_COMPLETED)
            if not all_done.done():
                deadline = time.monotonic() + self.options.grace
                while self.gate.window.inflight > 0 and not self.hard and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                for w in workers:
                    w.cancel()
            await all_done
        finally:
            stop.cancel()
            watch.cancel()

    async def _worker(self) -> None:
        queue = self.tasks  # popped, so a finished task is freed: memory only goes down after planning
        while not self.gate.stopping:
            if not queue:
                return
            task = queue.popleft()
            try:
                await self._do(task)
            except Stopped:
                return
            except AuthFailed as e:
                self.auth_error = e
                self.request_stop(hard=True)
                return
            except Exception as e:  # a bug, not a provider failure: stop and re-raise after flushing
                self.crash = e
                self.request_stop(hard=True)
                return

    # ---------------------------------------------------------------- one task

    async def _do(self, task: Task) -> None:
        attempts = 0

        async def attempt() -> tuple[Any, float]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                self.stats.retries += 1
            return await self._attempt(task)

        try:
            reply, latency = await self.policy.call(attempt)
        except AuthFailed:
            raise
        except RequestFailed as e:
            self._fail(task, e, attempts)
            return
        meta = {
            "provider": self.endpoint.provider,
            "model": self.endpoint.model,
            "usage": reply.usage,
            "latency_ms": round(latency * 1000),
            "attempts": attempts,
            "finish_reason": reply.finish_reason,
            "created_at": utc_now(),
            FINGERPRINT: self.fingerprints[task.id],
        }
        self.sink.write(task.to_record(reply.content, meta))
        if self.cache is not None:
            self.cache.store(task, reply.content, meta)
        if self.track_done:  # only needed to prune an earlier failures file
            self.done_ids.add(task.id)
        self.stats.done += 1

    async def _attempt(self, task: Task) -> tuple[Any, float]:
        gate = self.gate
        tokens = 0
        if gate.tpm is not None:
            tokens = self._prompt_tokens(task) + int(self.params.get("max_tokens") or 0)
        sent = await gate.enter(tokens)
        self.stats.attempts += 1
        try:
            reply = await self.client.complete(task.request, self.params)
            if self.check_reply is not None:  # a reply the caller cannot use (a judge's non-JSON): retried
                self.check_reply(reply)
        except RateLimited as e:
            self.answers += 1
            self.stats.rate_limited += 1
            gate.on_rate_limited(sent, e.retry_after, e.limits)
            self.stats.window_min = min(self.stats.window_min, gate.window.size)
            raise
        except Unreachable as e:
            self._check_server(e)
            self.refused += 1
            if not self.answers and self.refused >= 3:  # a wrong URL or a server not running
                self.unreachable = e
                self.request_stop(hard=True)
                raise Stopped from None
            raise
        except (RequestTimeout, ConnectionFailed) as e:
            self._bill(self._prompt_tokens(task), 0)  # the provider may have run it
            self._check_server(e)
            raise
        except RequestFailed as e:  # an HTTP answer: 4xx/5xx, or a 200 without a usable reply
            self.answers += 1
            if isinstance(e, BadReply | ContentFiltered):
                gate.on_success(sent)
            if e.usage:
                self._bill(e.usage["prompt_tokens"], e.usage["completion_tokens"])
            raise
        finally:
            gate.leave()
        self.answers += 1
        gate.on_success(sent, reply.usage, reply.limits)
        self._bill(reply.usage["prompt_tokens"], reply.usage["completion_tokens"])
        return reply, time.monotonic() - sent

    def _check_server(self, error: Exception) -> None:
        """A server this run started that crashed or hangs stops the run with its own diagnosis: retrying
        a dead process only turns the crash into "cannot connect"."""
        if self.endpoint.diagnose is None:
            return
        why = self.endpoint.diagnose(error)
        if why is not None:
            self.server_down = self.server_down or why
            self.request_stop(hard=True)
            raise Stopped from None

    def _prompt_tokens(self, task: Task) -> int:
        return sum(estimate_tokens(m["content"]) for m in task.request)

    def _bill(self, tokens_in: int, tokens_out: int) -> None:
        self.stats.tokens_in += tokens_in
        self.stats.tokens_out += tokens_out
        if self.price is not None:
            self.stats.cost = (self.stats.cost or 0.0) + self.price.cost(tokens_in, tokens_out)

    def _fail(self, task: Task, e: RequestFailed, attempts: int) -> None:
        self.fail_sink.write(
            {
                "id": task.id,
                "recipe": task.recipe,
                "axes": task.axes,
                "error_class": type(e).__name__,
                "reason": e.reason,
                "status": e.status,
                "message": str(e),
                "attempts": attempts,
                "provider": self.endpoint.provider,
                "model": self.endpoint.model,
                "created_at": utc_now(),
                "prompt": task.prompt,
            }
        )
        self.stats.failed += 1


# -------------------------------------------------------------------- progress


class _Progress:
    """A rich progress line refreshed four times a second from the run's counters (cheap per request)."""

    def __init__(self, run: _Run, total: int, console: Console, label: str = "generate") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.run = run
        self.t0 = time.monotonic()
        self.progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            auto_refresh=False,
        )
        self.task_id = self.progress.add_task(label, total=total, info="")
        self._loop_task: asyncio.Task[None] | None = None

    def info(self) -> str:
        s = self.run.stats
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        cost = self.run.price.format(s.cost or 0.0) if self.run.price else "n/a"
        return (
            f"{(s.done + s.failed) / elapsed:.1f} req/s · tokens {s.tokens_in:,}/{s.tokens_out:,} · "
            f"retries {s.retries} · 429 {s.rate_limited} · failed {s.failed} · ~{cost} · "
            + (f"cached {s.cache_hits} · " if s.cache_hits else "")
            + f"window {self.run.gate.window.size}"
        )

    def update(self) -> None:
        s = self.run.stats
        self.progress.update(self.task_id, completed=s.done + s.failed, info=self.info())
        self.progress.refresh()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.update()

    def __enter__(self) -> _Progress:
        self.progress.start()
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        self.update()
        self.progress.stop()


# -------------------------------------------------------------------- the entry points


def _console() -> Console:
    return Console(stderr=True, highlight=False)


def _dry_run(
    provider: Provider,
    tasks: collections.deque[Task],
    options: GenerateOptions,
    params: dict[str, Any],
    stats: GenerateStats,
) -> None:
    info = provider.describe(options)
    out = Console(highlight=False, soft_wrap=True)
    key = info.get("key_env")
    key_state = f"${key} {'set' if info.get('key_set') else 'NOT SET'}" if key else "no key needed"
    out.print(
        f"dry run: would send {stats.todo} requests ({stats.skipped_resume} already done) to "
        f"{safe_url(api_url(str(info.get('base_url')), 'chat/completions'))}, provider {info.get('provider')}, "
        f"model {info.get('model')}, "
        f"{key_state}; concurrency {options.concurrency}, max attempts {options.max_attempts}, "
        f"timeout {options.timeout:g} s"
        + (f", rpm {options.rpm:g}" if options.rpm else "")
        + (f", tpm {options.tpm:g}" if options.tpm else ""),
        markup=False,
    )
    prices = load_prices(options.prices)
    price = price_for(prices, str(info.get("model")))
    tokens = sum(estimate_tokens(m["content"]) for t in tasks for m in t.request)
    if price is not None:
        out_tokens = stats.todo * int(params.get("max_tokens") or 0)
        out.print(
            f"prompt tokens ≈ {tokens:,} (cost ≈ {price.format(price.cost(tokens, 0))} in, "
            f"at most {price.format(price.cost(0, out_tokens))} out with max_tokens)",
            markup=False,
        )
    for task in list(tasks)[: options.show]:
        body = {"model": info.get("model"), "messages": task.request, **params}
        out.rule(Text(f"{task.id}  {task.axes}"))  # Text: axis values are user text, not markup
        out.print(f"record user turn: {task.user}", markup=False)
        out.print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode(), markup=False)
    if stats.todo > options.show:
        out.print(f"… and {stats.todo - options.show} more", markup=False)


def _compact_failures(path: Path, done: set[str]) -> None:
    """Rewrite the failures file (appended to during runs): the latest failure of each id not done by now.

    Earlier runs' failures retried in this one are replaced by this run's outcome; a torn line left by a
    kill is dropped. Atomic (tmp + rename)."""
    if not path.exists():
        return
    latest: dict[str, bytes] = {}
    for number, raw in iter_lines(path):
        try:
            failure = parse_line(raw, path=path, line=number)
        except ZaoshuError:
            continue
        rid = failure.get("id") if isinstance(failure, dict) else None
        if isinstance(rid, str) and rid not in done:
            latest.pop(rid, None)  # keep the order of the latest failures
            latest[rid] = raw
    if not latest:
        path.unlink()
        return
    with atomic_write(path) as f:
        for raw in latest.values():
            f.write(raw if raw.endswith(b"\n") else raw + b"\n")


async def agenerate(
    recipe: Recipe | str | Path,
    out: str | Path,
    options: GenerateOptions | None = None,
    *,
    tasks: Sequence[Task] | None = None,
    params: dict[str, Any] | None = None,
    check_reply: Callable[[Any], None] | None = None,
) -> GenerateStats:
    """Generate records for a recipe into `out` (JSONL, appended), resuming what is already there.

    Other stages send their own requests through the same machinery (providers, limits, retries, resume,
    cost): `tasks` replaces the recipe's plan (anything with Task's fields and `to_record`), `params` the
    recipe's sampling parameters, and `check_reply` may raise BadReply for a reply it cannot use.
    """
    options = options or GenerateOptions()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    out = Path(out)
    failures_path, stats_path = side_paths(out)
    console = _console()
    t0 = time.monotonic()
    provider = get_provider(options.provider)
    # A provider may change defaults the user did not set, e.g. embedded: llama.cpp serves one request at
    # a time (64 in flight would only time out) and a small CPU model needs more than 120 s for a long reply.
    defaults = getattr(provider, "option_defaults", {})
    if unset := {k: v for k, v in defaults.items() if k not in options.model_fields_set}:
        options = options.model_copy(update=unset)
    if options.batch:
        batch_spec(options.provider)  # a provider without a batch API is an error before anything else
    if not options.dry_run:
        provider.check(options)  # a missing key is an error before planning, let alone sending
    if tasks is None:
        planned = plan(recipe, rounds=options.rounds, seed=options.seed, limit=options.limit)
    else:
        planned = Plan(tasks=list(tasks), excluded=0, total_cells=len(tasks))
    stats = GenerateStats(
        tasks=len(planned.tasks),
        dry_run=options.dry_run,
        provider=options.provider,
        output=str(out),
        failures=str(failures_path),
    )
    guard_outputs([out, failures_path, stats_path, superseded_path(out)], recipe.input_files())
    prove_record_file(out)  # before repair_tail: a recipe or notes file given as -o is refused, not cut
    if not options.dry_run:
        check_writable([out, failures_path, stats_path])
    if out.exists() and not options.dry_run and repair_tail(out):
        console.print(
            f"[yellow]warning:[/] {escape(str(out))}: cut a torn last line (left by an interrupted run); that task is redone"
        )
    params = request_params(recipe) if params is None else params
    fingerprints = plan_fingerprints(provider, options, planned.tasks, params)
    found = scan(out, fingerprints)
    stale = _report_resume(console, out, found, options)
    if stale and not options.dry_run:
        move_superseded(out, found.changed, fingerprints)
    done_before = found.done
    todo = collections.deque(t for t in planned.tasks if t.id not in done_before)
    del planned, tasks  # the deque holds what is left to do; sent tasks are freed as they finish
    stats.skipped_resume = stats.tasks - len(todo)
    stats.todo = len(todo)
    stats.superseded = stale
    if options.dry_run:
        _dry_run(provider, todo, options, params, stats)
        return stats
    run_cache = open_run_cache(options, provider.describe(options), params) if todo else None
    try:
        if run_cache is not None:
            todo = _serve_cached(run_cache, todo, out, options, stats, fingerprints)
        if not todo:  # before opening the provider: a finished run starts no local server and sends nothing
            stats.model = str(provider.describe(options).get("model") or "")
            _compact_failures(failures_path, done_before | set(run_cache.served if run_cache else ()))
            saved = f", which saved {run_cache.saved_text}" if run_cache and run_cache.saved_text else ""
            what = (
                f"all {stats.tasks} tasks are in {out} ({stats.cache_hits} from the response cache{saved})"
                if stats.cache_hits
                else f"all {stats.tasks} tasks are already in {out}"
            )
            console.print(f"nothing to do: {what}", markup=False)
            stats.write(stats_path)
            return stats
        if options.batch:
            return await _send_batch(
                provider, todo, out, options, params, stats, done_before, fingerprints, t0
            )
        return await _send(
            provider, todo, out, options, params, stats, done_before, run_cache, fingerprints, check_reply, t0
        )
    finally:
        if run_cache is not None:
            run_cache.close()


async def _send_batch(
    provider: Provider,
    tasks: collections.deque[Task],
    out: Path,
    options: GenerateOptions,
    params: dict[str, Any],
    stats: GenerateStats,
    done: set[str],
    fingerprints: dict[str, str],
    t0: float,
) -> GenerateStats:
    """`--batch`: the tasks go through the provider's batch API (generator/batch.py) instead of online."""
    console = _console()
    failures_path, stats_path = side_paths(out)
    price = price_for(load_prices(options.prices), str(provider.describe(options).get("model") or ""))
    if price is not None:
        stats.cost, stats.cost_online, stats.currency = 0.0, 0.0, price.currency
    repair_tail(failures_path)
    online = await run_batches(
        provider, list(tasks), out, options, params, stats, done, price, console, fingerprints
    )
    if online:  # tasks of expired or cancelled batches, sent online now (batch_resend="online")
        cost_before = stats.cost or 0.0
        await _send(
            provider,
            collections.deque(online),
            out,
            options,
            params,
            stats,
            done,
            None,
            fingerprints,
            None,
            t0,
        )
        if price is not None:  # sent at the online price: the same in both totals
            stats.cost_online = (stats.cost_online or 0.0) + (stats.cost or 0.0) - cost_before
    _compact_failures(failures_path, done)
    stats.wall_s = round(time.monotonic() - t0, 3)
    stats.req_s = round((stats.done + stats.failed) / max(stats.wall_s, 1e-9), 2)
    if stats.cost is not None:
        stats.cost, stats.cost_online = round(stats.cost, 6), round(stats.cost_online or 0.0, 6)
    stats.write(stats_path)
    if not options.no_wait:
        cost = (
            f"cost {price.format(stats.cost or 0.0)} at the batch price "
            f"(online it would have cost {price.format(stats.cost_online or 0.0)})"
            if price
            else "cost n/a (model not in the price table)"
        )
        console.print(
            f"{stats.done} records -> {stats.output}; {stats.failed} failed"
            + (f" -> {stats.failures}" if stats.failed else "")
            + f"; tokens {stats.tokens_in:,} in / {stats.tokens_out:,} out; {cost}; {stats.wall_s:.1f} s",
            markup=False,
        )
    return stats


def _serve_cached(
    run_cache: RunCache,
    tasks: collections.deque[Task],
    out: Path,
    options: GenerateOptions,
    stats: GenerateStats,
    fingerprints: dict[str, str],
) -> collections.deque[Task]:
    """Write the cached replies to `out` and return the tasks still to send."""
    left, metas = serve_hits(run_cache, tasks, out, fingerprints)
    if metas:
        stats.cache_hits = stats.done = len(metas)
        price = price_for(load_prices(options.prices), str(metas[0].get("model") or ""))
        if price is not None:
            usage = [m.get("usage") or {} for m in metas]
            saved = sum(price.cost(u.get("prompt_tokens", 0), u.get("completion_tokens", 0)) for u in usage)
            stats.cache_saved = round(saved, 6)
            stats.cost, stats.currency = 0.0, price.currency
            run_cache.saved_text = price.format(saved)
    return collections.deque(left)


async def _send(
    provider: Provider,
    todo: collections.deque[Task],
    out: Path,
    options: GenerateOptions,
    params: dict[str, Any],
    stats: GenerateStats,
    done_before: set[str],
    run_cache: RunCache | None,
    fingerprints: dict[str, str],
    check_reply: Callable[[Any], None] | None,
    t0: float,
) -> GenerateStats:
    """Open the provider and send `todo` (the part of `agenerate` that talks to the network)."""
    console = _console()
    failures_path, stats_path = side_paths(out)
    async with provider.open(options) as endpoint:
        stats.model = endpoint.model
        repair_tail(failures_path)  # a kill may have torn its last line; this run appends after it
        async with make_client(endpoint, concurrency=options.concurrency, timeout=options.timeout) as client:
            with (
                AppendSink(out, fsync_every=1024) as sink,
                AppendSink(failures_path, fsync_every=1024) as fail_sink,
            ):
                run = _Run(
                    todo, endpoint, client, options, params, stats, sink, fail_sink, fingerprints, run_cache
                )
                run.check_reply = check_reply
                run.failures_existed = failures_path.stat().st_size > 0
                del todo
                loop = asyncio.get_running_loop()
                installed = []
                if options.handle_signals:
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                            loop.add_signal_handler(sig, run.on_signal)
                            installed.append(sig)
                progress = (
                    _Progress(run, stats.todo, console, options.label)
                    if not options.quiet
                    else contextlib.nullcontext()
                )
                t_send = time.monotonic()
                try:
                    with progress:
                        await run.run()
                finally:
                    stats.send_s = round(time.monotonic() - t_send, 3)
                    for sig in installed:
                        loop.remove_signal_handler(sig)
            _compact_failures(
                failures_path, done_before | run.done_ids | set(run_cache.served if run_cache else ())
            )
    stats.wall_s = round(time.monotonic() - t0, 3)
    stats.req_s = round((stats.done + stats.failed) / max(stats.wall_s, 1e-9), 2)
    if stats.cost is not None:
        stats.cost = round(stats.cost, 6)
    stats.write(stats_path)
    if run.crash is not None:
        raise run.crash
    if run.server_down is not None:
        raise ZaoshuError(
            f"provider {endpoint.provider!r}: {run.server_down}\nThis run wrote {stats.done} "
            f"record{'' if stats.done == 1 else 's'} to {out} before that; they are kept, and rerunning the "
            "same command resumes after them."
        )
    if run.unreachable is not None:
        raise ZaoshuError(
            f"provider {endpoint.provider!r}: {run.unreachable}; is the server running and the base URL "
            "right (--base-url)? Nothing was written; rerun the same command once it answers."
        )
    if run.auth_error is not None:
        e = run.auth_error
        what = "the account (no balance?)" if e.status == 402 else "the API key"
        raise AuthError(
            f"provider {endpoint.provider!r} refused {what}"
            + (f" from ${endpoint.key_env}" if endpoint.key_env else "")
            + f" ({e}); the run stopped at once. Fix it and rerun the same command to resume."
        )
    _summary(console, stats, run)  # -q hides the progress bar only: the outcome is always said
    if stats.interrupted:
        left = stats.todo - stats.done - stats.failed
        how = options.command or "the same command"
        console.print(
            f"[yellow]interrupted:[/] {stats.done} written, {stats.failed} failed, {left} not sent; "
            f"resume with: {escape(safe_command(how))}",
            markup=True,
        )
    return stats


def _summary(console: Console, stats: GenerateStats, run: _Run) -> None:
    cost = run.price.format(stats.cost or 0.0) if run.price else "n/a (model not in the price table)"
    console.print(
        f"{stats.done} records -> {stats.output}; {stats.failed} failed"
        + (f" -> {stats.failures}" if stats.failed else "")
        + f"; {stats.skipped_resume} already done; {stats.retries} retries, {stats.rate_limited} answered 429; "
        f"tokens {stats.tokens_in:,} in / {stats.tokens_out:,} out; est. cost {cost}"
        + (
            f" ({stats.cache_hits} from the cache, which saved {_saved(run, stats)})"
            if stats.cache_hits
            else ""
        )
        + "; "
        f"{stats.wall_s:.1f} s, {stats.req_s:.1f} req/s",
        markup=False,
    )


def _saved(run: _Run, stats: GenerateStats) -> str:
    return run.price.format(stats.cache_saved or 0.0) if run.price else "n/a"


def generate(
    recipe: Recipe | str | Path, out: str | Path, options: GenerateOptions | None = None
) -> GenerateStats:
    """Synchronous wrapper over `agenerate` (runs its own event loop)."""
    return asyncio.run(agenerate(recipe, out, options))
