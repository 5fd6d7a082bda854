"""Run an XTuner tool module with the CPU shims installed first.

    python -m zaoshu.trainer.launch xtuner.tools.train CONFIG --work-dir DIR

is `python -m xtuner.tools.train CONFIG --work-dir DIR` plus `zaoshu.trainer.shims.apply()` before any
torchvision/transformers import. It keeps the tool's own exit status (an uncaught exception exits 1),
unlike the `xtuner` console script, which exits 0 after a crash. `zaoshu train` uses it on CPU only; on
CUDA it runs `python -m xtuner.tools.train ...` itself.
"""

from __future__ import annotations

import runpy
import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        sys.exit("usage: python -m zaoshu.trainer.launch MODULE [ARGS...]")
    from zaoshu.trainer import shims

    shims.apply()
    module = args[0]
    sys.argv = [module, *args[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
