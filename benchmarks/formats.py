"""Benchmark: convert, merge and split a million records; records/s, the ratio to a plain orjson loop
and to the bar.

The bar: at least 100,000 records/s per command on 2 cores (about 10 s for a million records), what a
user waiting on a dataset of that size needs. The baseline is the plainest program that does the same
kind of work: read the file line by line, `orjson.loads` each line, `orjson.dumps` it and write it out.
A ratio near 1 means the command costs about what that loop costs. On a shared machine the wall-clock
figures move with the load of others, so each line also shows the CPU time a record cost (this process
and any worker processes) and that against the loop: a figure that does not depend on how busy the
machine was.

    python3 benchmarks/formats.py              # 1,000,000 records
    python3 benchmarks/formats.py --rows 200000 --only xtuner,stratify   # a quicker before/after
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from zaoshu.formats import convert
from zaoshu.formats.merge import merge
from zaoshu.formats.split import split

BAR = 100_000
COMMANDS = ("openai", "xtuner", "alpaca", "sharegpt", "back", "merge", "split", "stratify")
RECIPIENTS = [
    "赵老师",
    "大舅",
    "大伯",
    "李总",
    "邻居赵大妈",
    "母亲",
    "姐姐",
    "妹妹",
    "哥哥",
    "弟弟",
    "同学",
    "领导",
]
SCENES = ["生日", "春节", "元宵节", "端午节", "中秋节", "乔迁新居", "工作升职", "康复", "新婚快乐"]
STYLES = ["小红书", "正常", "严肃"]
PROMPT = (
    "该祝福语字数小于 {n} 字。\n请根据对象称谓及场景，写出符合对象的身份和场景气氛的祝福文案。要求的风格是：{style}风格\n"
    "，注意不要有标题混在其中，对象称谓是：{r}，祝福场景是：{s}。\n 根据不同对象用不同的语气（尊敬、诙谐搞笑、亲近），"
    "请直接返回祝福文本，不要说任何其他话："
)


def make_records(path: Path, n: int, seed: int = 0, start: int = 0) -> None:
    """Records shaped like the generator's, meta and its prompt included (~1 KB a line)."""
    rng = random.Random(seed)
    dumps = orjson.dumps
    with open(path, "wb") as f:
        buf = []
        for i in range(start, start + n):
            r, s, style = rng.choice(RECIPIENTS), rng.choice(SCENES), rng.choice(STYLES)
            buf.append(
                dumps(
                    {
                        "id": f"{i:020x}",
                        "recipe": "wishes",
                        "axes": {"recipient": r, "scene": s, "style": style},
                        "messages": [
                            {
                                "role": "system",
                                "content": "你现在是一个送祝福大师，帮我针对不同人和事情、节日送对应的祝福",
                            },
                            {"role": "user", "content": f"祝{r}{s}，{style}风格"},
                            {
                                "role": "assistant",
                                "content": f"尊敬的{r}，值此{s}佳辰，恭祝您福寿安康，万事胜意！{i}",
                            },
                        ],
                        "meta": {
                            "prompt": PROMPT.format(n=50, style=style, r=r, s=s),
                            "provider": "deepseek",
                            "model": "deepseek-chat",
                            "usage": {"prompt_tokens": 210, "completion_tokens": 48},
                            "latency_ms": 812,
                            "attempts": 1,
                            "finish_reason": "stop",
                            "created_at": "2026-11-24T20:00:00Z",
                        },
                    }
                )
                + b"\n"
            )
            if len(buf) >= 10_000:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))


def orjson_baseline(path: Path, out: Path) -> int:
    """The plain loop every command is measured against: parse each line, write it back out."""
    n = 0
    loads, dumps = orjson.loads, orjson.dumps
    with open(path, "rb") as f, open(out, "wb") as w:
        for line in f:
            w.write(dumps(loads(line), option=orjson.OPT_APPEND_NEWLINE))
            n += 1
    out.unlink()
    return n


def warm(*paths: Path) -> None:
    """Read the inputs once so every measurement starts from the page cache (this VM evicts it often)."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(64 << 20):
                pass


#: CPU seconds of the last `timed` call: this process and its (finished) worker processes together,
#: and the workers' part
LAST_CPU = [0.0, 0.0]


def cpu_seconds() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = children.ru_utime + children.ru_stime
    return own.ru_utime + own.ru_stime + workers, workers


def timed(fn: Callable[[], object], *inputs: Path) -> float:
    warm(*inputs)
    cpu = cpu_seconds()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    after = cpu_seconds()
    LAST_CPU[:] = [after[0] - cpu[0], after[1] - cpu[1]]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="records per command (default 1,000,000)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="work folder (default: a temp folder, removed)"
    )
    parser.add_argument(
        "--only",
        default=",".join(COMMANDS),
        help=f"comma-separated commands to time (default all: {','.join(COMMANDS)})",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - set(COMMANDS):
        parser.error(f"unknown --only {','.join(sorted(only - set(COMMANDS)))}; known: {','.join(COMMANDS)}")
    n = args.rows
    work = args.dir or Path(tempfile.mkdtemp(prefix="zaoshu-bench-formats-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / "records.jsonl"
        t = timed(lambda: make_records(data, n))
        size = data.stat().st_size
        # merge input: the same records in two files that overlap by 1% (a re-run round), n rows in all
        dup = n // 100
        half = n // 2
        lines = data.read_bytes().splitlines(keepends=True)
        (work / "round1.jsonl").write_bytes(b"".join(lines[:half]))
        (work / "round2.jsonl").write_bytes(b"".join(lines[half - dup : n - dup]))
        del lines
        print(
            f"{n:,} records, {size / 1e6:,.0f} MB ({size / n:,.0f} bytes each), made in {t:.1f} s; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )

        base_s = timed(lambda: orjson_baseline(data, work / "plain.jsonl"), data)
        base_cpu = LAST_CPU[0]
        print(
            f"baseline: orjson loads+dumps per line  {base_s:6.2f} s  {n / base_s:>10,.0f} records/s  "
            f"{base_cpu / n * 1e6:.1f} us CPU a record"
        )
        print()
        print(
            f"{'command':<44} {'seconds':>8} {'records/s':>11} {'vs orjson loop':>15} {'vs 100k/s':>10} "
            f"{'CPU us/rec':>11} {'CPU vs loop':>12} {'in workers':>11}  bar"
        )

        rows: list[tuple[str, float]] = []

        def report(name: str, seconds: float) -> None:
            rows.append((name, seconds))
            rate = n / seconds
            cpu, in_workers = LAST_CPU
            print(
                f"{name:<44} {seconds:8.2f} {rate:11,.0f} {rate * base_s / n:14.2f}x {rate / BAR:9.2f}x "
                f"{cpu / n * 1e6:11.1f} {base_cpu / cpu:11.2f}x {in_workers / n * 1e6:11.1f}  "
                + ("PASS" if rate >= BAR else "FAIL")
            )

        for fmt, suffix in (
            ("openai", ".jsonl"),
            ("xtuner", ".jsonl"),
            ("alpaca", ".jsonl"),
            ("sharegpt", ".jsonl"),
        ):
            out = work / f"out.{fmt}{suffix}"
            if fmt in only:
                report(
                    f"convert zaoshu -> {fmt}", timed(lambda out=out, fmt=fmt: convert(data, out, fmt), data)
                )
            elif fmt == "openai" and "back" in only:
                convert(data, out, fmt)  # the next command's input
            if fmt != "openai":
                out.unlink(missing_ok=True)
        if "back" in only:
            report(
                "convert openai -> zaoshu (ids from content)",
                timed(
                    lambda: convert(work / "out.openai.jsonl", work / "back.jsonl", "zaoshu"),
                    work / "out.openai.jsonl",
                ),
            )
            (work / "back.jsonl").unlink()
        (work / "out.openai.jsonl").unlink(missing_ok=True)
        if "merge" in only:
            merged = work / "merged.jsonl"
            result = {}
            report(
                f"merge 2 files, dedup by id ({dup:,} repeats)",
                timed(
                    lambda: result.setdefault(
                        "m", merge([work / "round1.jsonl", work / "round2.jsonl"], merged)
                    )
                ),
            )
            assert result["m"].written.count == n - dup, result["m"].written.count
            merged.unlink()  # outputs go as soon as measured: a GB of dirty pages slows the next command
        if "split" in only:
            report(
                "split --test 0.1 --seed 0",
                timed(lambda: split(data, work / "split", test=0.1, seed=0), data),
            )
            shutil.rmtree(work / "split")
        if "stratify" in only:
            report(
                "split --test 0.1 --seed 0 --stratify style",
                timed(lambda: split(data, work / "split2", test=0.1, seed=0, stratify="style"), data),
            )
            shutil.rmtree(work / "split2")
        # The machine is shared: measure the baseline again and show the spread, so a ratio can be trusted.
        again = timed(lambda: orjson_baseline(data, work / "plain.jsonl"), data)
        print(
            f"baseline again: orjson loop {again:6.2f} s  {n / again:>10,.0f} records/s "
            f"(ratios above use the first; load average now {os.getloadavg()[0]:.1f})"
        )
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
