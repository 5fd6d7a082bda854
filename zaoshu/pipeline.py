"""`zaoshu run`: the main job, generate -> clean -> report, spelled out in one place.

One output folder holds the whole run::

    DIR/raw.jsonl                 every reply, appended as it arrives (generate)
    DIR/raw.failures.jsonl        tasks that failed for good, with their error (generate)
    DIR/raw.stats.json            the generation's counters (generate)
    DIR/clean.jsonl               the records kept (clean)
    DIR/clean.rejects.jsonl       the records dropped, each with its reason (clean)
    DIR/report/                   report.html + report.json (clean)
    DIR/summary.json              this run: tasks, kept, rejected by reason, tokens, cost, wall time
    DIR/judged.jsonl              with a judge: the clean records it scored at or above the threshold,
                                  judged.rejects.jsonl the others, judged.report.html the scores (judge)

Rerunning resumes: generate skips the ids already in raw.jsonl and retries the failures; clean then runs
again over the whole raw file (it is fast), so clean.jsonl always reflects everything generated so far.
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zaoshu.cleaners import CleanOptions, CleanStats, load_config
from zaoshu.cleaners.io import expand_inputs
from zaoshu.engines import clean
from zaoshu.files import check_writable, guard_outputs
from zaoshu.generator.engine import GenerateOptions, GenerateStats, generate, side_paths
from zaoshu.recipes import Recipe, load_recipe
from zaoshu.records import iter_lines, utc_now
from zaoshu.review import default_review
from zaoshu.stats import Stats


@dataclass(frozen=True)
class RunPaths:
    """Where each stage of a run writes, under one folder."""

    dir: Path

    @property
    def raw(self) -> Path:
        return self.dir / "raw.jsonl"

    @property
    def failures(self) -> Path:
        return side_paths(self.raw)[0]

    @property
    def raw_stats(self) -> Path:
        return side_paths(self.raw)[1]

    @property
    def clean(self) -> Path:
        return self.dir / "clean.jsonl"

    @property
    def rejects(self) -> Path:
        return self.dir / "clean.rejects.jsonl"

    @property
    def report(self) -> Path:
        return self.dir / "report"

    @property
    def summary(self) -> Path:
        return self.dir / "summary.json"


@dataclass
class RunSummary(Stats):
    """What `zaoshu run` did; written to DIR/summary.json and printed."""

    recipe: str
    provider: str
    model: str
    tasks: int  # planned
    generated: int  # records in raw.jsonl (all runs so far)
    new: int  # records this run added
    failed: int  # tasks that failed for good this run (raw.failures.jsonl)
    kept: int
    rejected: dict[str, int]  # reason -> count
    tokens_in: int  # this run's requests
    tokens_out: int
    cost: float | None
    currency: str | None
    wall_s: float
    generate_s: float
    clean_s: float
    tokens_out_per_s: float  # completion tokens per second of generation (this run)
    interrupted: bool = False
    judge: dict[str, Any] | None = None  # the judge stage's counters, when a judge provider was given
    started_at: str = field(default_factory=utc_now)
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def count_records(path: Path) -> int:
    """Non-blank lines of a JSONL file (0 when it does not exist)."""
    return sum(1 for _ in iter_lines(path)) if path.exists() else 0


def run(
    recipe: Recipe | str | Path,
    out_dir: str | Path,
    generate_options: GenerateOptions | None = None,
    clean_options: CleanOptions | None = None,
    judge_options: GenerateOptions | None = None,
    judge_threshold: int | None = None,
) -> RunSummary:
    """Generate a recipe's records into `out_dir`, clean them and write the report; resumes on a rerun.

    An interrupted generation (Ctrl-C) skips cleaning and returns with `interrupted=True`; rerun to resume.
    A dry run (`generate_options.dry_run`) only prints what generate would send and writes nothing.
    """
    t0 = time.monotonic()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    paths = RunPaths(Path(out_dir))
    generate_options = generate_options or GenerateOptions()
    # Every file of the run folder is checked against the recipe's own files before anything is read.
    outputs = [paths.raw, paths.failures, paths.raw_stats, paths.clean, paths.rejects, paths.summary]
    inputs = [*recipe.input_files(), *(clean_options.against if clean_options else [])]
    guard_outputs(outputs, inputs, output_dirs=[paths.report])
    if not generate_options.dry_run:
        check_writable(dirs=[paths.dir, paths.report])
    # The cleaning settings (the recipe's `clean:` block, the options, --against) are checked before
    # generation starts, so a typo stops the run before it spends a token.
    clean_options = clean_options or CleanOptions()
    clean_options.apply(load_config(recipe))
    if clean_options.against:
        expand_inputs(list(clean_options.against), exclude=set())
    if judge_options is not None:
        from zaoshu.judging import judge_spec

        judge_spec(recipe)  # a recipe without a rubric stops the run before it spends a token

    # 1. generate: append the replies of the tasks not yet in raw.jsonl
    generated: GenerateStats = generate(recipe, paths.raw, generate_options)
    dry_run = generated.dry_run
    generate_s = time.monotonic() - t0
    summary = RunSummary(
        recipe=recipe.name,
        provider=generated.provider,
        model=generated.model,
        tasks=generated.tasks,
        generated=count_records(paths.raw),
        new=generated.done,
        failed=generated.failed,
        kept=0,
        rejected={},
        tokens_in=generated.tokens_in,
        tokens_out=generated.tokens_out,
        cost=generated.cost,
        currency=generated.currency,
        wall_s=0.0,
        generate_s=round(generate_s, 3),
        clean_s=0.0,
        tokens_out_per_s=round(generated.tokens_out / generate_s, 2) if generated.done else 0.0,
        interrupted=generated.interrupted,
        paths={
            "raw": str(paths.raw),
            "failures": str(paths.failures),
            "clean": str(paths.clean),
            "rejects": str(paths.rejects),
            "report": str(paths.report),
        },
    )

    # 2. clean: the whole raw file, every time (a rerun's clean.jsonl covers all that was generated)
    if not generated.interrupted and not dry_run and summary.generated:
        with summary.timer("clean_s"):
            cleaned: CleanStats = clean(
                [paths.raw],
                paths.clean,
                recipe=recipe,
                rejects=paths.rejects,
                report_dir=paths.report,
                options=clean_options,
                review=default_review(paths.clean),  # a person's decisions made in `zaoshu ui`
            )
        summary.kept = cleaned.kept
        summary.rejected = dict(Counter(cleaned.rejected).most_common())
        if judge_options is not None and cleaned.kept and not judge_options.dry_run:
            from zaoshu.judging import judge

            judged = judge(
                paths.clean, paths.dir / "judged.jsonl", recipe, judge_options, threshold=judge_threshold
            )
            summary.judge = judged.to_dict()
            summary.interrupted = judged.interrupted

    # 3. report: the run's own summary beside the cleaning report
    summary.wall_s = round(time.monotonic() - t0, 3)
    if not dry_run:
        summary.write(paths.summary)
    return summary


def next_commands(summary: RunSummary, recipe_path: str | Path) -> list[tuple[str, str]]:
    """What to do with the cleaned data, as (what, command) with this run's real paths."""
    q = shlex.quote
    clean_path = summary.paths["clean"]
    if summary.judge:
        clean_path = summary.judge["paths"]["out"]
    out_dir = str(Path(clean_path).parent)
    report = str(Path(summary.paths["report"]) / "report.json")
    recipe = str(recipe_path)
    return [
        (
            "convert to XTuner's format",
            f"zaoshu convert {q(clean_path)} --to xtuner -o {q(out_dir + '/xtuner.jsonl')}",
        ),
        (
            "publish on the Hugging Face Hub (look first with --dry-run)",
            f"HF_TOKEN=... zaoshu publish {q(clean_path)} --repo OWNER/NAME --recipe {q(recipe)} "
            f"--report {q(report)}",
        ),
        (
            "fine-tune with XTuner",
            f"zaoshu train {q(clean_path)} --model PATH/TO/HF_MODEL --recipe {q(recipe)} --method lora",
        ),
    ]
