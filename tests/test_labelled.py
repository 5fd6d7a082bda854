"""The labelled set: real replies of the embedded model, each labelled fit or misfit by a person.

The figures here are the measured ones (see benchmarks/labelled.py for the table with a judge): a change to
the rules or keywords that loses a good reply or lets more bad ones through fails this test.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from zaoshu.cleaners import CleanOptions, clean
from zaoshu.recipes import load_recipe

DATA = Path(__file__).resolve().parent / "data" / "wishes_labelled.jsonl"
SEMANTIC = ["off_topic", "wrong_recipient", "impolite"]


def _rejected(tmp_path: Path, records: list[dict], *, semantic: bool) -> set[str]:
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "prompts" / "wishes.yaml")
    extra = {} if semantic else {"disable": SEMANTIC}
    recipe.clean = {**recipe.clean, **extra, "exact_dup": False}
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b"".join(orjson.dumps({k: v for k, v in r.items() if k != "label"}) + b"\n" for r in records)
    )
    clean([src], tmp_path / "out.jsonl", recipe=recipe, options=CleanOptions(near_dup=False))
    rejects = tmp_path / "out.rejects.jsonl"
    return {orjson.loads(line)["id"] for line in rejects.read_bytes().splitlines() if line.strip()}


def test_the_set_is_big_enough_and_labelled() -> None:
    records = [orjson.loads(line) for line in DATA.read_bytes().splitlines()]
    assert len(records) >= 60
    assert all(isinstance(r["label"]["fit"], bool) and r["label"]["why"] for r in records)
    assert all(r["meta"]["provider"] == "embedded" for r in records)


@pytest.mark.parametrize(("semantic", "good_lost", "bad_kept"), [(False, 0, 10), (True, 0, 6)])
def test_rules_against_the_labels(tmp_path: Path, semantic: bool, good_lost, bad_kept) -> None:
    records = [orjson.loads(line) for line in DATA.read_bytes().splitlines()]
    rejected = _rejected(tmp_path, records, semantic=semantic)
    lost = sum(1 for r in records if r["label"]["fit"] and r["id"] in rejected)
    kept = sum(1 for r in records if not r["label"]["fit"] and r["id"] not in rejected)
    assert (lost, kept) == (good_lost, bad_kept)
