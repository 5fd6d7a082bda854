"""The 429 logic and retry policy on their own: what a congestion event does, what a stray 429 does not."""

from __future__ import annotations

import asyncio
import time

import pytest
from tenacity import RetryCallState

from zaoshu.generator.clients import BadRequest, RateLimited, ServerError
from zaoshu.generator.limits import AdaptiveRate, AdaptiveWindow, Gate, RetryPolicy


def test_window_cuts_once_per_congestion_event_and_grows_back():
    w = AdaptiveWindow(100)
    sent = time.monotonic()
    assert w.on_congestion(sent) and w.size == 70
    # Other 429s for requests sent before the cut belong to the same event.
    assert not w.on_congestion(sent) and w.size == 70
    assert w.on_congestion(time.monotonic()) and w.size == 49
    for _ in range(500):
        w.on_success()
    assert 49 < w.size <= 100
    # The floor keeps a paced run's window at what its rate needs.
    w2 = AdaptiveWindow(100)
    w2.on_congestion(time.monotonic(), floor=90)
    assert w2.size == 90


async def test_window_limits_inflight_and_wakes_waiters():
    w = AdaptiveWindow(2)
    await w.acquire()
    await w.acquire()
    waiter = asyncio.ensure_future(w.acquire())
    await asyncio.sleep(0)
    assert not waiter.done() and w.inflight == 2
    w.release()
    await asyncio.sleep(0)
    assert waiter.done() and w.inflight == 2


def test_rate_ignores_a_stray_429_but_learns_from_a_cluster():
    r = AdaptiveRate()
    now = time.monotonic()
    for _ in range(200):
        r.record_success(now)
    assert not r.on_congestion(now - 1)  # one 429 among 200 answers: not a limit
    assert r.r_max is None
    for _ in range(20):
        r.on_congestion(now - 1)
    assert r.r_max == 200 and r.cuts == 1  # the admitted rate of the last second
    assert r.current(time.monotonic()) == pytest.approx(200 * r.beta, rel=0.05)


async def test_gate_cooldown_honours_retry_after():
    gate = Gate(4)
    gate.on_rate_limited(time.monotonic(), retry_after=0.2)
    t0 = time.monotonic()
    await gate.enter()
    assert time.monotonic() - t0 >= 0.15  # every worker waits, not only the one that got the 429
    gate.leave()


def test_retry_wait_is_at_least_retry_after():
    policy = RetryPolicy(5, initial=0.01, maximum=1.0, jitter=0.01)
    state = RetryCallState(None, None, (), {})
    state.set_exception((RateLimited, RateLimited("slow down", status=429, retry_after=3.0), None))
    assert policy.first_wait(state) >= 3.0
    state.set_exception((ServerError, ServerError("oops", status=500), None))
    assert policy.first_wait(state) < 0.1


async def test_policy_retries_retryable_errors_only():
    policy = RetryPolicy(4, initial=0.001, maximum=0.01, jitter=0.001)
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ServerError("500", status=500)
        return "ok"

    assert await policy.call(flaky) == "ok" and len(calls) == 3

    calls.clear()

    async def bad() -> str:
        calls.append(1)
        raise BadRequest("400", status=400)

    with pytest.raises(BadRequest):
        await policy.call(bad)
    assert len(calls) == 1

    calls.clear()

    async def always() -> str:
        calls.append(1)
        raise ServerError("500", status=500)

    with pytest.raises(ServerError):
        await policy.call(always)
    assert len(calls) == 4
