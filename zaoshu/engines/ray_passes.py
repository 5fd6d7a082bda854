"""The cleaning stage's per-chunk passes as Ray tasks, their files in a folder every node reads.

Pass 1 (read, normalize, rules: a chunk's small columns back, its texts to a spill file) and pass 2
(a chunk's kept and rejected lines to part files of its own) are the local engine's functions, one
task per chunk; the driver gets the results in chunk order and joins the part files in that order,
so the outputs are the local engine's byte for byte. At most `window` tasks are in flight: the
driver holds that many results, not every chunk's.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zaoshu.errors import ZaoshuError


def _on_node(fn: Callable[..., Any], *args: Any) -> tuple[str, BaseException | None, Any]:
    """`fn(*args)` in a task: (the node it ran on, the user error it raised or None, its result).

    A user error (a torn line: file and line) comes back as a value so the driver raises it as it is,
    not wrapped in Ray's traceback."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    try:
        return node, None, fn(*args)
    except ZaoshuError as e:
        return node, e, None


@dataclass
class RayPasses:
    """`api.LocalPasses`' contract on Ray (set through `api.PASSES`).

    `window`: tasks in flight (None: twice the cluster's CPUs); `shared`: the spill and part files in a
    hidden folder beside the output (a path every node reads when the output's folder is shared), else
    in this machine's temporary folder (None: shared when joining a cluster by address). `nodes`: the
    nodes the tasks ran on, gathered as they come back."""

    window: int | None = None
    shared: bool | None = None
    nodes: set[str] = field(default_factory=set)

    @contextlib.contextmanager
    def pool(self, chunks: list, workers: int, which: str) -> Iterator[RayPasses]:
        """Every chunk is a task, however few: the cluster's nodes read what they are near."""
        yield self

    def scratch(self, out: Path) -> contextlib.AbstractContextManager[str]:
        if self.shared:  # check_writable made the output's folder
            return tempfile.TemporaryDirectory(
                prefix=f".{out.name}.zaoshu-", dir=out.parent, ignore_cleanup_errors=True
            )
        return tempfile.TemporaryDirectory(prefix="zaoshu-clean-")

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]:
        """`fn` over the arguments as tasks spread over the nodes, results in order."""
        import ray

        task = ray.remote(_on_node).options(scheduling_strategy="SPREAD")
        window = self.window or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending: deque = deque()
        try:
            for args in zip(*iterables, strict=True):
                pending.append(task.remote(fn, *args))
                if len(pending) >= window:
                    yield self._result(ray.get(pending.popleft()))
            while pending:
                yield self._result(ray.get(pending.popleft()))
        finally:  # a failed run: the tasks still in flight finish before their folder is removed
            if pending:
                ray.wait(list(pending), num_returns=len(pending))

    def _result(self, got: tuple[str, BaseException | None, Any]) -> Any:
        node, error, value = got
        self.nodes.add(node)
        if error is not None:
            raise error
        return value
