"""Where the cleaning stage runs: this machine (`zaoshu.cleaners.clean`) or a Ray cluster (`ray_clean`).

Both engines run the same stage functions; the Ray one runs the per-chunk passes (read, normalize,
rules; writing each chunk's lines) and the near-duplicate search (band hashes, bucket pairs, the pair
checks and the veto) as tasks on the cluster's workers, and keeps the joins of their results (exact
duplicates, clusters, report, the outputs in order) on the driver, so the kept rows, the rejects and the
report are the local engine's by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zaoshu.cleaners.stats import CleanStats

ENGINES = ("local", "ray")


def clean(inputs: list[Path], out: Path, **stage: Any) -> CleanStats:
    """`zaoshu.cleaners.clean(inputs, out, **stage)` on the engine `stage["options"].engine` names (local
    when no options): the stage's arguments are declared once, there."""
    options = stage.get("options")
    if options is not None and options.engine == "ray":
        from zaoshu.engines.ray_clean import clean as ray_clean

        return ray_clean(inputs, out, **stage)
    from zaoshu.cleaners import clean as local_clean

    return local_clean(inputs, out, **stage)
