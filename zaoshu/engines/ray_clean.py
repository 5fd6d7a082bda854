"""`zaoshu clean --engine ray`: the local cleaning stage with its per-chunk passes and its
near-duplicate search on Ray.

The rows, their ids (file, line), the rules, the exact duplicates, the clusters' heads (the smallest
row of each), the report and the outputs are the local engine's own functions; what changes is where
the per-chunk passes run (`RayPasses`: read, normalize and rules, then writing each chunk's lines, as
tasks) and where the near-duplicate edges are computed (`RayEdges`: the same edges). So the kept rows
and the rejects are the local engine's by construction, and the tests compare them byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zaoshu.cleaners.api import PASSES
from zaoshu.cleaners.dedup import edge_source
from zaoshu.engines.ray_dedup import RayEdges
from zaoshu.engines.ray_passes import RayPasses
from zaoshu.engines.ray_session import ray_session, require_ray

if TYPE_CHECKING:
    from zaoshu.cleaners.stats import CleanStats


def clean(
    inputs: list[Path],
    out: Path,
    *,
    edges: RayEdges | None = None,
    passes: RayPasses | None = None,
    **stage: Any,
) -> CleanStats:
    """`zaoshu.cleaners.clean(inputs, out, **stage)` with the near-duplicate edges from Ray
    (`options.ray_address`'s cluster, else a local Ray), and the per-chunk passes as Ray tasks. Joining a
    cluster, their spill and part files go to a hidden folder beside `out` (every node must read and
    write the inputs' and the output's folders), removed at the end. The session starts before anything
    is written: an address that does not answer leaves no file behind."""
    from zaoshu.cleaners import clean as local_clean

    require_ray()
    options = stage.get("options")
    address = options.ray_address if options else None
    passes = passes or RayPasses()
    if passes.shared is None:
        passes.shared = address is not None
    with ray_session(address), edge_source(edges or RayEdges()), _passes_on(passes):
        return local_clean(inputs, out, **stage)


@contextmanager
def _passes_on(passes: RayPasses) -> Iterator[None]:
    """Within the block, `clean`'s per-chunk passes run as `passes` says."""
    token = PASSES.set(passes)
    try:
        yield
    finally:
        PASSES.reset(token)
