"""The limiter end to end against loopback caps (small sizes of the benchmark's scenarios): a request cap
not announced, a token cap, a cap announced in x-ratelimit-* headers, and a cap that drops and comes back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from generate_helpers import local_options, write_recipe

from zaoshu.generator.engine import agenerate, generate
from zaoshu.generator.plan import plan
from zaoshu.recipes import load_recipe
from zaoshu.testing import FakeServer

RATE = 50  # requests/s the caps allow (3,000 a minute)


def run(tmp_path: Path, n_b: int, **settings) -> tuple[object, dict]:
    recipe = write_recipe(tmp_path, n_a=50, n_b=n_b)
    with FakeServer(latency=0.05, **settings) as srv:
        options = local_options(srv.base_url, concurrency=64, timeout=10, backoff=0.2, backoff_max=2.0)
        stats = generate(recipe, tmp_path / "raw.jsonl", options)
        return stats, srv.stats()


def per_second(server: dict, key: str = "admitted", col: int = 0) -> list[int]:
    rows = {int(k): v[col] for k, v in server[key].items()}
    return [rows.get(s, 0) for s in range(max(rows) + 1)]


def test_unannounced_request_cap_settles_at_it(tmp_path):
    stats, srv = run(tmp_path, 6, rpm=RATE * 60)
    assert stats.done == 300 and stats.failed == 0
    admitted = per_second(srv)[2:-1]  # past the first round trip's burst, before the last partial second
    # It settles at the cap: the last full seconds run at it. How fast it gets there varies with what else the
    # machine runs (one start seen in a full suite: 20, 27, 37, 49 a second), so the whole run is held to less;
    # benchmarks/generate.py measures the climb over seeded runs.
    assert max(admitted[-2:]) >= 0.8 * RATE, admitted
    assert sum(admitted) >= 0.6 * RATE * len(admitted), admitted
    requests, rejected = per_second(srv, "by_second"), per_second(srv, "by_second", 1)
    assert sum(rejected[2:]) <= 0.1 * sum(requests[2:]), rejected


def test_token_cap_settles_at_it(tmp_path):
    task = plan(load_recipe(write_recipe(tmp_path, n_a=50, n_b=6))).tasks[0]
    charge = sum(len(m["content"]) for m in task.request) + 77  # the prompt and max_tokens
    stats, srv = run(tmp_path, 6, tpm=charge * RATE * 60)
    assert stats.done == 300 and stats.failed == 0 and srv["429_tokens"] > 0
    tokens = per_second(srv, col=1)[2:-1]
    assert max(tokens[-2:]) >= 0.8 * charge * RATE, tokens  # settled at the cap (as above)
    assert sum(tokens) >= 0.6 * charge * RATE * len(tokens), tokens


def test_announced_cap_is_used_from_the_first_answers(tmp_path):
    stats, srv = run(tmp_path, 6, rpm=RATE * 60, announce=True)
    assert stats.done == 300 and stats.failed == 0
    # Only the first round trip (64 sent before any answer) can meet the cap; the pacer is told the rest.
    assert sum(per_second(srv, "by_second", 1)[1:]) <= 2, srv["by_second"]
    admitted = per_second(srv)[1:-1]
    assert sum(admitted) >= 0.9 * RATE * len(admitted), admitted


@pytest.mark.parametrize("drop_at", [3])
def test_cap_drop_and_return(tmp_path, drop_at):
    back_at = drop_at + 3
    stats, srv = run(tmp_path, 10, rpm=RATE * 60, schedule=[[drop_at, RATE * 30], [back_at, RATE * 60]])
    assert stats.done == 500 and stats.failed == 0
    admitted = per_second(srv)
    # Under the lower cap the server admits its cap at once; after it comes back, within five seconds.
    assert any(a >= 0.9 * RATE / 2 for a in admitted[drop_at : drop_at + 2]), admitted
    assert any(a >= 0.9 * RATE for a in admitted[back_at : back_at + 5]), admitted


def test_the_rate_holds_at_the_cap_through_stalls_of_this_process(tmp_path):
    """A busy machine stops the client for a moment; the answers that came meanwhile are read in one go. The
    rate stays at the cap: a 429 read in that backlog must not measure the cap from a count still missing them."""
    recipe = write_recipe(tmp_path, n_a=50, n_b=8)
    replies = []

    def stall(reply: object) -> None:
        replies.append(reply)
        if len(replies) in (40, 80, 150, 300):  # in the first storm of 429s, and later at the cap
            time.sleep(0.4)  # blocks the event loop, as another process taking the core would

    with FakeServer(latency=0.05, rpm=RATE * 60) as srv:
        options = local_options(srv.base_url, concurrency=64, timeout=10, backoff=0.2, backoff_max=2.0)
        stats = asyncio.run(agenerate(recipe, tmp_path / "raw.jsonl", options, check_reply=stall))
        server = srv.stats()
    assert stats.done == 400 and stats.failed == 0
    admitted = per_second(server)[2:-1]
    assert sum(admitted) >= 0.85 * RATE * len(admitted), admitted
