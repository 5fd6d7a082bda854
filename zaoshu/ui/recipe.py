"""The recipe a ui session shows (system prompt, eval inputs, axis order): given, or found by name."""

from __future__ import annotations

from pathlib import Path

import orjson

from zaoshu.recipes import Recipe, load_recipe


def recipe_name(source: Path | None) -> str | None:
    """The recipe a run folder's summary or a record file's first record names."""
    if source is None:
        return None
    summary = source / "summary.json" if source.is_dir() else source.parent / "summary.json"
    if summary.is_file():
        try:
            name = orjson.loads(summary.read_bytes()).get("recipe")
            if isinstance(name, str):
                return name
        except (orjson.JSONDecodeError, AttributeError):
            pass
    files = [source] if source.is_file() else sorted(source.glob("*.jsonl"))
    for f in files:
        try:
            with open(f, "rb") as handle:
                first = orjson.loads(handle.readline())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(first, dict) and isinstance(first.get("recipe"), str):
            return first["recipe"]
    return None


def find_ui_recipe(source: Path | None, given: Path | None) -> Recipe | None:
    """`given` loaded (errors are the user's to see), else the recipe found by name near the data, if any."""
    if given is not None:
        return load_recipe(given)
    from zaoshu.recipes import find_recipe

    near = [source if source.is_dir() else source.parent] if source is not None and source.exists() else []
    path = find_recipe(recipe_name(source), near)
    return load_recipe(path) if path else None
