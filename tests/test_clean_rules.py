"""Rule filters: each junk kind LLM replies carry is rejected with the right reason; config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from clean_builders import read, record, write

from zaoshu.cleaners import CleanOptions, clean, judge
from zaoshu.errors import RecipeError
from zaoshu.recipes import load_recipe, parse_recipe


@pytest.fixture
def recipe(wishes_recipe_path: Path):
    return load_recipe(wishes_recipe_path)


def _reasons(tmp_path: Path, records: list[dict], recipe) -> dict[str, tuple[str, str]]:
    """id -> (reason, detail) for rejected records; kept ids map to ("kept", text)."""
    src = write(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    stats = clean([src], out, recipe=recipe, options=CleanOptions(near_dup=False))
    got = {r["id"]: ("kept", r["messages"][-1]["content"]) for r in read(out)}
    for r in read(tmp_path / "out.rejects.jsonl"):
        got[r["id"]] = (r["reject"]["reason"], r["reject"]["detail"])
    assert stats.kept + stats.rejected_total == stats.read == len(records)
    return got


JUNK = [
    # (text, style, extra record fields, expected reason)
    ("当前祝福语如下", "正常", {}, "meta_text"),
    ("作为一个AI，我无法真正送出祝福", "正常", {}, "meta_text"),
    ("抱歉，我不能完成这个请求呀", "正常", {}, "meta_text"),
    ("我无法回答这个问题哦哦", "正常", {}, "meta_text"),
    ("这条祝福语字数为十八个", "正常", {}, "meta_text"),
    ("### 祝福 ### 生日快乐呀", "正常", {}, "meta_text"),
    ("请根据对象称谓及场景写祝福吧", "正常", {}, "leaked_prompt"),
    ("注意不要有标题混在其中，祝你快乐", "正常", {}, "leaked_prompt"),
    ("前方荣光万丈，身后温暖一方，凡是过往，皆为序章。🌟", "小红书", {}, "copied_example"),
    ("", "正常", {}, "empty"),
    ("！！！。。", "正常", {}, "empty"),
    ("祝你", "正常", {}, "too_short"),
    ("祝姐姐生日快乐，愿你前程似锦，万事胜意，岁岁平安，心想事成", "正常", {}, "too_long"),
    ("祝姐姐生日快乐，天天开心，万事如意", "正常", {"finish": "length"}, "truncated"),
    ("Happy birthday, sis!", "正常", {}, "low_chinese"),
    ("快乐快乐快乐快乐快乐快乐快乐", "正常", {}, "repetition"),
    ("哈哈哈哈哈哈哈哈哈哈", "正常", {}, "repetition"),
    ("愿你生日快乐，前程似锦，心想事成，万事胜意，好运常伴", "小红书", {}, "emoji_count"),
    ("愿你生日快乐🎂🎉🎈🌟，前程似锦，心想事成，万事胜意", "小红书", {}, "emoji_count"),
    ("尊敬的赵老师，值此佳辰，恭祝您福寿安康🎉，事业蒸蒸日上。", "严肃", {}, "emoji_count"),
    ("祝母亲新婚快乐，百年好合", "正常", {"recipient": "母亲", "scene": "新婚快乐"}, "excluded_pair"),
    ("祝姐姐生日快乐，天天开心www.a.cn", "正常", {}, "link"),
    ("亲爱的[名字]，祝你生日快乐", "正常", {}, "placeholder"),
]


@pytest.mark.parametrize(("text", "style", "extra", "reason"), JUNK)
def test_junk_is_rejected_with_its_reason(tmp_path: Path, recipe, text, style, extra, reason) -> None:
    rec = record(text, style=style, **extra)
    got = _reasons(tmp_path, [rec], recipe)
    assert got[rec["id"]][0] == reason, got
    assert got[rec["id"]][1]  # every reject carries a detail


GOOD = [
    ("祝姐姐生日快乐，天天开心！", "正常", "姐姐"),
    ("！啦~祝姐姐生日快乐，天天开心！", "正常", "姐姐"),  # normalized, then kept
    ("姐姐生日快乐呀🎂，愿你前程似锦，心想事成，万事胜意！", "小红书", "姐姐"),
    ("尊敬的赵老师，值此佳辰，恭祝您福寿安康，事业蒸蒸日上，桃李满天下。", "严肃", "赵老师"),
]


@pytest.mark.parametrize(("text", "style", "recipient"), GOOD)
def test_good_wishes_are_kept(tmp_path: Path, recipe, text: str, style: str, recipient: str) -> None:
    rec = record(text, style=style, recipient=recipient)
    got = _reasons(tmp_path, [rec], recipe)
    assert got[rec["id"]][0] == "kept", got


def test_length_tolerance_accepts_a_small_overshoot(tmp_path: Path, recipe) -> None:
    text = "祝姐姐生日快乐天天开心万事如意前程似锦好运"  # 21 chars: max_chars 20, +10 % -> 22
    rec = record(text)
    assert _reasons(tmp_path, [rec], recipe)[rec["id"]][0] == "kept"
    src = write(tmp_path / "t.jsonl", [rec])
    stats = clean([src], tmp_path / "t_out.jsonl", recipe=recipe, options=CleanOptions(length_tolerance=0.0))
    assert stats.rejected == {"too_long": 1}


def test_without_a_recipe_defaults_apply(tmp_path: Path) -> None:
    recs = [record("祝你生日快乐，天天开心"), record("当前祝福语如下"), record("x")]
    src = write(tmp_path / "in.jsonl", recs)
    stats = clean([src], tmp_path / "out.jsonl")
    assert stats.kept == 1
    assert stats.rejected == {"meta_text": 1, "too_short": 1}


def _recipe_with_clean(path: Path, clean_block: dict, tmp_path: Path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["clean"] = clean_block
    return parse_recipe(data, tmp_path / "r.yaml")


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"disable": ["lenght"]}, "clean.disable[0]: unknown rule 'lenght'"),
        ({"rules": ["empty", "nope"]}, "clean.rules[1]: unknown rule 'nope'"),
        ({"regex": [{"name": "bad", "pattern": "(unclosed"}]}, "clean.regex[0].pattern: invalid regex"),
        ({"regex": [{"name": "x", "pattern": "a", "reason": "Not An Id"}]}, "clean.regex[0].reason"),
        ({"colour": 1}, "clean.colour"),
        ({"styles": {"诗意": {"emoji": [1, 2]}}}, "clean.styles.诗意: not a style of the recipe"),
        ({"styles": {"小红书": {"emoji": [3, 1]}}}, "clean.styles.小红书.emoji"),
    ],
)
def test_bad_clean_blocks_name_the_key(tmp_path: Path, wishes_recipe_path: Path, block, message) -> None:
    recipe = _recipe_with_clean(wishes_recipe_path, block, tmp_path)
    src = write(tmp_path / "in.jsonl", [record("祝你生日快乐")])
    with pytest.raises(RecipeError) as e:
        clean([src], tmp_path / "out.jsonl", recipe=recipe)
    assert message in str(e.value)
    assert "r.yaml" in str(e.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_regex_rules_polars_cannot_run_fall_back_to_regex(tmp_path: Path, wishes_recipe_path: Path) -> None:
    block = {"regex": [{"name": "lookahead", "pattern": "快乐(?=快乐)", "reason": "doubled"}]}
    recipe = _recipe_with_clean(wishes_recipe_path, block, tmp_path)
    recs = [record("祝你快乐快乐，天天开心"), record("祝你快乐，天天开心")]
    got = _reasons(tmp_path, recs, recipe)
    assert got[recs[0]["id"]][0] == "doubled"
    assert got[recs[1]["id"]][0] == "kept"


def test_disabled_rule_and_required_pattern(tmp_path: Path, wishes_recipe_path: Path) -> None:
    block = {"disable": ["meta_text"], "regex": [{"name": "must_wish", "pattern": "祝|愿", "require": True}]}
    recipe = _recipe_with_clean(wishes_recipe_path, block, tmp_path)
    recs = [record("当前祝福语如下：祝你快乐"), record("以下是文案啦啦"), record("天天开心每一天")]
    got = _reasons(tmp_path, recs, recipe)
    assert got[recs[0]["id"]] == ("kept", "祝你快乐")
    assert got[recs[1]["id"]][0] == "regex"  # meta_text is off; it has no 祝/愿
    assert got[recs[2]["id"]][0] == "regex"


def test_judge_one_record(recipe) -> None:
    assert judge(record("！啦~祝姐姐生日快乐，天天开心！"), recipe=recipe) is None
    assert judge(record("当前祝福语如下"), recipe=recipe) == ("meta_text", "contains 当前祝福语如下")
    reason, detail = judge(record("祝你生日快乐！🎉🎉🎉🎉", style="小红书"), recipe=recipe)
    assert reason == "emoji_count" and "4 emoji" in detail
