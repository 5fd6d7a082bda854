"""Benchmark of the README's first command: `zaoshu run prompts/wishes.yaml --provider embedded --limit 12`.

Runs that command as a user would (a subprocess, a fresh output folder) and reads what it did: the wall time,
the generation time (`raw.stats.json`), kept and rejected (`summary.json`), and from llama.cpp's own log the
prompt tokens it actually evaluated against those its prompt cache reused (`prefix-match hit`), prompt and
completion tokens/s. The bar: generation at least 2x faster than the 112 s measured before the prompts put
their fixed parts first (12 wishes, 1 thread, 2 busy cores), keeping as many wishes.

    python benchmarks/embedded.py                          # this checkout, threads chosen by zaoshu
    python benchmarks/embedded.py --against /path/to/old   # the same command from another checkout first,
                                                           # then this one, back to back, and their ratio

Needs the local extra. The machine's load moves these numbers a lot: the load average is printed beside
them, and a comparison is only fair back to back (--against).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from zaoshu.generator.embedded import cache_dir, server_log_path

ROOT = Path(__file__).resolve().parent.parent
BAR_SEND_S = 112.0  # generation of the 12 wishes before (1 thread, prompts with their variable parts first)


@dataclass
class Figures:
    wall: float
    send: float
    kept: int
    rejected: int
    prompt_tokens: int  # what the requests held (usage)
    evaluated: int  # what llama.cpp actually read (the rest came from its prompt cache)
    prompt_ms: float
    decoded: int
    decode_ms: float
    cache_hits: int  # requests that reused a cached prefix
    reused: int  # prompt tokens those reuses saved
    threads: str
    load: float

    def show(self, label: str) -> None:
        print(
            f"{label}: wall {self.wall:.1f} s (generation {self.send:.1f} s), kept {self.kept}, rejected "
            f"{self.rejected}; threads {self.threads}, load average {self.load:.1f} on {os.cpu_count()} cores"
        )
        print(
            f"  prompt: {self.prompt_tokens} tokens sent, {self.evaluated} evaluated "
            f"({self.evaluated / max(self.prompt_ms, 1e-9) * 1000:.1f} tokens/s), {self.reused} reused "
            f"from the prompt cache in {self.cache_hits} hits; completion: {self.decoded} tokens "
            f"({self.decoded / max(self.decode_ms, 1e-9) * 1000:.1f} tokens/s)"
        )


def parse_log(log: str) -> dict[str, float]:
    """Sums over llama-cpp-python's log: evaluated prompt tokens, decoded tokens, prompt-cache reuse."""
    prompt = re.findall(r"prompt eval time =\s+([\d.]+) ms /\s+(\d+) tokens", log)
    decode = re.findall(r"\seval time =\s+([\d.]+) ms /\s+(\d+) runs", log)
    hits = [int(n) for n in re.findall(r"(\d+) prefix-match hit", log)]
    threads = re.findall(r"^zaoshu: (\d+) threads", log, re.M)
    return {
        "prompt_ms": sum(float(ms) for ms, _ in prompt),
        "evaluated": sum(int(n) for _, n in prompt),
        "decode_ms": sum(float(ms) for ms, _ in decode),
        "decoded": sum(int(n) for _, n in decode),
        "cache_hits": sum(1 for n in hits if n > 0),
        "reused": sum(hits),
        "threads": threads[-1] if threads else "?",
    }


def run_once(checkout: Path, limit: int, extra: list[str]) -> Figures:
    out = Path(tempfile.mkdtemp(prefix="zaoshu-bench-")) / "out"
    recipe = checkout / "prompts" / "wishes.yaml"
    command = [sys.executable, "-c", "from zaoshu.cli import main; main()", "run", str(recipe)]
    command += ["--provider", "embedded", "--limit", str(limit), "-o", str(out), "--quiet", *extra]
    env = dict(os.environ, PYTHONPATH=str(checkout))
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.Popen(command, cwd=checkout, env=env, stdout=subprocess.DEVNULL)
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {proc.returncode}")
    wall = time.monotonic() - t0
    # this run's own log (a checkout from before logs were per run wrote the shared llama_server.log)
    log_path = server_log_path(proc.pid)
    if not log_path.exists():
        log_path = cache_dir() / "llama_server.log"
    stats = orjson.loads((out / "raw.stats.json").read_bytes())
    summary = orjson.loads((out / "summary.json").read_bytes())
    log = parse_log(log_path.read_text(errors="replace"))
    return Figures(
        wall=wall,
        send=stats["send_s"],
        kept=summary["kept"],
        rejected=sum(summary["rejected"].values()),
        prompt_tokens=stats["tokens_in"],
        evaluated=int(log["evaluated"]),
        prompt_ms=log["prompt_ms"],
        decoded=int(log["decoded"]),
        decode_ms=log["decode_ms"],
        cache_hits=int(log["cache_hits"]),
        reused=int(log["reused"]),
        threads=str(log["threads"]),
        load=load,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--against", type=Path, default=None, help="another checkout to run first, for a ratio")
    ap.add_argument("--threads", default=None, help="--threads for this checkout (default: zaoshu's choice)")
    ap.add_argument("--threads-before", default=None, help="--threads for the --against checkout")
    args = ap.parse_args()
    extra = ["--threads", args.threads] if args.threads else []
    before = None
    if args.against is not None:
        extra_before = ["--threads", args.threads_before] if args.threads_before else []
        before = run_once(args.against.resolve(), args.limit, extra_before)
        before.show(f"before ({args.against})")
    now = run_once(ROOT, args.limit, extra)
    now.show("this checkout")
    print(f"generation speed-up against the {BAR_SEND_S:g} s bar: {BAR_SEND_S / now.send:.2f}x (>= 2 passes)")
    if before is not None:
        print(
            f"back to back: generation {before.send / now.send:.2f}x faster, wall {before.wall / now.wall:.2f}x; "
            f"kept {before.kept} -> {now.kept}"
        )


if __name__ == "__main__":
    main()
