"""Recipes are validated whole before any request; each mistake gets a message naming file and key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.errors import RecipeError
from zaoshu.recipes import load_recipe

BASE = {
    "name": "mini",
    "system": "你是送祝福大师",
    "axes": {"recipient": ["姐姐", {"name": "爷爷", "tone": "尊敬"}], "scene": ["生日", "春节"]},
    "exclude": [{"recipient": "爷爷", "scene": "生日"}],
    "styles": {
        "正常": {
            "instruction": "有礼貌",
            "max_chars": 20,
            "user_templates": ["祝{{ recipient }}{{ scene }}"],
        },
        "小红书": {
            "instruction": "参考：{{ example }}",
            "examples": ["愿所念之人平安喜乐"],
            "max_chars": 50,
            "user_templates": ["祝{{ recipient }}{{ scene }}，{{ style }}风格"],
        },
    },
    "injections": ["", "不用出现“祝你”"],
    "prompt": "字数小于{{ max_chars }}。风格：{{ instruction }}。对象：{{ recipient }}，场景：{{ scene }}。{{ injection }}",
}


def write(tmp_path: Path, data: dict, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def mutate(**changes) -> dict:
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = data
        for k in keys[:-1]:
            node = node[k]
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return data


def test_base_recipe_loads(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE))
    assert [str(v) for v in recipe.values["recipient"]] == ["姐姐", "爷爷"]
    assert recipe.values["recipient"][1].tone == "尊敬"


CATALOG = [
    ("empty axis", mutate(axes__scene=[]), "axes.scene: axis has no values"),
    ("duplicate value", mutate(axes__scene=["生日", "生日"]), "axes.scene[1]: duplicate value '生日'"),
    (
        "trailing space",
        mutate(axes__scene=["生日", "工作升职 "]),
        "axes.scene[1]: value '工作升职 ' has leading",
    ),
    ("unknown exclude axis", mutate(exclude=[{"city": "北京"}]), "exclude[0].city: unknown axis"),
    ("unknown exclude value", mutate(exclude=[{"scene": "七夕"}]), "exclude[0].scene: '七夕' is not a value"),
    (
        "style without templates",
        mutate(styles__正常__user_templates=[]),
        "styles.正常.user_templates: a style needs",
    ),
    (
        "unknown template variable",
        mutate(prompt="给{{ recipent }}写"),
        "prompt: unknown template variable(s) recipent",
    ),
    (
        "unknown variable in user turn",
        mutate(styles__正常__user_templates=["祝{{ name }}"]),
        "styles.正常.user_templates[0]: unknown",
    ),
    ("template syntax", mutate(prompt="{{ recipient "), "prompt: template syntax error"),
    (
        "missing few-shot file",
        mutate(styles__小红书__examples={"file": "nope.txt"}),
        "styles.小红书.examples: file 'nope.txt' not found",
    ),
    (
        "missing axis file",
        mutate(axes__scene={"file": "scenes.txt"}),
        "axes.scene: file 'scenes.txt' not found",
    ),
    ("wrong type", mutate(rounds="two"), "rounds: Input should be a valid integer"),
    ("unknown key", mutate(temperature=1), "temperature: Extra inputs are not permitted"),
    ("missing prompt", mutate(prompt=KeyError), "prompt: Field required"),
    ("reserved axis", mutate(axes__style=["a"]), "axes.style: 'style' is a reserved"),
    (
        "attribute a value lacks",
        mutate(prompt="{{ recipient.tone }}"),
        "axes.recipient[0]: value '姐姐' has no attribute 'tone', which prompt uses",
    ),
    ("too many examples", mutate(styles__小红书__n_examples=3), "asks for 3 examples but the pool has 1"),
]


@pytest.mark.parametrize(("case", "data", "expected"), CATALOG, ids=[c[0] for c in CATALOG])
def test_bad_recipe_catalog(tmp_path, case, data, expected):
    path = write(tmp_path, data)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value), str(info.value)


def test_cli_reports_a_bad_recipe_without_traceback(tmp_path):
    path = write(tmp_path, mutate(axes__scene=["生日", "工作升职 "]))
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert "error:" in result.output and "工作升职" in result.output and "Traceback" not in result.output


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\naxes:\n  a: [1, 2\nstyles: {}\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"broken.yaml:\d+: not valid YAML"):
        load_recipe(path)


def test_axis_from_file_and_table_column(tmp_path):
    (tmp_path / "scenes.txt").write_text("生日\n\n春节\n", encoding="utf-8")
    (tmp_path / "q.csv").write_text("instruction,x\n你是谁,1\n一个人吃饭算不算聚餐,2\n", encoding="utf-8")
    data = mutate(axes__scene={"file": "scenes.txt"})
    data["axes"]["question"] = {"file": "q.csv", "column": "instruction"}
    recipe = load_recipe(write(tmp_path, data))
    assert recipe.values["scene"] == ["生日", "春节"]
    assert recipe.values["question"] == ["你是谁", "一个人吃饭算不算聚餐"]
    bad = copy.deepcopy(data)
    bad["axes"]["question"]["column"] = "output"
    with pytest.raises(
        RecipeError, match=r"axes.question: column 'output' not in q.csv \(columns: instruction, x\)"
    ):
        load_recipe(write(tmp_path, bad, "bad.yaml"))


@pytest.mark.parametrize("name", ["wishes", "self_cognition", "from_seed_questions"])
def test_shipped_recipes_load(name):
    recipe = load_recipe(Path(__file__).parent.parent / "prompts" / f"{name}.yaml")
    assert recipe.name == name and recipe.styles


def test_wishes_recipe_is_seed_002(wishes_recipe_path):
    recipe = load_recipe(wishes_recipe_path)
    assert len(recipe.values["recipient"]) == 28 and len(recipe.values["scene"]) == 18
    assert "工作升职" in recipe.values["scene"]
    assert {k: s.max_chars for k, s in recipe.styles.items()} == {"小红书": 50, "正常": 20, "严肃": 100}
    assert recipe.model.temperature == 1.0
    assert "祝姐姐生日快乐，严肃风格" in recipe.eval_inputs


def test_attribute_every_value_has_is_fine_and_renders(tmp_path):
    from zaoshu.generator.plan import plan

    data = mutate(prompt="{{ recipient.tone }}:{{ recipient }}:{{ scene.strip() }}")
    data["axes"]["recipient"] = [{"name": "姐姐", "tone": "亲近"}, {"name": "爷爷", "tone": "尊敬"}]
    prompts = {t.prompt for t in plan(load_recipe(write(tmp_path, data))).tasks}
    assert "亲近:姐姐:春节" in prompts and "尊敬:爷爷:春节" in prompts


def test_a_template_that_fails_at_render_time_is_a_recipe_error(tmp_path):
    from zaoshu.generator.plan import plan

    recipe = load_recipe(write(tmp_path, mutate(prompt="{{ recipient[3:][5] }}")))
    with pytest.raises(RecipeError, match=r"r\.yaml: prompt: template failed for axes \{'recipient': '姐姐'"):
        plan(recipe)
