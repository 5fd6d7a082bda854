"""`zaoshu clean --engine ray` next to the local engine on the same records, and per-stage costs.

    python3 benchmarks/clean_ray.py                  # 1,000,000 rows: both engines, same outputs?
    python3 benchmarks/clean_ray.py --rows 100000    # the golden comparison at 100k rows
    python3 benchmarks/clean_ray.py --stages-only    # single-core cost of each parallel stage
    python3 benchmarks/clean_ray.py --passes-only    # of the per-chunk passes only

Each engine runs in a child process (the records from `benchmarks/clean.py`'s builder, cached under
--dir). Printed: wall, rows/s, the driver's peak RSS, for Ray the peak RSS of its worker processes (one
and all together, sampled every 0.2 s), and whether kept rows, rejects and duplicate explanations are
byte-identical. `--stages-only` times each stage on one core, per row or per pair: the per-chunk
passes the Ray engine runs as tasks (pass 1: read, normalize, rules; pass 2: write the chunk's lines),
the near-duplicate stages it spreads (band hashes, bucket pairs, pair checks, veto) and what stays on
the driver (exact duplicates, heads from edges, joining the part files): the basis of the estimate
for larger runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean import RECIPE, build

CHILD = """
import json, resource, sys, threading, time
from pathlib import Path
import psutil
from zaoshu.cleaners import CleanOptions
from zaoshu.engines import clean
from zaoshu.recipes import load_recipe
engine = sys.argv[4]
peak = {"one": 0, "all": 0}
done = threading.Event()

def sample():  # Ray's worker processes (ray::...), not the driver itself
    me = psutil.Process()
    while not done.wait(0.2):
        total = 0
        for p in me.children(recursive=True):
            try:
                if p.name().startswith("ray::") or "default_worker" in " ".join(p.cmdline()[:3]):
                    rss = p.memory_info().rss
                    total += rss
                    peak["one"] = max(peak["one"], rss)
            except psutil.Error:
                pass
        peak["all"] = max(peak["all"], total)

threading.Thread(target=sample, daemon=True).start()
t = time.perf_counter()
stats = clean([Path(sys.argv[1])], Path(sys.argv[2]), recipe=load_recipe(sys.argv[3]) if sys.argv[3] else None,
              options=CleanOptions(workers=2, engine=engine))
wall = time.perf_counter() - t
done.set()
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "driver_rss_mb": use.ru_maxrss / 1024, "worker_rss_mb": peak["one"] / 2**20,
                  "workers_rss_mb": peak["all"] / 2**20, "stats": stats.to_dict()}))
"""


def run(engine: str, data: Path, out: Path, recipe: Path | None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), str(out), str(recipe or ""), engine],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode:
        sys.exit(f"{engine} clean failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def chunk_passes(data: Path) -> dict:
    """Single-core µs per row of pass 1 and pass 2 on the input's first chunk, and of joining its part
    file. Pass 2's decisions: a rule's reject, else an exact duplicate of an earlier row of the chunk
    rejected (a whole run marks near duplicates too: more rows rewritten), else kept or normalized."""
    import shutil
    import tempfile

    import polars as pl

    from zaoshu.cleaners.api import _pass1, _pass2, load_config
    from zaoshu.cleaners.dedup import exact_heads
    from zaoshu.cleaners.io import RowState, split_chunks
    from zaoshu.recipes import load_recipe

    recipe = load_recipe(RECIPE)
    chunk = split_chunks([data])[0]
    with tempfile.TemporaryDirectory() as tmp:
        spill, names = Path(tmp) / "0.arrow", (Path(tmp) / "k", Path(tmp) / "r")
        t = time.process_time()
        frame = _pass1(chunk, spill, load_config(recipe), recipe, False)
        t1 = time.process_time() - t
        n = frame.height
        t = time.process_time()
        head = exact_heads(frame.select("h1", "h2"))
        t_exact = time.process_time() - t
        dup = head != np.arange(n)
        frame = frame.with_columns(
            reason=pl.when(pl.Series(dup)).then(pl.lit("duplicate")).otherwise(pl.col("reason")),
            duplicate_of=pl.when(pl.Series(dup)).then(pl.col("id")).otherwise(None),
        )
        state = (
            pl.when(pl.col("reason").is_not_null())
            .then(pl.lit(RowState.REJECTED.value))
            .when(pl.col("normalized"))
            .then(pl.lit(RowState.NORMALIZED.value))
            .otherwise(pl.lit(RowState.KEPT.value))
            .cast(pl.Int8)
        )
        decisions = frame.select(state.alias("state"), "reason", "detail", "duplicate_of")
        t = time.process_time()
        _pass2(chunk, decisions, spill, names)
        t2 = time.process_time() - t
        size = sum(p.stat().st_size for p in names)
        rejected = decisions.with_columns(
            state=pl.lit(RowState.REJECTED.value, dtype=pl.Int8),
            reason=pl.lit("duplicate"),
            duplicate_of=frame["id"],
        )
        t = time.process_time()
        _pass2(chunk, rejected, spill, (Path(tmp) / "k2", Path(tmp) / "r2"))
        t2_rejected = time.process_time() - t
        t = time.process_time()
        with open(Path(tmp) / "joined", "wb") as out:
            for path in names:
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        t_join = time.process_time() - t
    return {
        "chunk_rows": n, "chunk_mb": (chunk.end - chunk.start) / 2**20,
        "rejected_share": float((decisions["state"] == RowState.REJECTED).mean()),
        "us_per_row": {"pass1_read_normalize_rules": 1e6 * t1 / n, "pass2_write": 1e6 * t2 / n,
                       "pass2_write_all_rejected": 1e6 * t2_rejected / n,
                       "driver_exact_heads": 1e6 * t_exact / n, "driver_join_parts": 1e6 * t_join / n},
        "join_mb_per_s": size / 2**20 / max(t_join, 1e-9),
    }  # fmt: skip


def stages(data: Path, rows: int) -> None:
    """Single-core seconds of each stage, on `rows` records (the passes on the first chunk)."""
    import orjson
    import polars as pl
    import ray

    print(json.dumps({"passes": chunk_passes(data)}, indent=1), flush=True)

    from zaoshu.cleaners.config import NearDupConfig
    from zaoshu.cleaners.dedup import (
        band_hashes,
        band_pairs,
        exact_heads,
        heads_from_edges,
        key_hashes,
        local_edges,
        passes,
        veto_batch,
    )
    from zaoshu.cleaners.normalize import dedup_keys, normalize_frame
    from zaoshu.engines.ray_dedup import RayEdges
    from zaoshu.records import assistant_text

    t = time.perf_counter()
    texts = []
    with open(data, "rb") as f:
        for _, line in zip(range(rows), f, strict=False):
            texts.append(assistant_text(orjson.loads(line)))
    read = time.perf_counter() - t
    t = time.perf_counter()
    keys = dedup_keys(normalize_frame(pl.Series("raw", texts))["text"])
    prep = time.perf_counter() - t
    head = exact_heads(key_hashes(keys))
    keys = keys.gather(np.flatnonzero(head == np.arange(len(keys))))
    config = NearDupConfig()
    t = time.perf_counter()
    bh = band_hashes(keys, config)
    t_bands = time.perf_counter() - t
    t = time.perf_counter()
    a, b = band_pairs(bh)
    t_pairs = time.perf_counter() - t
    every = keys.to_numpy()
    t = time.perf_counter()
    ok = passes(every[a], every[b], config.threshold, short=False)
    t_check = time.perf_counter() - t
    t = time.perf_counter()
    veto_batch(every[a[ok]], every[b[ok]])
    t_veto = time.perf_counter() - t
    t = time.perf_counter()
    edges = local_edges(keys, config, veto=True, workers=1)
    t_local_edges = time.perf_counter() - t
    t = time.perf_counter()
    heads_from_edges(keys, edges, config, workers=1)
    t_heads = time.perf_counter() - t
    ray.init(
        num_cpus=os.cpu_count(), object_store_memory=1 << 30, include_dashboard=False, log_to_driver=False
    )
    RayEdges()(keys.head(1000), config, veto=True)  # workers started
    t = time.perf_counter()
    far = RayEdges()(keys, config, veto=True)
    t_ray_edges = time.perf_counter() - t
    ray.shutdown()
    assert far.checked == edges.checked and len(far.left) == len(edges.left)
    n = len(keys)
    figures = {
        "rows": rows, "distinct_keys": n, "pairs": len(a), "edges": int(ok.sum()),
        "us_per_row": {"read_parse": 1e6 * read / rows, "normalize_key": 1e6 * prep / rows},
        "us_per_key": {"band_hashes": 1e6 * t_bands / n, "bucket_pairs": 1e6 * t_pairs / n},
        "us_per_pair": {"check": 1e6 * t_check / max(len(a), 1), "veto": 1e6 * t_veto / max(int(ok.sum()), 1)},
        "s_edges_local_one_core": t_local_edges, f"s_edges_ray_{os.cpu_count()}_cpus": t_ray_edges,
        "s_heads_from_edges_driver": t_heads,
    }  # fmt: skip
    print(json.dumps(figures, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-recipe", action="store_true", help="no recipe: the veto instead of the axis guard")
    ap.add_argument("--stages-only", action="store_true")
    ap.add_argument("--passes-only", action="store_true", help="only the per-chunk passes of --stages-only")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/zaoshu-bench-clean"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    data = args.dir / f"wishes-{args.rows}-{args.seed}.jsonl"
    if not data.exists():
        np.save(data.with_suffix(".truth.npy"), build(args.rows, args.seed, data))
    if args.stages_only:
        stages(data, args.rows)
        return
    if args.passes_only:
        print(json.dumps(chunk_passes(data), indent=1))
        return
    print(f"load: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (other work shares the machine)")
    recipe = None if args.no_recipe else RECIPE
    results = {}
    for engine in ("local", "ray"):
        out = args.dir / engine / "clean.jsonl"
        out.parent.mkdir(exist_ok=True)
        r = results[engine] = run(engine, data, out, recipe)
        print(
            f"{engine:5s}: {r['wall']:7.1f} s  {args.rows / r['wall']:9,.0f} rows/s  driver peak "
            f"{r['driver_rss_mb']:,.0f} MB  workers peak {r['worker_rss_mb']:,.0f} MB one, "
            f"{r['workers_rss_mb']:,.0f} MB all  stages {r['stats'].get('seconds')}"
        )
    same = all(
        (args.dir / "local" / name).read_bytes() == (args.dir / "ray" / name).read_bytes()
        for name in ("clean.jsonl", "clean.rejects.jsonl", "clean.dups.jsonl")
    )
    ratio = results["ray"]["wall"] / results["local"]["wall"]
    print(f"same kept rows, rejects and duplicate explanations: {same}; ray / local wall: {ratio:.2f}x")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
