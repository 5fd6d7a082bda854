"""Rules and judge against people: on hand-labelled replies (fit / misfit), how many good replies each
filter loses and how many bad ones it keeps.

The labelled set is JSONL: records as `zaoshu run` wrote them, each with `label: {fit: bool, why: str}`.
Three filters, each over the whole set:
  rules            the recipe's cleaning rules without the semantic ones (off_topic, wrong_recipient, impolite)
  + semantic       the recipe's rules as shipped
  + judge          the shipped rules, then a judge model's score under the threshold (needs --provider)
Dedup is off: a labelled set is too small for duplicates to mean anything.

    python benchmarks/labelled.py tests/data/wishes_labelled.jsonl
    python benchmarks/labelled.py tests/data/wishes_labelled.jsonl --provider embedded --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
SEMANTIC = ["off_topic", "wrong_recipient", "impolite"]


def _read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def rule_rejects(
    records: list[dict[str, Any]], recipe_path: Path, *, semantic: bool, tmp: Path
) -> dict[str, str]:
    """id -> reason for the records the recipe's rules reject."""
    from zaoshu.cleaners import CleanOptions, clean
    from zaoshu.recipes import load_recipe

    recipe = load_recipe(recipe_path)
    if not semantic:
        recipe.clean = {**recipe.clean, "disable": [*recipe.clean.get("disable", []), *SEMANTIC]}
    recipe.clean = {**recipe.clean, "exact_dup": False}
    src = tmp / "in.jsonl"
    src.write_bytes(
        b"".join(orjson.dumps({k: v for k, v in r.items() if k != "label"}) + b"\n" for r in records)
    )
    clean([src], tmp / "out.jsonl", recipe=recipe, options=CleanOptions(near_dup=False))
    return {r["id"]: r["reject"]["reason"] for r in _read(tmp / "out.rejects.jsonl")}


def score(records: list[dict[str, Any]], rejected: set[str]) -> dict[str, Any]:
    good = [r for r in records if r["label"]["fit"]]
    bad = [r for r in records if not r["label"]["fit"]]
    lost = [r["id"] for r in good if r["id"] in rejected]
    kept = [r["id"] for r in bad if r["id"] not in rejected]
    return {
        "good": len(good),
        "bad": len(bad),
        "good_lost": len(lost),
        "bad_kept": len(kept),
        "bad_kept_why": [next(r["label"]["why"] for r in bad if r["id"] == i) for i in kept],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("labelled", type=Path)
    p.add_argument("--recipe", type=Path, default=ROOT / "prompts" / "wishes.yaml")
    p.add_argument("--provider", default=None, help="judge with this provider (embedded, local, deepseek...)")
    p.add_argument("--model", default=None)
    p.add_argument("--base-url", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--threshold", type=int, default=None)
    args = p.parse_args()
    records = _read(args.labelled)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plain = rule_rejects(records, args.recipe, semantic=False, tmp=tmp)
        results["rules"] = score(records, set(plain))
        shipped = rule_rejects(records, args.recipe, semantic=True, tmp=tmp)
        results["rules + semantic"] = score(records, set(shipped))
        if args.provider:
            from zaoshu.generator.engine import GenerateOptions
            from zaoshu.judging import judge

            src = tmp / "all.jsonl"
            src.write_bytes(
                b"".join(orjson.dumps({k: v for k, v in r.items() if k != "label"}) + b"\n" for r in records)
            )
            options = GenerateOptions(
                provider=args.provider,
                model=args.model,
                base_url=args.base_url,
                threads=args.threads,
                quiet=True,
            )
            out = args.labelled.with_name(args.labelled.stem + f".judged-{args.provider}.jsonl")
            s = judge(src, out, args.recipe, options, threshold=args.threshold)
            low = {r["id"] for r in _read(out.with_name(out.stem + ".rejects.jsonl"))}
            failed = {r["id"] for r in records} - low - {r["id"] for r in _read(out)}
            results[f"rules + semantic + judge ({s.model})"] = score(records, set(shipped) | low | failed)
            results["judge alone"] = score(records, low | failed)
    for name, r in results.items():
        print(f"{name:<40} good lost {r['good_lost']}/{r['good']}, bad kept {r['bad_kept']}/{r['bad']}")
    print(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
