"""The cleaning stage: normalizers, rule filters, exact + near-duplicate removal, and the report.

`clean(inputs, out, recipe=..., options=...)` is what `zaoshu clean` and `zaoshu run` call.
"""

from zaoshu.cleaners.api import clean, judge, load_config
from zaoshu.cleaners.config import CleanConfig, CleanOptions, NearDupConfig
from zaoshu.cleaners.normalize import dedup_key, normalize_text
from zaoshu.cleaners.rules import RULES, rule
from zaoshu.cleaners.stats import CleanStats

__all__ = [
    "RULES",
    "CleanConfig",
    "CleanOptions",
    "CleanStats",
    "NearDupConfig",
    "clean",
    "dedup_key",
    "judge",
    "load_config",
    "normalize_text",
    "rule",
]
