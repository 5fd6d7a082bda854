"""Formats: every reader and writer, round trips through each format, the seeds' own examples, detection
and the errors for bad input (unknown format, missing turns, empty, non-UTF-8)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.formats import FORMATS, convert, detect_format, read_any, write
from zaoshu.records import content_id

runner = CliRunner()


def multi_turn(i: int = 0) -> dict:
    """A canonical record with two exchanges and an assistant turn left out of the loss (XTuner's per-turn `loss`)."""
    return {
        "id": f"w{i}",
        "recipe": "wishes",
        "axes": {"recipient": "姐姐", "scene": "生日", "style": "严肃"},
        "messages": [
            {"role": "system", "content": "你现在是一个送祝福大师"},
            {"role": "user", "content": f"祝姐姐生日快乐{i}"},
            {"role": "assistant", "content": "愿你岁岁平安", "loss": False},
            {"role": "user", "content": "再正式一点"},
            {"role": "assistant", "content": "值此佳辰，恭祝姐姐福寿安康。"},
        ],
        "meta": {"prompt": "该祝福语字数小于 100 字", "model": "deepseek-chat"},
    }


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def strip_loss(messages: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "loss"} for m in messages]


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_round_trip_through_each_format_keeps_the_conversation(tmp_path, fmt, suffix):
    src = write_jsonl(tmp_path / "in.jsonl", [multi_turn(i) for i in range(3)])
    mid = tmp_path / f"mid{suffix}"
    written = convert(src, mid, fmt)
    assert written.count == 3
    assert detect_format(mid) == fmt
    back = read_any(mid)
    assert len(back) == 3
    for original, again in zip([multi_turn(i) for i in range(3)], back, strict=True):
        if fmt in ("zaoshu", "openai", "xtuner"):  # formats that hold XTuner's loss flag
            assert again["messages"] == original["messages"]
        else:
            assert again["messages"] == strip_loss(original["messages"])
        assert again["id"]  # an id always comes back, from the row or from content_id
    if fmt == "zaoshu":
        assert back == [multi_turn(i) for i in range(3)]
    if fmt == "sharegpt":
        assert [r["id"] for r in back] == ["w0", "w1", "w2"]
    if fmt in ("openai", "xtuner", "alpaca"):
        assert back[0]["id"] == content_id(back[0]["messages"])


def test_json_suffix_writes_a_json_array_and_jsonl_one_object_a_line(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [multi_turn(i) for i in range(2)])
    convert(src, tmp_path / "x.json", "xtuner")
    convert(src, tmp_path / "x.jsonl", "xtuner")
    as_array = json.loads((tmp_path / "x.json").read_text(encoding="utf-8"))
    lines = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text(encoding="utf-8").splitlines()]
    assert isinstance(as_array, list) and as_array == lines
    assert "祝姐姐" in (tmp_path / "x.json").read_text(encoding="utf-8")  # Chinese not escaped


def test_lossy_conversion_says_so_once_with_counts(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [multi_turn(i) for i in range(5)])
    result = runner.invoke(app, ["convert", str(src), "-o", str(tmp_path / "a.json"), "--to", "alpaca"])
    assert result.exit_code == 0, result.output
    assert result.output.count("note:") == 1
    assert "meta (5 of 5 records)" in result.output and "loss flags (5 of 5 records)" in result.output
    clean = runner.invoke(app, ["convert", str(src), "-o", str(tmp_path / "z.jsonl"), "--to", "zaoshu"])
    assert "note:" not in clean.output


def test_alpaca_with_system_and_history_is_multi_turn(tmp_path):
    row = {
        "instruction": "再正式一点",
        "input": "",
        "output": "值此佳辰，恭祝姐姐福寿安康。",
        "system": "你现在是一个送祝福大师",
        "history": [["祝姐姐生日快乐", "愿你岁岁平安"]],
    }
    path = tmp_path / "a.json"
    path.write_text(json.dumps([row], ensure_ascii=False), encoding="utf-8")
    (record,) = read_any(path)
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    written = write([record], tmp_path / "again.jsonl", "alpaca")
    assert written.count == 1
    assert json.loads((tmp_path / "again.jsonl").read_text(encoding="utf-8")) == row


def test_alpaca_input_is_joined_to_the_instruction_with_a_newline(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "翻译", "input": "hello", "output": "你好"}])
    (record,) = read_any(path)
    assert record["messages"] == [
        {"role": "user", "content": "翻译\nhello"},
        {"role": "assistant", "content": "你好"},
    ]


def test_sharegpt_reads_human_gpt_system_and_a_top_level_system(tmp_path):
    row = {
        "id": "s1",
        "system": "你是助手",
        "conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好呀"}],
    }
    (record,) = read_any(write_jsonl(tmp_path / "s.jsonl", [row]))
    assert record["id"] == "s1"
    assert record["messages"][0] == {"role": "system", "content": "你是助手"}
    write([record], tmp_path / "out.jsonl", "sharegpt")
    out = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert out["conversations"][0] == {"from": "system", "value": "你是助手"}
    assert [t["from"] for t in out["conversations"]] == ["system", "human", "gpt"]


def test_xtuner_multi_turn_keeps_per_turn_system_and_loss(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [multi_turn()])
    convert(src, tmp_path / "x.jsonl", "xtuner")
    row = json.loads((tmp_path / "x.jsonl").read_text(encoding="utf-8"))
    assert row == {
        "conversation": [
            {
                "system": "你现在是一个送祝福大师",
                "input": "祝姐姐生日快乐0",
                "output": "愿你岁岁平安",
                "output_with_loss": False,
            },
            {"input": "再正式一点", "output": "值此佳辰，恭祝姐姐福寿安康。"},
        ]
    }


# ---------------------------------------------------------------- the seeds' own examples

SEED_000_ROW = {
    "instruction": "天下没有不散的筵席，那么我们相聚的意义又是什么",
    "input": "",
    "output": "尽管我们相聚的时光有限，但是相聚的意义在于创造美好的回忆和珍贵的关系。",
    "task_type": {"major": ["问答"], "minor": ["逻辑问答", "隐喻理解"]},
    "domain": ["通用"],
    "metadata": "暂无元数据信息",
    "answer_from": "llm",
    "human_verified": True,
    "copyright": "暂无版权及作者信息",
}


def test_seed_000_coig_cqia_alpaca_to_openai_messages(tmp_path):
    # The seed reads one JSON object a line and writes {"messages": [user, assistant]} a line.
    src = write_jsonl(tmp_path / "ruozhiba.json", [SEED_000_ROW, {**SEED_000_ROW, "instruction": "为什么"}])
    assert detect_format(src) == "alpaca"
    convert(src, tmp_path / "ruozhiba_format.jsonl", "openai")
    lines = (tmp_path / "ruozhiba_format.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {
        "messages": [
            {"role": "user", "content": SEED_000_ROW["instruction"]},
            {"role": "assistant", "content": SEED_000_ROW["output"]},
        ]
    }
    # The COIG-CQIA fields have no place in openai, but survive in zaoshu records.
    (record, _) = read_any(src)
    assert record["meta"]["extra"]["task_type"]["minor"] == ["逻辑问答", "隐喻理解"]


SEED_001 = [
    {
        "conversation": [
            {"input": q, "output": "我是不要葱姜蒜大佬的小助手，内在是上海AI实验室书生·浦语的7B大模型哦"}
        ]
    }
    for q in ("请介绍一下你自己", "请做一下自我介绍", "你是谁", "你是哪位")
]


def test_seed_001_self_cognition_conversation_array(tmp_path):
    src = tmp_path / "personal_assistant.json"
    src.write_text(json.dumps(SEED_001, ensure_ascii=False, indent=4), encoding="utf-8")
    assert detect_format(src) == "xtuner"
    records = read_any(src)
    assert [r["messages"][0]["content"] for r in records] == [
        "请介绍一下你自己",
        "请做一下自我介绍",
        "你是谁",
        "你是哪位",
    ]
    convert(src, tmp_path / "again.json", "xtuner")
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == SEED_001


def seed_002_round(style: str, pairs: list[tuple[str, str]]) -> list[dict]:
    """What a hand-written generation loop saves per round: src_input and style_name beside the turn."""
    out = []
    for name, scene in pairs:
        user = f"祝{name}{scene}" if style == "正常" else f"祝{name}{scene},{style}风格"
        out.append(
            {
                "conversation": [
                    {
                        "system": "你现在是一个送祝福大师，帮我针对不同人和事情、节日送对应的祝福",
                        "src_input": f"该祝福语字数小于 50 字。对象称谓是：{name}，祝福场景是：{scene}。",
                        "style_name": style,
                        "input": user,
                        "output": f"{name}{scene}快乐🎉",
                    }
                ]
            }
        )
    return out


def test_seed_002_merge_a_folder_of_rounds_into_training_conversations(tmp_path):
    folder = tmp_path / "tianji_wishes_datasets"
    folder.mkdir()
    round1 = seed_002_round("小红书", [("赵老师", "生日"), ("大舅", "春节")])
    round2 = seed_002_round("严肃", [("李总", "发财")]) + round1[:1]  # a repeat across rounds
    (folder / "wishes_小红书_2024-05-01.json").write_text(
        json.dumps(round1, ensure_ascii=False, indent=4), "utf-8"
    )
    (folder / "wishes_严肃_2024-05-02.json").write_text(
        json.dumps(round2, ensure_ascii=False, indent=4), "utf-8"
    )
    out = tmp_path / "tianji-wishes-chinese-v0.1.json"
    result = runner.invoke(app, ["merge", str(folder), "-o", str(out), "--to", "xtuner"])
    assert result.exit_code == 0, result.output
    merged = json.loads(out.read_text(encoding="utf-8"))
    # What the seed's extract_and_merge_conversations builds: system, input, output only (files in sorted order).
    expected = [
        {"conversation": [{k: t[k] for k in ("system", "input", "output")} for t in item["conversation"]]}
        for item in round2[:1] + round1
    ]
    assert merged == expected
    # counts per file: the 严肃 round first (sorted), then the 小红书 round, whose first wish repeats
    assert re.search(r"wishes_严肃_2024-05-02\.json +xtuner +read +2 +kept +2 +duplicates +0", result.output)
    assert re.search(
        r"wishes_小红书_2024-05-01\.json +xtuner +read +2 +kept +1 +duplicates +1", result.output
    )
    # Read as records, the extra fields come back as axes and meta.
    records = read_any(folder / "wishes_小红书_2024-05-01.json")
    assert records[0]["axes"] == {"style": "小红书"}
    assert records[0]["meta"]["prompt"].startswith("该祝福语字数小于 50 字")


SEED_004 = [
    {
        "messages": [
            {"role": "system", "content": "xxx."},
            {"role": "user", "content": "xxx."},
            {"role": "assistant", "content": "xxx."},
        ]
    },
    {
        "messages": [
            {"role": "system", "content": "xxx."},
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1", "loss": False},
            {"role": "user", "content": "u2"},
            {"role": "assistant", "content": "a2", "loss": True},
        ]
    },
]


def _xtuner_openai_map_fn():
    """XTuner's own openai_map_fn, loaded from its file (importing xtuner whole pulls in torch)."""
    spec = importlib.util.find_spec("xtuner")
    if spec is None or spec.origin is None:
        pytest.skip("xtuner not installed")
    path = Path(spec.origin).parent / "dataset/map_fns/dataset_map_fns/openai_map_fn.py"
    module_spec = importlib.util.spec_from_file_location("_xtuner_openai_map_fn", path)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.openai_map_fn


def test_seed_004_openai_messages_keep_loss_and_match_xtuners_own_mapping(tmp_path):
    src = tmp_path / "custom_sft1.json"
    src.write_text(json.dumps(SEED_004), encoding="utf-8")
    records = read_any(src)
    assert records[1]["messages"][2] == {"role": "assistant", "content": "a1", "loss": False}
    convert(src, tmp_path / "again.json", "openai")
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == SEED_004
    # zaoshu's xtuner writer and XTuner's openai_map_fn agree on every turn (defaults filled in).
    convert(src, tmp_path / "x.json", "xtuner")
    ours = json.loads((tmp_path / "x.json").read_text(encoding="utf-8"))
    openai_map_fn = _xtuner_openai_map_fn()
    for row, mine in zip(SEED_004, ours, strict=True):
        theirs = openai_map_fn(json.loads(json.dumps(row)))["conversation"]
        filled = [{"system": "", "output_with_loss": True, **t} for t in mine["conversation"]]
        assert filled == theirs


# ---------------------------------------------------------------- detection and bad input


def test_detection_is_overridden_by_from(tmp_path):
    # {"messages", "conversation"} could be openai or xtuner: ambiguous until --from says which.
    row = {
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        "conversation": [],
    }
    path = write_jsonl(tmp_path / "both.jsonl", [row])
    with pytest.raises(ZaoshuError, match=r"could be openai or xtuner .*--from"):
        detect_format(path)
    out = tmp_path / "o.jsonl"
    bad = runner.invoke(app, ["convert", str(path), "-o", str(out), "--to", "zaoshu"])
    assert bad.exit_code != 0 and "ambiguous" in bad.output
    good = runner.invoke(app, ["convert", str(path), "-o", str(out), "--to", "zaoshu", "--from", "openai"])
    assert good.exit_code == 0, good.output
    assert read_any(out)[0]["messages"][1]["content"] == "b"


def test_unknown_format_names_the_line_and_lists_the_formats(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"question": "a", "answer": "b"}])
    with pytest.raises(ZaoshuError) as e:
        read_any(path)
    assert "x.jsonl:1" in str(e.value) and "question, answer" in str(e.value)
    assert all(name in str(e.value) for name in FORMATS)
    result = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "o.jsonl"), "--to", "parquet"])
    assert result.exit_code != 0 and "unknown format 'parquet'" in result.output


def test_mixed_formats_in_one_file_are_refused(tmp_path):
    rows = [{"instruction": "a", "output": "b"}, {"conversations": [{"from": "human", "value": "a"}]}]
    with pytest.raises(ZaoshuError, match="different formats"):
        detect_format(write_jsonl(tmp_path / "mixed.jsonl", rows))


def test_record_missing_its_turns_names_file_and_line(tmp_path):
    good = multi_turn()
    path = write_jsonl(tmp_path / "r.jsonl", [good, {**good, "messages": []}])
    with pytest.raises(RecordError, match=r"r\.jsonl:2: .*no turns"):
        read_any(path)
    no_messages = write_jsonl(tmp_path / "n.jsonl", [good, {"id": "x", "recipe": "wishes"}])
    with pytest.raises(RecordError, match=r"n\.jsonl:2: record has no turns"):
        read_any(no_messages)
    xt = tmp_path / "x.json"
    xt.write_text('[\n {"conversation": [{"input": "a", "output": "b"}]},\n {"conversation": []}\n]', "utf-8")
    with pytest.raises(RecordError, match=r"x\.json:3: item 1 of the JSON array: record has no turns"):
        read_any(xt)
    no_answer = write_jsonl(tmp_path / "o.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    result = runner.invoke(
        app, ["convert", str(no_answer), "-o", str(tmp_path / "o2.jsonl"), "--to", "xtuner"]
    )
    assert result.exit_code != 0 and "o.jsonl:1" in result.output and "no assistant turn" in result.output
    assert not (tmp_path / "o2.jsonl").exists()


def test_empty_input_is_an_error(tmp_path):
    for name, content in (("e.jsonl", b""), ("blank.jsonl", b"\n  \n"), ("e.json", b"[]")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ZaoshuError, match="empty input"):
            read_any(path)
        result = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "o.jsonl"), "--to", "openai"])
        assert result.exit_code != 0 and "empty input" in result.output


def test_non_utf8_names_the_line_and_suggests_iconv(tmp_path):
    path = tmp_path / "gbk.jsonl"
    good = orjson.dumps({"instruction": "a", "output": "b"}) + b"\n"
    path.write_bytes(
        good + json.dumps({"instruction": "祝你生日快乐", "output": "好"}, ensure_ascii=False).encode("gbk")
    )
    with pytest.raises(RecordError, match=r"gbk\.jsonl:2: not UTF-8.*iconv"):
        read_any(path)
    result = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "o.jsonl"), "--to", "openai"])
    assert result.exit_code != 0 and "gbk.jsonl:2" in result.output and "not UTF-8" in result.output


def test_torn_line_names_its_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(orjson.dumps(multi_turn()) + b"\n" + orjson.dumps(multi_turn(1))[:40] + b"\n")
    result = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "o.jsonl"), "--to", "openai"])
    assert result.exit_code != 0 and "t.jsonl:2: not valid JSON" in result.output


def test_utf8_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + orjson.dumps(multi_turn()) + b"\r\n" + orjson.dumps(multi_turn(1)) + b"\r\n"
    )
    assert detect_format(path) == "zaoshu"
    convert(path, tmp_path / "o.jsonl", "zaoshu")
    assert b"\r" not in (tmp_path / "o.jsonl").read_bytes()
    assert [r["id"] for r in read_any(tmp_path / "o.jsonl")] == ["w0", "w1"]


@pytest.mark.parametrize(
    ("system", "loss"), [("你现在是一个送祝福大师", None), ("", None), ("你现在是一个送祝福大师", False)]
)
def test_one_exchange_records_write_as_one_turn(system, loss):
    """A recipe's [system, user, assistant] becomes one xtuner turn and one alpaca row, as the turn grouping says."""
    from collections import Counter

    from zaoshu.formats import alpaca, xtuner
    from zaoshu.formats.base import pairs, turns

    answer = {"role": "assistant", "content": "岁岁平安"} | ({} if loss is None else {"loss": loss})
    record = {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "祝姐姐生日"}, answer]
    }
    lost: Counter = Counter()
    ((s, u, a),) = turns(record, Counter())
    general_xtuner = {"conversation": [({"system": s} if s else {}) | {"input": u, "output": a["content"]}]}
    if loss is not None:
        general_xtuner["conversation"][0]["output_with_loss"] = loss
    assert xtuner.FORMAT.write(record, lost) == general_xtuner
    s, grouped = pairs(record, Counter())
    general_alpaca = {"instruction": grouped[0][1], "input": "", "output": grouped[0][2]["content"]}
    if s:
        general_alpaca["system"] = s
    assert alpaca.FORMAT.write(record, lost) == general_alpaca
    assert lost == (Counter({"loss flags": 1}) if loss is not None else Counter())
