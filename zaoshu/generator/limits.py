"""Rate limiting, adaptive concurrency and the retry policy: one module, so every provider behaves alike.

- `AdaptiveWindow`: at most `limit` requests in flight; on a 429 the window shrinks multiplicatively
  (once per congestion event: only a request *sent after* the last cut can cut again), on success it grows
  back along a CUBIC curve that flattens near the size where the 429 came, so a run against a limit it was
  not told settles just under it instead of storming it.
- `AdaptiveRate`: from the first 429 on, sends are paced at a rate learned from what the server admitted
  (CUBIC on the rate), which is what settles a run near an rpm cap with few 429s.
- `Gate`: what a request passes before it is sent: the stop flag, the window, the pacer, a shared cool-down
  (`Retry-After` of any 429 pauses every worker, not only the one that got it) and the `--rpm`/`--tpm`
  limiters (aiolimiter leaky buckets holding about one second of burst for rpm, ten for tpm).
- `RetryPolicy`: tenacity, exponential backoff with jitter, at least the server's `Retry-After`; only
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
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
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
    """Send pacing learned from 429s: off until the first cluster of them, then paced near what was admitted.

    At a congestion event the rate the server *admitted* over the last second (successes, counted in
    0.1 s buckets) is the best guess of its limit `r_max`: pace at `beta` of it, climb back along a
    concave cubic that reaches `r_max` after `K` seconds, then probe above it slowly (linear at first) so
    that a server with a burst allowance is not overrun by the time its bucket runs dry. A 429 while
    probing means the limit held: cut back under the same `r_max`. A concurrency window alone cannot do
    this when replies are quick: 20 requests/s at 50 ms is one request in flight, below its resolution.
    """

    def __init__(
        self, *, beta: float = 0.9, k: float = 2.0, probe: float = 0.02, min_share: float = 0.03
    ) -> None:
        self.beta = beta
        self.k = k  # seconds to climb back to r_max
        self.c = (1 - beta) / k**3  # rate = r_max * (1 + c * (t - K)^3) while climbing
        self.probe = probe  # then r_max * (1 + probe * u + probe**2 / 4 * u^3), u = seconds past K
        self.min_share = min_share
        self.r_max: float | None = None
        self.t_cut = -math.inf
        self.next_at = 0.0
        self.cuts = 0
        self._lock = asyncio.Lock()
        self._ok = [0] * 16  # successes per 0.1 s slot (a ring of 1.6 s)
        self._rejected = [0] * 16  # 429s per slot
        self._slots = [-1] * 16

    def _slot(self, now: float) -> int:
        slot = int(now * 10)
        i = slot & 15
        if self._slots[i] != slot:
            self._slots[i] = slot
            self._ok[i] = self._rejected[i] = 0
        return i

    def record_success(self, now: float) -> None:
        self._ok[self._slot(now)] += 1

    def last_second(self, now: float) -> tuple[int, int]:
        """(successes, 429s) over the last second."""
        slot = int(now * 10)
        ok = rejected = 0
        for i, s in enumerate(self._slots):
            if slot - 10 < s <= slot:
                ok += self._ok[i]
                rejected += self._rejected[i]
        return ok, rejected

    def current(self, now: float) -> float | None:
        if self.r_max is None:
            return None
        u = now - self.t_cut - self.k
        if u <= 0:
            return self.r_max * (1 + self.c * u**3)
        return self.r_max * (1 + self.probe * u + self.probe**2 / 4 * u**3)

    def on_congestion(self, sent_at: float) -> bool:
        now = time.monotonic()
        self._rejected[self._slot(now)] += 1
        if sent_at < self.t_cut:  # sent before the last cut: part of the event already handled
            return False
        ok, rejected = self.last_second(now)
        probing = self.r_max is not None and now - self.t_cut > self.k
        # Outside a probe, a stray 429 (an overloaded replica, a fault) is not a limit: act on a cluster,
        # at least `min_share` of the last second's answers, at most once a second, so random 429s do not
        # ratchet the rate down.
        if not probing and (
            now - self.t_cut < 1.0 or rejected < 2 or rejected < self.min_share * (ok + rejected)
        ):
            return False
        current = self.current(now)
        measured = float(ok) if ok else current
        if measured is None:  # nothing admitted yet (the first replies are still on their way)
            return False
        if probing:
            self.r_max = min(measured, self.r_max)  # type: ignore[type-var]
        else:
            self.r_max = min(measured, current) if current is not None else measured
        self.t_cut = now
        self.cuts += 1
        return True

    async def pace(self) -> None:
        """Space sends 1/rate apart. Waiters queue on a lock and only its holder sleeps, so each gap uses
        the rate of *now*: slots reserved ahead at an old rate would keep a cut from taking effect."""
        if self.r_max is None:
            return
        async with self._lock:
            wait = self.next_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            now = time.monotonic()
            self.next_at = max(now, self.next_at) + 1 / max(self.current(now) or 0.0, 0.1)


class Gate:
    """Everything a request waits for before it is sent; also what it reports afterwards."""

    def __init__(self, concurrency: int, *, rpm: float | None = None, tpm: float | None = None) -> None:
        self.window = AdaptiveWindow(concurrency)
        self.pacer = AdaptiveRate()
        self.latency = 0.0  # moving average of successful requests' latency (s)
        self.cooldown_until = 0.0
        self.stopping = False
        self.rpm = _limiter(rpm, 1.0) if rpm else None
        self.tpm = _limiter(tpm, 10.0) if tpm else None

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
            if self.pacer.r_max is not None:
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

    def on_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        if retry_after:
            self.cooldown_until = max(self.cooldown_until, time.monotonic() + min(retry_after, 120.0))
        self.pacer.on_congestion(sent_at)
        rate = self.pacer.current(time.monotonic())
        floor = rate * self.latency * 1.5 if rate and self.latency else 1.0
        self.window.on_congestion(sent_at, floor)

    def on_success(self, sent_at: float) -> None:
        now = time.monotonic()
        self.latency += 0.1 * (now - sent_at - self.latency)
        self.pacer.record_success(now)
        self.window.on_success()


def _limiter(per_minute: float, burst_s: float) -> AsyncLimiter:
    """A leaky bucket holding `burst_s` seconds of the rate (aiolimiter's own default would hold a minute)."""
    if per_minute / 60 * burst_s >= 1:
        return AsyncLimiter(per_minute / 60 * burst_s, burst_s)
    return AsyncLimiter(1, 60 / per_minute)


class _WaitRetryAfter(wait_base):
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float, jitter: float) -> None:
        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self.backoff(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(wait, min(retry_after, 120.0)) if retry_after else wait


def is_retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", False))


class RetryPolicy:
    """Attempts of one task: the first runs bare, the retries run under tenacity.

    Tenacity costs ~0.1 ms of CPU per call (it inspects its callbacks each time); most tasks succeed at
    once, so only a task whose first attempt failed with a retryable error pays for it.
    """

    def __init__(
        self, max_attempts: int, *, initial: float = 0.5, maximum: float = 30.0, jitter: float = 0.5
    ) -> None:
        self.max_attempts = max_attempts
        self.first_wait = _WaitRetryAfter(initial, maximum, jitter)
        # The same curve shifted by one attempt, for the loop that starts at the second attempt.
        self.later_wait = _WaitRetryAfter(initial * 2, maximum, jitter)

    def retrying(self, attempts: int | None = None) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(attempts or self.max_attempts),
            wait=self.later_wait if attempts else self.first_wait,
            retry=retry_if_exception(is_retryable),
            reraise=True,
        )

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        try:
            return await attempt()
        except Exception as e:
            if not is_retryable(e) or self.max_attempts <= 1:
                raise
            first = e
        retry_after = getattr(first, "retry_after", None)
        wait = self.first_wait.backoff(RetryCallState(None, None, (), {}))  # attempt 1's backoff
        await asyncio.sleep(max(wait, min(retry_after, 120.0)) if retry_after else wait)
        async for state in self.retrying(self.max_attempts - 1):
            with state:
                result = await attempt()
        return result
