"""Formats, merge, split: the dataset shapes people train on, and the moves between them.

Formats (one reader and one writer each, see `FORMATS`): `zaoshu` records, `openai` messages (with
XTuner's per-turn `loss`), `xtuner` conversation, `alpaca` (with system/history) and `sharegpt`.
"""

from zaoshu.formats.base import Format
from zaoshu.formats.convert import Written, convert, iter_any, read_any, write
from zaoshu.formats.registry import FORMATS, detect_format, get_format

__all__ = [
    "FORMATS",
    "Format",
    "Written",
    "convert",
    "detect_format",
    "get_format",
    "iter_any",
    "read_any",
    "write",
]
