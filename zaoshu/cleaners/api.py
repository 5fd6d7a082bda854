"""`clean()`: the cleaning stage as one call (normalize -> rules -> exact + near dedup -> outputs + report).

The pipeline, in order, over columns (polars, numpy), never a Python loop per row where a column
operation can do it:
read columns -> normalize -> dedup key -> measures -> rules -> exact dups -> near dups -> report -> write.
Texts are not all held at once: the first pass reads, normalizes and judges the input a chunk at a time,
keeps the columns dedup and the report need (the key as two hashes) and spills each chunk's texts and keys
to an Arrow file; the second pass streams the input again beside them. The first pass's per-line loop is
Python, so over more than one chunk it runs in worker processes; the rest is polars', numpy's and
rapidfuzz's own threads.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import shutil
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from zaoshu.cleaners import report as report_mod
from zaoshu.cleaners.config import CleanConfig, CleanOptions, parse_clean_config
from zaoshu.cleaners.dedup import SKETCH_COLUMNS, exact_heads, key_hashes, near_heads, sketch
from zaoshu.cleaners.explain import Explained, explain_frame, write_dups
from zaoshu.cleaners.io import (
    DECISION_COLUMNS,
    Chunk,
    RowState,
    expand_inputs,
    read_chunk,
    read_columns,
    split_chunks,
    write_chunk,
)
from zaoshu.cleaners.normalize import dedup_keys, normalize_frame
from zaoshu.cleaners.rules import RULES, RuleContext, apply_rules
from zaoshu.cleaners.stats import CleanStats
from zaoshu.files import atomic_write, check_replaceable, check_writable, guard_outputs, removed_if_left_empty
from zaoshu.recipes import Recipe

#: near duplicates explained at a time (their keys become Python strings there)
_BLOCK = 1 << 20


def load_config(recipe: Recipe | None) -> CleanConfig:
    """The recipe's `clean:` block validated (defaults for a recipe without one, or no recipe)."""
    return parse_clean_config(
        recipe.clean if recipe else None,
        path=recipe.path if recipe else None,
        known_rules=list(RULES),
        styles=list(recipe.styles) if recipe else None,
    )


def _axis_values(frame: pl.DataFrame, recipe: Recipe | None) -> dict[str, list[str]]:
    """Axis values (as dedup keys) the near-dup guard looks for in texts: the recipe's and the data's."""
    names: dict[str, set[str]] = {}
    if recipe is not None:
        for axis, values in recipe.values.items():
            names.setdefault(axis, set()).update(str(v) for v in values)
    for col in frame.columns:
        if col.startswith("ax_"):
            names.setdefault(col[3:], set()).update(
                v for v in frame[col].drop_nulls().unique().to_list() if v
            )
    out: dict[str, list[str]] = {}
    for axis, values in names.items():
        keys = dedup_keys(pl.Series(sorted(values), dtype=pl.Utf8)).to_list()
        out[axis] = sorted({k for k in keys if len(k) >= 2})
    return {k: v for k, v in out.items() if v}


def _prepare(frame: pl.DataFrame) -> pl.DataFrame:
    """Normalized text and dedup key; `raw` is kept only where normalizing changed the text (the
    report's samples show it). The measures are the rules' own (`rules.measure`)."""
    norm = normalize_frame(frame["raw"])
    frame = frame.with_columns(norm["text"], norm["changes"])
    del norm
    return frame.with_columns(
        dedup_keys(frame["text"]),
        pl.when(pl.col("changes").list.len() > 0).then(pl.col("raw")).alias("raw"),
    )


def clean(
    inputs: list[Path],
    out: Path,
    *,
    recipe: Recipe | None = None,
    rejects: Path | None = None,
    report_dir: Path | None = None,
    options: CleanOptions | None = None,
    review: Path | None = None,
) -> CleanStats:
    """Clean record files into `out` (kept), `rejects` and a report; counts always add up.

    `review`: a review.jsonl whose decisions (a person's accept / reject by id) override the rules."""
    options = options or CleanOptions()
    out = Path(out)
    rejects = Path(rejects) if rejects else out.with_name(out.stem + ".rejects.jsonl")
    report_dir = Path(report_dir) if report_dir else out.with_name(out.stem + ".report")
    recipe_files = recipe.input_files() if recipe else []
    inputs_read = [*inputs, *options.against, *recipe_files, review]
    dups = out.with_name(out.stem + ".dups.jsonl")
    guard_outputs([out, rejects, dups], inputs_read, output_dirs=[report_dir])
    check_replaceable([out, rejects, dups])
    with removed_if_left_empty(report_dir):  # a run that fails early leaves no empty report folder
        check_writable([out, rejects, dups], [report_dir])
        config = options.apply(load_config(recipe))
        stats = CleanStats(out=str(out), rejects=str(rejects), report=str(report_dir))
        own = {p.resolve() for p in (out, rejects, dups)}
        files = expand_inputs(list(inputs), exclude=own)
        chunks = split_chunks(files)
        runner = PASSES.get() or LocalPasses()
        with runner.scratch(out) as tmp:
            spills = [Path(tmp) / f"{i}.arrow" for i in range(len(chunks))]
            with runner.pool(chunks, options.workers, PASS_1) as pool:
                pass1 = partial(_pass1, config=config, recipe=recipe, skip_bad_lines=options.skip_bad_lines)
                frames = list((pool.map if pool else map)(pass1, chunks, spills))
            spilled = Spills(spills, np.cumsum([0, *(f.height for f in frames)]))
            frame = pl.concat(frames, how="diagonal_relaxed")
            del frames
            ctx = RuleContext.build(config, recipe, frame["style"].drop_nulls().unique().sort().to_list())
            stats.lap("read")
            against = expand_inputs(list(options.against), exclude=own) if options.against else []
            refs = read_columns(against) if against else None
            frame, near_info, explained, distinct_keys = _dedup(frame, spilled, refs, config, recipe, options)
            stats.lap("dedup")
            reviewed = None
            if review is not None:
                from zaoshu.review import apply_to_frame, read_decisions

                frame, reviewed = apply_to_frame(frame, read_decisions(review))
            frame = frame.with_columns(
                state=pl.when(pl.col("reason").is_not_null())
                .then(pl.lit(RowState.REJECTED.value))
                .when(pl.col("normalized"))
                .then(pl.lit(RowState.NORMALIZED.value))
                .otherwise(pl.lit(RowState.KEPT.value))
                .cast(pl.Int8)
            )
            stats.count(frame)
            stats.reviewed = reviewed.to_dict() if reviewed else {}
            shown = _with_samples(frame, spilled, options.samples)
            data = report_mod.build(
                shown,
                stats,
                ctx=ctx,
                recipe=recipe,
                near=near_info,
                samples=options.samples,
                keys=distinct_keys,
            )
            del distinct_keys
            report_mod.write_report(report_dir, shown, data, recipe)
            del shown
            stats.lap("report")
            decisions = frame.select("state", "reason", "detail", "duplicate_of")
            parts = [decisions.slice(lo, hi - lo) for lo, hi in itertools.pairwise(spilled.starts)]
            with (
                atomic_write(out) as kept,
                atomic_write(rejects) as rejected,
                runner.pool(chunks, options.workers, PASS_2) as pool,
            ):
                if pool is None:
                    for c, d, s in zip(chunks, parts, spills, strict=True):
                        write_chunk(c, _decisions(d, s), kept, rejected)
                else:  # each worker writes a chunk's outputs to files of its own, joined here in order
                    names = [
                        (Path(tmp) / f"{i}.kept", Path(tmp) / f"{i}.rejected") for i in range(len(chunks))
                    ]
                    for k, r in pool.map(_pass2, chunks, parts, spills, names):
                        for path, handle in ((k, kept), (r, rejected)):
                            with open(path, "rb") as f:
                                shutil.copyfileobj(f, handle, 1 << 20)
                            path.unlink()
        write_dups(dups, explained, frame, [str(p) for p in files])
        stats.lap("write")
        return stats


#: what pass 1 keeps of a chunk besides its axes (`ax_*`); the texts and keys wait in its spill file
KEPT_COLUMNS = (
    "file",
    "line",
    "id",
    "style",
    "n_chars",
    "reason",
    "detail",
    "normalized",
    "keyed",
    "h1",
    "h2",
)
#: what the spill file of a chunk holds: dedup reads back the distinct keys (and their `dedup.sketch`,
#: where near-dup runs), pass 2 the texts, the report its samples
SPILL_COLUMNS = ("text", "changes", "raw", "key")


def _pass1(
    chunk: Chunk, spill: Path, config: CleanConfig, recipe: Recipe | None, skip_bad_lines: bool
) -> pl.DataFrame:
    """Read, normalize and judge one chunk; its texts and keys go to `spill`, the columns dedup and the
    report need come back (a key as its hashes, `keyed` if not empty). The keys a rule kept are
    sketched for near-dup here too."""
    frame = _prepare(read_chunk(chunk, skip_bad_lines=skip_bad_lines))
    frame = apply_rules(
        frame, RuleContext.build(config, recipe, frame["style"].drop_nulls().unique().sort().to_list())
    )
    bad = pl.col("bad").is_not_null()  # a bad line (read with skip_bad_lines) is rejected as such
    frame = frame.with_columns(
        reason=pl.when(bad).then(pl.lit("bad_line")).otherwise(pl.col("reason")),
        detail=pl.when(bad).then(pl.col("bad")).otherwise(pl.col("detail")),
    )
    to_spill = frame.select(SPILL_COLUMNS)
    if config.near_dup.enabled:
        alive = frame.select(
            pl.when(pl.col("reason").is_null()).then("key").otherwise(pl.lit(""))
        ).to_series()
        to_spill = to_spill.hstack(sketch(alive, config.near_dup))
    to_spill.write_ipc(spill)
    del to_spill
    axes = [c for c in frame.columns if c.startswith("ax_")]
    kept = frame.with_columns(
        key_hashes(frame["key"]),
        normalized=pl.col("changes").list.len() > 0,
        keyed=pl.col("key").str.len_bytes() > 0,
    ).select(*KEPT_COLUMNS[:5], *axes, *KEPT_COLUMNS[5:])
    # a string column of nulls built row by row holds 16 bytes a row (string views), made anew none: most
    # chunks' reasons, details and often styles are all null (half a gigabyte at ten million rows)
    nulls = [c for c, t in kept.schema.items() if t == pl.Utf8 and kept[c].null_count() == kept.height]
    return kept.with_columns(pl.lit(None, dtype=pl.Utf8).alias(c) for c in nulls)


@contextlib.contextmanager
def _pool(chunks: list[Chunk], workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for pass 1 over more than one chunk (None: in this process).

    Its per-line loop is Python: threads would take turns on the GIL, processes run side by side (two
    workers on two cores, a million rows: 7.0 -> 5.1 s). Spawned, as forking a process that runs
    polars' threads can deadlock; and started with the caller's main module hidden, so a script that
    calls `clean` without an `if __name__ == "__main__":` guard is not run again in each worker (the
    workers need only zaoshu)."""
    if workers < 2 or len(chunks) < 2:
        yield None
        return
    main = sys.modules["__main__"]
    hidden = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__spec__ = None  # multiprocessing reads the attribute
    try:  # hidden while the pool lives: it starts a worker when a task finds none idle
        with ProcessPoolExecutor(
            min(workers, len(chunks)), mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            yield pool
    finally:
        del main.__spec__
        main.__dict__.update(hidden)


#: the two passes over the chunks: read and judge (`_pass1`), write the outputs (`_pass2`)
PASS_1, PASS_2 = "read and judge", "write"


class LocalPasses:
    """Where the per-chunk passes run (`pool` for PASS_1 or PASS_2: an object with an ordered `map`, or None
    for this process) and keep their spill and part files (`scratch`): here, pass 1 in worker processes,
    pass 2 in this one (in workers it took as long, 2.8 s for a million rows: their start-up and part
    files cost what the second core saved), in a temporary folder. An engine on a cluster
    (`zaoshu.engines`) runs both as its tasks, in a folder its nodes share."""

    def pool(self, chunks: list[Chunk], workers: int, which: str) -> contextlib.AbstractContextManager[Any]:
        return _pool(chunks, workers) if which == PASS_1 else contextlib.nullcontext()

    def scratch(self, out: Path) -> contextlib.AbstractContextManager[str]:
        return tempfile.TemporaryDirectory(prefix="zaoshu-clean-")


#: the passes' runner for this context (None: `LocalPasses`)
PASSES: ContextVar[LocalPasses | None] = ContextVar("passes", default=None)


def _pass2(chunk: Chunk, decisions: pl.DataFrame, spill: Path, names: tuple[Path, Path]) -> tuple[Path, Path]:
    """`write_chunk` into files of its own, `names` (kept, rejected)."""
    with open(names[0], "wb") as kept, open(names[1], "wb") as rejected:
        write_chunk(chunk, _decisions(decisions, spill), kept, rejected)
    return names


def _decisions(decisions: pl.DataFrame, spill: Path) -> pl.DataFrame:
    """One chunk's DECISION_COLUMNS: its rows' decisions beside their texts read back from its spill."""
    texts = pl.read_ipc(spill, columns=["text", "changes"])
    return pl.concat([decisions, texts], how="horizontal").select(DECISION_COLUMNS)


def _with_samples(frame: pl.DataFrame, spills: Spills, samples: int) -> pl.DataFrame:
    """The frame with `text` and `raw` for the rows the report shows (the first `samples` of each
    reason, as `report.build` picks them), read back from the spill files; null elsewhere."""
    rows = (
        frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("r"), "reason")
        .filter(pl.col("reason").is_not_null())
        .group_by("reason")
        .head(samples)["r"]
        .sort()
        .to_numpy()
    )
    part = spills.frame(rows, ["text", "raw"])
    empty = pl.repeat(None, frame.height, dtype=pl.Utf8, eager=True)
    return frame.with_columns(
        empty.scatter(rows, part["text"]).alias("text"), empty.scatter(rows, part["raw"]).alias("raw")
    )


@dataclass
class Spills:
    """Pass 1's spill files: file i holds the texts, keys and sketches of the frame's rows from starts[i]."""

    files: list[Path]
    starts: np.ndarray

    def _parts(self, rows: np.ndarray, columns: list[str]) -> Iterator[tuple[int, int, pl.DataFrame]]:
        """(lo, hi, part): `columns` of rows[lo:hi] (`rows` ascending), one spill file at a time."""
        bounds = np.searchsorted(rows, self.starts)
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            if hi > lo:
                yield lo, hi, pl.read_ipc(self.files[i], columns=columns)[rows[lo:hi] - self.starts[i]]

    def frame(self, rows: np.ndarray, columns: list[str]) -> pl.DataFrame:
        """`columns` (strings) of the frame's rows `rows`, ascending."""
        # a gather of strings keeps its source's whole buffers alive (polars' string views: all of a chunk's
        # keys, a gigabyte at ten million rows); `+ ""` copies out just the rows taken
        parts = [part.with_columns(pl.col(pl.Utf8) + "") for _, _, part in self._parts(rows, columns)]
        return pl.concat(parts) if parts else pl.DataFrame(schema=dict.fromkeys(columns, pl.Utf8))

    def arrays(self, rows: np.ndarray, columns: list[str]) -> dict[str, np.ndarray]:
        """Numeric `columns` of the rows `rows` as numpy arrays, filled a file at a time (no second copy)."""
        out: dict[str, np.ndarray] = {}
        for lo, hi, part in self._parts(rows, columns):
            for c in columns:
                values = part[c].to_numpy()
                if c not in out:
                    out[c] = np.empty((len(rows), *values.shape[1:]), dtype=values.dtype)
                out[c][lo:hi] = values
        return out


def judge(record: dict[str, Any], *, recipe: Recipe | None = None) -> tuple[str, str] | None:
    """One record through the normalizers and rules (not dedup): None to keep it, else (reason, detail).

    The same expressions as `clean` on a one-row frame, for callers that check records as they come.
    """
    from zaoshu.records import assistant_text, check_record

    check_record(record)
    axes = record.get("axes") or {}
    row = {
        "id": record.get("id"),
        "style": axes.get("style"),
        "finish_reason": (record.get("meta") or {}).get("finish_reason"),
        "raw": assistant_text(record),
        **{f"ax_{k}": str(v) for k, v in axes.items() if k != "style"},
    }
    frame = _prepare(pl.DataFrame([row], schema_overrides={"style": pl.Utf8, "finish_reason": pl.Utf8}))
    ctx = RuleContext.build(load_config(recipe), recipe, [s for s in [row["style"]] if s])
    out = apply_rules(frame, ctx).row(0, named=True)
    return None if out["reason"] is None else (out["reason"], out["detail"])


def _dedup(
    frame: pl.DataFrame,
    spills: Spills,
    refs: pl.DataFrame | None,
    config: CleanConfig,
    recipe: Recipe | None,
    options: CleanOptions,
) -> tuple[pl.DataFrame, dict[str, Any], Explained, pl.Series]:
    """Mark exact and near duplicates among the rows no rule rejected (reference rows first).

    Keys are the largest thing there is to hold (a gigabyte or more at ten million rows): exact
    duplicates are found by the keys' hashes, and only the distinct keys are read back from the
    spill files. Returns the frame with `reason`, `detail`, `duplicate_of` and `key_id` (each row's
    index into the distinct keys; an exact duplicate's is its head's, null where a rule rejected), the
    report's near-dup numbers, the near duplicates explained and the distinct keys."""
    info: dict[str, Any] = {"candidates": 0, "confirmed": 0, "cluster_sizes": {}}
    is_alive = frame["reason"].is_null() & frame["keyed"]
    alive_rows = is_alive.arg_true()
    everyone = bool(is_alive.all())  # the usual case: no copies of the columns for the alive rows
    alive_ids = frame["id"] if everyone else frame["id"].gather(alive_rows)
    ref_keys = pl.Series("key", [], dtype=pl.Utf8)
    ref_ids = pl.Series("id", [], dtype=pl.Utf8)
    if refs is not None and refs.height:
        prepared = refs.with_columns(normalize_frame(refs["raw"])["text"])
        prepared = prepared.with_columns(dedup_keys(prepared["text"])).filter(
            pl.col("key").str.len_chars() > 0
        )
        ref_keys, ref_ids = prepared["key"], prepared["id"]
    n_ref = len(ref_keys)
    hashes = frame.select("h1", "h2")
    frame = frame.drop("keyed", "h1", "h2")  # let go before near-dup, not after it
    hashes = pl.concat([key_hashes(ref_keys), hashes if everyone else hashes[alive_rows]])
    n = hashes.height
    head = exact_heads(hashes) if config.exact_dup else np.arange(n)
    del hashes
    reps = np.flatnonzero(head == np.arange(n))
    mine = alive_rows.to_numpy()[reps[reps >= n_ref] - n_ref]
    ref_reps = ref_keys.gather(reps[reps < n_ref])
    rep_keys = pl.concat([ref_reps, spills.frame(mine, ["key"])["key"]])
    near_dup = config.near_dup.enabled and n > 1
    sketched = None
    if near_dup:  # as arrays in a dict near-dup empties as it goes (the band hashes are large)
        sketched = spills.arrays(mine, list(SKETCH_COLUMNS))
        if len(ref_reps):
            refs_sketched = sketch(ref_reps, config.near_dup)
            sketched = {c: np.concatenate([refs_sketched[c].to_numpy(), a]) for c, a in sketched.items()}
    del ref_reps
    lookup = np.full(n, -1, dtype=np.int64)
    lookup[reps] = np.arange(len(reps))
    final = head.copy()
    similarity = np.ones(n)
    head_veto = np.zeros(n, dtype=np.int8)
    axis_values = _axis_values(frame, recipe) if config.near_dup.axis_guard else {}
    if near_dup:
        near = near_heads(
            rep_keys,
            config.near_dup,
            axis_values=axis_values,
            workers=options.workers,
            sketched=sketched,
        )
        del sketched
        final = reps[near.head][lookup[head]]
        similarity = near.similarity[lookup[head]]
        head_veto = near.head_veto[lookup[head]]
        info["candidates"], info["confirmed"] = near.candidates, near.confirmed
        info["vetoed"] = near.vetoed
        del near
    # this input's rows among the alive ones (after the reference rows): views, not copies
    final_in, head_in, rows_in = final[n_ref:], head[n_ref:], np.arange(n_ref, n)
    dup = np.flatnonzero(final_in != rows_in)  # an exact duplicate's final head is never itself
    del rows_in
    all_ids = pl.concat([ref_ids, alive_ids])
    at_near = dup[head_in[dup] == dup + n_ref]  # near duplicates (not exact ones)
    blocks = []
    for part in np.array_split(at_near, max(1, len(at_near) // _BLOCK)):  # its texts as Python strings
        blocks.append(
            explain_frame(
                alive_ids.gather(part),
                all_ids.gather(final_in[part]),
                rep_keys.gather(lookup[part + n_ref]),  # near duplicates and their heads: distinct keys
                rep_keys.gather(lookup[final_in[part]]),
                similarity[n_ref:][part],
                head_veto[n_ref:][part],
                alive_rows.gather(part).to_numpy(),
                config.near_dup,
                axes=bool(axis_values),
                workers=options.workers,
            )
        )
    explained = Explained(pl.concat([e.frame for e in blocks]), blocks[0].checked)
    marks = pl.DataFrame(
        {
            "exact": head_in[dup] != dup + n_ref,
            "head": all_ids.gather(head_in[dup]),
            "sim": similarity[n_ref:][dup],
        }
    ).select(
        reason=pl.when("exact").then(pl.lit("duplicate")).otherwise(pl.lit("near_duplicate")),
        detail=pl.when("exact")
        .then(pl.lit("same text as ") + pl.col("head"))
        .otherwise(pl.format("similarity {}", pl.col("sim").round(2))),
    )
    at = alive_rows.gather(dup)
    key_id = pl.repeat(None, frame.height, dtype=pl.UInt32, eager=True).scatter(
        alive_rows, pl.Series(lookup[head_in], dtype=pl.UInt32)
    )
    duplicate_of = all_ids.gather(final_in[dup])
    sizes = np.bincount(np.bincount(final[final >= 0])) if n else np.zeros(0)
    # The per-row arrays go, then each full-length column is written in turn (its old one let go before
    # the next is made): at ten million rows this is where the stage holds the most. A join would copy
    # every column of the frame.
    del head, final, head_in, final_in, similarity, head_veto, lookup, dup
    frame = frame.with_columns(key_id.alias("key_id"))
    del key_id
    frame = frame.with_columns(frame["reason"].scatter(at, marks["reason"]))
    frame = frame.with_columns(frame["detail"].scatter(at, marks["detail"]))
    del marks
    no_one = pl.repeat(None, frame.height, dtype=pl.Utf8, eager=True)
    frame = frame.with_columns(no_one.scatter(at, duplicate_of).alias("duplicate_of"))
    info["cluster_sizes"] = {int(s): int(c) for s, c in enumerate(sizes) if s >= 2 and c}
    info["against"] = n_ref
    return frame, info, explained, rep_keys
