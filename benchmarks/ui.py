"""Benchmark: the ui's records table over 100,000 records; each query's time against a 100 ms bound.

The issue asks that paging stays quick at 100k records. One page of the table is a polars filter and
slice over columns read once; the figures are the first read of the files (once per change on disk) and
the slowest of 5 runs of each query, with its ratio to the bound (below 1 is within it). The machine may
be shared: the load average is printed beside the figures.

    python3 benchmarks/ui.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import orjson

from zaoshu.ui.data import DataStore, Query

BOUND_MS = 100.0
RECIPIENTS = ["赵老师", "大舅", "李总", "母亲", "姐姐", "妹妹", "同事", "领导", "医生", "同学"]
SCENES = ["生日", "春节", "元宵节", "中秋节", "乔迁新居", "工作升职", "康复", "发财"]
STYLES = ["小红书", "正常", "严肃"]
REASONS = ["too_short", "too_long", "emoji_count", "duplicate", "near_duplicate"]


def make(folder: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(folder / "clean.jsonl", "wb") as kept, open(folder / "clean.rejects.jsonl", "wb") as rejected:
        for i in range(n):
            r, s, st = rng.choice(RECIPIENTS), rng.choice(SCENES), rng.choice(STYLES)
            record: dict = {
                "id": f"r{i:07d}",
                "recipe": "wishes",
                "axes": {"recipient": r, "scene": s, "style": st},
                "messages": [
                    {"role": "user", "content": f"祝{r}{s}，{st}风格"},
                    {"role": "assistant", "content": f"祝{r}{s}快乐，万事如意，第{i}条。"},
                ],
                "meta": {"prompt": "请写一条祝福", "judge": {"score": rng.randint(1, 10)}},
            }
            if rng.random() < 0.2:
                record = {"reject": {"reason": rng.choice(REASONS), "detail": "x"}, **record}
                rejected.write(orjson.dumps(record) + b"\n")
            else:
                kept.write(orjson.dumps(record) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make(folder, args.rows)
        store = DataStore(folder)
        t = time.perf_counter()
        store.frame()
        print(
            f"first read of {args.rows:,} records: {time.perf_counter() - t:.2f} s (again only when a file changes)"
        )
        queries = {
            "first page": {},
            "last page": {"page": str(args.rows // 50)},
            "status + reason": {"status": "rejected", "reason": "duplicate"},
            "two axes + style": {"a_recipient": "姐姐", "a_scene": "生日", "style": "正常"},
            "judge score 3..5": {"score_min": "3", "score_max": "5"},
            "text search, page 20": {"q": "万事如意", "page": "20"},
        }
        for name, params in queries.items():
            times = []
            for _ in range(5):
                t = time.perf_counter()
                _, total = store.page(Query.parse(params))
                times.append((time.perf_counter() - t) * 1000)
            worst = max(times)
            print(
                f"{name:<22} {total:>8,} rows  {worst:7.1f} ms  ratio to {BOUND_MS:.0f} ms: {worst / BOUND_MS:.2f}"
            )
        t = time.perf_counter()
        store.overview()
        print(f"{'overview (heatmap)':<22} {'':>8}       {(time.perf_counter() - t) * 1000:7.1f} ms")
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
