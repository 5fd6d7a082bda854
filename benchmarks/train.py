"""Benchmark: what `zaoshu train` adds over running XTuner's three commands by hand.

The bar (on a GPU): wall time of `zaoshu train` at most 2 % above the same config run directly.
Both sides run the same steps on the same rendered config and data: `xtuner.tools.train`, then
`pth_to_hf`, then `merge` (LoRA/QLoRA). The direct side runs `python -m xtuner.tools...` (through
`zaoshu.trainer.launch` on CPU, where torchvision's ops need the shims to import at all); the zaoshu side
is the whole command: checks, data and config rendering, streaming, checkpoint checks. Runs alternate,
and the best of each side is compared. Tokens/s counts packed training tokens over the train step.

    python3 benchmarks/train.py                              # CPU: tiny model, LoRA
    python3 benchmarks/train.py --method qlora --hidden 1024 --layers 8 --iters 200 --max-length 1024  # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_model import build_tiny_qwen2, wishes_records  # noqa: E402

from zaoshu.records import write_records  # noqa: E402


def _run(argv: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(argv, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    if rc != 0:
        sys.exit(f"failed (exit {rc}): {' '.join(argv)}\n  log: {log}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="lora", choices=["qlora", "lora", "full"])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS for both sides (CPU)")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    tmp = Path(tempfile.mkdtemp(prefix="zaoshu-bench-train-"))
    model = build_tiny_qwen2(tmp / "model", hidden_size=args.hidden, layers=args.layers)
    data = tmp / "wishes.jsonl"
    write_records(data, wishes_records(args.records))
    env = dict(os.environ, OMP_NUM_THREADS=args.threads, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_CACHE=str(tmp / "hf-cache"), PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")  # fmt: skip
    options = ["--model", str(model), "--method", args.method, "--max-length", str(args.max_length),
               "--grad-accum", "1", "--max-iters", str(args.iters), "--save-steps", str(args.iters),
               "--eval-freq", str(args.iters), "--eval-max-new-tokens", "8"]  # fmt: skip
    zaoshu = [sys.executable, "-c", "from zaoshu.cli import main; main()", "train", str(data)]

    # The config and data both sides use: rendered once by a dry run.
    rendered = tmp / "rendered"
    _run([*zaoshu, *options, "--work-dir", str(rendered), "--dry-run"], env, tmp / "dry.log")
    config = rendered / "xtuner_config.py"
    launch = [sys.executable, "-m", "zaoshu.trainer.launch"] if not cuda else [sys.executable, "-m"]

    direct_times, zaoshu_times, train_times = [], [], []
    for i in range(args.repeat):
        out = tmp / f"direct{i}"
        started = time.perf_counter()
        train_s = _run([*launch, "xtuner.tools.train", str(config), "--work-dir", str(out / "xtuner")], env,
                       tmp / f"direct{i}-train.log")  # fmt: skip
        checkpoint = (out / "xtuner" / "last_checkpoint").read_text().strip()
        convert = [*launch, "xtuner.tools.model_converters.pth_to_hf", str(config), checkpoint, str(out / "hf"),
                   "--safe-serialization"] + ([] if cuda else ["--fp32"])  # fmt: skip
        _run(convert, env, tmp / f"direct{i}-hf.log")
        if args.method != "full":
            _run([*launch, "xtuner.tools.model_converters.merge", str(model), str(out / "hf"), str(out / "merged"),
                  "--safe-serialization", "--device", "cuda" if cuda else "cpu"], env, tmp / f"direct{i}-merge.log")  # fmt: skip
        direct_times.append(time.perf_counter() - started)
        train_times.append(train_s)

        work = tmp / f"zaoshu{i}"
        zaoshu_times.append(_run([*zaoshu, *options, "--work-dir", str(work)], env, tmp / f"zaoshu{i}.log"))
        steps = [json.loads(line) for line in (work / "logs" / "steps.jsonl").read_text().splitlines()]
        train_times.append(steps[0]["seconds"])
        shutil.rmtree(out, ignore_errors=True)

    direct, ours = min(direct_times), min(zaoshu_times)
    tokens = args.iters * args.max_length
    print(f"device: {device}; method {args.method}; model hidden {args.hidden} x {args.layers} layers; "
          f"{args.iters} iterations of {args.max_length} tokens; OMP_NUM_THREADS={args.threads}")  # fmt: skip
    print(f"direct xtuner (train + pth_to_hf{' + merge' if args.method != 'full' else ''}): "
          f"best {direct:.2f} s of {[round(t, 2) for t in direct_times]}")  # fmt: skip
    print(f"zaoshu train:  best {ours:.2f} s of {[round(t, 2) for t in zaoshu_times]}")
    print(
        f"training throughput: {tokens / min(train_times):.0f} tokens/s (best train step, start-up included)"
    )
    overhead = ours / direct - 1
    print(f"overhead: {overhead * 100:+.1f} %  (bar on a GPU: <= +2 %)  ratio {ours / direct:.3f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
