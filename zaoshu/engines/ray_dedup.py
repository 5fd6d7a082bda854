"""The near-duplicate edges on a Ray cluster: the local stage functions, spread over tasks.

1. map: each block of keys -> band hashes (`dedup.band_hashes`), cut into partitions by band and by
   hash, so every bucket lands whole in one partition;
2. shuffle: each partition, its blocks in row order -> `dedup.band_pairs`' rule (`bucket_pairs`, caps on
   large buckets included) -> pairs, cut by pair into check partitions;
3. reduce: each check partition -> distinct pairs -> `dedup.passes` and `dedup.veto_batch` -> edges.

Short-key pairs come from the local function on the driver (the short keys are few) and are checked
in tasks too. The edges come back to the driver, where `dedup.heads_from_edges` makes the clusters;
past `max_edges` in memory they are spilled to files and read back as memory maps.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from zaoshu.cleaners.config import NearDupConfig
from zaoshu.cleaners.dedup import Edges, band_hashes, passes, short_pairs, veto_batch
from zaoshu.cleaners.minhash import bucket_pairs, lsh_params


def _keys(arrow: pa.Array, rows: np.ndarray) -> np.ndarray:
    return arrow.take(pa.array(rows)).to_numpy(zero_copy_only=False)


def _band_parts(arrow: pa.Array, lo: int, hi: int, config: NearDupConfig, per_band: int):
    """Band hashes of keys lo..hi, as (rows, hashes) per partition (band j, hash % per_band)."""
    block = band_hashes(pl.Series("key", arrow.slice(lo, hi - lo)), config)
    rows = np.arange(lo, hi, dtype=np.int64)
    out = []
    for j in range(block.shape[1]):
        column = block[:, j]
        slot = column % np.uint32(per_band)
        for r in range(per_band):
            at = slot == r
            out.append((rows[at], column[at]))
    return tuple(out) if len(out) > 1 else out[0]


def _partition_pairs(n: int, checks: int, *parts):
    """One partition's pairs by `bucket_pairs` (its blocks arrive in row order), cut by pair code."""
    rows = np.concatenate([p[0] for p in parts])
    column = np.concatenate([p[1] for p in parts])
    a, b = bucket_pairs(column)
    code = rows[a].astype(np.uint64) * np.uint64(n) + rows[b].astype(np.uint64)
    slot = code % np.uint64(checks)
    out = tuple(code[slot == q] for q in range(checks))
    return out if checks > 1 else out[0]


def _check(arrow: pa.Array, n: int, threshold: float, veto: bool, *codes):
    """Distinct band pairs of one check partition -> the edges among them (rows, rows, veto codes)."""
    code = np.unique(np.concatenate(codes)) if codes else np.zeros(0, np.uint64)
    a = (code // np.uint64(n)).astype(np.int64)
    b = (code % np.uint64(n)).astype(np.int64)
    return _edges(arrow, a, b, threshold, veto, short=False)


def _check_short(arrow: pa.Array, a: np.ndarray, b: np.ndarray, veto: bool):
    return _edges(arrow, a, b, 0.0, veto, short=True)


def _edges(arrow, a, b, threshold, veto, *, short):
    x, y = _keys(arrow, a), _keys(arrow, b)
    ok = passes(x, y, threshold, short=short) if len(a) else np.zeros(0, dtype=bool)
    codes = veto_batch(x[ok], y[ok]) if veto else None
    return a[ok], b[ok], codes, len(a)


@dataclass
class RayEdges:
    """`dedup.local_edges`' contract on Ray: the same edges, the same count of checked pairs.

    `block_rows`: keys per map task; `partition_rows`: about how many rows of a band one shuffle task
    holds; `check_pairs`: short-key pairs per check task; `max_edges`: edges held in driver memory."""

    block_rows: int = 1 << 17
    partition_rows: int = 1 << 22
    check_pairs: int = 1 << 20
    max_edges: int = 50_000_000
    spill_dir: Path | None = None

    def __call__(self, keys: pl.Series, config: NearDupConfig, *, veto: bool, workers: int = 2) -> Edges:
        """`workers` is the local engine's thread count; here each task runs on one of Ray's CPUs."""
        import ray

        n = len(keys)
        arrow = keys.to_arrow()
        if isinstance(arrow, pa.ChunkedArray):
            arrow = arrow.combine_chunks()
        keys_ref = ray.put(arrow)
        bands, _ = lsh_params(config.lsh_threshold, config.num_perm)
        per_band = max(1, -(-n // self.partition_rows))
        parts = checks = bands * per_band  # as many check partitions as band partitions
        band_task = ray.remote(_band_parts).options(num_returns=parts)
        blocks = [
            band_task.remote(keys_ref, lo, min(lo + self.block_rows, n), config, per_band)
            for lo in range(0, n, self.block_rows)
        ]
        blocks = [b if isinstance(b, list) else [b] for b in blocks]
        pair_task = ray.remote(_partition_pairs).options(num_returns=checks)
        pairs = [pair_task.remote(n, checks, *[blk[p] for blk in blocks]) for p in range(parts)]
        pairs = [p if isinstance(p, list) else [p] for p in pairs]
        del blocks
        check = ray.remote(_check)
        pending = [
            check.remote(keys_ref, n, config.threshold, veto, *[pr[q] for pr in pairs]) for q in range(checks)
        ]
        del pairs
        short_a, short_b = short_pairs(keys, config.short_chars)
        short = ray.remote(_check_short)
        for lo in range(0, len(short_a), self.check_pairs):
            hi = lo + self.check_pairs
            pending.append(short.remote(keys_ref, short_a[lo:hi], short_b[lo:hi], veto))
        return self._gather(ray, pending, veto)

    def _gather(self, ray, pending: list, veto: bool) -> Edges:
        """The edges, task by task in submission order (a run is repeatable), spilled past max_edges."""
        sink = _EdgeSink(self.max_edges, self.spill_dir, veto)
        checked = 0
        for ref in pending:
            a, b, codes, count = ray.get(ref)
            checked += count
            sink.add(a, b, codes)
        return sink.edges(checked)


class _EdgeSink:
    """Edges in memory up to a bound, then in files (rows as int64, codes as int8) read back as maps."""

    def __init__(self, limit: int, spill_dir: Path | None, veto: bool) -> None:
        self.limit, self.spill_dir, self.veto = limit, spill_dir, veto
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.held = 0
        self.files = None
        self.count = 0

    def add(self, a: np.ndarray, b: np.ndarray, codes: np.ndarray | None) -> None:
        self.count += len(a)
        if self.files is None and self.held + len(a) > self.limit:
            folder = Path(tempfile.mkdtemp(prefix="zaoshu-edges-", dir=self.spill_dir))
            self.folder = folder
            self.files = [open(folder / name, "wb") for name in ("a", "b", "c")]  # noqa: SIM115
            for pa_, pb, pc in self.parts:
                self._write(pa_, pb, pc)
            self.parts = []
        if self.files is not None:
            self._write(a, b, codes)
        else:
            self.parts.append((a, b, codes))
            self.held += len(a)

    def _write(self, a, b, codes) -> None:
        self.files[0].write(a.astype(np.int64).tobytes())
        self.files[1].write(b.astype(np.int64).tobytes())
        if codes is not None:
            self.files[2].write(codes.astype(np.int8).tobytes())

    def edges(self, checked: int) -> Edges:
        if self.files is not None:
            for f in self.files:
                f.close()

            def load(name: str, dtype) -> np.ndarray:
                path = self.folder / name
                return np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)

            codes = load("c", np.int8) if self.veto else None
            return Edges(load("a", np.int64), load("b", np.int64), codes, checked)
        a = np.concatenate([p[0] for p in self.parts]) if self.parts else np.zeros(0, np.int64)
        b = np.concatenate([p[1] for p in self.parts]) if self.parts else np.zeros(0, np.int64)
        codes = None
        if self.veto:
            codes = np.concatenate([p[2] for p in self.parts]) if self.parts else np.zeros(0, np.int8)
        return Edges(a, b, codes, checked)
