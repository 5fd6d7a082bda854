"""The response cache: a new output for the same recipe costs nothing; a changed request is sent; two runs
share one cache at the same time; `zaoshu cache info|clear`; bounded by size."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from generate_helpers import local_options, read_jsonl, write_recipe
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.generator.cache import ResponseCache
from zaoshu.generator.engine import generate
from zaoshu.testing import FakeServer


@pytest.fixture(scope="module")
def server():
    with FakeServer(latency=0.005) as srv:
        yield srv


def sent(server: FakeServer) -> int:
    return server.stats().get("requests", 0)


def test_a_new_output_for_the_same_recipe_costs_nothing(server, tmp_path, capsys):
    recipe = write_recipe(tmp_path, n_a=5, n_b=4)
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  fake-model: {input: 1000, output: 2000, currency: CNY}\n")
    first = generate(recipe, tmp_path / "a.jsonl", local_options(server.base_url, prices=prices))
    assert first.done == 20 and first.cache_hits == 0
    before = sent(server)
    options = local_options(server.base_url, prices=prices, quiet=False)
    second = generate(recipe, tmp_path / "b.jsonl", options)
    assert sent(server) == before  # not one request
    assert second.done == second.cache_hits == 20 and second.cost == 0.0
    assert second.cache_saved == pytest.approx(first.cost)  # what the replies cost when they were made
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert sorted((r["id"], r["messages"]) for r in a) == sorted((r["id"], r["messages"]) for r in b)
    assert all(r["meta"]["cached"] is True for r in b) and not any("cached" in r["meta"] for r in a)
    said = " ".join(capsys.readouterr().err.split())
    assert "20 from the response cache, which saved ¥" in said

    # Half the recipe changes its prompt: those miss and are sent, the rest still hit.
    changed = write_recipe(
        tmp_path, n_a=5, n_b=4, prompt="另一种说法。对象称谓是：{{ who }}，祝福场景是：{{ scene }}。"
    )
    third = generate(changed, tmp_path / "c.jsonl", local_options(server.base_url))
    assert third.cache_hits == 0 and sent(server) == before + 20
    # --no-cache sends everything again and stores nothing new.
    fourth = generate(recipe, tmp_path / "d.jsonl", local_options(server.base_url, cache=False))
    assert fourth.cache_hits == 0 and sent(server) == before + 40


def test_changed_sampling_parameters_miss(server, tmp_path):
    generate(write_recipe(tmp_path, n_a=3, n_b=2), tmp_path / "a.jsonl", local_options(server.base_url))
    before = sent(server)
    hotter = write_recipe(tmp_path, n_a=3, n_b=2, model={"temperature": 0.9, "max_tokens": 77})
    stats = generate(hotter, tmp_path / "b.jsonl", local_options(server.base_url))
    assert stats.cache_hits == 0 and sent(server) == before + 6


def test_two_concurrent_runs_share_one_cache(server, tmp_path):
    recipe = write_recipe(tmp_path, n_a=20, n_b=10)
    code = (
        "import sys; from zaoshu.generator.engine import GenerateOptions, generate; "
        "o = GenerateOptions(provider='local', base_url=sys.argv[1], model='fake-model', concurrency=16, "
        "quiet=True, handle_signals=False); s = generate(sys.argv[2], sys.argv[3], o); "
        "print(s.done, s.cache_hits)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, server.base_url, str(recipe), str(tmp_path / f"{i}.jsonl")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all(int(o.split()[0]) == 200 for o, _ in outs)
    db = sqlite3.connect(os.environ["ZAOSHU_RESPONSE_CACHE"])
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT COUNT(*) FROM replies").fetchone() == (200,)  # one row per request, not two
    db.close()
    before = sent(server)
    stats = generate(recipe, tmp_path / "third.jsonl", local_options(server.base_url))
    assert stats.cache_hits == 200 and sent(server) == before


def test_cache_is_bounded_least_recently_used_first(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite3", max_bytes=10_000) as cache:
        cache.put_many([(f"t{i}:fp", {"content": "x" * 500, "meta": {}}) for i in range(40)])
        cache.get_many(["t0:fp"])  # recently used: kept
        dropped = cache.prune()
        info = cache.info()
        assert dropped > 0 and info["bytes"] <= 10_000 and info["entries"] == 40 - dropped
        assert cache.get_many(["t0:fp"]) and not cache.get_many(["t1:fp"])


def test_cache_info_and_clear_commands(server, tmp_path):
    runner = CliRunner()
    assert "empty" in runner.invoke(app, ["cache", "info"]).output
    generate(write_recipe(tmp_path, n_a=2, n_b=2), tmp_path / "a.jsonl", local_options(server.base_url))
    result = runner.invoke(app, ["cache", "info"])
    assert result.exit_code == 0 and "4 replies" in result.output
    result = runner.invoke(app, ["cache", "clear"])
    assert result.exit_code == 0 and "removed 4 replies" in result.output
    assert "0 replies" in runner.invoke(app, ["cache", "info"]).output


def test_a_broken_cache_file_is_a_clear_error(server, tmp_path, monkeypatch):
    bad = tmp_path / "broken.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("ZAOSHU_RESPONSE_CACHE", str(bad))
    recipe = write_recipe(tmp_path, n_a=1, n_b=1)
    where = ["--provider", "local", "--base-url", server.base_url, "--model", "fake-model", "-q"]
    result = CliRunner().invoke(app, ["generate", str(recipe), "-o", str(tmp_path / "o.jsonl"), *where])
    assert (
        result.exit_code == 2 and "zaoshu cache clear" in result.output and "Traceback" not in result.output
    )
