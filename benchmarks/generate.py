"""Benchmark of `zaoshu generate` against the fake OpenAI-compatible server on loopback.

Each client runs in its own process pinned to CPU 0, the server in another pinned to CPU 1 (so the
client's CPU and memory are measured apart. In one run:

  (a) 5,000 tasks at 200 ms latency, C = 64 and C = 256: our req/s, its ratio to the ideal C / latency,
      to a bare aiohttp client and to AsyncOpenAI + a semaphore (plus the SDK on aiohttp, for the record),
      every client on the same 5,000 tasks (`--sdk-tasks N` runs the slow SDK baselines on fewer);
  (b) the server enforces 6,000 requests/minute, unannounced: 2,000 tasks, how many succeed, the share of
      answers that were 429 after the first 10 s, achieved / limit;
  (c) 100,000 tasks at 5 ms latency: peak RSS and CPU ms per request of the client;
  (d) the seed's sequential loop (the sync `openai` client, one request at a time) on 50 tasks, and our
      speed-up over it.

Bars: (a) C=64 >= 0.9 of ideal; C=256 >= 0.8 of bare aiohttp and >= 3x AsyncOpenAI; (b) 2000/2000,
<= 2 % 429 after warm-up, >= 0.9 of the limit; (c) <= 200 MB, <= 1.5 ms CPU per request.

    python benchmarks/generate.py                 # everything (several minutes; the SDK baselines are slow)
    python benchmarks/generate.py --quick         # small sizes, a smoke check of the script
    python benchmarks/generate.py --only a,d --tasks-a 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

CLIENT_CPU, SERVER_CPU = 0, 1
PROMPT = (
    "该祝福语字数小于 20 字。请根据对象称谓及场景，写出符合对象的身份和场景气氛的祝福文案。要求的风格是：正常风格，"
    "有礼貌即可，注意不要有标题混在其中，对象称谓是：{{ who }}，祝福场景是：{{ scene }}。"
    "根据不同对象用不同的语气（尊敬、诙谐搞笑、亲近），请直接返回祝福文本，不要说任何其他话："
)


def write_recipe(directory: Path, n: int) -> Path:
    """A recipe of exactly n tasks (who × scene), shaped like the wishes recipe."""
    scenes = 50 if n % 50 == 0 and n >= 50 else 1
    recipe = {
        "name": f"bench{n}",
        "system": "你现在是一个送祝福大师，帮我针对不同人和事情、节日送对应的祝福",
        "axes": {
            "who": [f"朋友{i}" for i in range(n // scenes)],
            "scene": [f"场景{j}" for j in range(scenes)],
        },
        "styles": {"正常": {"user_templates": ["祝{{ who }}{{ scene }}"], "max_chars": 20}},
        "prompt": PROMPT,
        "model": {"temperature": 1.0, "max_tokens": 64},
    }
    path = directory / f"bench{n}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


# ------------------------------------------------------------------ clients (each in a child process)


def _pin() -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})


def _requests(recipe: str) -> list[list[dict[str, str]]]:
    from zaoshu.generator.plan import plan
    from zaoshu.recipes import load_recipe

    return [t.request for t in plan(load_recipe(recipe)).tasks]


def _usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def child_ours(a: dict[str, Any]) -> dict[str, Any]:
    from zaoshu.generator.engine import GenerateOptions, generate

    options = GenerateOptions(
        provider="local",
        base_url=a["base_url"],
        model="fake-model",
        concurrency=a["c"],
        quiet=True,
        handle_signals=False,
        timeout=60,
    )
    out = Path(a["out"])
    cpu0, _ = _usage()
    t0 = time.perf_counter()
    stats = generate(a["recipe"], out, options)
    wall = time.perf_counter() - t0
    cpu1, rss = _usage()
    sent = stats.attempts
    return {
        "done": stats.done,
        "failed": stats.failed,
        "wall": wall,
        "rps": stats.done / stats.send_s,  # the sending phase, as the baselines are timed
        "rps_total": stats.done / wall,  # planning and set-up included
        "cpu_ms_per_req": (cpu1 - cpu0) * 1000 / max(sent, 1),
        "peak_rss_mb": rss,
        "attempts": sent,
        "rate_limited": stats.rate_limited,
        "window_min": stats.window_min,
    }


def child_bare(a: dict[str, Any]) -> dict[str, Any]:
    import aiohttp
    import orjson

    reqs = _requests(a["recipe"])[: a["n"]]
    url = a["base_url"] + "/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}

    async def main() -> int:
        sem = asyncio.Semaphore(a["c"])
        ok = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=a["c"])) as session:

            async def one(messages: list[dict[str, str]]) -> None:
                nonlocal ok
                body = orjson.dumps({"model": "fake-model", "messages": messages, "temperature": 1.0})
                async with sem, session.post(url, data=body, headers=headers) as resp:
                    data = orjson.loads(await resp.read())
                    ok += bool(data["choices"][0]["message"]["content"])

            await asyncio.gather(*(one(m) for m in reqs))
        return ok

    return _timed(main, len(reqs))


def _timed(main: Any, n: int) -> dict[str, Any]:
    """Run a baseline's coroutine and report what it did per request: done, wall, req/s, CPU ms."""
    cpu0, _ = _usage()
    t0 = time.perf_counter()
    ok = asyncio.run(main())
    wall = time.perf_counter() - t0
    cpu1, _ = _usage()
    return {"done": ok, "wall": wall, "rps": ok / wall, "cpu_ms_per_req": (cpu1 - cpu0) * 1000 / n}


def child_openai(a: dict[str, Any]) -> dict[str, Any]:
    from openai import AsyncOpenAI, DefaultAioHttpClient

    reqs = _requests(a["recipe"])[: a["n"]]

    async def main() -> int:
        kwargs: dict[str, Any] = {"http_client": DefaultAioHttpClient()} if a.get("aiohttp") else {}
        client = AsyncOpenAI(base_url=a["base_url"], api_key="x", **kwargs)
        sem = asyncio.Semaphore(a["c"])
        ok = 0

        async def one(messages: list[dict[str, str]]) -> None:
            nonlocal ok
            async with sem:
                r = await client.chat.completions.create(
                    model="fake-model", messages=messages, temperature=1.0
                )
                ok += bool(r.choices[0].message.content)

        async with client:
            await asyncio.gather(*(one(m) for m in reqs))
        return ok

    return _timed(main, len(reqs))


def child_seed(a: dict[str, Any]) -> dict[str, Any]:
    """The seed's loop: the sync OpenAI client, one request after another."""
    from openai import OpenAI

    reqs = _requests(a["recipe"])[: a["n"]]
    client = OpenAI(base_url=a["base_url"], api_key="x")
    t0 = time.perf_counter()
    ok = 0
    for messages in reqs:
        r = client.chat.completions.create(model="fake-model", messages=messages, temperature=1.0)
        ok += bool(r.choices[0].message.content)
    wall = time.perf_counter() - t0
    return {"done": ok, "wall": wall, "rps": ok / wall}


CHILDREN = {"ours": child_ours, "bare": child_bare, "openai": child_openai, "seed": child_seed}


def run_child(kind: str, **args: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the report


def verdict(value: float, bar: float, *, at_most: bool = False) -> str:
    ok = value <= bar if at_most else value >= bar
    return f"{'PASS' if ok else 'FAIL'} (bar {'<=' if at_most else '>='} {bar:g})"


def bench_a(tmp: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    from zaoshu.testing import FakeServer

    recipe = str(write_recipe(tmp, args.tasks_a))
    n_sdk = args.tasks_a if args.sdk_tasks is None else min(args.tasks_a, args.sdk_tasks)
    print(f"\n(a) {args.tasks_a} tasks at 200 ms latency (AsyncOpenAI baselines on {n_sdk} tasks)")
    with FakeServer(latency=0.2, cpu=SERVER_CPU) as srv:
        for c in (64, 256):
            out = tmp / f"a{c}.jsonl"
            ours = run_child("ours", base_url=srv.base_url, recipe=recipe, c=c, out=str(out))
            bare = run_child("bare", base_url=srv.base_url, recipe=recipe, c=c, n=args.tasks_a)
            sdk = run_child("openai", base_url=srv.base_url, recipe=recipe, c=c, n=n_sdk)
            sdk_aio = run_child("openai", base_url=srv.base_url, recipe=recipe, c=c, n=n_sdk, aiohttp=True)
            ideal = c / 0.2
            results[f"a{c}"] = {"ours": ours, "bare": bare, "openai": sdk, "openai_aiohttp": sdk_aio}
            print(
                f"  C={c:<3} zaoshu {ours['rps']:7.1f} req/s ({ours['rps_total']:.1f} with planning; "
                f"{ours['done']}/{args.tasks_a} ok, "
                f"{ours['cpu_ms_per_req']:.2f} ms CPU/req) | bare aiohttp {bare['rps']:7.1f} "
                f"({bare['cpu_ms_per_req']:.2f} ms) | AsyncOpenAI {sdk['rps']:6.1f} ({sdk['cpu_ms_per_req']:.2f} ms)"
                f" | AsyncOpenAI on aiohttp {sdk_aio['rps']:6.1f} ({sdk_aio['cpu_ms_per_req']:.2f} ms)"
            )
            r_ideal, r_bare, r_sdk = ours["rps"] / ideal, ours["rps"] / bare["rps"], ours["rps"] / sdk["rps"]
            line = f"        ideal {ideal:.0f}: ratio {r_ideal:.2f}"
            if c == 64:
                line += f" {verdict(r_ideal, 0.9)}"
            line += f"; vs bare aiohttp {r_bare:.2f}"
            if c == 256:
                line += f" {verdict(r_bare, 0.8)}"
            line += f"; vs AsyncOpenAI {r_sdk:.1f}x"
            if c == 256:
                line += f" {verdict(r_sdk, 3.0)}"
            print(line)


def bench_b(tmp: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    from zaoshu.testing import FakeServer

    n = args.tasks_b
    recipe = str(write_recipe(tmp, n))
    print(f"\n(b) server capped at 6,000 requests/minute (not announced), 200 ms latency, {n} tasks, C=256")
    with FakeServer(latency=0.2, rpm=6000, cpu=SERVER_CPU) as srv:
        ours = run_child("ours", base_url=srv.base_url, recipe=recipe, c=256, out=str(tmp / "b.jsonl"))
        st = srv.stats()
    after = [v for k, v in st["by_second"].items() if int(k) >= 10]
    req_after = sum(v[0] for v in after)
    r429_after = sum(v[1] for v in after)
    share = r429_after / req_after if req_after else 0.0
    achieved = ours["done"] / ours["wall"]  # the whole call, start-up included
    results["b"] = {"ours": ours, "server": {k: v for k, v in st.items() if k != "settings"}}
    print(
        f"  succeeded {ours['done']}/{n} {verdict(ours['done'] / n, 1.0)}; "
        f"429s: {st.get('429', 0)} in all, {r429_after} of {req_after} answers after the first 10 s = "
        f"{share:.1%} {verdict(share, 0.02, at_most=True)}"
    )
    print(f"  achieved {achieved:.1f} req/s of 100 = {achieved / 100:.2f} {verdict(achieved / 100, 0.9)}")


def bench_c(tmp: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    from zaoshu.testing import FakeServer

    n = args.tasks_c
    recipe = str(write_recipe(tmp, n))
    print(f"\n(c) {n} tasks at 5 ms latency, C=64: the client's peak RSS and CPU per request")
    with FakeServer(latency=0.005, cpu=SERVER_CPU) as srv:
        ours = run_child("ours", base_url=srv.base_url, recipe=recipe, c=64, out=str(tmp / "c.jsonl"))
    results["c"] = ours
    print(
        f"  {ours['done']}/{n} ok, {ours['rps']:.0f} req/s; peak RSS {ours['peak_rss_mb']:.0f} MB "
        f"{verdict(ours['peak_rss_mb'], 200, at_most=True)}; CPU {ours['cpu_ms_per_req']:.3f} ms/request "
        f"(plan, sending, parsing and writing included) {verdict(ours['cpu_ms_per_req'], 1.5, at_most=True)}"
    )


def bench_d(tmp: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    from zaoshu.testing import FakeServer

    n = args.tasks_d
    recipe = str(write_recipe(tmp, n))
    print(f"\n(d) the seed's sequential loop (sync openai client) on {n} tasks at 200 ms latency")
    with FakeServer(latency=0.2, cpu=SERVER_CPU) as srv:
        seed = run_child("seed", base_url=srv.base_url, recipe=recipe, n=n)
    ours = results.get("a256", {}).get("ours")
    results["d"] = seed
    line = f"  seed loop {seed['rps']:.1f} req/s"
    if ours:
        line += f"; zaoshu at C=256 {ours['rps']:.1f} req/s = {ours['rps'] / seed['rps']:.0f}x the seed"
    print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("child_args", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke check of the script")
    p.add_argument("--only", default="a,b,c,d", help="which parts, e.g. a,d")
    p.add_argument("--tasks-a", type=int, default=5000)
    p.add_argument(
        "--sdk-tasks", type=int, default=None, help="tasks for the AsyncOpenAI baselines [default: --tasks-a]"
    )
    p.add_argument("--tasks-b", type=int, default=2000)
    p.add_argument("--tasks-c", type=int, default=100_000)
    p.add_argument("--tasks-d", type=int, default=50)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if args.child:
        _pin()
        print(json.dumps(CHILDREN[args.child](json.loads(args.child_args))))
        return
    if args.quick:
        args.tasks_a, args.sdk_tasks, args.tasks_b, args.tasks_c, args.tasks_d = 1000, 300, 500, 10_000, 10
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"zaoshu generate benchmark: client on CPU {CLIENT_CPU}, server on CPU {SERVER_CPU} ({cpus} CPUs)")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    results: dict[str, Any] = {}
    parts = {"a": bench_a, "b": bench_b, "c": bench_c, "d": bench_d}
    with tempfile.TemporaryDirectory(prefix="zaoshu-bench-") as tmp:
        for key in args.only.split(","):
            parts[key.strip()](Path(tmp), args, results)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
