"""A rerun after a change of prompt, model or sampling parameters regenerates: old replies never pass as new.

Each record carries `meta.fingerprint`; a record whose fingerprint is not today's request for its task is
moved to `<stem>.superseded.jsonl` (kept) and its task is sent again. Records without one (an older
zaoshu) are kept as done, and the run says so.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml
from generate_helpers import local_options, planned_ids, read_jsonl, write_recipe
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.generator.engine import generate
from zaoshu.testing.fakeserver import FakeServer

N = 12  # 4 × 3 tasks


@pytest.fixture(scope="module")
def server():
    with FakeServer() as srv:
        yield srv


def sent(server: FakeServer) -> int:
    return server.stats().get("requests", 0)


def edit_recipe(path: Path, **changes: object) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_every_record_carries_its_request_fingerprint(server, tmp_path):
    recipe = write_recipe(tmp_path, n_a=4, n_b=3)
    out = tmp_path / "raw.jsonl"
    generate(recipe, out, local_options(server.base_url))
    records = read_jsonl(out)
    assert len(records) == N
    prints = {r["meta"]["fingerprint"] for r in records}
    assert len(prints) == N and all(len(p) == 16 for p in prints)


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "新的提示：{{ who }}，{{ scene }}。请直接返回祝福文本："},
        {"model": {"temperature": 0.9}},
        {"options": {"model": "another-model"}},
    ],
    ids=["prompt", "temperature", "model"],
)
def test_a_change_regenerates_and_keeps_the_old_replies_aside(server, tmp_path, capsys, change):
    recipe = write_recipe(tmp_path, n_a=4, n_b=3)
    out = tmp_path / "raw.jsonl"
    generate(recipe, out, local_options(server.base_url))
    old = read_jsonl(out)
    options = local_options(server.base_url, **change.pop("options", {}))
    edit_recipe(recipe, **change)
    capsys.readouterr()

    before = sent(server)
    stats = generate(recipe, out, options)
    err = capsys.readouterr().err
    assert f"{N} records were made by another request" in " ".join(err.split())
    assert stats.superseded == N and stats.done == N and stats.skipped_resume == 0
    assert sent(server) - before == N
    new = read_jsonl(out)
    assert sorted(r["id"] for r in new) == sorted(planned_ids(recipe))
    assert not {r["meta"]["fingerprint"] for r in new} & {r["meta"]["fingerprint"] for r in old}
    assert read_jsonl(tmp_path / "raw.superseded.jsonl") == old  # moved, not deleted

    before = sent(server)
    stats = generate(recipe, out, options)  # the same plan again: nothing to do
    assert stats.todo == 0 and stats.superseded == 0 and sent(server) == before


def test_a_dry_run_counts_changed_records_and_moves_nothing(server, tmp_path, capsys):
    recipe = write_recipe(tmp_path, n_a=4, n_b=3)
    out = tmp_path / "raw.jsonl"
    generate(recipe, out, local_options(server.base_url))
    before = out.read_bytes()
    edit_recipe(recipe, model={"max_tokens": 33})
    capsys.readouterr()
    stats = generate(recipe, out, local_options(server.base_url, dry_run=True))
    assert stats.todo == N and "a real run would generate them again" in " ".join(
        capsys.readouterr().err.split()
    )
    assert out.read_bytes() == before and not (tmp_path / "raw.superseded.jsonl").exists()


def test_records_without_a_fingerprint_are_kept_as_done_with_a_note(server, tmp_path, capsys):
    recipe = write_recipe(tmp_path, n_a=4, n_b=3)
    out = tmp_path / "raw.jsonl"
    generate(recipe, out, local_options(server.base_url))
    old = read_jsonl(out)
    for r in old:
        del r["meta"]["fingerprint"]
    out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in old))
    edit_recipe(recipe, prompt="改过的：{{ who }}{{ scene }}")
    capsys.readouterr()
    before = sent(server)
    stats = generate(recipe, out, local_options(server.base_url))
    assert stats.todo == 0 and sent(server) == before
    assert f"{N} records carry no fingerprint" in " ".join(capsys.readouterr().err.split())


def test_another_seed_is_said_and_nothing_is_moved(server, tmp_path, capsys):
    recipe = write_recipe(tmp_path, n_a=4, n_b=3)
    out = tmp_path / "raw.jsonl"
    generate(recipe, out, local_options(server.base_url))
    capsys.readouterr()
    generate(recipe, out, local_options(server.base_url, seed=1))
    assert f"{N} records are not in this plan" in " ".join(capsys.readouterr().err.split())
    assert len(read_jsonl(out)) == 2 * N and not (tmp_path / "raw.superseded.jsonl").exists()


def test_generate_exits_1_when_tasks_fail_and_q_keeps_the_summary(tmp_path):
    recipe = write_recipe(tmp_path, n_a=2, n_b=2)
    with FakeServer(faults={"bad_request": 1.0}) as bad:
        args = ["generate", str(recipe), "-o", str(tmp_path / "f.jsonl"), "--provider", "local"]
        args += ["--base-url", bad.base_url, "--model", "m", "-q"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "0 records ->" in result.output and "4 failed" in result.output  # -q hides the bar only
