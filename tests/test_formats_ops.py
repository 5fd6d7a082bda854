"""merge and split, and the worker processes behind big files (line numbers across pieces, order kept)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.formats import convert, pieces, read_any, write
from zaoshu.formats.merge import merge
from zaoshu.formats.split import split
from zaoshu.records import content_id

runner = CliRunner()
STYLES = ("小红书", "正常", "严肃")


def record(i: int, style: str | None = None, text: str | None = None) -> dict:
    style = style or STYLES[i % 3]
    return {
        "id": f"id{i:05d}",
        "recipe": "wishes",
        "axes": {"recipient": "姐姐", "scene": "生日", "style": style},
        "messages": [
            {"role": "system", "content": "你现在是一个送祝福大师"},
            {"role": "user", "content": f"祝姐姐生日,{style}风格"},
            {"role": "assistant", "content": text or f"第{i}条祝福：岁岁平安"},
        ],
        "meta": {"prompt": "p" * (i % 50)},
    }


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@pytest.fixture
def small_chunks(monkeypatch):
    """Cut tiny files into many pieces for worker processes, as for a big file."""
    monkeypatch.setattr(pieces, "PIECE", 4096)
    monkeypatch.setattr(pieces, "PARALLEL_FROM", 0)


# ---------------------------------------------------------------- merge


def test_merge_files_folders_globs_dedups_by_id_and_counts_per_file(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [record(i) for i in range(5)])
    folder = tmp_path / "more"
    folder.mkdir()
    write_jsonl(folder / "b.jsonl", [record(i) for i in range(3, 8)])  # 3, 4 repeat a.jsonl
    (folder / "notes.txt").write_text("not data", encoding="utf-8")
    globbed = tmp_path / "g"
    globbed.mkdir()
    convert(
        write_jsonl(tmp_path / "c.jsonl", [record(i) for i in range(7, 10)]), globbed / "c.json", "sharegpt"
    )
    out = tmp_path / "merged.jsonl"
    result = merge([a, folder, str(globbed / "*.json")], out)
    assert [(Path(f.path).name, f.fmt, f.read, f.kept) for f in result.files] == [
        ("a.jsonl", "zaoshu", 5, 5),
        ("b.jsonl", "zaoshu", 5, 3),
        ("c.json", "sharegpt", 3, 2),  # sharegpt keeps ids: id00007 was already in b.jsonl
    ]
    merged = read_any(out)
    assert [r["id"] for r in merged] == [f"id{i:05d}" for i in range(10)]
    assert merged[0] == record(0)  # zaoshu records pass through unchanged
    cli = runner.invoke(app, ["merge", str(a), str(folder), "-o", str(tmp_path / "m2.jsonl")])
    assert cli.exit_code == 0, cli.output
    assert re.search(r"a\.jsonl +zaoshu +read +5 +kept +5 +duplicates +0", cli.output)
    assert re.search(r"b\.jsonl +zaoshu +read +5 +kept +3 +duplicates +2", cli.output)


def test_merge_dedups_records_without_id_by_exact_content(tmp_path):
    rows = [
        {"instruction": "祝姐姐生日", "output": "岁岁平安"},
        {"instruction": "祝姐姐生日", "output": "岁岁平安"},  # exact repeat
        {"instruction": "祝姐姐生日", "output": "岁岁平安！"},  # differs by one character: kept
    ]
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    with_ids = tmp_path / "z.jsonl"
    convert(a, with_ids, "zaoshu")  # ids from content_id
    out = tmp_path / "m.jsonl"
    result = merge([a, with_ids], out, to="alpaca")
    assert [(f.read, f.kept) for f in result.files] == [(3, 2), (3, 0)]
    assert [json.loads(line)["output"] for line in out.read_text("utf-8").splitlines()] == [
        "岁岁平安",
        "岁岁平安！",
    ]


def test_merge_bad_file_names_the_file_and_line_and_writes_nothing(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [record(i) for i in range(3)])
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(orjson.dumps(record(5)) + b"\n" + b'{"id": "x", "messages": "oops"}\n')
    out = tmp_path / "m.jsonl"
    result = runner.invoke(app, ["merge", str(a), str(bad), "-o", str(out)])
    assert result.exit_code != 0
    assert "bad.jsonl:2" in result.output and "no turns" in result.output
    assert not out.exists()
    with pytest.raises(ZaoshuError, match="no such file or folder"):
        merge([tmp_path / "missing.jsonl"], out)
    with pytest.raises(ZaoshuError, match="no file matches"):
        merge([str(tmp_path / "*.parquet")], out)


def test_merge_of_empty_inputs_is_an_error(tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"")
    (tmp_path / "e.json").write_bytes(b"[]")
    with pytest.raises(RecordError, match="empty input"):
        merge([tmp_path / "e.jsonl", tmp_path / "e.json"], tmp_path / "m.jsonl")


def test_parallel_merge_keeps_order_and_finds_bad_lines_across_chunks(tmp_path, small_chunks):
    rows = [record(i) for i in range(400)]
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    b = write_jsonl(tmp_path / "b.jsonl", rows[100:300])
    out = tmp_path / "m.json"
    result = merge([a, b], out, to="openai")
    assert (result.read, result.written.count) == (600, 400)
    got = json.loads(out.read_text("utf-8"))
    assert [m["messages"][2]["content"] for m in got] == [r["messages"][2]["content"] for r in rows]
    lines = a.read_bytes().splitlines(keepends=True)
    lines[333] = b'{"id": "broken", "messages": [\n'
    a.write_bytes(b"".join(lines))
    with pytest.raises(RecordError, match=r"a\.jsonl:334: not valid JSON"):
        merge([a], tmp_path / "m2.jsonl")


def test_parallel_merge_of_records_copies_lines_and_rewrites_only_what_it_must(tmp_path, small_chunks):
    """zaoshu -> zaoshu rows are copied from the input (LF ends); an id-less row is written with one."""
    rows = [record(i) for i in range(300)]
    lines = [orjson.dumps(r) for r in rows]
    no_id = {k: v for k, v in record(999).items() if k != "id"}
    raw = []
    for i, line in enumerate(lines):
        if i == 150:
            raw.append(orjson.dumps(no_id) + b"\n")
        raw.append(line + (b"\r\n" if i % 7 == 0 else b"  \n" if i % 11 == 0 else b"\n"))
        if i % 13 == 0:
            raw.append(b"\n")
    a = tmp_path / "a.jsonl"
    a.write_bytes(b"".join(raw).rstrip(b"\n"))  # the last line without its LF
    b = write_jsonl(tmp_path / "b.jsonl", rows[50:120] + [record(i) for i in range(300, 320)])
    out = tmp_path / "m.jsonl"
    result = merge([a, b], out)
    assert [(f.read, f.kept) for f in result.files] == [(301, 301), (90, 20)]
    got = out.read_bytes().split(b"\n")
    assert got[-1] == b"" and len(got) == 322
    expected = [line + (b"  " if i % 11 == 0 and i % 7 else b"") for i, line in enumerate(lines)]
    assert got[:150] + got[151:301] == expected
    assert json.loads(got[150]) == {**no_id, "id": content_id(no_id["messages"])}
    assert got[301:321] == [orjson.dumps(record(i)) for i in range(300, 320)]


def test_parallel_convert_equals_in_process_convert(tmp_path, small_chunks, monkeypatch):
    src = write_jsonl(tmp_path / "a.jsonl", [record(i) for i in range(300)])
    for fmt, suffix in (("xtuner", ".json"), ("alpaca", ".jsonl"), ("zaoshu", ".jsonl")):
        parallel = tmp_path / f"p{suffix}"
        convert(src, parallel, fmt)
        monkeypatch.setattr(pieces, "PARALLEL_FROM", 1 << 40)
        single = tmp_path / f"s{suffix}"
        convert(src, single, fmt)
        monkeypatch.setattr(pieces, "PARALLEL_FROM", 0)
        assert parallel.read_bytes() == single.read_bytes()
        json.loads(parallel.read_text("utf-8")) if suffix == ".json" else None
    assert (tmp_path / "s.jsonl").read_bytes() == src.read_bytes()


# ---------------------------------------------------------------- split


def test_split_is_seeded_byte_identical_and_not_head_tail(tmp_path):
    src = write_jsonl(tmp_path / "all.jsonl", [record(i) for i in range(200)])
    first = split(src, tmp_path / "s1", test=0.1, seed=7)
    split(src, tmp_path / "s2", test=0.1, seed=7)
    other = split(src, tmp_path / "s3", test=0.1, seed=8)
    assert (first.n_train, first.n_test) == (180, 20)
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / "s1" / name).read_bytes() == (tmp_path / "s2" / name).read_bytes()
    assert (tmp_path / "s1" / "test.jsonl").read_bytes() != (tmp_path / "s3" / "test.jsonl").read_bytes()
    assert other.n_test == 20
    train = read_any(tmp_path / "s1" / "train.jsonl")
    test = read_any(tmp_path / "s1" / "test.jsonl")
    ids = [r["id"] for r in train + test]
    assert sorted(ids) == sorted(r["id"] for r in read_any(src))  # nothing lost, nothing doubled
    assert [r["id"] for r in test] != [f"id{i:05d}" for i in range(180, 200)]  # not the tail
    # Rows are copied byte for byte.
    src_lines = set(src.read_bytes().splitlines())
    assert set((tmp_path / "s1" / "test.jsonl").read_bytes().splitlines()) <= src_lines


def test_split_stratified_puts_every_style_in_both_parts(tmp_path, small_chunks):
    # 97 of one style, 2 of another, 1 of a third: plain 10% could miss the small ones.
    rows = [record(i, "正常") for i in range(97)] + [
        record(97, "严肃"),
        record(98, "严肃"),
        record(99, "小红书"),
    ]
    src = write_jsonl(tmp_path / "all.jsonl", rows)
    result = runner.invoke(
        app, ["split", str(src), "-o", str(tmp_path / "s"), "--stratify", "style", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "only in train" in result.output and "小红书" in result.output
    train = read_any(tmp_path / "s" / "train.jsonl")
    test = read_any(tmp_path / "s" / "test.jsonl")
    assert {r["axes"]["style"] for r in test} == {"正常", "严肃"}
    assert {r["axes"]["style"] for r in train} == {"正常", "严肃", "小红书"}
    assert sum(r["axes"]["style"] == "正常" for r in test) == 10
    again = runner.invoke(
        app, ["split", str(src), "-o", str(tmp_path / "t"), "--stratify", "style", "--seed", "3"]
    )
    assert again.exit_code == 0
    assert (tmp_path / "s" / "test.jsonl").read_bytes() == (tmp_path / "t" / "test.jsonl").read_bytes()


def test_split_keeps_the_input_format_and_reads_json_arrays(tmp_path):
    src = write_jsonl(tmp_path / "all.jsonl", [record(i) for i in range(30)])
    convert(src, tmp_path / "x.json", "xtuner")
    result = split(tmp_path / "x.json", tmp_path / "s", test=0.2, seed=0)
    assert result.fmt == "xtuner" and (result.n_train, result.n_test) == (24, 6)
    first = json.loads((tmp_path / "s" / "train.jsonl").read_text("utf-8").splitlines()[0])
    assert set(first) == {"conversation"}


def test_split_read_by_worker_processes_gives_the_same_files(tmp_path, monkeypatch):
    lines = [
        orjson.dumps(record(i)) + (b"\r\n" if i % 5 == 0 else b"\n\n" if i % 7 == 0 else b"\n")
        for i in range(3000)
    ]
    src = tmp_path / "r.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"".join(lines).rstrip(b"\n"))  # a BOM, blank lines, no last LF
    split(src, tmp_path / "one", test=0.3, seed=4, stratify="style")
    monkeypatch.setattr(pieces, "PIECE", 4096)
    monkeypatch.setattr(pieces, "PARALLEL_FROM", 0)
    split(src, tmp_path / "many", test=0.3, seed=4, stratify="style")
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()
    assert (tmp_path / "many" / "train.jsonl").read_bytes().count(b"\r") == 0
    written = b"".join((tmp_path / "many" / name).read_bytes() for name in ("train.jsonl", "test.jsonl"))
    assert sorted(written.splitlines()) == sorted(orjson.dumps(record(i)) for i in range(3000))


def test_split_errors(tmp_path):
    src = write_jsonl(tmp_path / "one.jsonl", [record(0)])
    with pytest.raises(RecordError, match="at least 2 records"):
        split(src, tmp_path / "s")
    two = write_jsonl(tmp_path / "two.jsonl", [record(0), record(1)])
    with pytest.raises(ZaoshuError, match="between 0 and 1"):
        split(two, tmp_path / "s", test=1.5)
    with pytest.raises(RecordError, match=r"two\.jsonl:1: record has no axis 'tone'"):
        split(two, tmp_path / "s", stratify="tone")


def test_odd_zaoshu_rows_convert_like_their_records(tmp_path):
    """zaoshu rows go to writers without being rebuilt; the result equals writing the records read back."""
    odd = [
        record(0),
        {**record(1), "id": None},  # no id: one is made from the content
        {
            **record(2),
            "messages": [*record(2)["messages"][:2], {"role": "assistant", "content": "x", "name": "bot"}],
        },
        {**record(4), "meta": {}, "axes": {}},
        # text that looks like the keys the openai path cuts at, inside a message and as an axis
        {**record(5, text='","meta":{}},"messages":[],"meta":'), "axes": {"messages": "x"}},
        {"meta": {"a": 1}, **record(6)},  # meta before messages
    ]
    src = write_jsonl(tmp_path / "odd.jsonl", odd)
    records = read_any(src)
    for fmt in ("zaoshu", "openai", "xtuner", "sharegpt", "alpaca"):
        streamed = convert(src, tmp_path / f"{fmt}-a.jsonl", fmt)
        in_memory = write(records, tmp_path / f"{fmt}-b.jsonl", fmt)
        a, b = (tmp_path / f"{fmt}-a.jsonl").read_bytes(), (tmp_path / f"{fmt}-b.jsonl").read_bytes()
        if fmt == "zaoshu":  # rows with an id are copied as they are (key order kept)
            assert [json.loads(x) for x in a.splitlines()] == [json.loads(x) for x in b.splitlines()]
        else:
            assert a == b, fmt
        # (read_any gave the id-less row an id, so only the streamed count says 3 ids were dropped)
        assert {k: v for k, v in streamed.lost.items() if k != "id"} == {
            k: v for k, v in in_memory.lost.items() if k != "id"
        }
    assert b'"name":"bot"' in (tmp_path / "openai-a.jsonl").read_bytes()
    assert dict(convert(src, tmp_path / "o.jsonl", "openai").lost) == {
        "id": 5,
        "recipe": 6,
        "axes": 5,
        "meta": 5,
    }


def test_streamed_recipe_records_equal_the_writers(tmp_path):
    """Streaming a recipe's one-exchange records gives the same bytes as the in-memory writers, whatever
    the strings hold (quotes, backslashes, JSON-looking text, empty)."""
    texts = [
        '","',
        "a\\",
        "\\",
        '"',
        '\\"',
        "",
        "换行\n\t\u2028",
        '","input":"x',
        '"},{"from":"gpt","value":"',
        "é😀",
    ]
    rows = []
    for i, text in enumerate(texts):
        row = record(i, text=text)
        row["messages"][0]["content"] = text if i % 2 else ""  # an empty system prompt too
        row["messages"][1]["content"] = text[::-1]
        rows.append(row)
    rows.append({**record(20), "id": 7})  # an id that is no string
    rows.append({**record(21), "id": None})
    flagged = record(22)
    flagged["messages"][2]["loss"] = True
    rows.append(flagged)
    src = write_jsonl(tmp_path / "recipe.jsonl", rows)
    records = read_any(src)
    for fmt in ("xtuner", "alpaca", "sharegpt"):
        streamed = convert(src, tmp_path / f"{fmt}-a.jsonl", fmt)
        in_memory = write(records, tmp_path / f"{fmt}-b.jsonl", fmt)
        assert (tmp_path / f"{fmt}-a.jsonl").read_bytes() == (tmp_path / f"{fmt}-b.jsonl").read_bytes(), fmt
        assert streamed.lost.get("loss flags") == in_memory.lost.get("loss flags"), fmt


def test_bytes_that_are_not_utf8_inside_meta_are_caught_when_rows_are_copied(tmp_path):
    good = orjson.dumps(record(0)) + b"\n"
    bad = orjson.dumps(record(1)).replace(b'"meta":{"prompt":"p"', b'"meta":{"prompt":"\xb2\xe2"')
    assert b"\xb2" in bad
    src = tmp_path / "m.jsonl"
    src.write_bytes(good + bad + b"\n")
    with pytest.raises(RecordError, match=r"m\.jsonl:2: not UTF-8"):
        merge([src], tmp_path / "out.jsonl")
    with pytest.raises(RecordError, match=r"m\.jsonl:2: not UTF-8"):
        split(src, tmp_path / "s")


def test_a_first_line_longer_than_the_peek_is_still_json_lines(tmp_path, small_chunks):
    long = record(0, text="长" * 100_000)  # ~300 KB on one line
    src = write_jsonl(tmp_path / "long.jsonl", [long, record(1)])
    assert convert(src, tmp_path / "o.jsonl", "openai").count == 2
    assert merge([src], tmp_path / "m.jsonl").written.count == 2
    assert split(src, tmp_path / "s", test=0.5).n_test == 1
