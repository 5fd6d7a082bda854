"""`--batch`: the provider batch API on loopback: submit, poll, collect; partial failures, expiry, a malformed
output line; kill -9 while uploading, polling and downloading, then rerun (each task once, no batch twice);
--no-wait; providers without a batch API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from generate_helpers import local_options, planned_ids, read_jsonl, write_recipe

from zaoshu.errors import ZaoshuError
from zaoshu.generator.engine import generate
from zaoshu.testing import FakeServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch")
    with FakeServer(batch_window=0.3) as srv:
        yield srv


def batch_options(server: FakeServer, **kw):
    return local_options(server.base_url, provider="openai", batch=True, batch_poll=0.1, **kw)


def test_batch_submit_poll_collect(server, tmp_path, capsys):
    recipe = write_recipe(tmp_path, n_a=5, n_b=4)
    out = tmp_path / "raw.jsonl"
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  fake-model: {input: 1000, output: 2000, currency: USD, batch_input: 400}\n")
    stats = generate(recipe, out, batch_options(server, quiet=False, prices=prices))
    records = read_jsonl(out)
    assert sorted(r["id"] for r in records) == sorted(planned_ids(recipe)) and stats.done == 20
    assert {r["meta"]["batch_id"] for r in records} == {"batch_1"}
    st = server.stats()
    assert st["batches"] == 1 and st.get("requests", 0) == 0  # nothing went online
    state = orjson.loads((tmp_path / "raw.batches.json").read_bytes())
    assert [b["state"] for b in state["batches"]] == ["collected"]
    assert stats.cost_online > stats.cost > 0  # batch input 400 and output 1000 (half) per 1M
    said = " ".join(capsys.readouterr().err.split())
    assert "at the batch price (online it would have cost $" in said
    # A rerun has nothing to do and submits nothing.
    generate(recipe, out, batch_options(server))
    assert server.stats()["batches"] == 1


def test_partial_failures_and_a_malformed_line(server, tmp_path):
    server.configure(batch_window=0.2, batch_fail=0.25, batch_malformed=1)
    recipe = write_recipe(tmp_path, n_a=5, n_b=4)
    out = tmp_path / "raw.jsonl"
    stats = generate(recipe, out, batch_options(server))
    failures = read_jsonl(tmp_path / "raw.failures.jsonl")
    ids = [r["id"] for r in read_jsonl(out)] + [f["id"] for f in failures]
    assert sorted(ids) == sorted(planned_ids(recipe))  # each task exactly once: a record or a failure
    reasons = {f["reason"] for f in failures}
    assert reasons == {"batch_error", "batch_missing"} and stats.failed == len(failures)
    # The rerun sends the failed ones in a new batch and completes the set.
    server.configure(batch_fail=0.0, batch_malformed=0)
    generate(recipe, out, batch_options(server))
    assert sorted(r["id"] for r in read_jsonl(out)) == sorted(planned_ids(recipe))
    assert not (tmp_path / "raw.failures.jsonl").exists()


def test_expired_batch_sends_the_rest_again(server, tmp_path):
    server.configure(batch_window=0.2, batch_expire=1)  # the first batch expires with half its lines done
    recipe = write_recipe(tmp_path, n_a=4, n_b=2)
    out = tmp_path / "raw.jsonl"
    stats = generate(recipe, out, batch_options(server))
    assert sorted(r["id"] for r in read_jsonl(out)) == sorted(planned_ids(recipe)) and stats.done == 8
    state = orjson.loads((tmp_path / "raw.batches.json").read_bytes())
    assert [len(b["tasks"]) for b in state["batches"]] == [8, 4]  # the unfinished half, sent again
    assert {r["meta"]["batch_id"] for r in read_jsonl(out)} == {"batch_1", "batch_2"}


def test_expired_batch_sends_the_rest_online_by_flag(server, tmp_path):
    server.configure(batch_window=0.2, batch_expire=1)  # the first batch expires with half its lines done
    recipe = write_recipe(tmp_path, n_a=4, n_b=2)
    out = tmp_path / "raw.jsonl"
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  fake-model: {input: 1000, output: 2000, currency: USD}\n")
    stats = generate(recipe, out, batch_options(server, batch_resend="online", prices=prices))
    records = read_jsonl(out)
    assert sorted(r["id"] for r in records) == sorted(planned_ids(recipe)) and stats.done == 8
    by_batch = [r for r in records if "batch_id" in r["meta"]]
    assert len(by_batch) == 4 and {r["meta"]["batch_id"] for r in by_batch} == {"batch_1"}
    st = server.stats()
    assert st["batches"] == 1 and st["requests"] == 4  # the unfinished half went online, no new batch
    state = orjson.loads((tmp_path / "raw.batches.json").read_bytes())
    assert [b["state"] for b in state["batches"]] == ["collected"]
    assert stats.cost_online > stats.cost > 0  # half at the batch price, half online
    # A rerun has nothing to do: nothing is sent, online or in a batch.
    generate(recipe, out, batch_options(server, batch_resend="online"))
    assert server.stats()["batches"] == 1 and server.stats()["requests"] == 4


def test_cancelled_batch_sends_the_rest_online_by_cli_flag(server, tmp_path):
    server.configure(batch_window=30.0)  # never finishes by itself
    recipe = write_recipe(tmp_path, n_a=3, n_b=2)
    out = tmp_path / "raw.jsonl"
    generate(recipe, out, batch_options(server, no_wait=True))
    bid = orjson.loads((tmp_path / "raw.batches.json").read_bytes())["batches"][0]["id"]
    urllib.request.urlopen(urllib.request.Request(f"{server.base_url}/batches/{bid}/cancel", method="POST"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test-batch"}
    cmd = [
        sys.executable,
        "-c",
        "from zaoshu.cli import main; main()",
        "generate",
        str(recipe),
        "-o",
        str(out),
    ]
    cmd += ["--provider", "openai", "--base-url", server.base_url, "--model", "fake-model", "--batch", "-q"]
    cmd += ["--batch-resend", "online"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["id"] for r in read_jsonl(out)) == sorted(planned_ids(recipe))
    assert server.stats()["batches"] == 1 and server.stats()["requests"] == 6


def test_no_wait_submits_and_a_later_run_collects(server, tmp_path):
    recipe = write_recipe(tmp_path, n_a=3, n_b=2)
    out = tmp_path / "raw.jsonl"
    stats = generate(recipe, out, batch_options(server, no_wait=True))
    assert stats.done == 0 and server.stats()["batches"] == 1 and not read_jsonl(out)
    generate(recipe, out, batch_options(server))
    assert len(read_jsonl(out)) == 6 and server.stats()["batches"] == 1


def test_providers_without_a_batch_api_are_named(tmp_path):
    recipe = write_recipe(tmp_path, n_a=1, n_b=1)
    for provider in ("deepseek", "local", "embedded"):
        with pytest.raises(ZaoshuError, match="has no batch API; --batch works with openai, qwen, zhipu"):
            generate(
                recipe,
                tmp_path / "o.jsonl",
                local_options("http://127.0.0.1:9/v1", provider=provider, batch=True),
            )


CHILD = (
    "import sys; from zaoshu.generator.engine import GenerateOptions, generate; "
    "generate(sys.argv[2], sys.argv[3], GenerateOptions(provider='openai', base_url=sys.argv[1], "
    "model='fake-model', batch=True, batch_poll=0.1, quiet=True))"
)


def child(server: FakeServer, recipe: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, server.base_url, str(recipe), str(out)], env=env)


def wait_for(cond, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("moment", ["upload", "poll", "download"])
def test_kill_9_then_rerun_submits_no_batch_twice(server, tmp_path, moment):
    recipe = write_recipe(tmp_path, n_a=5, n_b=4)
    out = tmp_path / "raw.jsonl"
    state = tmp_path / "raw.batches.json"
    if moment == "upload":
        server.configure(batch_delay=5.0)
        proc = child(server, recipe, out)
        wait_for(lambda: server.stats().get("uploads_started", 0) >= 1)
    elif moment == "poll":
        server.configure(batch_window=30.0)
        proc = child(server, recipe, out)
        wait_for(lambda: state.exists() and b'"created"' in state.read_bytes())
    else:
        server.configure(batch_window=0.2, download_delay=5.0)
        proc = child(server, recipe, out)
        wait_for(lambda: server.stats().get("downloads_started", 0) >= 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    server.configure(keep_state=True, batch_delay=0.0, download_delay=0.0, batch_window=0.2)
    generate(recipe, out, batch_options(server))
    ids = [r["id"] for r in read_jsonl(out)]
    assert sorted(ids) == sorted(planned_ids(recipe))  # each task exactly once
    assert server.stats()["batches"] == 1  # none submitted twice


def test_cli_batch_no_wait_then_collect(server, tmp_path):
    from typer.testing import CliRunner

    from zaoshu.cli import app

    recipe = write_recipe(tmp_path, n_a=2, n_b=2)
    out = tmp_path / "raw.jsonl"
    args = ["generate", str(recipe), "-o", str(out), "--provider", "openai", "--base-url", server.base_url]
    args += ["--model", "fake-model", "--batch"]
    result = CliRunner().invoke(app, [*args, "--no-wait"])
    assert result.exit_code == 0, result.output
    assert server.stats()["batches"] == 1 and not read_jsonl(out)
    time.sleep(0.4)  # the batch window
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(out)) == 4 and server.stats()["batches"] == 1
