"""Benchmark of `zaoshu generate` against the fake OpenAI-compatible server on loopback.

Each client runs in its own process pinned to CPU 0, the server in another pinned to CPU 1 (so the
client's CPU and memory are measured apart). In one run:

  (a) 5,000 tasks at 200 ms latency, C = 64 and C = 256: our req/s, its ratio to the ideal C / latency,
      to a bare aiohttp client and to AsyncOpenAI + a semaphore (plus the SDK on aiohttp, for the record),
      every client on the same 5,000 tasks (`--sdk-tasks N` runs the slow SDK baselines on fewer);
  (b) the limiter, each scenario over --runs seeded runs (judged by the worst run; the median too), 2,000
      tasks at 200 ms: 6,000 requests/minute not announced at C=64 and C=256 (achieved / cap, share of
      answers 429 after the first 10 s, tasks lost); the cap dropping to 3,000 after 10 s and back after 20 s
      (seconds until a whole second admits 0.9 of the new cap); a tokens/minute cap at C=256 (achieved
      tokens / cap); 6,000 requests/minute announced in x-ratelimit-* headers. "Of the cap" is over the
      sending phase, which the limiter controls; with planning and start-up included it is printed beside
      (on a loaded machine start-up alone took up to 3 s of a 20 s run). Each run prints the load average:
      client and server are pinned to one core each, so other work on those cores (or a stall of the
      server process) shows up as dips and bursts in the admitted rate and as clusters of 429s;
  (c) 100,000 tasks at 5 ms latency: peak RSS and CPU ms per request of the client;
  (d) the seed's sequential loop (the sync `openai` client, one request at a time) on 50 tasks, and our
      speed-up over it.

Bars: (a) C=64 >= 0.95 of ideal; C=256 >= 1.0x bare aiohttp and >= 3x AsyncOpenAI; (b) unannounced caps:
min >= 0.95 of the cap, <= 2 % 429 after 10 s, 0 lost; drop: back within 0.9 of each new cap in <= 5 s, 0 lost;
tokens: >= 0.9 of the cap; announced: >= 0.95 of the cap; (c) <= 200 MB, <= 1.5 ms CPU per request. The run
ends with a summary: PASS or FAIL for every bar, with the figures judged.

    python benchmarks/generate.py                 # everything (several minutes; the SDK baselines are slow)
    python benchmarks/generate.py --quick         # small sizes, a smoke check of the script
    python benchmarks/generate.py --only a,d --tasks-a 2000
    python benchmarks/generate.py --only b --runs 10 --scenarios rpm64,rpm256,drop,tpm,announced
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
    import random

    from zaoshu.generator.engine import GenerateOptions, generate

    random.seed(a.get("seed", 0))  # the backoff jitter
    # A fresh response cache per run: its cost is counted (it is on by default), its hits never are.
    cache = Path(a["out"] + ".cache.sqlite3")
    for leftover in cache.parent.glob(cache.name + "*"):
        leftover.unlink()
    os.environ["ZAOSHU_RESPONSE_CACHE"] = str(cache)

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
        "send_s": stats.send_s,
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
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{kind} did not finish within 600 s:\n{(e.stderr or b'')[-3000:]!r}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the report


VERDICTS: list[tuple[str, bool]] = []  # (what, passed) of every bar judged, for the closing summary


def verdict(value: float, bar: float, *, at_most: bool = False, what: str = "") -> str:
    ok = value <= bar if at_most else value >= bar
    if what:
        VERDICTS.append((what, ok))
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
                line += f" {verdict(r_ideal, 0.95, what=f'(a) C={c} of ideal {r_ideal:.2f}')}"
            line += f"; vs bare aiohttp {r_bare:.2f}"
            if c == 256:
                line += f" {verdict(r_bare, 1.0, what=f'(a) C={c} vs bare aiohttp {r_bare:.2f}')}"
            line += f"; vs AsyncOpenAI {r_sdk:.1f}x"
            if c == 256:
                line += f" {verdict(r_sdk, 3.0, what=f'(a) C={c} vs AsyncOpenAI {r_sdk:.1f}x')}"
            print(line)


LIMIT_SCENARIOS = ("rpm64", "rpm256", "drop", "tpm", "announced")


def _scenario(name: str, recipe_charge: int) -> tuple[dict[str, Any], int, str]:
    """(server settings, concurrency, description) of one rate-limit scenario."""
    if name == "rpm64":
        return {"rpm": 6000}, 64, "6,000 RPM, not announced, C=64"
    if name == "rpm256":
        return {"rpm": 6000}, 256, "6,000 RPM, not announced, C=256"
    if name == "drop":
        return (
            {"rpm": 6000, "schedule": [[10, 3000], [20, 6000]]},
            256,
            "6,000 -> 3,000 RPM after 10 s -> 6,000 after 20 s, not announced, C=256",
        )
    if name == "tpm":
        tpm = recipe_charge * 6000  # the token cap alone allows 100 requests/s
        return {"tpm": tpm}, 256, f"{tpm:,} tokens/minute (100 requests/s), not announced, C=256"
    if name == "announced":
        return {"rpm": 6000, "announce": True}, 256, "6,000 RPM announced in x-ratelimit-* headers, C=256"
    raise SystemExit(f"unknown scenario {name!r}; one of {', '.join(LIMIT_SCENARIOS)}")


def _limit_run(name: str, seed: int, n: int, recipe: str, charge: int, out: Path) -> dict[str, Any]:
    """One seeded run of a scenario: the client's figures and the server's counts by second."""
    from zaoshu.testing import FakeServer

    settings, c, _ = _scenario(name, charge)
    with FakeServer(latency=0.2, seed=seed, cpu=SERVER_CPU, **settings) as srv:
        ours = run_child("ours", base_url=srv.base_url, recipe=recipe, c=c, out=str(out), seed=seed)
        st = srv.stats()
    out.unlink(missing_ok=True)
    after = [v for k, v in st["by_second"].items() if int(k) >= 10]
    answers_after = sum(v[0] for v in after)
    r = {
        "done": ours["done"],
        "lost": n - ours["done"],
        "share_429_after_10s": sum(v[1] for v in after) / answers_after if answers_after else 0.0,
        "wall": ours["wall"],
        "send_s": ours["send_s"],
        "cpu_ms_per_req": ours["cpu_ms_per_req"],
        "load": os.getloadavg()[0],
    }
    # Judged over the sending phase (what the limiter controls; the server's schedule starts at the first
    # request too); the whole call, planning and start-up included, is kept as `of_cap_wall`.
    for key, w in (("of_cap", ours["send_s"]), ("of_cap_wall", ours["wall"])):
        if name == "tpm":
            tokens = sum(v[1] for v in st["admitted"].values())
            r[key] = tokens / w / (settings["tpm"] / 60)
        elif name == "drop":  # against what the schedule allowed over the run: 100/s, 50/s for 10 s, 100/s
            r[key] = ours["done"] / (min(w, 10) * 100 + min(max(w - 10, 0), 10) * 50 + max(w - 20, 0) * 100)
        else:
            r[key] = ours["done"] / w / 100
    admitted = {int(k): v[0] for k, v in st["admitted"].items()}
    r["by_second"] = [admitted.get(s, 0) for s in range(max(admitted, default=0) + 1)]
    r["429_by_second"] = [v[1] for _, v in sorted(st["by_second"].items(), key=lambda kv: int(kv[0]))]
    if name == "drop":
        # Seconds from each change until a whole second admitted >= 0.9 of the new cap.
        r["recovery_s"] = [
            next((s + 1 - t for s in range(t, t + 30) if admitted.get(s, 0) >= 0.9 * cap), None)
            for t, cap in ((10, 50), (20, 100))
        ]
    return r


def bench_b(tmp: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The limiter: each scenario over `--runs` seeded runs, judged by its worst run (min) and median."""
    import statistics

    from zaoshu.generator.plan import plan
    from zaoshu.recipes import load_recipe

    n = args.tasks_b
    names = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    print(
        f"\n(b) rate limits: 200 ms latency, {n} tasks ({n + n // 2} for 'drop'), {args.runs} seeded runs each"
    )
    for name in names:
        size = n + n // 2 if name == "drop" else n
        recipe = str(write_recipe(tmp, size))
        task = plan(load_recipe(recipe)).tasks[0]
        charge = sum(len(m["content"]) for m in task.request) + 64  # what the server charges a request
        _, _, what = _scenario(name, charge)
        runs = []
        for seed in range(args.runs):
            r = _limit_run(name, seed, size, recipe, charge, tmp / f"b-{name}.jsonl")
            runs.append(r)
            extra = f", recovery {r['recovery_s']} s" if name == "drop" else ""
            print(
                f"    {name} seed {seed}: {r['of_cap']:.3f} of the cap ({r['of_cap_wall']:.3f} with start-up), "
                f"{r['done']}/{size} done, 429 after 10 s {r['share_429_after_10s']:.2%}{extra}; "
                f"load {r['load']:.2f}",
                flush=True,
            )
        caps = [r["of_cap"] for r in runs]
        shares = [r["share_429_after_10s"] for r in runs]
        lost = sum(r["lost"] for r in runs)
        print(f"  {name}: {what}")
        bar = 0.9 if name == "tpm" else 0.95
        low, mid = min(caps), statistics.median(caps)
        # The drop's bar is its recovery time (below); its share of the schedule's allowance is for the record.
        judged = (
            ""
            if name == "drop"
            else " " + verdict(low, bar, what=f"(b) {name} of the cap: min {low:.3f}, median {mid:.3f}")
        )
        line = (
            f"    of the cap: min {low:.3f}{judged}, median {mid:.3f}; "
            f"lost {lost} {verdict(lost, 0, at_most=True, what=f'(b) {name} lost {lost}')}"
        )
        top, mid429 = max(shares), statistics.median(shares)
        if name in ("rpm64", "rpm256"):
            what = f"(b) {name} 429 after 10 s: max {top:.2%}, median {mid429:.2%}"
            line += f"; 429 after 10 s: max {top:.2%} {verdict(top, 0.02, at_most=True, what=what)}"
            line += f", median {mid429:.2%}"
        else:
            line += f"; 429 after 10 s: max {top:.2%}, median {mid429:.2%}"
        if name == "drop":
            worst = [max((r["recovery_s"][i] or 99) for r in runs) for i in range(2)]
            what = f"(b) drop worst recovery {worst[0]} s, {worst[1]} s"
            line += (
                f"; worst recovery {worst[0]} s (to 3,000), {worst[1]} s (back to 6,000) "
                f"{verdict(max(worst), 5, at_most=True, what=what)}"
            )
        print(line, flush=True)
        results[f"b_{name}"] = runs


def bench_c(tmp: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    from zaoshu.testing import FakeServer

    n = args.tasks_c
    recipe = str(write_recipe(tmp, n))
    print(f"\n(c) {n} tasks at 5 ms latency, C=64: the client's peak RSS and CPU per request")
    with FakeServer(latency=0.005, cpu=SERVER_CPU) as srv:
        ours = run_child("ours", base_url=srv.base_url, recipe=recipe, c=64, out=str(tmp / "c.jsonl"))
    results["c"] = ours
    rss, cpu = ours["peak_rss_mb"], ours["cpu_ms_per_req"]
    print(
        f"  {ours['done']}/{n} ok, {ours['rps']:.0f} req/s; peak RSS {rss:.0f} MB "
        f"{verdict(rss, 200, at_most=True, what=f'(c) peak RSS {rss:.0f} MB')}; CPU {cpu:.3f} ms/request "
        f"(plan, sending, parsing and writing included) "
        f"{verdict(cpu, 1.5, at_most=True, what=f'(c) CPU {cpu:.3f} ms/request')}"
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
    p.add_argument("--runs", type=int, default=10, help="seeded runs of each rate-limit scenario")
    p.add_argument("--scenarios", default=",".join(LIMIT_SCENARIOS), help="rate-limit scenarios for (b)")
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
        args.runs = 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"zaoshu generate benchmark: client on CPU {CLIENT_CPU}, server on CPU {SERVER_CPU} ({cpus} CPUs)")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    results: dict[str, Any] = {}
    parts = {"a": bench_a, "b": bench_b, "c": bench_c, "d": bench_d}
    with tempfile.TemporaryDirectory(prefix="zaoshu-bench-") as tmp:
        for key in args.only.split(","):
            parts[key.strip()](Path(tmp), args, results)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if VERDICTS:
        failed = [what for what, ok in VERDICTS if not ok]
        print(f"\nsummary: {len(VERDICTS) - len(failed)} of {len(VERDICTS)} bars PASS")
        for what, ok in VERDICTS:
            print(f"  {'PASS' if ok else 'FAIL'}  {what}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
