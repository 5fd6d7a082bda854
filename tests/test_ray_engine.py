"""`--engine ray`: the same kept rows, rejects, duplicate explanations and report as the local engine.

One local Ray session for the module (two CPUs, a small object store); tiny blocks and partitions so
every stage is split many ways, and buckets and pairs cross blocks, files and tasks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='the Ray engine needs the ray extra (pip install -e ".[ray]")')

from clean_builders import write  # noqa: E402
from ray_data import rows, shards  # noqa: E402

import zaoshu.cleaners.io as io  # noqa: E402
from zaoshu.cleaners import CleanOptions, clean  # noqa: E402
from zaoshu.engines.ray_clean import clean as ray_clean  # noqa: E402
from zaoshu.engines.ray_dedup import RayEdges  # noqa: E402
from zaoshu.engines.ray_passes import RayPasses  # noqa: E402
from zaoshu.errors import ZaoshuError  # noqa: E402
from zaoshu.recipes import load_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = RayEdges(block_rows=257, partition_rows=500, check_pairs=300)


@pytest.fixture(scope="module", autouse=True)
def session():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=200 << 20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _report(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("seconds", None)  # wall times
    data.pop("outputs", None)  # the two runs' own paths
    return data


def _both(
    tmp_path: Path, files: list[Path], edges: RayEdges = TINY, passes: RayPasses | None = None, **kwargs
) -> tuple[Path, Path]:
    local, far = tmp_path / "local" / "out.jsonl", tmp_path / "ray" / "out.jsonl"
    clean(files, local, **kwargs)
    options = kwargs.pop("options", None) or CleanOptions()
    options.engine = "ray"
    passes = passes or RayPasses()
    ray_clean(files, far, options=options, edges=edges, passes=passes, **kwargs)
    assert passes.nodes  # the passes ran as Ray tasks
    return local, far


def _same(local: Path, far: Path) -> None:
    for name in ("out.jsonl", "out.rejects.jsonl", "out.dups.jsonl"):
        assert (local.parent / name).read_bytes() == (far.parent / name).read_bytes(), name
    assert _report(local.parent / "out.report" / "report.json") == _report(
        far.parent / "out.report" / "report.json"
    )


def test_same_rows_as_local_with_the_veto(tmp_path: Path) -> None:
    files = shards(tmp_path / "in", 3000, seed=1, axes=False)
    local, far = _both(tmp_path, files)
    _same(local, far)
    rejects = (local.parent / "out.rejects.jsonl").read_text()
    # the planted kinds all occur, so the comparison covers each path
    for reason in ('"duplicate"', '"near_duplicate"', '"repetition"'):
        assert reason in rejects
    near = json.loads((local.parent / "out.report" / "report.json").read_text())["near_dup"]
    assert near["vetoed"]["kin"] > 0 and near["vetoed"]["number"] > 0


def test_same_rows_as_local_with_the_axis_guard(tmp_path: Path) -> None:
    files = shards(tmp_path / "in", 2000, seed=2, parts=4)
    recipe = load_recipe(ROOT / "prompts" / "wishes.yaml")
    # the recipe's max_chars (20) is for its own short wishes; these run longer
    local, far = _both(tmp_path, files, recipe=recipe, options=CleanOptions(length_tolerance=10))
    _same(local, far)
    assert '"too_long"' in (far.parent / "out.rejects.jsonl").read_text()
    near = json.loads((far.parent / "out.report" / "report.json").read_text())["near_dup"]
    assert near["vetoed"]["axis"] > 0
    assert max(map(int, near["cluster_sizes"])) > 50  # the templated hot bucket, capped, still one cluster


def test_many_chunks_few_in_flight_give_the_same_rows(tmp_path: Path, monkeypatch) -> None:
    """Chunks of ~8 KB (dozens a file), at most two tasks in flight, the scratch beside the output:
    results taken in chunk order, part files joined in that order, the folder gone after."""
    files = shards(tmp_path / "in", 2000, seed=8, axes=False)
    monkeypatch.setattr(io, "CHUNK_BYTES", 8 << 10)
    assert len(io.split_chunks(files)) > 30
    passes = RayPasses(window=2, shared=True)
    local, far = _both(tmp_path, files, passes=passes, options=CleanOptions(workers=1))
    _same(local, far)
    assert sorted(p.name for p in far.parent.iterdir()) == [
        "out.dups.jsonl",
        "out.jsonl",
        "out.rejects.jsonl",
        "out.report",
    ]  # the hidden scratch folder removed


def test_edges_spilled_to_files_give_the_same_rows(tmp_path: Path) -> None:
    files = shards(tmp_path / "in", 1500, seed=3)
    spill = RayEdges(block_rows=300, partition_rows=700, check_pairs=200, max_edges=10, spill_dir=tmp_path)
    _same(*_both(tmp_path, files, edges=spill))
    assert list(tmp_path.glob("zaoshu-edges-*/a"))


def test_torn_line_in_one_shard(tmp_path: Path) -> None:
    files = shards(tmp_path / "in", 300, seed=4)
    with files[1].open("ab") as f:
        f.write(b'{"id": "torn", "messages": [{"role": "user", "cont')
    out = tmp_path / "ray" / "out.jsonl"
    with pytest.raises(ZaoshuError) as e:
        ray_clean(files, out, options=CleanOptions(engine="ray"), edges=TINY)
    assert "part1.jsonl" in str(e.value) and e.value.line == 101  # raised in a task, arrived whole
    assert not [p for p in out.parent.rglob("*") if p.is_file()]  # nothing half-written
    shared = tmp_path / "shared" / "out.jsonl"
    with pytest.raises(ZaoshuError):
        ray_clean(
            files, shared, options=CleanOptions(engine="ray"), edges=TINY, passes=RayPasses(shared=True)
        )
    assert not [p for p in shared.parent.rglob("*") if p.is_file()]
    assert not list(shared.parent.glob(".out.jsonl.zaoshu-*"))  # nor a scratch folder beside the output
    # skipped, it is a rejected bad_line there as here
    local, far = _both(tmp_path, files, options=CleanOptions(skip_bad_lines=True))
    _same(local, far)
    assert '"bad_line"' in (far.parent / "out.rejects.jsonl").read_text()


def test_unreachable_address_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", rows(50, seed=5))
    out = tmp_path / "out" / "clean.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-c",
        "from zaoshu.cli import main; main()",
        "clean",
        str(src),
        "-o",
        str(out),
        "--engine",
        "ray",
    ]
    result = subprocess.run(
        [*cmd, "--ray-address", "127.0.0.1:9"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode != 0
    assert "--ray-address 127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr
    assert not out.parent.exists()


def test_ray_address_without_the_ray_engine_is_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zaoshu.cli import app

    src = write(tmp_path / "in.jsonl", rows(5, seed=6))
    result = CliRunner().invoke(
        app, ["clean", str(src), "-o", str(tmp_path / "o.jsonl"), "--ray-address", "x:1"]
    )
    assert result.exit_code != 0 and "--ray-address" in result.output
    run_help = CliRunner().invoke(app, ["run", "--help"], terminal_width=200)
    assert "--engine" in run_help.output and "--ray-address" in run_help.output


def test_run_cleans_on_ray_as_clean_does_locally(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zaoshu.cli import app
    from zaoshu.testing.fakeserver import FakeServer

    out = tmp_path / "out"
    wishes = ROOT / "prompts" / "wishes.yaml"
    with FakeServer(reply="wishes") as server:
        args = ["run", str(wishes), "-o", str(out), "--provider", "local", "--base-url", server.base_url]
        args += ["--model", "fake-model", "--limit", "40", "--quiet", "--timeout", "5", "--engine", "ray"]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        before = server.stats().get("requests", 0)
        refused = CliRunner().invoke(app, [*args, "--ray-address", "127.0.0.1:9"])
        assert refused.exit_code != 0 and "--ray-address 127.0.0.1:9" in refused.output
        assert server.stats().get("requests", 0) == before  # refused before any request
    local = tmp_path / "local" / "clean.jsonl"
    clean([out / "raw.jsonl"], local, recipe=load_recipe(wishes))
    assert (out / "clean.jsonl").read_bytes() == local.read_bytes()
