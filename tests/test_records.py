"""The canonical record: JSONL in and out, errors that name file and line, crash-safe appends."""

from __future__ import annotations

import pytest

from zaoshu.errors import RecordError
from zaoshu.records import (
    AppendSink,
    assistant_text,
    read_records,
    repair_tail,
    task_id,
    write_records,
)


def rec(i: int, text: str = "祝你生日快乐") -> dict:
    return {
        "id": f"r{i}",
        "recipe": "wishes",
        "axes": {"recipient": "姐姐", "scene": "生日", "style": "正常"},
        "messages": [
            {"role": "system", "content": "你现在是一个送祝福大师"},
            {"role": "user", "content": "祝姐姐生日"},
            {"role": "assistant", "content": text},
        ],
        "meta": {},
    }


def test_write_then_read_round_trip_keeps_chinese_unescaped(tmp_path):
    path = tmp_path / "a.jsonl"
    assert write_records(path, [rec(1), rec(2, "岁岁平安")]) == 2
    raw = path.read_bytes()
    assert "岁岁平安".encode() in raw and b"\\u" not in raw
    back = list(read_records(path))
    assert [r["id"] for r in back] == ["r1", "r2"]
    assert assistant_text(back[1]) == "岁岁平安"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"id": "x", "messages": [', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"id": "x"}', "no 'messages'"),
        (b'{"id": "x", "messages": [{"role": "user", "content": "hi"}]}', "no assistant turn"),
        (b'{"id": "x", "messages": [{"role": "bot", "content": "hi"}]}', "role one of"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, expected):
    path = tmp_path / "bad.jsonl"
    write_records(tmp_path / "g.jsonl", [rec(1)])
    path.write_bytes((tmp_path / "g.jsonl").read_bytes() + line + b"\n")
    with pytest.raises(RecordError) as info:
        list(read_records(path))
    message = str(info.value)
    assert f"{path}:2:" in message and expected in message


def test_task_id_is_stable_and_sensitive_to_every_part():
    base = task_id("wishes", {"recipient": "姐姐", "scene": "生日", "style": "正常"}, 0, 0)
    assert base == task_id("wishes", {"style": "正常", "scene": "生日", "recipient": "姐姐"}, 0, 0)
    others = {
        task_id("wishes2", {"recipient": "姐姐", "scene": "生日", "style": "正常"}, 0, 0),
        task_id("wishes", {"recipient": "妹妹", "scene": "生日", "style": "正常"}, 0, 0),
        task_id("wishes", {"recipient": "姐姐", "scene": "生日", "style": "严肃"}, 0, 0),
        task_id("wishes", {"recipient": "姐姐", "scene": "生日", "style": "正常"}, 1, 0),
        task_id("wishes", {"recipient": "姐姐", "scene": "生日", "style": "正常"}, 0, 1),
    }
    assert base not in others and len(others) == 5


def test_append_sink_and_repair_of_a_torn_tail(tmp_path):
    path = tmp_path / "raw.jsonl"
    with AppendSink(path) as sink:
        sink.write(rec(1))
        sink.write(rec(2))
    with open(path, "ab") as f:
        f.write(b'{"id": "r3", "messages": [{"role": "ass')  # killed mid-line
    assert repair_tail(path) is True
    assert [r["id"] for r in read_records(path)] == ["r1", "r2"]
    assert repair_tail(path) is False  # a clean file is left alone


def test_repair_cuts_a_complete_but_invalid_last_line(tmp_path):
    path = tmp_path / "raw.jsonl"
    write_records(path, [rec(1)])
    with open(path, "ab") as f:
        f.write(b'{"id": "r2", "mess\n')
    assert repair_tail(path) is True
    assert [r["id"] for r in read_records(path)] == ["r1"]


def test_write_records_is_atomic_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    write_records(path, [rec(1)])

    def broken():
        yield rec(2)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_records(path, broken())
    assert [r["id"] for r in read_records(path)] == ["r1"]
