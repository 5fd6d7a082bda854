"""Plans are deterministic: the same recipe and seed give the same tasks, prompts and user turns."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.generator.plan import plan
from zaoshu.recipes import is_excluded, load_recipe


def snapshot(tasks):
    return [(t.id, t.axes, t.round, t.user, t.prompt, t.request) for t in tasks]


def test_same_seed_same_tasks_across_processes(wishes_recipe_path):
    """Ids and every random pick are the same in a fresh interpreter (no hash randomization leaks)."""
    here = plan(load_recipe(wishes_recipe_path), rounds=2)
    code = (
        "import json,sys; from zaoshu.recipes import load_recipe; from zaoshu.generator.plan import plan;"
        f"p = plan(load_recipe({str(wishes_recipe_path)!r}), rounds=2);"
        "json.dump([[t.id, t.user, t.prompt] for t in p.tasks], sys.stdout, ensure_ascii=False)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    ).stdout
    import json

    assert json.loads(out) == [[t.id, t.user, t.prompt] for t in here.tasks]


def test_seed_changes_ids_and_picks(wishes_recipe_path):
    recipe = load_recipe(wishes_recipe_path)
    a, b = plan(recipe, seed=0), plan(recipe, seed=1)
    assert len(a.tasks) == len(b.tasks)
    assert not {t.id for t in a.tasks} & {t.id for t in b.tasks}
    assert [t.prompt for t in a.tasks] != [t.prompt for t in b.tasks]


def test_counts_exclusions_and_ids_unique(wishes_recipe_path):
    recipe = load_recipe(wishes_recipe_path)
    p = plan(recipe, rounds=2)
    assert p.total_cells == 2 * 3 * 28 * 18
    assert len(p.tasks) + p.excluded == p.total_cells
    assert len({t.id for t in p.tasks}) == len(p.tasks)
    assert not any(t.axes["recipient"] == "爷爷" and t.axes["scene"] == "七夕节" for t in p.tasks)
    assert is_excluded(recipe, {"recipient": "爷爷", "scene": "七夕节", "style": "正常"})
    assert not is_excluded(recipe, {"recipient": "姐姐", "scene": "七夕节", "style": "正常"})
    assert p.by_style() == {"小红书": len(p.tasks) // 3, "正常": len(p.tasks) // 3, "严肃": len(p.tasks) // 3}


def test_prompt_and_user_turn(wishes_recipe_path):
    """The user turn imitates a person; the prompt carries the limit, style and the few-shot example."""
    recipe = load_recipe(wishes_recipe_path)
    tasks = plan(recipe).tasks
    normal = next(t for t in tasks if t.axes == {"recipient": "姐姐", "scene": "生日", "style": "正常"})
    assert normal.user == "祝姐姐生日"
    assert "字数小于 20 字" in normal.prompt and "对象称谓是：姐姐，祝福场景是：生日" in normal.prompt
    assert normal.request[0]["role"] == "system" and normal.request[1]["content"] == normal.prompt
    xhs = [t for t in tasks if t.axes["style"] == "小红书"]
    assert all(t.user.endswith("小红书风格") for t in xhs)
    pool = recipe.examples["小红书"]
    assert all(any(ex in t.prompt for ex in pool) for t in xhs)
    # random picks really vary across tasks (examples and injections)
    assert len({next(ex for ex in pool if ex in t.prompt) for t in xhs}) == len(pool)
    assert len({inj for t in tasks for inj in recipe.injections[1:] if inj in t.prompt}) == 3


def test_limit_is_a_stable_spread_sample(wishes_recipe_path):
    recipe = load_recipe(wishes_recipe_path)
    full = plan(recipe)
    small = plan(recipe, limit=30)
    assert snapshot(small.tasks) == snapshot(plan(recipe, limit=30).tasks)
    assert {t.id for t in small.tasks} <= {t.id for t in full.tasks}
    assert len({t.axes["recipient"] for t in small.tasks}) > 10
    assert len({t.axes["style"] for t in small.tasks}) == 3


def test_record_from_task_follows_design(wishes_recipe_path):
    task = plan(load_recipe(wishes_recipe_path), limit=1).tasks[0]
    record = task.to_record("岁岁平安", {"provider": "local", "model": "m"})
    assert record["id"] == task.id and record["recipe"] == "wishes"
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    assert record["messages"][1]["content"] == task.user != task.prompt
    assert record["meta"]["prompt"] == task.prompt and record["meta"]["created_at"].endswith("Z")


def test_plan_command_shows_prompts(wishes_recipe_path):
    result = CliRunner().invoke(app, ["plan", str(wishes_recipe_path), "--limit", "5", "--show", "2"])
    assert result.exit_code == 0, result.output
    assert "5 tasks" in result.output and result.output.count("prompt:") == 2


def test_plan_command_prints_recipe_text_verbatim_not_as_markup(tmp_path):
    """Prompts are user text: `[/x]` must not raise a MarkupError, `[name]` must not vanish as a tag."""
    recipe = tmp_path / "brackets.yaml"
    recipe.write_text(
        "name: brackets\n"
        "axes:\n  who: ['[a]', 'b[/x]']\n"
        "styles:\n  '[n]':\n    user_templates: ['[name] {{ who }}']\n"
        "prompt: '写 [/x] 和 [name] {{ who }} [bold]粗[/bold]'\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["plan", str(recipe), "--show", "2"])
    assert result.exit_code == 0, result.output
    assert "写 [/x] 和 [name] b[/x] [bold]粗[/bold]" in result.output
    assert "写 [/x] 和 [name] [a] [bold]粗[/bold]" in result.output
    assert "user: [name] [a]" in result.output and "[n]" in result.output


@pytest.mark.parametrize(
    "flags", [["--limit", "-1"], ["--limit", "0"], ["--rounds", "0"], ["--rounds", "-2"], ["--show", "-1"]]
)
def test_plan_command_rejects_out_of_range_numbers(wishes_recipe_path, flags):
    result = CliRunner().invoke(app, ["plan", str(wishes_recipe_path), *flags])
    assert (result.exit_code == 2 and result.exception is None) or isinstance(result.exception, SystemExit)
    assert "Invalid value for" in result.output and flags[0] in result.output
    assert "Traceback" not in result.output and "tasks" not in result.output


@pytest.mark.parametrize("flags", [["--limit", "0"], ["--limit", "-1"], ["--rounds", "0"]])
def test_generate_command_rejects_out_of_range_numbers(wishes_recipe_path, tmp_path, flags):
    out = tmp_path / "raw.jsonl"
    args = ["generate", str(wishes_recipe_path), "-o", str(out), "--provider", "local", *flags]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert f"error: {flags[0]}: Input should be greater than or equal to 1" in result.output
    assert not out.exists()
