"""Training with XTuner: render a readable config from the records, then train -> pth_to_hf -> merge -> chat.

Importing this package is light (no torch, no xtuner): heavy imports happen inside the functions, and
every XTuner tool runs in a child process, `python -m <xtuner tool>`, through `zaoshu.trainer.launch` on CPU
(which installs the CPU shims first).
"""

from zaoshu.trainer.chat import ChatSession
from zaoshu.trainer.config import TrainSettings, render_config, resolve_template
from zaoshu.trainer.run import Run, TrainOptions, execute, newest_checkpoint, prepare, train, write_inputs

__all__ = [
    "ChatSession",
    "Run",
    "TrainOptions",
    "TrainSettings",
    "execute",
    "newest_checkpoint",
    "prepare",
    "render_config",
    "resolve_template",
    "train",
    "write_inputs",
]
