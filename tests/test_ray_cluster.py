"""`--engine ray --ray-address`: joining a two-node cluster (one CPU each) gives the local engine's rows,
with the per-chunk passes run on both nodes and their files beside the output."""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='the Ray engine needs the ray extra (pip install -e ".[ray]")')

from ray.cluster_utils import Cluster  # noqa: E402
from ray_data import shards  # noqa: E402

import zaoshu.cleaners.io as io  # noqa: E402
from zaoshu.cleaners import CleanOptions, clean  # noqa: E402
from zaoshu.engines.ray_clean import clean as ray_clean  # noqa: E402
from zaoshu.engines.ray_dedup import RayEdges  # noqa: E402
from zaoshu.engines.ray_passes import RayPasses  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    two = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 100 << 20, "include_dashboard": False},
    )
    two.add_node(num_cpus=1, object_store_memory=100 << 20)
    two.wait_for_nodes()
    yield two
    two.shutdown()


def test_two_nodes_keep_the_local_rows(tmp_path: Path, cluster, monkeypatch) -> None:
    files = shards(tmp_path / "in", 1500, seed=11, axes=False)
    monkeypatch.setattr(io, "CHUNK_BYTES", 32 << 10)  # a dozen chunks: tasks for both nodes
    local, far = tmp_path / "local" / "out.jsonl", tmp_path / "ray" / "out.jsonl"
    clean(files, local, options=CleanOptions(workers=1))
    options = CleanOptions(engine="ray", ray_address=cluster.address)
    passes = RayPasses()
    ray_clean(files, far, options=options, edges=RayEdges(block_rows=200, partition_rows=400), passes=passes)
    assert not ray.is_initialized()  # the run joined the cluster and left it
    assert len(passes.nodes) == 2  # read, rules and writing ran on both nodes
    assert passes.shared and not list(far.parent.glob(".out.jsonl.zaoshu-*"))  # scratch beside it, removed
    for name in ("out.jsonl", "out.rejects.jsonl", "out.dups.jsonl"):
        assert (local.parent / name).read_bytes() == (far.parent / name).read_bytes(), name
    assert (far.parent / "out.rejects.jsonl").read_text().count('"near_duplicate"') > 50
