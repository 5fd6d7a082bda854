"""Rate limiting, adaptive concurrency and the retry policy: one module, so every provider behaves alike.

- `AdaptiveWindow`: at most `limit` requests in flight; on a 429 the window shrinks multiplicatively
  (once per congestion event: only a request *sent after* the last cut can cut again), on success it grows
  back along a CUBIC curve that flattens near the size where the 429 came, so a run against a limit it was
  not told settles just under it instead of storming it.
- `AdaptiveRate`: from the first cluster of 429s on, sends are paced at the rate the server admitted (which,
  over a cap, is the cap), probing above it only while no 429 comes; a server that announces its limits
  (`x-ratelimit-limit-requests`/`-tokens`) is paced at them from its first answer instead.
- `Gate`: what a request passes before it is sent: the stop flag, the window, the pacer, a shared cool-down
  (`Retry-After` of any 429 pauses every worker, not only the one that got it) and the `--rpm`/`--tpm`
  limiters (aiolimiter leaky buckets holding about one second of burst for rpm, ten for tpm).
- `RetryPolicy`: tenacity's exponential backoff with jitter, at least the server's `Retry-After`; only
  errors that say `retryable` are retried (429, 5xx, timeouts, connection errors, torn bodies).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiolimiter import AsyncLimiter
from tenacity import RetryCallState
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential_jitter

T = TypeVar("T")


class Stopped(Exception):
    """Raised to a worker when the run is stopping (Ctrl-C, SIGTERM, a refused key): leave the task."""


class AdaptiveWindow:
    """A concurrency limit that shrinks on 429 and grows back (AIMD with CUBIC growth)."""

    def __init__(self, limit: int, *, beta: float = 0.7, c: float = 0.4, min_limit: int = 1) -> None:
        self.max = float(limit)
        self.value = float(limit)
        self.min = float(min_limit)
        self.beta = beta
        self.c = c
        self.alpha = 3 * beta / (2 - beta)  # CUBIC's Reno-equivalent additive increase
        self.inflight = 0
        self.w_max = float(limit)
        self.k = 0.0
        self.t_cut = -math.inf
        self.cuts = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        return max(int(self.value), 1)

    async def acquire(self) -> None:
        if self.inflight < self.size and not self._waiters:
            self.inflight += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed to us as we were cancelled: give it back
            raise

    def release(self) -> None:
        self.inflight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.inflight < self.size:
            fut = self._waiters.popleft()
            if not fut.done():
                self.inflight += 1
                fut.set_result(None)

    def restore(self) -> None:
        """Back to the full window (when something else, the pacer, limits the sends)."""
        self.value = self.w_max = self.max
        self._wake()

    def on_congestion(self, sent_at: float, floor: float = 1.0) -> bool:
        """A 429 for a request sent at `sent_at` (monotonic). Returns True if the window was cut.

        `floor`: the window the paced send rate needs (rate × latency); cutting below it would only
        starve the pacer, since the rate, not the concurrency, is what the server limits then.
        """
        if sent_at < self.t_cut:
            return False
        w = self.value
        # Fast convergence: a cut below the previous peak means the limit fell; remember less.
        self.w_max = w * (1 + self.beta) / 2 if w < self.w_max else w
        self.value = min(w, max(self.min, w * self.beta, floor))
        self.k = (max(self.w_max - self.value, 0.0) / self.c) ** (1 / 3)
        self.t_cut = time.monotonic()
        self.cuts += 1
        return True

    def on_success(self) -> None:
        if self.value >= self.max:
            return
        t = time.monotonic() - self.t_cut
        target = self.c * (t - self.k) ** 3 + self.w_max
        # CUBIC's "TCP-friendly" floor: at least Reno's additive increase, ~alpha a window per round trip,
        # so a fast server (short round trips) regains its window quickly after a stray 429.
        target = max(target, self.value + self.alpha / self.value)
        old = self.size
        if target > self.value:
            self.value = min(self.max, target)
        if self.size > old:
            self._wake()


class AdaptiveRate:
    """Send pacing learned from 429s (or told by `x-ratelimit-*` headers): off until the first cluster of
    429s, then paced at what the server *admitted*, probing upwards only while no 429 comes.

    Why "admitted": a server capping requests (a token bucket) admits exactly its cap whatever is sent above
    it, so the successes of the last second measure the cap itself, not a fraction of the send rate; pacing
    there loses nothing and cutting there never undershoots, which is what kept a multiplicative cut from
    settling (it could land at half the cap and stay). The measurement only counts answers since the last
    cut, over at least half a second, so a cut is never based on answers to sends made at an older rate.

    Between 429s the rate probes above the base, flat for `hold` seconds and then along
    `1 + a*u + b*u**2`: at the cap a 429 comes back within a second and resets the probe to the base, so the
    steady state sends a percent or so over the cap (about one 429 a second); when the cap rises the 429s
    stop and the probe reaches twice the old rate within about five seconds. Stray 429s (under `cut_share`
    of the answers) reset the probe but do not cut.
    """

    STALL_S = 0.3  # how long after this process stalled the answers it reads are taken to be a backlog
    MAX_DEFER_S = 1.0  # the longest decisions are put off for stalls in a row

    def __init__(
        self,
        *,
        cut_share: float = 0.02,
        min_rejected: int = 3,
        settle: float = 0.5,
        hold: float = 0.5,
        margin: float = 0.01,
        a: float = 0.03,
        b: float = 0.1,
    ) -> None:
        self.cut_share = cut_share
        self.min_rejected = min_rejected
        self.settle = settle  # seconds of answers a cut needs (since the start or the last cut)
        self.hold = hold
        self.margin = margin  # the base sits this much under what was admitted: the probe finds the rest
        self.a, self.b = a, b
        self.base: float | None = None  # requests/s once learned
        self.ceiling: float | None = None  # announced by the server: never probe above it
        self.started = False
        self.t_first = -math.inf  # the first answer admitted: measurements start there
        self.t_cut = -math.inf
        self.t_429 = -math.inf
        self.next_at = 0.0
        self.debt = 0.25
        self.cuts = 0
        self._lock = asyncio.Lock()
        self._ok = [0] * 32  # successes per 0.1 s slot (a ring of 3.2 s)
        self._rejected = [0] * 32  # 429s per slot
        self._slots = [-1] * 32
        self.t_stall = -math.inf  # when this process last woke up late (see `note_stall`)
        self.deferred = 0  # decisions put off because of a stall
        self.defer_since: float | None = None  # the first decision put off in the current run of stalls
        self.answered = 0  # successes so far
        self.mark = 0  # `answered` when the probe last restarted

    @property
    def r_max(self) -> float | None:
        return self.base

    def _slot(self, now: float) -> int:
        slot = int(now * 10)
        i = slot & 31
        if self._slots[i] != slot:
            self._slots[i] = slot
            self._ok[i] = self._rejected[i] = 0
        return i

    def record_success(self, now: float) -> None:
        if not self.started:
            # Measure from the first answer, not the first send: on a slow server the first answers
            # come late, and a rate measured from the sends would pass that latency for a low cap.
            self.started = True
            self.t_first = now
        self._ok[self._slot(now)] += 1
        self.answered += 1

    def _restart(self, now: float) -> None:
        """The probe starts again from the base (a 429, a cut)."""
        self.t_429 = now
        self.mark = self.answered

    def note_stall(self, now: float, lag: float = 0.0) -> None:
        """This process did not run for `lag` seconds (a loaded machine, a long callback) and has just woken up.

        Answers that came meanwhile are still being read, in no particular order: a 429 read now would
        measure the admitted rate before the successes that arrived with it are counted, which is how a
        loaded machine used to cut the rate to half the cap. Decisions wait until the backlog is read.
        The probe does not advance while nothing is sent: it would otherwise resume higher than it tested.
        """
        self.t_stall = now
        self.t_429 = max(self.t_429, self.t_cut) + lag

    def stalled(self, now: float) -> bool:
        return now - self.t_stall < self.STALL_S

    def window(self, now: float, span: float = 1.0) -> tuple[int, int, float]:
        """(successes, 429s, seconds) over the last `span` seconds, not before the first send or the last
        cut; whole 0.1 s slots, the current one included, so the seconds are exact."""
        lo = max(self.t_cut, self.t_first, now - span)
        first, cur = math.ceil(lo * 10 - 1e-9), int(now * 10)
        ok = rejected = 0
        for i, s in enumerate(self._slots):
            if first <= s <= cur:
                ok += self._ok[i]
                rejected += self._rejected[i]
        return ok, rejected, now - first / 10

    def current(self, now: float) -> float | None:
        if self.base is None:
            return None
        # The probe's clock runs no faster than the answers come back (at the base, `base` a second): when
        # none come (this process or the server stalled) it learns nothing, so it must not climb either,
        # or it resumes far above what it tested and meets the cap with a cluster of 429s.
        waited = now - max(self.t_429, self.t_cut)
        u = min(waited, (self.answered - self.mark) / self.base) - self.hold
        if u <= 0:
            rate = self.base
        else:
            factor = 1 + self.a * u + self.b * u * u
            if factor >= 3.0:
                # Three times the base and still no 429: the base was far too low (learned in a stall, or
                # the cap rose a lot). Take this rate as the base and probe on from it, gently at first,
                # so an overshoot into the real cap stays bounded.
                self.base *= 3.0
                self.t_429, factor = now - self.hold, 3.0
                self.mark = self.answered - round(self.hold * self.base)
            rate = self.base * factor if factor < 3.0 else self.base
        return min(rate, self.ceiling) if self.ceiling else rate

    def announce(self, rate: float) -> None:
        """The server said its limit (requests/s): pace there from now on, without probing above."""
        if rate > 0 and rate != self.ceiling:
            self.ceiling = rate
            if self.base is None or self.base > rate or self.cuts == 0:
                self.base = rate

    def on_congestion(self, sent_at: float, now: float | None = None) -> bool:
        """A 429 for a request sent at `sent_at`. Returns True when the rate was cut to the admitted one."""
        now = time.monotonic() if now is None else now
        self._rejected[self._slot(now)] += 1
        if sent_at < self.t_cut:  # sent before the last cut: part of the event already handled
            return False
        if self.stalled(now):
            # Put off for a second at most: a storm of 429s can itself keep this process late, and
            # deferring for as long as that lasts would never cut.
            self.defer_since = now if self.defer_since is None else self.defer_since
            if now - self.defer_since < self.MAX_DEFER_S:
                self._restart(now)  # the probe restarts from the base, but nothing is measured in a backlog
                self.deferred += 1
                return False
        else:
            self.defer_since = None
        ok, rejected, span = self.window(now)
        admitted = ok / span if span > 0 else 0.0
        if span < self.settle or rejected < self.min_rejected or rejected <= self.cut_share * (ok + rejected):
            if self.base is not None and span >= self.settle and ok >= self.min_rejected:
                # A lone 429 ends a probe: what the server admitted meanwhile (a little under it) is the new
                # base, so the probe neither falls back to a base learned under a lower cap nor keeps one
                # that noise put above the cap (that one would 429 a percent or two for ever).
                # A lone 429 may also come of a stall of this process (late sends going out at once), so
                # it lowers the base by a few percent at most; a base over the cap meets more of them.
                measured = min(admitted, self.current(now) or admitted) * (1 - self.margin)
                lowered = max(measured, self.base * 0.97)
                # After a stall the server admits what its bucket saved up meanwhile, more than its rate:
                # for a second then a measurement may lower the base, never raise it.
                recent_stall = now - self.t_stall < 1.0 + self.STALL_S
                self.base = min(lowered, self.base) if recent_stall else lowered
            self._restart(now)  # the probe restarts from the base
            return False
        self._restart(now)
        if ok < 10:
            return False  # too few admitted yet to measure (the first replies are still on their way)
        # The cut measures over up to two seconds, so a stall of this process (a loaded machine) followed
        # by a burst of late sends does not pass for a lower cap; and one cut takes off at most 30 %.
        ok, _, span = self.window(now, 2.0)
        admitted = ok / span
        if self.base is not None:
            admitted = max(admitted, self.base * 0.7)
        admitted *= 1 - self.margin
        self.base = min(admitted, self.ceiling) if self.ceiling else admitted
        self.t_cut = now
        self.cuts += 1
        return True

    async def pace(self) -> None:
        """Space sends 1/rate apart. Waiters queue on a lock and only its holder sleeps, so each gap uses
        the rate of *now*: slots reserved ahead at an old rate would keep a cut from taking effect."""
        if self.base is None:
            return
        async with self._lock:
            now = time.monotonic()
            # A sleep overshoots (timer slack, a busy loop): up to `debt` seconds of sends that are late
            # go out at once, so the achieved rate is the nominal one and not 1 / (gap + overshoot).
            self.next_at = max(self.next_at, now - self.debt)
            wait = self.next_at - now
            if wait > 0:
                await asyncio.sleep(wait)
                now = time.monotonic()
            self.next_at += 1 / max(self.current(now) or 0.0, 0.1)


class Gate:
    """Everything a request waits for before it is sent; also what it reports afterwards."""

    def __init__(
        self,
        concurrency: int,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.window = AdaptiveWindow(concurrency)
        self.pacer = AdaptiveRate()
        self.latency = 0.0  # moving average of successful requests' latency (s)
        self.cooldown_until = 0.0
        self.stopping = False
        self.rpm = _limiter(rpm, 1.0) if rpm else None
        self.tpm = _limiter(tpm, 10.0) if tpm else None
        self.max_tokens = max_tokens  # what a provider charges a request's reply against its token limit
        self.charge = 0.0  # moving average of the tokens a request is charged (prompt + max_tokens)
        self.announced: tuple[float | None, float | None] | None = None

    async def enter(self, tokens: int = 0) -> float:
        """Wait for a slot, the cool-down and the limiters; return the send time. Raises Stopped."""
        if self.stopping:
            raise Stopped
        await self.window.acquire()
        try:
            while True:
                if self.stopping:
                    raise Stopped
                wait = self.cooldown_until - time.monotonic()
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.pacer.base is not None:
                await self.pacer.pace()
            if self.rpm is not None:
                await self.rpm.acquire()
            if self.tpm is not None and tokens:
                await self.tpm.acquire(min(tokens, self.tpm.max_rate))
            if self.stopping:
                raise Stopped
        except BaseException:
            self.window.release()
            raise
        return time.monotonic()

    def leave(self) -> None:
        self.window.release()

    async def watch(self, every: float = 0.05, late: float = 0.03) -> None:
        """Run beside the workers: note every time this process wakes up `late` seconds or more after it
        meant to (the machine was busy), so the pacer does not take the backlog of answers for the server's
        rate. Twenty wake-ups a second: negligible next to the requests."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(every)
            now = loop.time()
            if now - t - every >= late:
                self.pacer.note_stall(time.monotonic(), now - t - every)

    def on_rate_limited(
        self,
        sent_at: float,
        retry_after: float | None,
        limits: tuple[float | None, float | None] | None = None,
    ) -> None:
        now = time.monotonic()
        if retry_after:
            self.cooldown_until = max(self.cooldown_until, now + min(retry_after, 120.0))
        if limits is not None:
            self._announce(limits)
        paced = self.pacer.base is not None
        self.pacer.on_congestion(sent_at, now)
        if paced:
            return
        if self.pacer.base is not None:
            # The pacer just took over: the rate, not the concurrency, is what the server limits, and the
            # window that the first storm of 429s (quick answers, many cuts) shrank would only cap the rate.
            self.window.restore()
        else:
            # Not below half: the 429s of a cap come back at once, many rounds of cuts before the first
            # success would leave a window too small to measure the cap with.
            self.window.on_congestion(sent_at, self.window.max / 2)

    def on_success(
        self,
        sent_at: float,
        usage: dict[str, int] | None = None,
        limits: tuple[float | None, float | None] | None = None,
    ) -> None:
        now = time.monotonic()
        self.latency += 0.1 * (now - sent_at - self.latency)
        self.pacer.record_success(now)
        self.window.on_success()
        if limits is not None:
            if usage:
                charge = usage["prompt_tokens"] + (self.max_tokens or usage["completion_tokens"])
                self.charge += (charge - self.charge) * (0.05 if self.charge else 1.0)
            self._announce(limits)

    def _announce(self, limits: tuple[float | None, float | None]) -> None:
        """Requests and tokens per minute the server says it allows -> the pacer's ceiling (requests/s)."""
        rpm, tpm = limits
        rates = [rpm / 60] if rpm else []
        if tpm and self.charge > 0:
            rates.append(tpm / 60 / self.charge)
        if rates:
            self.pacer.announce(min(rates))


def _limiter(per_minute: float, burst_s: float) -> AsyncLimiter:
    """A leaky bucket holding `burst_s` seconds of the rate (aiolimiter's own default would hold a minute)."""
    if per_minute / 60 * burst_s >= 1:
        return AsyncLimiter(per_minute / 60 * burst_s, burst_s)
    return AsyncLimiter(1, 60 / per_minute)


class _WaitRetryAfter(wait_base):
    """Exponential backoff with jitter, but never shorter than the server's Retry-After.

    A 429 that says when to come back (a rate cap) backs off from a tenth of the usual first wait: the
    pacer already spaces sends, and a whole backoff on each such 429 would leave the last tasks of a run
    waiting long after the others are done. A 429 without Retry-After gets the usual curve."""

    def __init__(self, initial: float, maximum: float, jitter: float) -> None:
        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)
        self.short = wait_exponential_jitter(multiplier=initial / 10, max=maximum, jitter=jitter / 10)

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is None:
            return self.backoff(retry_state)
        curve = self.short if getattr(exc, "reason", None) == "rate_limited" else self.backoff
        return max(curve(retry_state), min(retry_after, 120.0))


def is_retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", False))


def _capped(exc: BaseException | None) -> bool:
    """A 429 that says when to come back: a rate cap, which the pacer is handling."""
    return getattr(exc, "reason", None) == "rate_limited" and getattr(exc, "retry_after", None) is not None


class _StopAfter(stop_base):
    """Stop after `attempts`; a task whose last answer was a cap's 429 gets four times as many, since its
    short waits would otherwise use up its attempts in the first seconds of a storm of 429s (a busy
    machine, a cap that just dropped) and lose it, while the run as a whole is paced at the cap."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        limit = self.attempts * 4 if _capped(exc) else self.attempts
        return retry_state.attempt_number >= limit


class RetryPolicy:
    """Attempts of one task: tenacity's wait and stop strategies, driven by one small loop.

    The loop is ours rather than `AsyncRetrying`'s because tenacity costs ~0.1 ms of CPU per call (it
    inspects its callbacks each time) while most tasks succeed at once: here a task pays nothing until an
    attempt fails, and every attempt, the first included, goes through the same wait and stop decisions.
    """

    def __init__(
        self, max_attempts: int, *, initial: float = 0.5, maximum: float = 30.0, jitter: float = 0.5
    ) -> None:
        self.max_attempts = max_attempts
        self.wait = _WaitRetryAfter(initial, maximum, jitter)
        self.stop = _StopAfter(max_attempts)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        state: RetryCallState | None = None  # made at the first failure: a task that succeeds pays nothing
        while True:
            try:
                return await attempt()
            except Exception as e:
                if not is_retryable(e):
                    raise
                if state is None:
                    state = RetryCallState(None, None, (), {})
                state.set_exception((type(e), e, e.__traceback__))
                if self.stop(state):
                    raise
                await asyncio.sleep(self.wait(state))
                state.prepare_for_next_attempt()
