"""Benchmark of `zaoshu judge` against the fake server's judge mode on loopback, and of `zaoshu eval` on
the tiny local model.

(a) 5,000 records judged at 200 ms latency, C = 64: judge req/s against the generator's own req/s on 5,000
    tasks at the same latency and concurrency (bar: >= 0.9 of it), and client CPU ms per record. Each
    client runs in its own process pinned to CPU 0, the server pinned to CPU 1.
(b) `zaoshu eval` of the tiny Qwen2 built locally against itself: seconds per 100 inputs on CPU
    (generation only, 32 new tokens, batch 8), two models.

    python benchmarks/judge.py             # both
    python benchmarks/judge.py --only a --records 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

CLIENT_CPU, SERVER_CPU = 0, 1
ROOT = Path(__file__).resolve().parent.parent
WISHES = ROOT / "prompts" / "wishes.yaml"


def _pin() -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _options(base_url: str, c: int) -> Any:
    from zaoshu.generator.engine import GenerateOptions

    return GenerateOptions(
        provider="local", base_url=base_url, model="fake-model", concurrency=c, quiet=True, handle_signals=False,
        timeout=60,
    )  # fmt: skip


def child_generate(a: dict[str, Any]) -> dict[str, Any]:
    from zaoshu.generator.engine import generate

    cpu0 = _cpu()
    stats = generate(a["recipe"], a["out"], _options(a["base_url"], a["c"]))
    return {
        "done": stats.done,
        "rps": stats.done / stats.send_s,
        "cpu_ms": (_cpu() - cpu0) * 1000 / stats.done,
    }


def child_judge(a: dict[str, Any]) -> dict[str, Any]:
    from zaoshu.judging import judge

    cpu0 = _cpu()
    s = judge(a["records"], a["out"], WISHES, _options(a["base_url"], a["c"]))
    return {
        "done": s.new,
        "kept": s.kept,
        "rejected": s.rejected,
        "failed": s.failed,
        "rps": s.new / s.send_s,
        "wall": s.wall_s,
        "cpu_ms": (_cpu() - cpu0) * 1000 / s.new,
    }


CHILDREN = {"generate": child_generate, "judge": child_judge}


def run_child(kind: str, **args: Any) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_inputs(tmp: Path, n: int) -> tuple[Path, Path]:
    """A recipe of n generation tasks, and n wishes records to judge (from the wishes recipe's plan)."""
    recipe = {
        "name": "bench",
        "system": "你现在是一个送祝福大师",
        "axes": {"who": [f"朋友{i}" for i in range(n // 50)], "scene": [f"场景{j}" for j in range(50)]},
        "styles": {"正常": {"user_templates": ["祝{{ who }}{{ scene }}"], "max_chars": 20}},
        "prompt": "正常风格。对象称谓是：{{ who }}，祝福场景是：{{ scene }}。请直接返回祝福文本：",
        "model": {"temperature": 1.0, "max_tokens": 64},
    }
    recipe_path = tmp / "bench.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    from zaoshu.generator.plan import plan
    from zaoshu.recipes import load_recipe
    from zaoshu.testing.fakeserver import wish

    tasks = plan(load_recipe(WISHES), rounds=3).tasks
    records_path = tmp / "clean.jsonl"
    with open(records_path, "wb") as f:
        for i in range(n):
            task = tasks[i % len(tasks)]
            record = task.to_record(wish(task.prompt), {"provider": "bench", "model": "fake"})
            record["id"] = f"{task.id}-{i}"
            f.write(orjson.dumps(record) + b"\n")
    return recipe_path, records_path


def bench_a(tmp: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    from zaoshu.testing import FakeServer

    recipe, records = write_inputs(tmp, args.records)
    print(f"(a) {args.records} records at 200 ms latency, C = {args.c}")
    with FakeServer(latency=0.2, reply="wishes", cpu=SERVER_CPU) as srv:
        gen = run_child(
            "generate", base_url=srv.base_url, recipe=str(recipe), c=args.c, out=str(tmp / "raw.jsonl")
        )
        srv.configure(latency=0.2, reply="judge", judge_fenced=0.3, judge_scores=[["以下是", 1]])
        jud = run_child(
            "judge", base_url=srv.base_url, records=str(records), c=args.c, out=str(tmp / "j.jsonl")
        )
    ratio = jud["rps"] / gen["rps"]
    results["a"] = {"generate": gen, "judge": jud, "ratio": ratio}
    ok = "PASS" if ratio >= 0.9 else "FAIL"
    print(f"  generate {gen['rps']:.1f} req/s ({gen['cpu_ms']:.2f} ms CPU/record)")
    print(
        f"  judge    {jud['rps']:.1f} req/s ({jud['cpu_ms']:.2f} ms CPU/record; kept {jud['kept']}, "
        f"rejected {jud['rejected']}, failed {jud['failed']}; wall {jud['wall']:.1f} s)"
    )
    print(f"  judge / generate = {ratio:.3f} {ok} (bar >= 0.9); ideal C / latency = {args.c / 0.2:.0f}")


def bench_b(tmp: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_qwen2

    from zaoshu.evaluate import EvalOptions, Sampling, evaluate
    from zaoshu.generator.plan import plan
    from zaoshu.recipes import load_recipe

    tiny = build_tiny_qwen2(tmp / "tiny")
    inputs = tmp / "test.jsonl"
    tasks = plan(load_recipe(WISHES), limit=100).tasks
    inputs.write_bytes(b"".join(orjson.dumps(t.to_record("", {})) + b"\n" for t in tasks))
    t0 = time.monotonic()
    sampling = Sampling(max_new_tokens=32, batch_size=8)
    result = evaluate(
        EvalOptions([str(tiny), str(tiny)], tmp / "eval", WISHES, inputs=inputs, sampling=sampling)
    )
    results["b"] = {"seconds_per_100_inputs": result["seconds_per_100_inputs"], "wall": time.monotonic() - t0}
    per = result["seconds_per_100_inputs"]
    print(
        f"(b) zaoshu eval, tiny model on CPU: {per['base']:.1f} s (BASE), {per['tuned']:.1f} s (TUNED) per 100 "
        f"inputs (generation, 32 new tokens, batch 8); whole command {time.monotonic() - t0:.1f} s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--only", default="a,b")
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("-c", type=int, default=64)
    args = p.parse_args()
    if args.child:
        _pin()
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        if "a" in args.only:
            bench_a(Path(d), args, results)
        if "b" in args.only:
            bench_b(Path(d), args, results)
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
