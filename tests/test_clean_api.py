"""The stage end to end: outputs and their paths, counts that add up, bad input, the CLI, the report."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from clean_builders import read, record, write
from typer.testing import CliRunner

from zaoshu.cleaners import CleanOptions, clean
from zaoshu.cli import app
from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.recipes import load_recipe
from zaoshu.records import content_id


@pytest.fixture(scope="module")
def recipe():
    return load_recipe(Path(__file__).resolve().parent.parent / "prompts" / "wishes.yaml")


def _mixed() -> list[dict]:
    return [
        record("！啦~祝姐姐生日快乐，天天开心！"),
        record("祝姐姐生日快乐，天天开心！", scene="生日"),
        record("当前祝福语如下"),
        record("祝母亲新婚快乐，百年好合", recipient="母亲", scene="新婚快乐"),
        record("祝哥哥春节快乐，万事如意！", recipient="哥哥", scene="春节"),
        record(
            "哥哥春节快乐呀🧧，愿你新的一年前程似锦，心想事成！",
            recipient="哥哥",
            scene="春节",
            style="小红书",
        ),
        record("祝赵老师中秋快乐，阖家团圆", recipient="赵老师", scene="中秋节", finish="length"),
    ]


def test_outputs_default_paths_and_counts(tmp_path: Path, recipe) -> None:
    src = write(tmp_path / "raw.jsonl", _mixed())
    out = tmp_path / "clean.jsonl"
    stats = clean([src], out, recipe=recipe)
    assert (tmp_path / "clean.rejects.jsonl").is_file()
    assert (tmp_path / "clean.report" / "report.json").is_file()
    assert stats.read == 7 and stats.kept == 3 and stats.normalized == 1
    assert stats.rejected == {"duplicate": 1, "meta_text": 1, "excluded_pair": 1, "truncated": 1}
    kept = read(out)
    first = kept[0]
    assert first["messages"][-1]["content"] == "祝姐姐生日快乐，天天开心！"
    assert first["meta"]["clean"] == {
        "changes": ["leading_punct"],
        "original": "！啦~祝姐姐生日快乐，天天开心！",
    }
    assert "clean" not in kept[1]["meta"]  # untouched records pass through byte for byte
    raw_lines = src.read_bytes().splitlines()
    assert out.read_bytes().splitlines()[1] == raw_lines[4]
    rejects = read(tmp_path / "clean.rejects.jsonl")
    dup = next(r for r in rejects if r["reject"]["reason"] == "duplicate")
    assert dup["reject"]["duplicate_of"] == first["id"]
    assert dup["reject"]["line"] == 2 and dup["reject"]["file"] == str(src)
    assert _strip_ids(dup) == json.loads(raw_lines[1])  # the record is whole, plus its reject
    report = json.loads((tmp_path / "clean.report" / "report.json").read_text())
    assert report["counts"] == {"read": 7, "kept": 3, "normalized": 1, "rejected": 4}
    assert sum(report["by_reason"].values()) + report["counts"]["kept"] == report["counts"]["read"]
    assert report["length"]["正常"]["max_chars"] == 20
    assert set(report["distinct"]) >= {"正常", "小红书"}
    cells = {(c["recipient"], c["scene"], c["style"]): c for c in report["by_cell"]}
    assert cells[("哥哥", "春节", "正常")]["kept"] == 1


def _strip_ids(record_: dict) -> dict:
    return {k: v for k, v in record_.items() if k != "reject"}


def test_clean_output_cleans_to_itself(tmp_path: Path, recipe) -> None:
    src = write(tmp_path / "raw.jsonl", _mixed())
    clean([src], tmp_path / "a.jsonl", recipe=recipe)
    stats = clean([tmp_path / "a.jsonl"], tmp_path / "b.jsonl", recipe=recipe)
    assert stats.rejected == {} and stats.normalized == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_folder_input_in_sorted_order_and_output_inside_it_refused(tmp_path: Path, recipe) -> None:
    folder = tmp_path / "raw"
    write(folder / "b.jsonl", [record("祝你生日快乐，天天开心！", rid="second")])
    write(folder / "a.jsonl", [record("祝你生日快乐，天天开心!", rid="first")])
    out = tmp_path / "clean.jsonl"
    stats = clean([folder], out, recipe=recipe)
    assert [r["id"] for r in read(out)] == ["first"] and stats.read == 2
    # an output inside the input folder would be read back as input by the next run: refused up front
    with pytest.raises(ZaoshuError, match="inside the input folder"):
        clean([folder], folder / "clean.jsonl", recipe=recipe)
    assert sorted(p.name for p in folder.iterdir()) == ["a.jsonl", "b.jsonl"]


PREVIOUS = '{"id": "an earlier run\'s output"}\n'


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"id": "x", "messages": [{"role": "assistant", "content": "hi"}', "not valid JSON"),
        (b'{"id": "x", "messages": [{"role": "assistant", "content": "\xff\xfe"}]}', "not UTF-8"),
        (b'{"id": "x"}', "no 'messages' list"),
        (b'{"id": "x", "messages": [{"role": "user", "content": "hi"}]}', "no assistant turn"),
        (b'{"id": "x", "axes": [1], "messages": [{"role": "assistant", "content": "hi"}]}', "'axes'"),
    ],
)
def test_bad_lines_are_errors_naming_file_and_line(
    tmp_path: Path, recipe, line: bytes, expected: str
) -> None:
    src = tmp_path / "raw.jsonl"
    good = json.dumps(record("祝你生日快乐，天天开心！"), ensure_ascii=False).encode()
    src.write_bytes(good + b"\n\n" + line + b"\n" + good + b"\n")
    out = tmp_path / "clean.jsonl"
    out.write_text(PREVIOUS)
    with pytest.raises(RecordError) as e:
        clean([src], out, recipe=recipe)
    assert f"{src}:3:" in str(e.value) and expected in str(e.value)
    assert out.read_text() == PREVIOUS  # never replaced by a half-written file
    assert not list(tmp_path.glob("*.tmp"))
    assert not (tmp_path / "clean.report").exists()  # the report folder it made is gone again
    (tmp_path / "clean.report").mkdir()
    with pytest.raises(RecordError):
        clean([src], out, recipe=recipe)
    assert (tmp_path / "clean.report").is_dir()  # a folder that was there before stays

    stats = clean([src], out, recipe=recipe, options=CleanOptions(skip_bad_lines=True))
    assert stats.read == 3 and stats.rejected == {"bad_line": 1, "duplicate": 1}
    bad = next(r for r in read(tmp_path / "clean.rejects.jsonl") if r["reject"]["reason"] == "bad_line")
    assert bad["reject"]["line"] == 3 and expected in bad["reject"]["detail"]


def test_cli_runs_and_prints_the_counts(tmp_path: Path, wishes_recipe_path: Path) -> None:
    src = write(tmp_path / "raw.jsonl", _mixed())
    out = tmp_path / "clean.jsonl"
    result = CliRunner().invoke(
        app,
        ["clean", str(src), "-o", str(out), "--recipe", str(wishes_recipe_path), "--rejects", str(tmp_path / "r.jsonl"),
         "--report", str(tmp_path / "rep"), "--near-dup-threshold", "0.9", "--num-perm", "32", "--ngram", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("read 7, kept 3, normalized 1, rejected 4 (")
    assert "duplicate 1" in last and "meta_text 1" in last
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["settings"]["near_dup"]["num_perm"] == 32
    assert report["settings"]["near_dup"]["ngram"] == 3
    assert (tmp_path / "r.jsonl").is_file()


def test_cli_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "raw.jsonl"
    src.write_bytes(b"not json\n")
    result = CliRunner().invoke(app, ["clean", str(src), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code != 0
    assert f"{src}:1:" in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["clean", str(tmp_path / "nope"), "-o", str(tmp_path / "o.jsonl")])
    assert missing.exit_code != 0 and "no such file or folder" in missing.output


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.svgs = 0
        self.rects = 0
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.svgs += tag == "svg"
        self.rects += tag == "rect"
        for name, value in attrs:
            if name in ("src", "href") and value and re.match(r"https?:", value):
                self.external.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_html_has_its_pictures_and_opens_offline(tmp_path: Path, recipe) -> None:
    src = write(tmp_path / "raw.jsonl", _mixed())
    clean([src], tmp_path / "clean.jsonl", recipe=recipe)
    html = (tmp_path / "clean.report" / "report.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    assert page.external == [] and "script" not in page.tags
    # reasons bars + one histogram per style + the recipient × scene heatmap
    assert html.count('class="hist"') == 3
    assert html.count('class="heat"') == 1 and html.count('class="bars"') == 1
    heat = html[html.index('class="heat"') :]
    assert heat.count("<rect") == 28 * 18  # every recipient × scene cell
    assert "赵老师 × 七夕节: 0" in heat  # an excluded pair, drawn grey
    text = "".join(page.text)
    assert "当前祝福语如下" in text  # a sample of the meta_text reason
    assert "max_chars 20" in text


def test_records_without_axes_and_empty_input(tmp_path: Path, recipe) -> None:
    bare = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": t}]}
            for t in ("祝你生日快乐，天天开心", "祝你生日快乐，天天开心!")]  # fmt: skip
    src = write(tmp_path / "bare.jsonl", bare)
    stats = clean([src], tmp_path / "out.jsonl", recipe=recipe)
    assert (stats.read, stats.kept, stats.rejected) == (2, 1, {"duplicate": 1})
    dup = read(tmp_path / "out.rejects.jsonl")[0]
    assert dup["reject"]["duplicate_of"] == content_id(bare[0]["messages"])  # records without ids get one
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    stats = clean([empty], tmp_path / "e.jsonl", recipe=recipe)
    assert (stats.read, stats.kept, stats.rejected_total) == (0, 0, 0)
    assert (tmp_path / "e.jsonl").read_bytes() == b""


def test_generated_wishes_from_the_fake_server_come_out_clean(tmp_path: Path, recipe) -> None:
    """The generator's fake server writes wishes with the junk real models add; cleaning removes it."""
    from zaoshu.generator.plan import plan
    from zaoshu.testing.fakeserver import wish

    tasks = plan(recipe, limit=600).tasks
    records = [t.to_record(wish(t.prompt), {"finish_reason": "stop"}) for t in tasks]
    src = write(tmp_path / "raw.jsonl", records)
    stats = clean([src], tmp_path / "clean.jsonl", recipe=recipe)
    assert stats.kept + stats.rejected_total == stats.read == len(records)
    assert stats.normalized > 0 and stats.rejected.get("duplicate", 0) > 0
    for r in read(tmp_path / "clean.jsonl"):
        text = r["messages"][-1]["content"]
        assert "\n" not in text and not text.startswith(("！", "“", '"', "好的"))
        limit = recipe.styles[r["axes"]["style"]].max_chars
        assert len(text) <= int(limit * 1.1)


@pytest.mark.parametrize("workers", [1, 2])
def test_chunked_passes_write_the_same_bytes(tmp_path: Path, recipe, monkeypatch, workers: int) -> None:
    """Inputs cut into many small chunks (lines, blank lines, a bad line, copies across chunks and
    files) come out byte for byte as read in one chunk, in this process or in worker processes: same
    outputs, same line numbers, same report."""
    from zaoshu.cleaners import io

    good = json.dumps(record("祝你生日快乐，天天开心！"), ensure_ascii=False).encode()
    a = write(tmp_path / "in" / "a.jsonl", _mixed() * 3)
    a.write_bytes(a.read_bytes() + b"\n" + good + b"\nnot json\n" + good)  # no newline at the end
    write(tmp_path / "in" / "b.jsonl", _mixed()[::-1])
    options = CleanOptions(skip_bad_lines=True)
    whole = clean([tmp_path / "in"], tmp_path / "whole.jsonl", recipe=recipe, options=options)
    monkeypatch.setattr(io, "CHUNK_BYTES", 1500)
    assert len(io.split_chunks(sorted((tmp_path / "in").glob("*.jsonl")))) > 4
    options.workers = workers
    cut = clean([tmp_path / "in"], tmp_path / "cut.jsonl", recipe=recipe, options=options)
    assert cut.rejected == whole.rejected and cut.kept == whole.kept and cut.read == whole.read == 31
    for name in ("{}.jsonl", "{}.rejects.jsonl", "{}.dups.jsonl"):
        assert (tmp_path / name.format("cut")).read_bytes() == (tmp_path / name.format("whole")).read_bytes()
    reports = [json.loads((tmp_path / f"{n}.report" / "report.json").read_text()) for n in ("whole", "cut")]
    for r in reports:
        r.pop("seconds")
        r["outputs"] = None
    assert reports[0] == reports[1]
    bad = next(r for r in read(tmp_path / "cut.rejects.jsonl") if r["reject"]["reason"] == "bad_line")
    assert bad["reject"]["line"] == 24 and bad["reject"]["file"].endswith("a.jsonl")


def test_a_script_without_a_main_guard_is_not_run_again_by_the_workers(tmp_path: Path) -> None:
    """The passes' worker processes are spawned: they must not re-run the calling script's top level
    (a script that calls `clean` plainly, as users write them)."""
    import subprocess
    import sys

    write(tmp_path / "raw.jsonl", _mixed() * 5)
    script = tmp_path / "plain.py"
    script.write_text(
        "from pathlib import Path\n"
        "from zaoshu.cleaners import CleanOptions, clean, io\n"
        "print('top level ran')\n"
        "io.CHUNK_BYTES = 1000\n"
        f"stats = clean([Path({str(tmp_path / 'raw.jsonl')!r})], Path({str(tmp_path / 'out.jsonl')!r}),\n"
        "              options=CleanOptions(workers=2))\n"
        "print('read', stats.read)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["top level ran", "read 35"]
