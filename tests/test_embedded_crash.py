"""A llama.cpp server that crashes or hangs is named as such, and what the run already wrote is kept.

The server is a stand-in (tests/standin/llama_server_main.py) installed as `llama_cpp.server` first on
PYTHONPATH, so zaoshu starts, watches and stops it exactly as it does the real one; no model is needed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from typer.testing import CliRunner

from zaoshu.cli import app

ROOT = Path(__file__).resolve().parent.parent
STANDIN = Path(__file__).resolve().parent / "standin" / "llama_server_main.py"


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `llama_cpp.server` stand-in first on the path of zaoshu and of the server it starts."""
    site = tmp_path / "site"
    server = site / "llama_cpp" / "server"
    server.mkdir(parents=True)
    (site / "llama_cpp" / "__init__.py").write_text("")
    (server / "__init__.py").write_text("")
    shutil.copy(STANDIN, server / "__main__.py")
    # zaoshu checks that the server's own dependencies are installed; on a machine without the local
    # extra, empty packages stand in for them (the stand-in server needs none of them).
    for module in ("uvicorn", "fastapi", "sse_starlette"):
        if importlib.util.find_spec(module) is None:
            (site / module).mkdir()
            (site / module / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    for name in [m for m in sys.modules if m == "llama_cpp" or m.startswith("llama_cpp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", str(ROOT))]))
    monkeypatch.setenv("ZAOSHU_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "standin.gguf"
    gguf.write_bytes(b"GGUF not really")
    return gguf


def run(tmp_path: Path, gguf: Path, *extra: str) -> Any:
    args = [
        "run",
        str(ROOT / "prompts" / "wishes.yaml"),
        "-o",
        str(tmp_path / "out"),
        "--provider",
        "embedded",
        "--model-path",
        str(gguf),
        "--limit",
        "3",
        "--quiet",
        *extra,
    ]
    return CliRunner().invoke(app, args)


def servers_left() -> list[psutil.Process]:
    """Our llama.cpp servers still running (not other children, such as the tracker process that
    multiprocessing keeps for the whole session once an earlier test used a worker pool)."""
    left = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.is_running() and "llama_cpp.server" in " ".join(p.cmdline()):
                left.append(p)
        except psutil.NoSuchProcess:
            pass
    return left


def raw_records(tmp_path: Path) -> list[dict[str, Any]]:
    raw = tmp_path / "out" / "raw.jsonl"
    return [orjson.loads(line) for line in raw.read_bytes().splitlines()] if raw.exists() else []


def test_a_server_that_crashes_mid_run_is_named_and_what_was_written_is_kept(tmp_path, standin, monkeypatch):
    monkeypatch.setenv("STANDIN_MODE", "segv")
    monkeypatch.setenv("STANDIN_ANSWERS", "1")  # one reply, then SIGSEGV on the second request
    result = run(tmp_path, standin)
    out = result.output
    assert result.exit_code == 2, out
    assert "the llama.cpp server crashed" in out
    assert "killed by SIGSEGV (exit code -11) during the run" in out
    logs = list((tmp_path / "cache" / "logs").glob("llama_server-*.log"))
    assert len(logs) == 1 and str(logs[0]) in out
    assert "standin: decode failed in ggml-cpu, giving up" in out  # the last lines of its log
    assert "GGML_NATIVE=OFF" in out and "--model-path" in out and "hosted provider" in out
    assert "AMX_INT8" in out  # the log showed a build for this CPU's AMX: said so
    assert "cannot connect" not in out and "is the server running" not in out
    records = raw_records(tmp_path)
    assert len(records) == 1 and records[0]["messages"][-1]["content"] == "祝您生日快乐，万事如意！"
    assert "This run wrote 1 record to" in out
    assert servers_left() == []


def test_a_server_that_crashes_on_the_first_request_is_named_too(tmp_path, standin, monkeypatch):
    monkeypatch.setenv("STANDIN_MODE", "segv")
    monkeypatch.setenv("STANDIN_ANSWERS", "0")
    result = run(tmp_path, standin)
    assert result.exit_code == 2, result.output
    assert "killed by SIGSEGV" in result.output and "cannot connect" not in result.output
    assert raw_records(tmp_path) == []
    assert servers_left() == []


def test_a_crash_before_the_server_is_ready_is_named(tmp_path, standin, monkeypatch):
    monkeypatch.setenv("STANDIN_MODE", "segv-at-start")
    result = run(tmp_path, standin)
    assert result.exit_code == 2, result.output
    assert "killed by SIGSEGV (exit code -11) before it was ready" in result.output
    assert "standin: crashing while loading the model" in result.output
    assert "GGML_NATIVE=OFF" in result.output
    assert not (tmp_path / "out" / "raw.jsonl").exists()


def test_a_server_that_stops_answering_is_named_and_stopped(tmp_path, standin, monkeypatch):
    monkeypatch.setenv("STANDIN_MODE", "hang")
    monkeypatch.setenv("STANDIN_ANSWERS", "1")
    result = run(tmp_path, standin, "--timeout", "2")
    out = result.output
    assert result.exit_code == 2, out
    assert "stopped answering: no answer within 2 s" in out and "still running" in out
    assert "--timeout" in out
    assert len(raw_records(tmp_path)) == 1
    assert servers_left() == []  # the hung server was killed, not left behind


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_threads_below_one_is_an_error_before_anything_starts(tmp_path, standin, threads):
    result = run(tmp_path, standin, "--threads", threads)
    assert result.exit_code == 2, result.output
    assert f"--threads {threads}: llama.cpp needs at least 1 thread" in result.output
    assert not (tmp_path / "cache" / "logs").exists()


def test_more_threads_than_cores_is_clamped_with_a_warning(tmp_path, standin, monkeypatch):
    monkeypatch.setenv("STANDIN_MODE", "segv")
    monkeypatch.setenv("STANDIN_ANSWERS", "3")
    result = run(tmp_path, standin, "--threads", "4096")
    assert "--threads 4096 is more than the" in result.output
    assert len(raw_records(tmp_path)) == 3
    log = next((tmp_path / "cache" / "logs").glob("llama_server-*.log")).read_text()
    assert f"standin: n_threads {len(os.sched_getaffinity(0))}" in log


def test_the_free_cores_are_read_from_the_cpu_now_not_the_load_average():
    """A process spinning on one core counts as busy while it runs (and not a minute after it ended)."""
    import subprocess

    from zaoshu.generator.embedded import busy_cores, choose_threads, usable_cores

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        psutil.Process(spinner.pid).cpu_percent(0.5)  # let it start spinning
        busy = busy_cores()
        threads, warning = choose_threads(None)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy >= 0.7
    assert warning is None and 1 <= threads <= max(1, usable_cores() - 1)
