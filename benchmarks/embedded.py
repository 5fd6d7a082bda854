"""Benchmark of the embedded model: tokens/s of llama.cpp serving the packaged Qwen2.5-Coder-1.5B (issue 7).

Starts the server the way `zaoshu run --provider embedded` does (`zaoshu.generator.embedded.llama_server`),
sends N wishes prompts one at a time with the recipe's own sampling parameters, and reads llama.cpp's own
timings from its log: prompt evaluation and decoding tokens/s apart, plus completion tokens per wall
second as a user sees it. The bar is the issue's measurement: ~10-12 decoded tokens/s on 1 thread.

    python benchmarks/embedded.py                  # 8 prompts, 1 thread
    python benchmarks/embedded.py --n 4 --threads 2
    python benchmarks/embedded.py --model-path other.gguf

Needs the local extra (pip install -e ".[local]"). On a loaded machine the numbers move a lot: note the
load average it prints beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from pathlib import Path

import aiohttp

from zaoshu.generator.embedded import ServerOptions, llama_server, model_name, resolve_model
from zaoshu.generator.engine import request_params
from zaoshu.generator.plan import plan
from zaoshu.recipes import load_recipe

ROOT = Path(__file__).resolve().parent.parent
BAR_DECODE = 10.0  # tokens/s measured in the issue (1 thread, 2 busy cores)


def perf(log: str) -> tuple[float, int, float, int]:
    """Summed (ms, tokens) of prompt evaluation and of decoding from llama.cpp's perf lines."""
    prompt = re.findall(r"prompt eval time =\s+([\d.]+) ms /\s+(\d+) tokens", log)
    decode = re.findall(r"\seval time =\s+([\d.]+) ms /\s+(\d+) runs", log)
    return (
        sum(float(ms) for ms, _ in prompt),
        sum(int(n) for _, n in prompt),
        sum(float(ms) for ms, _ in decode),
        sum(int(n) for _, n in decode),
    )


async def main(args: argparse.Namespace) -> None:
    recipe = load_recipe(args.recipe)
    tasks = plan(recipe, limit=args.n, seed=args.seed).tasks
    params = request_params(recipe) | ({"max_tokens": args.max_tokens} if args.max_tokens else {})
    t0 = time.monotonic()
    path = resolve_model(args.model_path)
    joined = time.monotonic() - t0
    log = Path(tempfile.mkdtemp()) / "llama_server.log"
    t1 = time.monotonic()
    async with llama_server(path, ServerOptions(threads=args.threads, log_path=log)) as url:
        started = time.monotonic() - t1
        completion = 0
        t2 = time.monotonic()
        async with aiohttp.ClientSession() as session:
            for task in tasks:
                body = {"model": model_name(path), "messages": task.request, **params}
                async with session.post(f"{url}/chat/completions", json=body) as resp:
                    reply = await resp.json()
                completion += reply["usage"]["completion_tokens"]
                print(f"  {task.axes}: {reply['choices'][0]['message']['content'][:60]!r}")
        wall = time.monotonic() - t2
    p_ms, p_n, d_ms, d_n = perf(log.read_text(errors="replace"))
    decode = d_n / d_ms * 1000 if d_ms else 0.0
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; threads {args.threads}")
    print(f"model ready in {joined:.1f} s (join/verify or cache hit), server up in {started:.1f} s")
    print(f"prompt evaluation: {p_n} tokens, {p_n / p_ms * 1000 if p_ms else 0:.1f} tokens/s")
    print(
        f"decoding: {d_n} tokens, {decode:.1f} tokens/s (ratio to the {BAR_DECODE:g} tokens/s bar: "
        f"{decode / BAR_DECODE:.2f})"
    )
    print(
        f"as a user sees it: {len(tasks)} requests in {wall:.1f} s, {completion / wall:.1f} completion tokens/s"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(ROOT / "prompts" / "wishes.yaml"))
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=None, help="override the recipe's max_tokens")
    ap.add_argument("--model-path", default=None)
    asyncio.run(main(ap.parse_args()))
