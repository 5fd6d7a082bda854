"""Every command against a user who makes mistakes: no input destroyed, no traceback, a clear message, exit 2.

The walk runs each command in-process (typer's runner): an exception that escaped `user_errors` would be
the runner's `result.exception` instead of a SystemExit, which is what a traceback on a terminal would be.
Two subprocess runs check the terminal itself: no 'Traceback' in stderr, and `--debug` brings it back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from zaoshu.cli import app

NO_SERVER = "http://127.0.0.1:9/v1"  # nothing listens there: a command that sent a request would fail

RECIPE = {
    "name": "w",
    "system": "sys",
    "axes": {"who": ["A", "B"], "scene": ["X", "Y"]},
    "styles": {"s": {"user_templates": ["祝{{ who }}{{ scene }}"]}},
    "prompt": "{{ who }} {{ scene }}",
    "seed": 0,
}


def write_recipe(path: Path, **changes: object) -> Path:
    path.write_text(yaml.safe_dump({**RECIPE, **changes}, allow_unicode=True), encoding="utf-8")
    return path


def write_records(path: Path, n: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {
            "id": f"id{i}",
            "recipe": "w",
            "axes": {"style": "s"},
            "messages": [
                {"role": "user", "content": f"问{i}"},
                {"role": "assistant", "content": f"答复第{i}条"},
            ],
            "meta": {"k": i},
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    return path


def invoke(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(app, list(args), env=env)
    # an exception other than SystemExit is what reaches a terminal as a Python traceback
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception,
        result.output,
    )
    return result


def gen(recipe: Path, out: str | Path, *extra: str) -> list[str]:
    base = ["--provider", "local", "--model", "m", "--base-url", NO_SERVER, "-q"]
    return ["generate", str(recipe), "-o", str(out), *base, *extra]


def run(recipe: Path, out: str | Path) -> list[str]:
    return [
        "run",
        str(recipe),
        "-o",
        str(out),
        "--provider",
        "local",
        "--model",
        "m",
        "--base-url",
        NO_SERVER,
    ]


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_recipe(tmp_path / "w.yaml")
    write_records(tmp_path / "in.jsonl")
    write_records(tmp_path / "in2.jsonl", 10)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    return tmp_path


def read_only_place(tmp_path: Path) -> str:
    """A folder nobody can write in; root writes anywhere but in /sys."""
    if os.geteuid() == 0:
        return "/sys/zaoshu-test-ro"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return str(ro)


def commands(file_out: str, dir_out: str, recipe: Path) -> dict[str, list[str]]:
    return {
        "generate": gen(recipe, file_out),
        "run": run(recipe, dir_out),
        "clean": ["clean", "in.jsonl", "-o", file_out, "--no-near-dup"],
        "convert": ["convert", "in.jsonl", "-o", file_out, "--to", "openai"],
        "split": ["split", "in2.jsonl", "-o", dir_out],
        "merge": ["merge", "in.jsonl", "-o", file_out],
        "publish --out": ["publish", "in.jsonl", "--repo", "a/b", "--out", dir_out],
    }


@pytest.mark.parametrize("where", ["read-only place", "parent is a file", "output is the wrong kind"])
def test_every_command_says_clearly_that_it_cannot_write(place: Path, where: str) -> None:
    if where == "read-only place":
        ro = read_only_place(place)
        file_out, dir_out, expected = f"{ro}/o.jsonl", f"{ro}/d", "cannot"
    elif where == "parent is a file":
        file_out, dir_out, expected = "afile/o.jsonl", "afile/d", "a file is in the way"
    else:  # a file output given a folder, a folder output given a file
        file_out, dir_out, expected = "adir", "afile", "expected a"
    for name, args in commands(file_out, dir_out, place / "w.yaml").items():
        result = invoke(*args)
        assert result.exit_code == 2, (name, result.output)
        assert "error:" in result.output and expected in result.output, (name, result.output)
        assert Path("afile").read_text() == "x"


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(place: Path) -> None:
    recipe_text = Path("w.yaml").read_text()
    before = Path("in.jsonl").read_bytes()
    write_records(place / "sp" / "train.jsonl", 10)
    Path("notes.txt").write_text("a\nb\nc")
    cases = {
        "generate -o the recipe": gen(place / "w.yaml", "w.yaml"),
        "generate -o a notes file": gen(place / "w.yaml", "notes.txt"),
        "merge into an input": ["merge", "in.jsonl", "in2.jsonl", "-o", "in.jsonl"],
        "convert onto itself": ["convert", "in.jsonl", "-o", "./sub/../in.jsonl", "--to", "openai"],
        "clean -o the recipe": ["clean", "in.jsonl", "-o", "w.yaml", "--recipe", "w.yaml"],
        "clean -o inside the input folder": ["clean", "sp", "-o", "sp/clean.jsonl"],
        "split into the input's folder": ["split", "sp/train.jsonl", "-o", "sp"],
    }
    Path("sub").mkdir()
    for name, args in cases.items():
        result = invoke(*args)
        assert result.exit_code == 2, (name, result.output)
        assert "error:" in result.output, (name, result.output)
    assert Path("w.yaml").read_text() == recipe_text
    assert Path("notes.txt").read_text() == "a\nb\nc"
    assert Path("in.jsonl").read_bytes() == before
    assert len(Path("sp/train.jsonl").read_text().splitlines()) == 10
    assert not Path("sp/clean.jsonl").exists()


def test_data_commands_replace_only_data_files(place: Path) -> None:
    """`-o notes.txt` of clean, convert, merge or split leaves notes.txt alone; an earlier output is replaced."""
    Path("notes.txt").write_text("a\nb\nc")
    Path("out").mkdir()
    Path("out/train.jsonl").write_text("my notes\n")
    for args in (
        ["clean", "in.jsonl", "-o", "notes.txt"],
        ["convert", "in.jsonl", "-o", "notes.txt", "--to", "openai"],
        ["merge", "in.jsonl", "in2.jsonl", "-o", "notes.txt"],
        ["split", "in.jsonl", "-o", "out"],
    ):
        result = invoke(*args)
        assert result.exit_code == 2 and "not a JSON Lines or JSON data file" in result.output, (
            args,
            result.output,
        )
    assert Path("notes.txt").read_text() == "a\nb\nc"
    assert Path("out/train.jsonl").read_text() == "my notes\n"
    assert not Path("out/test.jsonl").exists()
    for _ in range(2):  # a second run replaces what the first wrote
        result = invoke("convert", "in.jsonl", "-o", "conv.json", "--to", "xtuner")
        assert result.exit_code == 0, result.output


def test_generate_appends_to_a_torn_record_file_but_not_to_another_file(place: Path) -> None:
    torn = place / "torn.jsonl"
    write_records(torn, 2)
    torn.write_bytes(torn.read_bytes() + b'{"id": "x", "mess')
    before = torn.read_bytes()
    result = invoke(*gen(place / "w.yaml", torn, "--dry-run"))  # a record file with a torn line: accepted
    assert result.exit_code == 0, result.output
    assert "would send 4 requests (0 already done)" in result.output.replace("\n", " ")
    assert torn.read_bytes() == before  # a dry run changes nothing
    yaml_like = place / "r.jsonl"
    yaml_like.write_text('{"id": "a", "messages": []}\n')  # JSON, but not a record
    result = invoke(*gen(place / "w.yaml", yaml_like))
    assert result.exit_code == 2 and "not a record JSONL" in result.output
    assert yaml_like.read_text() == '{"id": "a", "messages": []}\n'


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 1/0 }}", "ZeroDivisionError"),
        ("{{ scene + 1 }}", "TypeError"),
        ("{% for i in range(100000000) %}x{% endfor %}", "loop items"),
        ("{% for i in range(90000) %}{% for j in range(90000) %}{% endfor %}{% endfor %}", "loop items"),
        (
            "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
            "calls|longer than 2 s",
        ),
        ("{{ 'a' * 100000000 }}", "characters"),
        ("{{ 9 ** 99999999 }}", "exponent"),
        ("{{ scene.__class__.__mro__ }}", "unsafe"),
    ],
)
def test_a_template_failing_at_render_time_names_the_file_and_key(
    place: Path, template: str, expected: str
) -> None:
    recipe = write_recipe(place / "t.yaml", prompt=template)
    for args in (["plan", str(recipe)], gen(recipe, "t.jsonl")):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "t.yaml" in result.output and "prompt:" in result.output
        assert any(e in result.output for e in expected.split("|")), result.output
    assert not Path("t.jsonl").exists()


def test_a_long_rendered_prompt_is_refused(place: Path) -> None:
    recipe = write_recipe(
        place / "t.yaml", prompt="{% for i in range(99999) %}{{ scene }}{{ who }}xx{% endfor %}"
    )
    result = invoke("plan", str(recipe))
    assert result.exit_code == 2 and "longer than" in result.output


def test_key_in_env_and_credentials_in_the_base_url(place: Path) -> None:
    args = gen(place / "w.yaml", "k.jsonl", "--key-env", "ZAOSHU_TEST_KEY")
    args[args.index(NO_SERVER)] = "http://user:pw-secret@127.0.0.1:9/v1"
    result = invoke(*args, env={"ZAOSHU_TEST_KEY": "sk-test-123456"})
    assert result.exit_code == 2 and "carries credentials" in result.output
    assert "pw-secret" not in result.output and "sk-test-123456" not in result.output


@pytest.mark.parametrize("url", ["127.0.0.1:8000/v1", "ftp://host/v1", "http://host:port/v1"])
def test_a_malformed_base_url_is_an_error_before_any_request(place: Path, url: str) -> None:
    args = gen(place / "w.yaml", "b.jsonl")
    args[args.index(NO_SERVER)] = url
    result = invoke(*args)
    assert result.exit_code == 2 and "--base-url" in result.output
    assert not Path("b.jsonl").exists()


def test_publish_to_an_unreachable_hub(place: Path) -> None:
    pytest.importorskip("huggingface_hub")
    pytest.importorskip("pyarrow")
    result = invoke(
        "publish", "in.jsonl", "--repo", "a/b", env={"HF_ENDPOINT": "http://127.0.0.1:1", "HF_TOKEN": "hf_x"}
    )
    assert result.exit_code == 2 and "cannot reach the Hub" in result.output


def test_plan_checks_the_clean_block(place: Path) -> None:
    recipe = write_recipe(place / "c.yaml", clean={"no_such_rule": 1})
    result = invoke("plan", str(recipe))
    assert result.exit_code == 2 and "clean.no_such_rule" in result.output


def test_example_without_examples_is_a_load_error(place: Path) -> None:
    recipe = write_recipe(place / "e.yaml", prompt="{{ who }} {{ example }}")
    result = invoke("plan", str(recipe))
    assert result.exit_code == 2 and "styles.s.examples" in result.output
    styles = {"s": {"user_templates": ["x"], "examples": ["e1", "e2"], "n_examples": 5}}
    result = invoke("plan", str(write_recipe(place / "n.yaml", styles=styles)))
    assert result.exit_code == 2 and "styles.s.n_examples" in result.output


def test_file_axes_outside_the_recipe_folder_need_a_flag(place: Path) -> None:
    (place / "sub").mkdir()
    (place / "values.txt").write_text("P\nQ\n")
    axes = {"who": {"file": "../values.txt"}, "scene": ["X"]}
    recipe = write_recipe(place / "sub" / "f.yaml", axes=axes)
    result = invoke("plan", str(recipe))
    assert result.exit_code == 2 and "outside the recipe's folder" in result.output
    assert invoke("plan", str(recipe), "--allow-outside-files").exit_code == 0
    absolute = write_recipe(place / "a.yaml", axes={"who": {"file": "/etc/hostname"}, "scene": ["X"]})
    assert invoke("plan", str(absolute)).exit_code == 2
    inside = write_recipe(place / "i.yaml", axes={"who": {"file": "values.txt"}, "scene": ["X"]})
    assert invoke("plan", str(inside)).exit_code == 0


def test_version() -> None:
    from zaoshu import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"zaoshu {__version__}"


def _zaoshu(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from zaoshu.cli import main; sys.argv[0] = 'zaoshu'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_no_traceback_on_a_terminal_unless_debug(place: Path) -> None:
    recipe = write_recipe(place / "t.yaml", prompt="{{ scene + 1 }}")
    plain = _zaoshu("plan", str(recipe), cwd=place)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "t.yaml: prompt:" in plain.stderr
    plain = _zaoshu("convert", "in.jsonl", "-o", "afile/x.jsonl", "--to", "openai", cwd=place)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and "afile" in plain.stderr
    debug = _zaoshu("--debug", "plan", str(recipe), cwd=place)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_the_resume_hint_masks_a_key_and_stays_a_valid_command() -> None:
    import shlex

    from zaoshu.generator.providers import safe_command

    line = shlex.join(["zaoshu", "generate", "r.yaml", "--base-url", "http://u:pw1234@h/v1?api_key=K1234"])
    masked = safe_command(line)
    words = shlex.split(masked)  # an unclosed quote would raise here
    assert words[-1] == "http://***@h/v1?api_key=***" and "K1234" not in masked and "pw1234" not in masked


def test_the_merge_note_counts_the_rows_read(place: Path) -> None:
    write_records(place / "m1.jsonl", 10)
    write_records(place / "m2.jsonl", 5)  # the same ids: duplicates
    result = invoke("merge", "m1.jsonl", "m2.jsonl", "-o", "merged.jsonl", "--to", "openai")
    assert result.exit_code == 0, result.output
    assert "id (15 of 15 records read)" in " ".join(result.output.split())


def test_a_stratified_split_far_from_the_asked_share_says_so(place: Path) -> None:
    lines = []
    for i in range(22):
        record = {"id": f"s{i}", "axes": {"style": f"v{i % 11}"}, "messages": []}
        record["messages"] = [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
        lines.append(json.dumps(record))
    Path("strat.jsonl").write_text("\n".join(lines) + "\n")
    result = invoke("split", "strat.jsonl", "-o", "parts", "--stratify", "style", "--test", "0.1")
    assert result.exit_code == 0, result.output
    assert "test holds 50% of the records (11 of 22) where 10% was asked" in " ".join(result.output.split())


def test_the_card_of_a_limited_run_says_how_much_was_generated(place: Path) -> None:
    pytest.importorskip("pyarrow")
    Path("raw.stats.json").write_text(json.dumps({"tasks": 2, "model": "m"}))
    result = invoke("publish", "in.jsonl", "--repo", "a/b", "--out", "pub", "--recipe", "w.yaml")
    assert result.exit_code == 0, result.output
    card = " ".join(Path("pub/README.md").read_text(encoding="utf-8").split())
    assert "A seeded sample of 2 of the 4 tasks this recipe plans was generated" in card
    assert "Every combination of the axes below was generated" not in card


def test_a_review_beside_the_data_does_not_hide_an_output_that_is_the_input(place: Path) -> None:
    write_records(place / "sp" / "train.jsonl", 10)
    (place / "sp" / "review.jsonl").write_text(json.dumps({"id": "id1", "action": "reject"}) + "\n")
    before = Path("sp/train.jsonl").read_bytes()
    for args in (
        ["convert", "sp/train.jsonl", "-o", "sp/train.jsonl", "--to", "openai"],
        ["split", "sp/train.jsonl", "-o", "sp"],
    ):
        result = invoke(*args)
        assert result.exit_code == 2 and "also an input" in result.output, result.output
    assert Path("sp/train.jsonl").read_bytes() == before
