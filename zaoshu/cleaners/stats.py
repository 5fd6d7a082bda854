"""What a cleaning run did: counts that add up (read = kept + rejected), and what each step cost."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

import polars as pl

from zaoshu.cleaners.io import RowState
from zaoshu.stats import Stats


@dataclass
class CleanStats(Stats):
    read: int = 0
    kept: int = 0
    normalized: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    out: str = ""
    rejects: str = ""
    report: str = ""
    #: seconds per step, and the process's peak RSS (MB) when each step ended (see `lap`)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, int] = field(default_factory=dict)
    reviewed: dict[str, int] = field(default_factory=dict)  # a person's decisions applied: accepted, rejected
    _since: float = field(default_factory=time.perf_counter, repr=False)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def lap(self, step: str) -> None:
        """Record the step that just ended: its seconds since the last lap, the peak RSS so far."""
        now = time.perf_counter()
        self.seconds[step] = round(now - self._since, 3)
        self.peak_rss_mb[step] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        self._since = now

    def count(self, frame: pl.DataFrame) -> None:
        """The counts of a judged frame (a `reason` per rejected row, a `state` per row)."""
        counts = frame.group_by("reason").len().drop_nulls().sort(["len", "reason"], descending=[True, False])
        self.rejected = dict(counts.iter_rows())  # most first, ties by name: the same order on every run
        self.read = frame.height
        self.kept = self.read - self.rejected_total
        self.normalized = int((frame["state"] == RowState.NORMALIZED).sum())

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items(), key=lambda kv: -kv[1]))
        return (
            f"read {self.read}, kept {self.kept}, normalized {self.normalized}, "
            f"rejected {self.rejected_total}"
            + (f" ({reasons})" if reasons else "")
            + (f"; review: {self.reviewed['accepted']} accepted, {self.reviewed['rejected']} rejected"
               if self.reviewed else "")
        )  # fmt: skip
