"""Every stage's stats share one way to be written and read back by field name."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from zaoshu.cleaners.stats import CleanStats
from zaoshu.errors import ZaoshuError
from zaoshu.generator.engine import GenerateStats
from zaoshu.judging.run import JudgeStats
from zaoshu.pipeline import RunSummary
from zaoshu.stats import Stats


def test_every_stage_uses_the_one_stats_type() -> None:
    for cls in (GenerateStats, CleanStats, JudgeStats, RunSummary):
        assert issubclass(cls, Stats)


def test_written_and_read_back_by_name(tmp_path: Path) -> None:
    stats = GenerateStats(tasks=5, done=4, failed=1, tokens_in=10, cost=0.5, model="m")
    path = tmp_path / "raw.stats.json"
    stats.write(path)
    data = orjson.loads(path.read_bytes())
    assert data["tasks"] == 5 and data["tokens_in"] == 10 and data["model"] == "m"
    # a field a newer zaoshu added is ignored; one an older one lacked keeps its default
    data["added_later"] = 1
    del data["retries"]
    path.write_bytes(orjson.dumps(data))
    back = GenerateStats.read(path)
    assert (back.tasks, back.done, back.cost, back.retries) == (5, 4, 0.5, 0)


def test_private_fields_are_not_written(tmp_path: Path) -> None:
    stats = CleanStats(read=3, kept=2, rejected={"too_short": 1})
    stats.lap("rules")
    data = stats.to_dict()
    assert "_since" not in data and data["seconds"].keys() == {"rules"}
    assert data["rejected"] == {"too_short": 1}


def test_timer_fills_the_field_even_when_the_block_raises() -> None:
    stats = GenerateStats()
    with pytest.raises(RuntimeError), stats.timer("send_s"):
        time.sleep(0.02)
        raise RuntimeError
    assert stats.send_s >= 0.02


def test_reading_what_is_not_stats_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.stats.json"
    path.write_text("[1, 2]")
    with pytest.raises(ZaoshuError, match="JSON object") as e:
        GenerateStats.read(path)
    assert e.value.path == str(path)
    path.write_text("{")
    with pytest.raises(ZaoshuError, match="JSON"):
        GenerateStats.read(path)
