"""`zaoshu judge` over the loopback server in judge mode: scores, fences, retries, threshold, resume, cost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml
from clean_builders import read, record, write
from generate_helpers import local_options

from zaoshu.errors import RecipeError
from zaoshu.judging import judge
from zaoshu.testing import FakeServer


@pytest.fixture(scope="module")
def server():
    with FakeServer(reply="judge", record=True) as srv:
        yield srv


def _records(n: int, low: int = 0, mid: int = 0) -> list[dict]:
    """n records; the first `low` hold 差劲 (the fake judge scores them 1), the next `mid` 一般 (3)."""
    out = []
    for i in range(n):
        tag = "差劲" if i < low else "一般" if i < low + mid else "很好"
        out.append(record(f"祝姐姐生日快乐，第{i}条{tag}！", rid=f"r{i:04d}"))
    return out


def _prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  fake-model: {input: 1.0, output: 2.0, currency: CNY}\n", encoding="utf-8")
    return path


def test_scores_threshold_fences_and_cost(server, tmp_path, wishes_recipe_path) -> None:
    server.configure(
        reply="judge", record=True, judge_scores=[["差劲", 1], ["一般", 3]], judge_fenced=0.5, judge_default=4
    )
    src = write(tmp_path / "clean.jsonl", _records(40, low=10, mid=5))
    out = tmp_path / "judged.jsonl"
    options = local_options(server.base_url, prices=_prices(tmp_path))
    s = judge(src, out, wishes_recipe_path, options)
    assert (s.read, s.kept, s.rejected, s.failed) == (40, 30, 10, 0)
    assert s.kept + s.rejected + s.failed == s.read
    kept, rejects = read(out), read(tmp_path / "judged.rejects.jsonl")
    assert {r["meta"]["judge"]["score"] for r in kept} == {3, 4}  # 3 is not under the threshold 3
    assert all(r["reject"]["reason"] == "judge_low" for r in rejects)
    assert all("fake judge: 1" in r["reject"]["detail"] for r in rejects)
    j = kept[0]["meta"]["judge"]
    assert j["model"] == "fake-model" and len(j["fingerprint"]) == 16 and j["reason"]
    assert "record_fingerprint" not in j
    bodies = server.requests()
    fenced = sum(1 for b in bodies if "<reply>" in b["messages"][-1]["content"])
    assert fenced == 40  # the shipped prompt delimits the reply
    assert s.tokens_in > 0 and s.cost and s.cost > 0 and s.currency == "CNY"
    report = orjson.loads((tmp_path / "judged.report.json").read_bytes())
    assert report["overall"]["scores"] == {"1": 10, "2": 0, "3": 5, "4": 25, "5": 0}
    assert report["by_style"]["正常"]["n"] == 40
    assert report["low_samples"][0]["score"] == 1
    assert "judge report" in (tmp_path / "judged.report.html").read_text(encoding="utf-8")
    assert s.mean_score == pytest.approx((10 * 1 + 5 * 3 + 25 * 4) / 40, abs=1e-3)


def test_malformed_is_retried_then_failed_never_passed(server, tmp_path, wishes_recipe_path) -> None:
    server.configure(
        reply="judge", judge_scores=[["乱码", "junk"], ["重试", "junk_once"], ["九分", 9]], judge_fenced=0.0
    )
    recs = _records(6)
    recs[0]["messages"][-1]["content"] = "祝姐姐生日快乐，乱码！"
    recs[1]["messages"][-1]["content"] = "祝姐姐生日快乐，重试！"
    recs[2]["messages"][-1]["content"] = "祝姐姐生日快乐，九分！"
    src = write(tmp_path / "clean.jsonl", recs)
    out = tmp_path / "judged.jsonl"
    s = judge(src, out, wishes_recipe_path, local_options(server.base_url, max_attempts=3))
    assert (s.kept, s.rejected, s.failed) == (4, 0, 2)
    failures = read(tmp_path / "judged.scores.failures.jsonl")
    assert sorted(f["id"] for f in failures) == ["r0000", "r0002"]
    assert all(f["reason"] == "bad_reply" and f["attempts"] == 3 for f in failures)
    assert any("outside 1-5" in f["message"] for f in failures)
    assert {r["id"] for r in read(out)} == {"r0001", "r0003", "r0004", "r0005"}


def test_sample_estimates_then_full_run_pays_for_the_rest(server, tmp_path, wishes_recipe_path) -> None:
    server.configure(reply="judge", judge_scores=[["差劲", 1]], judge_fenced=0.0)
    src = write(tmp_path / "clean.jsonl", _records(100, low=25))
    out = tmp_path / "judged.jsonl"
    s = judge(src, out, wishes_recipe_path, local_options(server.base_url), sample=40, seed=1)
    assert s.judged == 40 and not out.exists()
    assert 0.05 < s.under_share < 0.5 and s.under_ci95[0] < s.under_share < s.under_ci95[1]
    full = judge(src, out, wishes_recipe_path, local_options(server.base_url))
    assert full.new == 60 and (full.kept, full.rejected) == (75, 25)


def test_changed_prompt_judges_again_and_keeps_the_old_verdicts(server, tmp_path, wishes_recipe_path) -> None:
    server.configure(reply="judge", judge_scores=[], judge_fenced=0.0)
    recs = _records(5)
    recs[0]["meta"]["fingerprint"] = "0123456789abcdef"  # the generation's own
    src = write(tmp_path / "clean.jsonl", recs)
    out = tmp_path / "judged.jsonl"
    assert judge(src, out, wishes_recipe_path, local_options(server.base_url)).new == 5
    kept = read(out)
    assert kept[0]["meta"]["fingerprint"] == "0123456789abcdef"  # the record's own, not the judge's
    assert "fingerprint" not in kept[1]["meta"] and len(kept[1]["meta"]["judge"]["fingerprint"]) == 16
    assert judge(src, out, wishes_recipe_path, local_options(server.base_url)).new == 0  # all done
    data = yaml.safe_load(wishes_recipe_path.read_text(encoding="utf-8"))
    data["judge"]["prompt"] = "换了一个提示：<reply>{{ reply }}</reply>"
    other = tmp_path / "w2.yaml"
    other.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    again = judge(src, out, other, local_options(server.base_url))
    assert again.new == 5 and again.kept == 5
    assert len(read(tmp_path / "judged.scores.superseded.jsonl")) == 5  # the old verdicts, kept aside


def test_recipe_without_a_rubric_is_a_clear_error(tmp_path, wishes_recipe_path) -> None:
    data = yaml.safe_load(wishes_recipe_path.read_text(encoding="utf-8"))
    del data["judge"]
    path = tmp_path / "nojudge.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    src = write(tmp_path / "clean.jsonl", _records(2))
    with pytest.raises(RecipeError, match=r"wishes.*no `judge:` block") as e:
        judge(src, tmp_path / "j.jsonl", path, local_options("http://127.0.0.1:9/v1"))
    assert "nojudge.yaml" in str(e.value)
    data["judge"] = {"criteria": {"a": "b"}, "prompt": "{{ nonsense }}"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RecipeError, match=r"judge\.prompt: unknown template variable"):
        judge(src, tmp_path / "j.jsonl", path, local_options("http://127.0.0.1:9/v1"))


def _cli(*args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from zaoshu.cli import main; main()", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))


def test_kill_9_then_resume_judges_nothing_twice(server, tmp_path, wishes_recipe_path) -> None:
    server.configure(reply="judge", record=True, latency=0.05, judge_scores=[["差劲", 1]], judge_fenced=0.0)
    src = write(tmp_path / "clean.jsonl", _records(120, low=30))
    out = tmp_path / "judged.jsonl"
    args = [
        *("judge", str(src), "-o", str(out), "--recipe", str(wishes_recipe_path)),
        *("--provider", "local", "--base-url", server.base_url, "--model", "fake-model", "-c", "4", "-q"),
    ]
    log = tmp_path / "judged.scores.jsonl"
    proc = _cli(*args)
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_bytes().count(b"\n") >= 20):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    before = {orjson.loads(line)["id"] for line in log.read_bytes().splitlines() if line.endswith(b"}")}
    assert 20 <= len(before) < 120
    again = _cli(*args)
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr.decode()
    assert "kept 90, rejected 30" in stdout.decode()
    asked: dict[str, int] = {}
    for body in server.requests():
        text = body["messages"][-1]["content"]
        rid = next(r["id"] for r in _records(120, low=30) if r["messages"][-1]["content"] in text)
        asked[rid] = asked.get(rid, 0) + 1
    assert all(asked[rid] == 1 for rid in before)  # judged before the kill: never asked again
    ids = [r["id"] for r in read(log)]
    assert len(ids) == len(set(ids)) == 120


def test_run_judges_after_clean(server, tmp_path, wishes_recipe_path) -> None:
    """`zaoshu run --judge-provider`: clean.jsonl is judged into judged.jsonl; the summary says so."""
    from zaoshu.cleaners import CleanOptions
    from zaoshu.pipeline import next_commands, run

    server.configure(reply="judge", judge_scores=[["尊敬的", 2]], judge_fenced=0.3)
    with FakeServer(reply="wishes") as gen:
        s = run(
            wishes_recipe_path,
            tmp_path / "run",
            local_options(gen.base_url, limit=60),
            CleanOptions(),
            local_options(server.base_url),
            None,
        )
    j = s.judge
    assert j is not None and j["read"] == s.kept > 0
    assert j["kept"] + j["rejected"] + j["failed"] == j["read"] and j["rejected"] > 0
    rejects = read(tmp_path / "run" / "judged.rejects.jsonl")
    assert all("尊敬的" in r["messages"][-1]["content"] for r in rejects)
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    assert summary["judge"]["kept"] == j["kept"]
    assert "judged.jsonl" in next_commands(s, wishes_recipe_path)[0][1]


def test_dry_run_shows_the_judge_prompt_and_writes_nothing(tmp_path, wishes_recipe_path) -> None:
    from typer.testing import CliRunner

    from zaoshu.cli import app

    src = write(tmp_path / "clean.jsonl", _records(3))
    out = tmp_path / "judged.jsonl"
    args = ["judge", str(src), "-o", str(out), "--recipe", str(wishes_recipe_path), "--provider", "local"]
    result = CliRunner().invoke(
        app, [*args, "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "would send 3 requests" in result.output and "<reply>" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.jsonl"]


def test_progress_line_names_the_judge(server, tmp_path, wishes_recipe_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # room for the whole line
    server.configure(reply="judge", judge_scores=[], judge_fenced=0.0, judge_default=4)
    src = write(tmp_path / "clean.jsonl", _records(3))
    judge(src, tmp_path / "judged.jsonl", wishes_recipe_path, local_options(server.base_url, quiet=False))
    err = capsys.readouterr().err
    assert "judge" in err and "3/3" in err
    assert "generate" not in err
