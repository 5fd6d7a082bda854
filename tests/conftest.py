"""Shared pytest set-up. Stage-specific fixtures live beside their tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "prompts"


@pytest.fixture(autouse=True)
def _own_response_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own response cache: replies cached by one test must not answer another's requests."""
    monkeypatch.setenv("ZAOSHU_RESPONSE_CACHE", str(tmp_path / "responses.sqlite3"))


@pytest.fixture
def wishes_recipe_path() -> Path:
    return PROMPTS / "wishes.yaml"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 chat model built locally (random weights, a trained tokenizer), once per test session."""
    from tiny_model import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("model") / "tiny-qwen2")


@pytest.fixture(scope="session")
def records_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fifty wishes records from the real plan, in the canonical format."""
    from tiny_model import wishes_records

    from zaoshu.records import write_records

    path = tmp_path_factory.mktemp("data") / "wishes.jsonl"
    write_records(path, wishes_records(50))
    return path
