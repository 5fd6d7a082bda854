"""`zaoshu run` end to end over the loopback fake server: generate + clean + report, then resume.

The CLI runs in-process (typer's CliRunner) against `zaoshu.testing.fakeserver` in its `wishes` reply mode,
over real HTTP on 127.0.0.1; the server's request counter shows what a rerun sends.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.testing.fakeserver import FakeServer

ROOT = Path(__file__).resolve().parent.parent
WISHES = ROOT / "prompts" / "wishes.yaml"
N = 60


@pytest.fixture(scope="module")
def server():
    with FakeServer(reply="wishes") as srv:
        yield srv


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def zaoshu_run(server: FakeServer, out: Path, *extra: str) -> Any:
    args = ["run", str(WISHES), "-o", str(out), "--provider", "local", "--base-url", server.base_url]
    args += ["--model", "fake-model", "--limit", str(N), "--quiet", "--max-attempts", "3", "--timeout", "5"]
    return CliRunner().invoke(app, [*args, *extra], catch_exceptions=False)


def requests_sent(server: FakeServer) -> int:
    return server.stats().get("requests", 0)


def test_run_generates_cleans_reports_and_resumes(server, tmp_path):
    out = tmp_path / "out"
    before = requests_sent(server)
    result = zaoshu_run(server, out)
    assert result.exit_code == 0, result.output
    assert requests_sent(server) - before == N

    raw = read_jsonl(out / "raw.jsonl")
    kept = read_jsonl(out / "clean.jsonl")
    rejects = read_jsonl(out / "clean.rejects.jsonl")
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert len(raw) == N and len({r["id"] for r in raw}) == N
    assert (out / "raw.stats.json").is_file()
    assert (out / "report" / "report.html").is_file() and (out / "report" / "report.json").is_file()
    # Nothing is lost: every generated record is kept or rejected with a reason.
    assert {r["id"] for r in kept} | {r["id"] for r in rejects} == {r["id"] for r in raw}
    assert summary["tasks"] == summary["generated"] == summary["new"] == N
    assert summary["kept"] == len(kept) > 0
    assert sum(summary["rejected"].values()) == len(rejects) > 0  # the fake server adds junk and duplicates
    assert summary["tokens_in"] > 0 and summary["tokens_out"] > 0
    assert summary["provider"] == "local" and summary["model"] == "fake-model"
    # The printed summary points at the report and gives the next commands with this run's real paths.
    assert f"kept {len(kept)}, rejected {len(rejects)}" in result.output
    assert str(out / "report" / "report.html") in result.output
    assert f"zaoshu convert {out / 'clean.jsonl'} --to xtuner" in result.output
    assert "zaoshu publish" in result.output and "zaoshu train" in result.output

    # Rerun: nothing is sent again, nothing is duplicated, clean covers the same records.
    before = requests_sent(server)
    again = zaoshu_run(server, out)
    assert again.exit_code == 0, again.output
    assert requests_sent(server) == before
    assert read_jsonl(out / "raw.jsonl") == raw
    assert {r["id"] for r in read_jsonl(out / "clean.jsonl")} == {r["id"] for r in kept}
    summary2 = orjson.loads((out / "summary.json").read_bytes())
    assert summary2["new"] == 0 and summary2["generated"] == N and summary2["kept"] == len(kept)


def test_an_interrupted_run_resumes_only_the_missing_tasks(server, tmp_path):
    out = tmp_path / "out"
    assert zaoshu_run(server, out).exit_code == 0
    full = read_jsonl(out / "raw.jsonl")
    # As if killed after 25 records, in the middle of writing the 26th.
    lines = (out / "raw.jsonl").read_bytes().splitlines(keepends=True)
    (out / "raw.jsonl").write_bytes(b"".join(lines[:25]) + lines[25][:40])
    before = requests_sent(server)
    result = zaoshu_run(server, out, "--no-cache")  # the cache would answer the 35 without a request
    assert result.exit_code == 0, result.output
    assert requests_sent(server) - before == N - 25  # no request for an id already done
    raw = read_jsonl(out / "raw.jsonl")
    ids = [r["id"] for r in raw]
    assert len(ids) == len(set(ids)) == N
    assert set(ids) == {r["id"] for r in full}
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["new"] == N - 25
    assert summary["kept"] + sum(summary["rejected"].values()) == N


def test_failed_tasks_are_reported_and_retried_by_the_rerun(server, tmp_path):
    out = tmp_path / "out"
    server.configure(reply="wishes", faults={"bad_request": 0.3})  # 400: not retried, a failure for good
    try:
        result = zaoshu_run(server, out)
    finally:
        server.configure(reply="wishes", faults={})
    assert result.exit_code == 1, result.output  # some tasks failed for good: `run … && next` stops
    summary = orjson.loads((out / "summary.json").read_bytes())
    failures = read_jsonl(out / "raw.failures.jsonl")
    assert summary["failed"] == len(failures) > 0
    assert summary["generated"] == N - len(failures)
    assert "rerun the same command to retry them" in result.output

    result = zaoshu_run(server, out)
    assert result.exit_code == 0, result.output
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["failed"] == 0 and summary["generated"] == N and summary["new"] == len(failures)
    assert not (out / "raw.failures.jsonl").exists()


def test_dry_run_writes_nothing(server, tmp_path):
    out = tmp_path / "out"
    before = requests_sent(server)
    result = zaoshu_run(server, out, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run: would send" in result.output
    assert requests_sent(server) == before
    assert not (out / "summary.json").exists() and not (out / "clean.jsonl").exists()


def test_a_missing_key_stops_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(WISHES), "-o", str(out), "--provider", "deepseek"])
    assert result.exit_code != 0
    assert "DEEPSEEK_API_KEY" in result.output
    assert not (out / "raw.jsonl").exists()


def run_with(server: FakeServer, recipe: Path, out: Path, *extra: str) -> Any:
    args = ["run", str(recipe), "-o", str(out), "--provider", "local", "--base-url", server.base_url]
    args += ["--model", "fake-model", "--limit", str(N), "--quiet", "--max-attempts", "3", "--timeout", "5"]
    return CliRunner().invoke(app, [*args, *extra], catch_exceptions=False)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--near-dup-threshold", "5"], "--near-dup-threshold:"),
        (["--length-tolerance", "-1"], "--length-tolerance:"),
        (["--num-perm", "2"], "--num-perm:"),
        (["--against", "no/such/dataset.jsonl"], "no such file or folder"),
    ],
)
def test_bad_clean_settings_stop_the_run_before_any_request(server, tmp_path, extra, says):
    out = tmp_path / "out"
    before = requests_sent(server)
    result = zaoshu_run(server, out, *extra)
    assert result.exit_code != 0
    assert says in result.output and "Traceback" not in result.output
    assert requests_sent(server) == before
    assert not (out / "raw.jsonl").exists()


def test_a_bad_clean_block_in_the_recipe_stops_the_run_before_any_request(server, tmp_path):
    recipe = tmp_path / "wishes.yaml"
    text = WISHES.read_text(encoding="utf-8")
    assert "  length_tolerance: 0.1\n" in text
    recipe.write_text(text.replace("  length_tolerance: 0.1\n", "  length_tolerance: -1\n"), encoding="utf-8")
    out = tmp_path / "out"
    before = requests_sent(server)
    result = run_with(server, recipe, out)
    assert result.exit_code != 0
    assert "clean.length_tolerance" in result.output and str(recipe) in result.output
    assert requests_sent(server) == before
    assert not (out / "raw.jsonl").exists()


def test_run_takes_every_clean_flag(server, tmp_path):
    out = tmp_path / "out"
    flags = ["--num-perm", "32", "--ngram", "3", "--lsh-threshold", "0.4", "--near-dup-threshold", "0.9"]
    result = zaoshu_run(server, out, *flags, "--length-tolerance", "0.2", "--skip-bad-lines")
    assert result.exit_code == 0, result.output
    settings = orjson.loads((out / "report" / "report.json").read_bytes())["settings"]
    near = settings["near_dup"]
    assert (near["num_perm"], near["ngram"], near["lsh_threshold"], near["threshold"]) == (32, 3, 0.4, 0.9)
    assert settings["length_tolerance"] == 0.2


def test_ctrl_c_while_cleaning_exits_130_with_the_resume_command(server, tmp_path):
    """SIGINT to a real `zaoshu run` process once its cleaning pass is writing (its temp output exists):
    no traceback, exit 130, the command to resume, and no half-written clean.jsonl."""
    out = tmp_path / "out"
    out.mkdir()
    # records of an earlier run (ids the plan does not have): cleaning them takes long enough to interrupt
    base = {"recipe": "wishes", "axes": {"recipient": "姐姐", "scene": "生日", "style": "正常"}}
    with open(out / "raw.jsonl", "wb") as f:
        for i in range(60_000):
            text = f"祝姐姐生日快乐，第{i}号愿望{i * 7919 % 100_003}都实现！"
            messages = [{"role": "user", "content": "祝福"}, {"role": "assistant", "content": text}]
            f.write(orjson.dumps({"id": f"old{i:06d}", **base, "messages": messages}) + b"\n")
    args = ["run", str(WISHES), "-o", str(out), "--provider", "local", "--base-url", server.base_url]
    args += ["--model", "fake-model", "--limit", "5", "--quiet", "--max-attempts", "3", "--timeout", "5"]
    code = "import sys; from zaoshu.cli import app; sys.argv[0] = 'zaoshu'; app()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )

    def temps() -> list:  # the atomic writer's temp file beside clean.jsonl
        return list(out.glob(".clean.jsonl.*.tmp"))

    deadline = time.monotonic() + 120
    while not temps() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "cleaning ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    output = (stdout + stderr).decode()
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert "Resume with the same command" in output and "zaoshu run" in output
    assert not (out / "clean.jsonl").exists() and not temps(), output
    assert len((out / "raw.jsonl").read_bytes().splitlines()) == 60_005  # generation finished and kept
