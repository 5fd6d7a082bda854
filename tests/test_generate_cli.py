"""`zaoshu generate` as a user runs it: a subprocess killed, interrupted, refused, resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from generate_helpers import planned_ids, read_jsonl, write_recipe

from zaoshu.testing import FakeServer

SECRET = "sk-cli-SECRET-feedface0123456789"


@pytest.fixture(scope="module")
def server():
    with FakeServer(reply="wishes", latency=0.04) as srv:
        yield srv


def zaoshu(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from zaoshu.cli import main; main()", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )


def generate_args(recipe: Path, out: Path, server: FakeServer, *extra: str, base_url: str = "") -> list[str]:
    return [
        *("generate", str(recipe), "-o", str(out), "--provider", "local"),
        *("--base-url", base_url or server.base_url),
        *("--model", "fake-model", "--concurrency", "4", *extra),
    ]


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no progress")


def assert_complete(out: Path, recipe: Path) -> None:
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(ids) == len(set(ids)), "duplicates after resume"
    assert sorted(ids) == sorted(planned_ids(recipe))


def test_kill_9_then_rerun_gives_the_full_set(server, tmp_path):
    server.configure(latency=0.04, reply="wishes")
    recipe = write_recipe(tmp_path, n_a=20, n_b=10)
    out = tmp_path / "raw.jsonl"
    proc = zaoshu(*generate_args(recipe, out, server, "--quiet"))
    wait_for_lines(out, 30, proc)
    proc.kill()  # SIGKILL: no handler runs, no flush beyond what was already written
    proc.wait()
    assert 30 <= len(read_jsonl(out)) < 200
    again = zaoshu(*generate_args(recipe, out, server, "--quiet"))
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    assert_complete(out, recipe)
    stats = orjson.loads((tmp_path / "raw.stats.json").read_bytes())
    assert stats["skipped_resume"] >= 30 and stats["done"] == 200 - stats["skipped_resume"]


def test_kill_9_keeps_the_failures_so_far_in_the_failures_file(server, tmp_path):
    """Failed tasks are in raw.failures.jsonl as they fail, so a kill -9 cannot hide them; the rerun
    retries them and leaves the file listing only what still failed (here: nothing)."""
    server.configure(latency=0.04, reply="wishes", faults={"bad_request": 0.25})
    recipe = write_recipe(tmp_path, n_a=20, n_b=10)
    out = tmp_path / "raw.jsonl"
    failures_path = tmp_path / "raw.failures.jsonl"
    proc = zaoshu(*generate_args(recipe, out, server, "--quiet"))
    wait_for_lines(failures_path, 5, proc)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    failed = {f["id"] for f in read_jsonl(failures_path)}  # readable right after the kill
    written = {r["id"] for r in read_jsonl(out)}
    assert len(failed) >= 5 and not failed & written and len(failed) + len(written) < 200
    assert {f["reason"] for f in read_jsonl(failures_path)} == {"bad_request"}
    server.configure(latency=0.0, faults={})  # healthy again
    again = zaoshu(*generate_args(recipe, out, server, "--quiet"))
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    assert_complete(out, recipe)  # the killed run's failures were retried, nothing lost
    assert not failures_path.exists() and not list(tmp_path.glob("raw.failures.jsonl.*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_and_resume_completes(server, tmp_path, sig):
    server.configure(latency=0.04, reply="wishes")
    recipe = write_recipe(tmp_path, n_a=20, n_b=10)
    out = tmp_path / "raw.jsonl"
    # Credentials in the base URL (a gateway's): the printed resume command must not show them.
    base_url = server.root.replace("://", "://gw:pw-CLI-SECRET@") + "/v1?api_key=q-CLI-SECRET"
    proc = zaoshu(*generate_args(recipe, out, server, base_url=base_url))
    wait_for_lines(out, 20, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == 130, text
    assert "interrupted" in text and "resume with: zaoshu generate" in text
    assert "--base-url 'http://***@127.0.0.1:" in text and "api_key=***" in text
    assert "CLI-SECRET" not in text
    partial = read_jsonl(out)
    assert 20 <= len(partial) < 200
    assert out.read_bytes().endswith(b"\n")  # flushed whole lines: nothing torn
    stats = orjson.loads((tmp_path / "raw.stats.json").read_bytes())
    assert stats["interrupted"] is True and stats["done"] == len(partial)
    again = zaoshu(*generate_args(recipe, out, server, "--quiet"))
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    assert_complete(out, recipe)


def test_wrong_key_exits_fast_and_the_key_is_nowhere(server, tmp_path):
    server.configure(latency=0.0, api_key="sk-the-right-key")
    recipe = write_recipe(tmp_path)
    out = tmp_path / "raw.jsonl"
    args = ["generate", str(recipe), "-o", str(out), "--provider", "deepseek", "--base-url", server.base_url]
    proc = zaoshu(*args, env={"DEEPSEEK_API_KEY": SECRET})
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode not in (0, 130)
    text = (stdout + stderr).decode()
    assert "refused the API key" in text and "DEEPSEEK_API_KEY" in text and "Traceback" not in text
    assert SECRET not in text
    assert server.stats()["requests"] <= 64  # only the first wave (C = 64) was sent, not 500 requests
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path


def test_missing_key_variable_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MOONSHOT_API_KEY"}
    recipe = write_recipe(tmp_path, n_a=2, n_b=2)
    cli = [sys.executable, "-c", "from zaoshu.cli import main; main()"]
    proc = subprocess.run(
        [*cli, "generate", str(recipe), "-o", "x.jsonl", "--provider", "moonshot"],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "MOONSHOT_API_KEY" in err and "not set" in err
    assert not (tmp_path / "x.jsonl").exists()
