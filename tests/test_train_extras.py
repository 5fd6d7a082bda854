"""`zaoshu train` and `zaoshu chat` on a bare install (no train extra): one clear error naming the install
command, quoted for zsh, and a non-zero exit. Runs without the extra: nothing here imports torch or xtuner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zaoshu.cli import app

HINT = 'pip install -e ".[train]"'


def _model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}', encoding="utf-8")
    return model


def test_train_without_xtuner_names_the_quoted_install_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "xtuner", None)  # what find_spec and import see when it is missing
    data = tmp_path / "data.jsonl"
    data.write_text("", encoding="utf-8")
    work = tmp_path / "w"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(data),
            "--model",
            str(_model_dir(tmp_path)),
            "--method",
            "lora",
            "--work-dir",
            str(work),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "XTuner is not installed" in result.output and HINT in result.output
    assert "Traceback" not in result.output and not work.exists()


@pytest.mark.parametrize("absent", ["torch", "transformers"])
def test_chat_without_the_train_extra_names_the_install_command(
    tmp_path: Path, monkeypatch, absent: str
) -> None:
    monkeypatch.setitem(sys.modules, absent, None)
    result = CliRunner().invoke(app, ["chat", str(_model_dir(tmp_path)), "--prompt", "祝姐姐生日快乐"])
    assert result.exit_code == 2, result.output
    assert f"zaoshu chat needs {absent} (not installed)" in result.output and HINT in result.output
    assert "Traceback" not in result.output


def test_chat_with_an_adapter_needs_peft(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)
    adapter = tmp_path / "hf"
    adapter.mkdir()
    result = CliRunner().invoke(
        app, ["chat", str(_model_dir(tmp_path)), "--adapter", str(adapter), "--prompt", "祝姐姐生日快乐"]
    )
    assert result.exit_code == 2, result.output
    assert "needs peft (not installed)" in result.output and HINT in result.output
