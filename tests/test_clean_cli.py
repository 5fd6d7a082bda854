"""`zaoshu clean` flags: bad values are one-line errors naming the flag; the shared flags all reach the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clean_builders import record, write
from typer.testing import CliRunner

from zaoshu.cli import app


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--near-dup-threshold", "5"),
        ("--near-dup-threshold", "0"),
        ("--length-tolerance", "-1"),
        ("--lsh-threshold", "1"),
        ("--num-perm", "3"),
        ("--ngram", "0"),
        ("--workers", "0"),
    ],
)
def test_bad_option_values_name_their_flag(tmp_path: Path, flag: str, value: str) -> None:
    src = write(tmp_path / "raw.jsonl", [record("祝姐姐生日快乐，万事如意！")])
    out = tmp_path / "o.jsonl"
    result = CliRunner().invoke(app, ["clean", str(src), "-o", str(out), flag, value])
    assert result.exit_code != 0
    assert f"error: {flag}:" in result.output, result.output
    assert "Traceback" not in result.output and "ValidationError" not in result.output
    assert not out.exists() and not out.with_name("o.rejects.jsonl").exists()


def test_a_tolerance_in_range_still_applies(tmp_path: Path) -> None:
    # 正常 allows 17 characters; 21 of them pass only with a tolerance of at least 0.24
    text = "祝姐姐生日快乐万事如意心想事成前程似锦岁岁"
    src = write(tmp_path / "raw.jsonl", [record(text)])
    runner = CliRunner()
    recipe = str(Path(__file__).resolve().parent.parent / "prompts" / "wishes.yaml")
    for tolerance, kept in (("0", 0), ("0.5", 1)):
        out = tmp_path / f"o{tolerance}.jsonl"
        args = ["clean", str(src), "-o", str(out), "--recipe", recipe, "--length-tolerance", tolerance]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert len(out.read_bytes().splitlines()) == kept
        report = json.loads((tmp_path / f"o{tolerance}.report" / "report.json").read_text())
        assert report["settings"]["length_tolerance"] == float(tolerance)
