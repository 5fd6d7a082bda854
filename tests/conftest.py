"""Shared pytest set-up. Stage-specific fixtures live beside their tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "prompts"


@pytest.fixture
def wishes_recipe_path() -> Path:
    return PROMPTS / "wishes.yaml"
