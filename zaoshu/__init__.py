"""zaoshu (造数): recipes in, clean supervised fine-tuning data out, handed to XTuner.

The public Python API, one name per stage; the `zaoshu` command is a thin layer over it::

    import zaoshu
    recipe = zaoshu.load_recipe("prompts/wishes.yaml")
    zaoshu.generate(recipe, "out/raw.jsonl", zaoshu.GenerateOptions(provider="deepseek"))
    zaoshu.clean(["out/raw.jsonl"], "out/clean.jsonl", recipe=recipe)
    zaoshu.run(recipe, "out")  # both, plus the report and a summary

Stages are imported on first use, so `import zaoshu` stays light (no aiohttp, polars or torch until needed).
"""

from __future__ import annotations

import importlib
from typing import Any

from zaoshu.errors import RecipeError, RecordError, ZaoshuError
from zaoshu.generator.plan import Plan, Task, plan
from zaoshu.recipes import Recipe, load_recipe
from zaoshu.records import read_records, write_records

__version__ = "0.1.0"

_LAZY = {
    "GenerateOptions": "zaoshu.generator.options",
    "GenerateStats": "zaoshu.generator.engine",
    "generate": "zaoshu.generator.engine",
    "register_provider": "zaoshu.generator.providers",
    "CleanOptions": "zaoshu.cleaners",
    "CleanStats": "zaoshu.cleaners",
    "clean": "zaoshu.cleaners",
    "run": "zaoshu.pipeline",
    "RunSummary": "zaoshu.pipeline",
    "read_any": "zaoshu.formats",
    "write": "zaoshu.formats",
    "convert": "zaoshu.formats",
    "detect_format": "zaoshu.formats",
    "merge": "zaoshu.formats.merge",
    "split": "zaoshu.formats.split",
    "publish": "zaoshu.publish",
    "TrainOptions": "zaoshu.trainer",
    "train": "zaoshu.trainer",
}

__all__ = [
    "Plan",
    "Recipe",
    "RecipeError",
    "RecordError",
    "Task",
    "ZaoshuError",
    "load_recipe",
    "plan",
    "read_records",
    "write_records",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zaoshu' has no attribute {name!r}")
