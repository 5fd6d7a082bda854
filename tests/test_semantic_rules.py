"""off_topic and wrong_recipient: keyword rules for wishes about another scene or addressed to someone else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from clean_builders import read, record, write

from zaoshu.cleaners import CleanOptions, clean
from zaoshu.errors import RecipeError
from zaoshu.recipes import load_recipe, parse_recipe
from zaoshu.testing.fakeserver import wish


@pytest.fixture
def recipe(wishes_recipe_path: Path):
    return load_recipe(wishes_recipe_path)


def _verdicts(tmp_path: Path, records: list[dict], recipe) -> dict[str, tuple[str, str | None]]:
    src = write(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    stats = clean([src], out, recipe=recipe, options=CleanOptions(near_dup=False))
    got: dict[str, tuple[str, str | None]] = {r["id"]: ("kept", None) for r in read(out)}
    for r in read(tmp_path / "out.rejects.jsonl"):
        got[r["id"]] = (r["reject"]["reason"], r["reject"]["detail"])
    assert stats.kept + stats.rejected_total == stats.read == len(records)
    return got


def test_the_birthday_wish_for_an_anniversary_is_off_topic(tmp_path: Path, recipe) -> None:
    r = record("表哥，祝你生日快乐，身体健康，万事如意！", recipient="表哥", scene="周年纪念")
    reason, detail = _verdicts(tmp_path, [r], recipe)[r["id"]]
    assert reason == "off_topic"
    assert "生日" in detail and "周年纪念" in detail  # both the other scene's word and what was wanted


# (text, recipient, scene, style, expected reason or "kept")
CATALOG = [
    # off_topic: another scene's word and none of its own
    ("新婚快乐，百年好合，早生贵子！", "同事", "乔迁新居", "正常", "off_topic"),
    ("期待着你和家人一起度蜜月，幸福美满！", "邻居", "乔迁新居", "正常", "off_topic"),
    ("中秋快乐，月圆人团圆！", "同学", "端午节", "正常", "off_topic"),
    ("祝你早日康复，身体健康！", "同事", "发财", "正常", "off_topic"),
    # kept: own word present, even beside another scene's (春节 wishes say 恭喜发财)
    ("新年快乐，恭喜发财，红包拿来！", "同学", "春节", "正常", "kept"),
    ("除夕夜守岁，新春快乐！", "哥哥", "春节", "正常", "kept"),
    ("结婚周年快乐，愿你们永远幸福！", "哥哥", "周年纪念", "正常", "kept"),
    ("乔迁之喜，新居大吉，祝你们家庭和和美美！", "邻居", "乔迁新居", "正常", "kept"),
    # kept: no scene named at all (the recipe's injections allow leaving it out)
    ("愿你平安喜乐，万事胜意！", "姐姐", "周年纪念", "正常", "kept"),
    # kept: words common to wishes of any scene are nobody's keyword
    ("除夕快乐，阖家团圆！", "哥哥", "春节", "正常", "kept"),
    ("愿您福寿安康，远离病痛！", "爷爷", "重阳节", "正常", "kept"),
    ("愿你安居乐业，荣华富贵！", "同事", "家庭和睦", "正常", "kept"),
    ("岁岁年年，幸福和美！", "同学", "中秋节", "正常", "kept"),
    # kept: a stock phrase holding another scene's word
    ("生日快乐，步步高升！", "同事", "生日", "正常", "kept"),
    ("愿你步步高升，前程似锦！", "同事", "腊八节", "正常", "kept"),
    # wrong_recipient: addresses another recipient, never its own
    ("姐姐，生日快乐！", "哥哥", "生日", "正常", "wrong_recipient"),
    ("祝妹妹生日快乐，越来越漂亮！", "弟弟", "生日", "正常", "wrong_recipient"),
    ("亲爱的奶奶，生日快乐！", "爷爷", "生日", "正常", "wrong_recipient"),
    ("祝大伯生日快乐！", "伯母", "生日", "正常", "wrong_recipient"),
    # kept: own name beside another (祝爷爷奶奶…), aliases (妈妈 for 母亲), names inside longer names
    ("祝爷爷奶奶身体健康，生日快乐！", "爷爷", "生日", "正常", "kept"),
    ("妈妈，生日快乐，您辛苦了！", "母亲", "生日", "正常", "kept"),
    ("老妈，新年快乐！", "母亲", "春节", "正常", "kept"),
    ("赵大妈，新年快乐！", "邻居赵大妈", "春节", "正常", "kept"),
    ("祝大伯母生日快乐！", "伯母", "生日", "正常", "kept"),
    ("堂哥，生日快乐！", "堂兄", "生日", "正常", "kept"),
    ("舅舅，春节快乐！", "大舅", "春节", "正常", "kept"),
    # impolite: 你 and no 您 to an elder or a superior in the serious style
    ("爷爷，祝你岁末平安，阖家欢乐。", "爷爷", "除夕", "严肃", "impolite"),
    ("尊敬的导师，祝你健康长寿，幸福快乐！", "导师", "重阳节", "严肃", "impolite"),
    ("爷爷，祝您岁末平安，阖家欢乐，福寿安康。", "爷爷", "除夕", "严肃", "kept"),
    ("姐姐，恭喜你乔迁新居，祝你喜气洋洋、幸福安康！", "姐姐", "乔迁新居", "严肃", "kept"),
    ("大伯，恭喜你这次谈判顺利成功。", "大伯", "谈判顺利", "正常", "kept"),
    # the style's label leaking into the reply
    ("小红书风格：希望你的妹妹在家庭中能和睦相处😊", "妹妹", "家庭和睦", "小红书", "meta_text"),
    # kept: another recipient named but not addressed
    ("愿你和同事们相处融洽，生日快乐！", "哥哥", "生日", "正常", "kept"),
    ("生日快乐！感谢你一直照顾同学们。", "导师", "生日", "正常", "kept"),
]


@pytest.mark.parametrize("text,recipient,scene,style,expected", CATALOG)
def test_keyword_catalog(tmp_path: Path, recipe, text, recipient, scene, style, expected) -> None:
    r = record(text, recipient=recipient, scene=scene, style=style)
    reason, detail = _verdicts(tmp_path, [r], recipe)[r["id"]]
    assert reason == expected, detail


def _recipe(tmp_path: Path, wishes_recipe_path: Path, axes: dict, clean_block: dict):
    data = yaml.safe_load(wishes_recipe_path.read_text(encoding="utf-8"))
    data["axes"] = axes
    data["exclude"] = []
    data["clean"] = clean_block
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return parse_recipe(data, path)


def test_li_zong_inside_li_zongjian(tmp_path: Path, wishes_recipe_path: Path) -> None:
    """With both 李总 and 李总监 as recipients, 李总监 is read whole, never as 李总."""
    recipe = _recipe(
        tmp_path,
        wishes_recipe_path,
        {"recipient": ["李总", "李总监"], "scene": ["生日"]},
        {"rules": ["wrong_recipient"]},
    )
    rows = [
        record("李总监，生日快乐！", recipient="李总监"),  # kept: its own name
        record("祝李总监生日快乐！", recipient="李总监"),  # kept
        record("李总监，生日快乐呀！", recipient="李总"),  # rejected: the other one
        record("李总，生日快乐呀！", recipient="李总监"),  # rejected
        record("李总，生日快乐！", recipient="李总"),  # kept
    ]
    got = _verdicts(tmp_path, rows, recipe)
    assert [got[r["id"]][0] for r in rows] == ["kept", "kept", "wrong_recipient", "wrong_recipient", "kept"]


def test_keywords_on_axis_values(tmp_path: Path, wishes_recipe_path: Path) -> None:
    """Axis values may carry their keywords; the value's own name always counts."""
    axes = {
        "recipient": ["哥哥"],
        "scene": [{"name": "周年纪念", "keywords": ["周年"]}, {"name": "生日", "keywords": ["寿辰"]}],
    }
    recipe = _recipe(tmp_path, wishes_recipe_path, axes, {"rules": ["off_topic"]})
    rows = [
        record("寿辰快乐！", scene="周年纪念"),
        record("生日快乐！", scene="周年纪念"),
        record("周年快乐！", scene="周年纪念"),
        record("周年快乐呀！", scene="生日"),
    ]
    got = _verdicts(tmp_path, rows, recipe)
    assert [got[r["id"]][0] for r in rows] == ["off_topic", "off_topic", "kept", "off_topic"]


@pytest.mark.parametrize(
    "block,message",
    [
        ({"keywords": {"mood": {"a": ["b"]}}}, "clean.keywords.mood: not an axis"),
        ({"keywords": {"scene": {"国庆": ["国庆"]}}}, "clean.keywords.scene.国庆: not a value"),
    ],
)
def test_bad_keywords_name_the_key(tmp_path: Path, wishes_recipe_path: Path, block, message) -> None:
    recipe = _recipe(tmp_path, wishes_recipe_path, {"recipient": ["哥哥"], "scene": ["生日"]}, block)
    with pytest.raises(RecipeError, match=message):
        _verdicts(tmp_path, [record("生日快乐！", recipient="哥哥")], recipe)


def test_no_false_rejects_on_the_fake_providers_wishes(tmp_path: Path, recipe) -> None:
    """Every recipient × scene the fake server writes a wish for: the new rules reject none of them."""
    rows = []
    for recipient in (str(v) for v in recipe.values["recipient"]):
        for scene in (str(v) for v in recipe.values["scene"]):
            prompt = f"对象称谓是：{recipient}，祝福场景是：{scene}。"
            rows.append(record(wish(prompt), recipient=recipient, scene=scene))
    got = _verdicts(tmp_path, rows, recipe)
    semantic = ("off_topic", "wrong_recipient")
    wrong = [(r["messages"][-1]["content"], got[r["id"]]) for r in rows if got[r["id"]][0] in semantic]
    assert wrong == []


def test_an_axis_of_many_values_is_judged_like_a_small_one(tmp_path: Path, wishes_recipe_path: Path) -> None:
    """A name axis has hundreds of values: wrong_recipient reads them all (no limit of 63 or 64)."""
    names = [f"王{chr(0x4E00 + i)}{chr(0x4E00 + i)}" for i in range(200)]
    recipe = _recipe(
        tmp_path, wishes_recipe_path, {"recipient": names, "scene": ["生日"]}, {"rules": ["wrong_recipient"]}
    )
    last, first = names[-1], names[0]
    rows = [
        record(f"{last}，生日快乐！", recipient=last),
        record(f"{first}，生日快乐！", recipient=last),  # another of the 200 by name
        record(f"祝{last}和{first}生日快乐！", recipient=last),  # its own name too: fine
    ]
    got = _verdicts(tmp_path, rows, recipe)
    assert [got[r["id"]][0] for r in rows] == ["kept", "wrong_recipient", "kept"]
    assert first in got[rows[1]["id"]][1] and last in got[rows[1]["id"]][1]
