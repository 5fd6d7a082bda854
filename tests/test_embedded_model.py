"""`zaoshu run --provider embedded` with the real model: llama.cpp serving the packaged Qwen2.5-Coder-1.5B.

Runs only where the `local` extra is installed (llama-cpp-python[server] and the 22 model parts, or an
already joined model in the cache); a tiny recipe, 2 tasks and short replies keep it to well under a minute
on 2 cores. CI sets ZAOSHU_REQUIRE_EMBEDDED=1: there a missing local extra fails the test instead of
skipping it, so the embedded path can never again go untested unnoticed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import orjson
import psutil
import pytest
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


REQUIRED = os.environ.get("ZAOSHU_REQUIRE_EMBEDDED") == "1"

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.slow,
    pytest.mark.skipif(not REQUIRED and _why_not() is not None, reason=_why_not() or ""),
]

# Two short wishes: a short prompt and few tokens, since llama.cpp reads and writes a few dozen tokens/s here.
TINY_RECIPE = """\
name: tiny
system: 你是一个送祝福的助手
generation_system: 你是一个送祝福大师
axes:
  recipient: [妈妈, 老师]
styles:
  正常:
    max_chars: 20
    user_templates: ["祝{{ recipient }}新年快乐"]
prompt: 写一句给{{ recipient }}的新年祝福，少于{{ max_chars }}字，只写祝福本身：
model:
  temperature: 0.7
  max_tokens: 32
"""


def llama_servers() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "llama_cpp.server" in " ".join(p.cmdline() if p.is_running() else [])
    ]


def test_run_with_the_embedded_model(tmp_path):
    assert _why_not() is None, _why_not()  # only reached without the local extra when CI requires it
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE, encoding="utf-8")
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
