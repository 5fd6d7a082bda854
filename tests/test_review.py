"""Review decisions: the append-only file, the pure function applying them, and the commands that honour
them (clean over a run folder made here against the loopback fake server, split / convert beside it)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.errors import RecordError
from zaoshu.review import Decision, append_decision, apply_decisions, read_decisions
from zaoshu.testing.fakeserver import FakeServer

ROOT = Path(__file__).resolve().parent.parent
WISHES = ROOT / "prompts" / "wishes.yaml"


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def make_run(out: Path, n: int = 60) -> Path:
    """A `zaoshu run` folder (raw, clean, rejects, report) over the loopback fake server."""
    with FakeServer(reply="wishes") as srv:
        args = ["run", str(WISHES), "-o", str(out), "--provider", "local", "--base-url", srv.base_url]
        args += [
            "--model",
            "fake-model",
            "--limit",
            str(n),
            "--quiet",
            "--max-attempts",
            "3",
            "--timeout",
            "5",
        ]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_apply_decisions_accepts_rejects_and_leaves_the_rest():
    kept = {"id": "a", "messages": [{"role": "assistant", "content": "x"}]}
    rejected = {
        "reject": {"reason": "too_short"},
        "id": "b",
        "messages": [{"role": "assistant", "content": "y"}],
    }
    other = {"id": "c", "messages": [{"role": "assistant", "content": "z"}]}
    decisions = {
        "a": Decision("a", "reject", note="off topic", who="ann"),
        "b": Decision("b", "accept", note="fine", who="bob"),
        "c": Decision("c", "accept"),  # accepting a kept record changes nothing
    }
    out = list(apply_decisions([kept, rejected, other], decisions))
    assert out[0]["reject"] == {"reason": "review", "detail": "off topic", "who": "ann"}
    assert "reject" not in out[1] and out[1]["meta"]["review"]["was"] == {"reason": "too_short"}
    assert out[2] is other
    assert "reject" not in kept and "reject" in rejected  # inputs untouched


def test_the_last_decision_wins_and_a_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "review.jsonl"
    append_decision(path, Decision("a", "reject", note="no"))
    append_decision(path, Decision("a", "accept", note="yes after all"))
    with open(path, "ab") as f:
        f.write(b'{"id": "b", "act')  # a kill mid-write
    assert {k: d.action for k, d in read_decisions(path).items()} == {"a": "accept"}
    append_decision(path, Decision("b", "reject"))  # the torn line (never acknowledged) is cut first
    assert {k: d.action for k, d in read_decisions(path).items()} == {"a": "accept", "b": "reject"}
    assert len(path.read_bytes().splitlines()) == 3


def test_a_bad_action_names_the_line(tmp_path):
    path = tmp_path / "review.jsonl"
    path.write_text('{"id": "a", "action": "maybe"}\n')
    with pytest.raises(RecordError, match=r"review\.jsonl:1.*accept, reject"):
        read_decisions(path)


def _hammer(args: tuple[str, int]) -> None:
    path, who = args
    for i in range(150):
        append_decision(path, Decision(f"id{who}-{i}", "reject", note="说明 " * 2000, who=str(who)))


def test_two_reviewers_at_once_lose_no_decision(tmp_path):
    path = tmp_path / "review.jsonl"
    with multiprocessing.get_context("spawn").Pool(
        2
    ) as pool:  # lines of 14 kB: more than one write's atomic size
        pool.map(_hammer, [(str(path), 1), (str(path), 2)])
    assert len(read_decisions(path)) == 300
    assert len(path.read_bytes().splitlines()) == 300


def test_clean_split_and_convert_honour_the_review(tmp_path):
    run = make_run(tmp_path / "run")
    kept = read_jsonl(run / "clean.jsonl")
    rejects = read_jsonl(run / "clean.rejects.jsonl")
    drop, take = kept[0]["id"], rejects[0]["id"]
    review = tmp_path / "decisions.jsonl"
    append_decision(review, Decision(drop, "reject", note="reads like an ad", who="ann"))
    append_decision(review, Decision(take, "accept", note="good enough", who="bob"))

    # split / convert of clean.jsonl: the reviewer's reject dropped, the accept pulled from the rejects file
    result = CliRunner().invoke(app, ["split", str(run / "clean.jsonl"), "-o", str(tmp_path / "s"),
                                      "--review", str(review)])  # fmt: skip
    assert result.exit_code == 0, result.output
    ids = {r["id"] for f in ("train", "test") for r in read_jsonl(tmp_path / "s" / f"{f}.jsonl")}
    assert take in ids and drop not in ids and len(ids) == len(kept)
    result = CliRunner().invoke(app, ["convert", str(run / "clean.jsonl"), "--to", "openai", "-o",
                                      str(tmp_path / "o.jsonl"), "--review", str(review)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(tmp_path / "o.jsonl")) == len(kept)
    pytest.importorskip("pyarrow")
    result = CliRunner().invoke(app, ["publish", str(run / "clean.jsonl"), "--repo", "a/b", "--out",
                                      str(tmp_path / "pub"), "--review", str(review)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"train {len(kept)}" in result.output
    card = (tmp_path / "pub" / "README.md").read_text()
    # the recipe, the generation stats and the report beside the data were still found
    assert "pretty_name: 针对不同对象" in card and "tokens_in" in card and "counts.rejected" in card
    assert not list(run.glob(".zaoshu-review-*"))  # the temporary copies are gone

    # clean again with the review: the decisions override the rules, the report counts them
    result = CliRunner().invoke(
        app,
        [
            "clean",
            str(run / "raw.jsonl"),
            "-o",
            str(run / "clean.jsonl"),
            "--recipe",
            str(WISHES),
            "--report",
            str(run / "report"),
            "--review",
            str(review),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "review: 1 accepted, 1 rejected" in result.output
    kept2 = {r["id"]: r for r in read_jsonl(run / "clean.jsonl")}
    rejects2 = {r["id"]: r for r in read_jsonl(run / "clean.rejects.jsonl")}
    assert take in kept2 and drop not in kept2
    assert rejects2[drop]["reject"]["reason"] == "review"
    assert rejects2[drop]["reject"]["detail"] == "reads like an ad"
    report = orjson.loads((run / "report" / "report.json").read_bytes())
    assert report["counts"]["reviewed"] == {"accepted": 1, "rejected": 1}
    assert report["by_reason"]["review"] == 1


def test_review_json_in_a_run_folder_is_picked_up(tmp_path):
    run = make_run(tmp_path / "run")
    drop = read_jsonl(run / "clean.jsonl")[0]["id"]
    append_decision(run / "review.jsonl", Decision(drop, "reject", note="no"))
    result = CliRunner().invoke(app, ["split", str(run / "clean.jsonl"), "-o", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    ids = {r["id"] for f in ("train", "test") for r in read_jsonl(tmp_path / "s" / f"{f}.jsonl")}
    assert drop not in ids
    # and a rerun of `zaoshu run` cleans with it
    make_run(run)
    assert drop in {r["id"] for r in read_jsonl(run / "clean.rejects.jsonl")}
