"""`zaoshu run --provider embedded` with the real model: llama.cpp serving the packaged Qwen2.5-Coder-1.5B.

Runs only where the `local` extra is installed (llama-cpp-python[server] and the 22 model parts, or an
already joined model in the cache); 2 tasks with short replies keep it to well under a minute on 2 cores.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson
import psutil
import pytest
import yaml
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.generator.embedded import PACKAGED_MODEL, cache_dir

ROOT = Path(__file__).resolve().parent.parent


def _why_not() -> str | None:
    missing = [
        m for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette") if not importlib.util.find_spec(m)
    ]
    if missing:
        return f'llama-cpp-python[server] is not installed ({", ".join(missing)}); pip install -e ".[local]"'
    joined = (cache_dir() / f"{PACKAGED_MODEL.name}.gguf.sha256").is_file()
    absent = [p.package for p in PACKAGED_MODEL.parts if not importlib.util.find_spec(p.module)]
    if absent and not joined:
        return f'the embedded model parts are not installed ({absent[0]}...); pip install -e ".[local]"'
    return None


pytestmark = [
    pytest.mark.embedded,
    pytest.mark.slow,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]


def llama_servers() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "llama_cpp.server" in " ".join(p.cmdline() if p.is_running() else [])
    ]


def test_run_with_the_embedded_model(tmp_path):
    # The wishes recipe with short replies, so a rambling reply costs seconds, not minutes.
    recipe = yaml.safe_load((ROOT / "prompts" / "wishes.yaml").read_text(encoding="utf-8"))
    recipe["model"]["max_tokens"] = 40
    path = tmp_path / "wishes.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "out"

    args = ["run", str(path), "-o", str(out), "--provider", "embedded", "--limit", "2", "--quiet"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert llama_servers() == []  # the server was stopped

    raw = [orjson.loads(line) for line in (out / "raw.jsonl").read_bytes().splitlines()]
    assert len(raw) == 2
    for record in raw:
        assert record["meta"]["provider"] == "embedded"
        assert record["meta"]["model"] == PACKAGED_MODEL.name
        assert record["meta"]["usage"]["completion_tokens"] > 0
        assert record["messages"][-1]["content"].strip()  # a 1.5B model's wish: any non-empty text
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["kept"] + sum(summary["rejected"].values()) == 2
    assert (out / "report" / "report.html").is_file()
    assert "cost: none" in result.output
