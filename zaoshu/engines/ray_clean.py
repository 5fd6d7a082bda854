"""`zaoshu clean --engine ray`: the local cleaning stage with its near-duplicate search on Ray.

The rows, their ids (file, line), the rules, the exact duplicates, the clusters' heads (the smallest
row of each), the report and the outputs are the local engine's own functions; only where the
near-duplicate edges are computed changes (`RayEdges`), and those are the same edges. So the kept rows
and the rejects are the local engine's by construction, and the tests compare them byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zaoshu.cleaners.dedup import edge_source
from zaoshu.engines.ray_dedup import RayEdges
from zaoshu.engines.ray_session import ray_session, require_ray

if TYPE_CHECKING:
    from zaoshu.cleaners import CleanOptions
    from zaoshu.cleaners.stats import CleanStats
    from zaoshu.recipes import Recipe


def clean(
    inputs: list[Path],
    out: Path,
    *,
    recipe: Recipe | None = None,
    rejects: Path | None = None,
    report_dir: Path | None = None,
    options: CleanOptions | None = None,
    review: Path | None = None,
    edges: RayEdges | None = None,
) -> CleanStats:
    """`zaoshu.cleaners.clean` with the near-duplicate edges from Ray (`options.ray_address`'s cluster,
    else a local Ray). The session starts before anything is written: an address that does not answer
    leaves no file behind."""
    from zaoshu.cleaners import clean as local_clean

    require_ray()
    address = options.ray_address if options else None
    with ray_session(address), edge_source(edges or RayEdges()):
        return local_clean(
            inputs, out, recipe=recipe, rejects=rejects, report_dir=report_dir, options=options, review=review
        )
