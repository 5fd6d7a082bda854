"""`judge()`: every record's reply scored 1-5 by a model against the recipe's rubric, through the generation
engine (same providers, concurrency, limits, retries, cost, progress and resume by record id).

Files for `-o judged.jsonl`:
    judged.scores.jsonl            every judged record with `meta.judge` (appended as each finishes; the
                                   resume log: a rerun judges only the ids not in it)
    judged.scores.failures.jsonl   records whose judge never gave a usable verdict (retried, then failed)
    judged.jsonl                   the records scored at or above the threshold
    judged.rejects.jsonl           the others, each with `reject: {reason: judge_low, detail: <score, reason>}`
    judged.report.json / .html     scores per style and axis value, the lowest-scored samples
    judged.stats.json              the counts (read, kept, rejected, failed, tokens, cost)
kept + rejected + failed = read. With `sample`, only a seeded sample is judged and the report estimates the
share under the threshold; the kept and rejects files are not written (the sample's scores stay in the log,
so a full run after it pays for the rest only).
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.files import atomic_write, guard_outputs
from zaoshu.generator.clients import BadReply
from zaoshu.generator.engine import GenerateOptions, agenerate
from zaoshu.generator.resume import FINGERPRINT
from zaoshu.judging.report import write_report
from zaoshu.judging.spec import JudgeSpec, context, judge_spec, render
from zaoshu.judging.verdict import parse_score
from zaoshu.recipes import Recipe, load_recipe
from zaoshu.records import (
    assistant_text,
    iter_lines,
    parse_line,
    read_records,
)
from zaoshu.stats import Stats

REASON = "judge_low"


@dataclass(frozen=True)
class JudgeTask:
    """One judge request; quacks like generator.plan.Task for the engine."""

    id: str
    recipe: str
    axes: dict[str, str]
    prompt: str
    request: list[dict[str, str]]
    record: dict[str, Any] = field(repr=False)
    params: dict[str, Any] = field(repr=False)

    @property
    def user(self) -> str:
        """The judged record's user turn (what a dry run shows)."""
        return user_text(self.record)

    def to_record(self, reply: str, meta: dict[str, Any]) -> dict[str, Any]:
        """The judged record for the resume log. Its `meta.fingerprint` is the judge request's (what the
        engine's resume compares: a changed prompt, rubric or model is judged again); the record's own is
        kept in `meta.judge.record_fingerprint` and put back in the kept and rejects files."""
        verdict = parse_score(reply)  # checked already by the engine; cheap
        record = dict(self.record)
        own = dict(record.get("meta") or {})
        record["meta"] = {
            **own,
            FINGERPRINT: meta.get(FINGERPRINT),
            "judge": {
                **verdict,
                "provider": meta.get("provider"),
                "model": meta.get("model"),
                "fingerprint": meta.get(FINGERPRINT),
                "record_fingerprint": own.get(FINGERPRINT),
                "usage": meta.get("usage"),
                "attempts": meta.get("attempts"),
                "judged_at": meta.get("created_at"),
            },
        }
        return record


def restore(record: dict[str, Any]) -> dict[str, Any]:
    """A judged record as the kept and rejects files hold it: its own fingerprint back in place."""
    meta = dict(record["meta"])
    judge = dict(meta["judge"])
    own = judge.pop("record_fingerprint", None)
    if own is None:
        meta.pop(FINGERPRINT, None)
    else:
        meta[FINGERPRINT] = own
    meta["judge"] = judge
    return {**record, "meta": meta}


@dataclass
class JudgeStats(Stats):
    read: int = 0
    judged: int = 0  # records with a verdict (this run and earlier ones)
    new: int = 0  # judged by this run
    kept: int = 0
    rejected: int = 0
    failed: int = 0
    threshold: int = 3
    sample: int | None = None
    under: int = 0  # judged records scored under the threshold
    under_share: float | None = None
    under_ci95: tuple[float, float] | None = None
    mean_score: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None
    currency: str | None = None
    wall_s: float = 0.0
    send_s: float = 0.0  # the sending phase alone
    req_s: float = 0.0
    interrupted: bool = False
    provider: str = ""
    model: str = ""
    paths: dict[str, str] = field(default_factory=dict)


def judge_paths(out: Path) -> dict[str, Path]:
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.stem
    return {
        "out": out,
        "scores": out.with_name(stem + ".scores.jsonl"),
        "failures": out.with_name(stem + ".scores.failures.jsonl"),
        "rejects": out.with_name(stem + ".rejects.jsonl"),
        "report": out.with_name(stem + ".report.json"),
        "html": out.with_name(stem + ".report.html"),
        "stats": out.with_name(stem + ".stats.json"),
    }


def user_text(record: dict[str, Any]) -> str:
    for message in reversed(record.get("messages") or ()):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def build_tasks(records: list[dict[str, Any]], recipe: Recipe, spec: JudgeSpec) -> list[JudgeTask]:
    params = spec.params()
    system = None
    tasks = []
    for record in records:
        axes = {str(k): str(v) for k, v in (record.get("axes") or {}).items()}
        ctx = context(recipe, axes, user_text(record))
        if system is None:
            system = render(spec.system, ctx) if spec.system else ""
        prompt = render(spec.prompt, {**ctx, "reply": assistant_text(record)})
        request = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        tasks.append(JudgeTask(str(record["id"]), recipe.name, axes, prompt, request, record, params))
    return tasks


def _read_input(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, record in enumerate(read_records(path), start=1):
        rid = record.get("id")
        if not isinstance(rid, str) or not rid:
            raise RecordError("a record without a string `id`: judging resumes by id", path=path, line=number)
        if rid in seen:
            raise RecordError(f"duplicate id {rid!r} (first on line {seen[rid]})", path=path, line=number)
        seen[rid] = number
        records.append(record)
    return records


def _read_log(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if path.exists():
        for number, raw in iter_lines(path):
            record = parse_line(raw, path=path, line=number)
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                out[record["id"]] = record
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a share k/n (sound at small n and near 0 or 1, unlike p ± 2σ)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (round(max(0.0, c - h), 4), round(min(1.0, c + h), 4))


async def ajudge(
    input_path: str | Path,
    out: str | Path,
    recipe: Recipe | str | Path,
    options: GenerateOptions | None = None,
    *,
    threshold: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> JudgeStats:
    options = options or GenerateOptions()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    spec = judge_spec(recipe)
    threshold = spec.threshold if threshold is None else threshold
    if not 1 <= threshold <= 5:
        raise ZaoshuError(f"--threshold: must be 1-5, got {threshold}")
    input_path, out = Path(input_path), Path(out)
    paths = judge_paths(out)
    guard_outputs(list(paths.values()), [input_path])
    records = _read_input(input_path)
    stats = JudgeStats(
        read=len(records), threshold=threshold, sample=sample, paths={k: str(v) for k, v in paths.items()}
    )
    chosen = records
    if sample is not None:
        if sample < 1:
            raise ZaoshuError(f"--sample: must be at least 1, got {sample}")
        if sample < len(records):
            keep = sorted(random.Random(seed).sample(range(len(records)), sample))
            chosen = [records[i] for i in keep]
    tasks = build_tasks(chosen, recipe, spec)

    def check(reply: Any) -> None:
        try:
            parse_score(reply.content)
        except BadReply as e:
            raise BadReply(str(e), usage=reply.usage) from None

    options = options.model_copy(update={"label": "judge"})
    gen = await agenerate(
        recipe, paths["scores"], options, tasks=tasks, params=spec.params(), check_reply=check
    )
    stats.new, stats.interrupted = gen.done, gen.interrupted
    stats.tokens_in, stats.tokens_out, stats.cost, stats.currency = (
        gen.tokens_in,
        gen.tokens_out,
        gen.cost,
        gen.currency,
    )
    stats.wall_s, stats.req_s, stats.provider, stats.model = gen.wall_s, gen.req_s, gen.provider, gen.model
    stats.send_s = gen.send_s
    if gen.dry_run or gen.interrupted:
        return stats
    log = _read_log(paths["scores"])
    judged = [restore(log[t.id]) for t in tasks if t.id in log]
    scores = [r["meta"]["judge"]["score"] for r in judged]
    stats.judged = len(judged)
    stats.under = sum(1 for s in scores if s < threshold)
    if scores:
        stats.mean_score = round(sum(scores) / len(scores), 3)
        stats.under_share = round(stats.under / len(scores), 4)
        stats.under_ci95 = wilson(stats.under, len(scores))
    if sample is None:
        stats.failed = len(tasks) - len(judged)
        kept, rejected = _split(judged, threshold)
        stats.kept, stats.rejected = len(kept), len(rejected)
        with atomic_write(paths["out"]) as f:
            f.writelines(orjson.dumps(r) + b"\n" for r in kept)
        with atomic_write(paths["rejects"]) as f:
            f.writelines(orjson.dumps(r) + b"\n" for r in rejected)
        if stats.kept + stats.rejected + stats.failed != stats.read:  # pragma: no cover - an invariant
            raise AssertionError("judge: kept + rejected + failed != read")
    else:
        stats.failed = len(tasks) - len(judged)
    write_report(judged, stats, paths["report"], paths["html"])
    stats.write(paths["stats"])
    return stats


def _split(judged: list[dict[str, Any]], threshold: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    kept, rejected = [], []
    for record in judged:
        j = record["meta"]["judge"]
        if j["score"] >= threshold:
            kept.append(record)
        else:
            detail = f"score {j['score']} < {threshold}: {j.get('reason', '')}"
            rejected.append({"reject": {"reason": REASON, "detail": detail}, **record})
    return kept, rejected


def judge(
    input_path: str | Path,
    out: str | Path,
    recipe: Recipe | str | Path,
    options: GenerateOptions | None = None,
    **kwargs: Any,
) -> JudgeStats:
    """Synchronous wrapper over `ajudge`."""
    return asyncio.run(ajudge(input_path, out, recipe, options, **kwargs))
