"""Shared bits of the generator tests: small recipes written into tmp_path, reading outputs back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from zaoshu.generator.engine import GenerateOptions
from zaoshu.generator.plan import plan
from zaoshu.recipes import load_recipe

ALL_FAULTS = {
    "rate_limit": 0.01,
    "server_error": 0.08,
    "overloaded": 0.02,
    "hang": 0.02,
    "malformed": 0.03,
    "empty_choices": 0.03,
    "content_filter": 0.02,
    "reset": 0.03,
    "bad_request": 0.01,
}


def write_recipe(tmp_path: Path, n_a: int = 25, n_b: int = 20, **extra: Any) -> Path:
    """A recipe of n_a × n_b tasks shaped like wishes (the fake server's `wishes` reply parses it)."""
    recipe = {
        "name": "mini",
        "system": "你是送祝福大师",
        "axes": {"who": [f"朋友{i}" for i in range(n_a)], "scene": [f"场景{j}" for j in range(n_b)]},
        "styles": {"正常": {"user_templates": ["祝{{ who }}{{ scene }}"], "max_chars": 20}},
        "prompt": "正常风格。对象称谓是：{{ who }}，祝福场景是：{{ scene }}。请直接返回祝福文本：",
        "model": {"temperature": 0.3, "top_p": 0.9, "max_tokens": 77},
        **extra,
    }
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def planned_ids(recipe_path: Path, **kw: Any) -> list[str]:
    return [t.id for t in plan(load_recipe(recipe_path), **kw).tasks]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def local_options(base_url: str, **kw: Any) -> GenerateOptions:
    """Options for the fake server: fast retries and timeouts so fault tests stay quick."""
    defaults: dict[str, Any] = {
        "provider": "local",
        "base_url": base_url,
        "model": "fake-model",
        "concurrency": 32,
        "timeout": 1.0,
        "backoff": 0.01,
        "backoff_max": 0.2,
        "quiet": True,
        "handle_signals": False,
    }
    return GenerateOptions(**{**defaults, **kw})
