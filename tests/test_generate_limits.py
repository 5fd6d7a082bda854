"""The 429 logic and retry policy on their own: what a congestion event does, what a stray 429 does not."""

from __future__ import annotations

import asyncio
import time

import pytest
from tenacity import RetryCallState

from zaoshu.generator.clients import BadRequest, RateLimited, ServerError, parse_limits
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


def test_rate_ignores_a_stray_429_but_cuts_to_what_was_admitted():
    r = AdaptiveRate()
    t0 = time.monotonic() - 2.0
    r.t_first = t0
    for i in range(200):  # 100 a second admitted over the last two seconds
        r.record_success(t0 + i / 100)
    now = t0 + 2.0
    assert not r.on_congestion(now - 0.5, now)  # one 429 among 200 answers: not a limit
    assert r.base is None
    for _ in range(20):
        r.on_congestion(now - 0.5, now)
    assert r.cuts == 1 and r.base == pytest.approx(100, rel=0.1)  # the admitted rate, not a fraction of it
    # 429s for requests sent before the cut belong to the event already handled.
    assert not r.on_congestion(now - 0.1, now + 0.01) and r.cuts == 1


def test_rate_waits_out_a_stall_before_measuring():
    r = AdaptiveRate()
    t0 = time.monotonic() - 2.0
    r.t_first = t0
    for i in range(100):  # 100 a second for a second, then the process stalls for 0.8 s
        r.record_success(t0 + i / 100)
    now = t0 + 1.8
    r.note_stall(now)  # it wakes up: the 429s read first would measure 100 admitted over 1.8 s
    for _ in range(20):
        assert not r.on_congestion(now - 0.5, now)
    assert r.base is None and r.deferred == 20
    for i in range(80):  # the backlog: what the server admitted while this process was not running
        r.record_success(now + 0.01 + i / 1000)
    for i in range(30):  # and the answers that follow, at the cap again
        r.record_success(now + 0.1 + i / 100)
    later = now + r.STALL_S + 0.01
    for _ in range(20):
        r.on_congestion(later - 0.2, later)
    assert r.cuts == 1 and r.base == pytest.approx(100, rel=0.15)


def test_stalls_in_a_row_put_a_cut_off_for_a_second_at_most():
    r = AdaptiveRate()
    r.t_first = 0.0
    for i in range(300):  # 100 a second admitted, and a storm of 429s that keeps the process late
        r.record_success(i / 100)
    t = 2.0
    while r.cuts == 0 and t < 4.0:
        r.note_stall(t)
        for _ in range(10):
            r.on_congestion(t - 0.1, t)
        t += 0.05
    assert r.cuts == 1 and t - 2.0 <= r.MAX_DEFER_S + 0.1 and r.deferred > 0


def test_a_stall_neither_advances_the_probe_nor_raises_the_base():
    r = AdaptiveRate()
    r.base, r.t_cut, r.t_first = 100.0, 0.0, 0.0
    before = r.current(2.0)
    r.note_stall(2.0, lag=1.0)  # nothing was sent for a second: the probe resumes where it was
    assert r.current(3.0) == pytest.approx(before)
    for i in range(150):  # the server's bucket saved up during the stall: 150 admitted in the next second
        r.record_success(2.2 + i / 150)
    r.on_congestion(3.1, 3.2)  # a lone 429 at the end of that burst
    assert r.base <= 100.0  # not taken for a higher cap


async def test_gate_watch_notes_a_stall():
    gate = Gate(4)
    watch = asyncio.create_task(gate.watch(every=0.01, late=0.05))
    await asyncio.sleep(0.03)
    assert not gate.pacer.stalled(time.monotonic())
    time.sleep(0.2)  # blocks the event loop, as a busy machine would
    await asyncio.sleep(0.02)
    assert gate.pacer.stalled(time.monotonic())
    watch.cancel()


def test_rate_probes_up_between_429s_and_falls_back_at_one():
    r = AdaptiveRate()
    r.base, r.t_cut = 50.0, 0.0
    assert r.current(r.hold) == 50.0  # flat right after the event
    assert r.current(2.0) == 50.0  # no answer came back meanwhile: nothing learned, no climb
    r.t_first = 0.0
    for i in range(175):  # the answers come back at the base rate
        r.record_success(i / 50)
    assert r.current(2.0) > 50 * 1.2 and r.current(4.5) >= 50 * 1.8  # a doubled cap is reached in seconds
    for i in range(60):
        r.record_success(3.6 + i / 60)
    r.on_congestion(4.5, 4.6)  # a lone 429 at the top of the probe: what was admitted becomes the base
    assert 55 <= r.base <= 65 and r.current(4.7) == r.base
    # Three times the base without a 429: that becomes the base, and the probe goes on from it.
    base = r.base
    for i in range(round(25 * base)):  # answers keep coming at the base, and no 429
        r.record_success(4.7 + i / base)
    assert r.current(30.0) == pytest.approx(3 * base) and r.base == pytest.approx(3 * base)
    for i in range(round(1.5 * r.base)):
        r.record_success(30.0 + i / r.base)
    assert r.current(30.0 + r.hold + 1) > r.base


def test_announced_limit_paces_from_the_start_and_caps_the_probe():
    r = AdaptiveRate()
    r.announce(100.0)
    assert r.base == 100.0 and r.current(time.monotonic() + 60) == 100.0
    gate = Gate(8, max_tokens=50)
    gate.on_success(time.monotonic(), {"prompt_tokens": 150, "completion_tokens": 10}, (None, 60_000.0))
    assert gate.pacer.base == pytest.approx(1000 / 200)  # 1,000 tokens/s at 150 + 50 tokens a request
    gate.on_rate_limited(time.monotonic(), 0.01, (120.0, None))
    assert gate.pacer.base == pytest.approx(2.0)  # the lower of the two limits


def test_parse_limits_reads_openai_headers():
    assert parse_limits({}) is None
    headers = {"x-ratelimit-limit-requests": "6000", "x-ratelimit-reset-requests": "6m0s"}
    assert parse_limits(headers) is None  # a window over a minute is a daily quota, not a pace
    headers = {
        "x-ratelimit-limit-requests": "6000",
        "x-ratelimit-reset-requests": "20ms",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-reset-tokens": "1.5s",
    }
    assert parse_limits(headers) == (6000.0, 150000.0)


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
    assert policy.wait(state) >= 3.0
    state.set_exception((ServerError, ServerError("oops", status=500), None))
    assert policy.wait(state) < 0.1
    # A 429 that says when to come back (a cap the pacer handles) waits that long, not a whole backoff.
    policy = RetryPolicy(5, initial=0.5, maximum=30.0, jitter=0.5)
    state.set_exception((RateLimited, RateLimited("cap", status=429, retry_after=0.01), None))
    assert policy.wait(state) < 0.11
    state.set_exception((RateLimited, RateLimited("no hint", status=429), None))
    assert policy.wait(state) >= 0.5


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


async def test_a_caps_429s_get_more_attempts_than_other_errors():
    policy = RetryPolicy(3, initial=0.001, maximum=0.01, jitter=0.001)
    calls = []

    async def capped() -> str:
        calls.append(1)
        if len(calls) < 8:  # a storm of 429s that say when to come back: the task is not lost
            raise RateLimited("cap", status=429, retry_after=0.001)
        return "ok"

    assert await policy.call(capped) == "ok" and len(calls) == 8
    calls.clear()

    async def unexplained() -> str:
        calls.append(1)
        raise RateLimited("no hint", status=429)

    with pytest.raises(RateLimited):
        await policy.call(unexplained)
    assert len(calls) == 3
