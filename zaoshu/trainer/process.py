"""Running XTuner's tools as child processes: the command lines, the environment, and a streamed log.

Every tool runs with our interpreter as a module: `sys.executable -m xtuner.tools.train ...` on CUDA, so the
exit status is the tool's own (the `xtuner` console script exits 0 after a crash and runs whatever `python` is
first on PATH). On CPU the same module runs through `sys.executable -m zaoshu.trainer.launch <module> ...`,
which installs the CPU shims (zaoshu/trainer/shims.py) first; a GPU install needs none.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zaoshu.errors import ZaoshuError

LAUNCH = "zaoshu.trainer.launch"
TRAIN = "xtuner.tools.train"
PTH_TO_HF = "xtuner.tools.model_converters.pth_to_hf"
MERGE = "xtuner.tools.model_converters.merge"

Echo = Callable[[str], None]
_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)|AssertionError)\b.*")


@dataclass
class Step:
    """One child process: what it is called in messages, its argv and extra environment."""

    name: str
    argv: list[str]
    env: dict[str, str]

    def shell(self) -> str:
        """The command as a user would type it (environment first)."""
        import shlex

        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + shlex.join(self.argv)


def _module(module: str, *, cpu: bool) -> list[str]:
    """`-m MODULE`, through the shim launcher on CPU."""
    return ["-m", LAUNCH, module] if cpu else ["-m", module]


def tool_argv(module: str, *args: str, cpu: bool) -> list[str]:
    """`python -m MODULE ARGS` with our interpreter (via the launcher on CPU, see the module docstring)."""
    return [sys.executable, *_module(module, cpu=cpu), *args]


def distributed_argv(gpus: int, module: str, *args: str, cpu: bool = False) -> list[str]:
    """XTuner's own multi-GPU path: torchrun with one process per GPU and `--launcher pytorch`."""
    port = os.environ.get("PORT") or str(random.randint(20000, 29999))
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={gpus}",
        f"--master_port={port}",
        *_module(module, cpu=cpu),
        *args,
        "--launcher",
        "pytorch",
    ]


def child_env(extra: dict[str, str], *, cpu: bool) -> dict[str, str]:
    """The child's environment: ours, plus unbuffered output and bounded CPU threads unless the user set them."""
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if cpu:
        env.setdefault("OMP_NUM_THREADS", str(max(1, min(4, (os.cpu_count() or 2) // 2))))
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def error_summary(lines: list[str]) -> str:
    """The last `SomethingError: message` line of a log tail, or its last non-empty line."""
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line.strip()
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return "(no output)"


def _record(log_path: Path, step: Step, rc: int | None, started: float) -> None:
    """One line per step in logs/steps.jsonl: what ran, its exit status and how long it took."""
    entry = {"step": step.name, "argv": step.argv, "rc": rc, "seconds": round(time.time() - started, 2)}
    with open(log_path.parent / "steps.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")


def run_step(step: Step, *, log_path: Path, echo: Echo | None, cpu: bool, tail: int = 80) -> list[str]:
    """Run a step, streaming its output to `echo` and to `log_path`; raise ZaoshuError unless it exits 0.

    Returns the last lines of its output.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    last: deque[str] = deque(maxlen=tail)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {step.shell()}\n")
        try:
            proc = subprocess.Popen(
                step.argv,
                env=child_env(step.env, cpu=cpu),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
            )
        except OSError as e:
            raise ZaoshuError(f"{step.name}: cannot start {step.argv[0]}: {e}") from None
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                last.append(line.rstrip("\n"))
                if echo is not None:
                    echo(line.rstrip("\n"))
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            _record(log_path, step, None, started)
            raise ZaoshuError(
                f"{step.name} interrupted; rerun with --resume to continue", path=log_path
            ) from None
    _record(log_path, step, rc, started)
    if rc != 0:
        lines = list(last)
        shown = "" if echo is not None else "\n" + "\n".join(lines[-20:])
        raise ZaoshuError(
            f"{step.name} failed (exit {rc}): {error_summary(lines)}{shown}\n  full log: {log_path}"
        )
    return list(last)
