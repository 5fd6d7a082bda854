"""Publish a dataset on the Hugging Face Hub: a dataset folder (parquet shards per split under data/,
a README.md card the Hub reads) and its upload with `huggingface_hub`.

The card is generated from the data and what the pipeline left beside it: the recipe (axes, styles,
prompt) found by the records' `recipe` name, the generation stats (`*.stats.json`) and the cleaning
report (`*.report/report.json`, or `report/report.json` of a `zaoshu run` folder). The token comes only from `HF_TOKEN` and never reaches a message.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import orjson

from zaoshu.errors import AuthError, RecipeError, ZaoshuError
from zaoshu.files import check_writable, guard_outputs
from zaoshu.formats import read_any
from zaoshu.records import Record, assistant_text

#: split names a split folder may hold, and the name the Hub knows them by
SPLIT_NAMES = {
    "train": "train",
    "test": "test",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
}
#: the Hub's repo id rules: OWNER/NAME, letters, digits, '-', '_', '.', at most 96 characters for the name
REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")
SHARD_BYTES = 256 << 20
BASE_COLUMNS = ("id", "recipe", "messages", "meta")
CARD = Path(__file__).with_name("publish_card.md.j2")
INSTALL_HINT = 'pip install -e ".[publish]"'  # quoted: zsh globs the bare brackets


@dataclass(slots=True)
class Published:
    folder: Path
    repo: str
    #: (path inside the folder, bytes), measured when written (the folder may be gone after an upload)
    files: list[tuple[str, int]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    url: str | None = None  # the commit, when uploaded


def require_extra(*modules: str) -> None:
    """Raise a ZaoshuError naming the install command when a module of the publish extra is missing.

    pyarrow, datasets and huggingface_hub are imported lazily, deep in the work; without this a bare install fails
    with a ModuleNotFoundError traceback halfway through.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ZaoshuError(
            f"publishing needs {', '.join(missing)} (not installed); install the publish extra: {INSTALL_HINT}"
        )


def check_repo(repo: str) -> str:
    if not REPO_RE.match(repo or "") or "--" in repo or ".." in repo or repo.endswith((".git", ".ipynb")):
        raise ZaoshuError(
            f"--repo must be OWNER/NAME (your user or organization, a slash, the dataset name: letters, "
            f"digits, '-', '_', '.'), got {repo!r}; e.g. --repo alice/wishes-zh"
        )
    return repo


def hf_token() -> str:
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise AuthError(
            "HF_TOKEN is not set: create a token with write access at https://huggingface.co/settings/tokens "
            "and `export HF_TOKEN=...`, or write the folder only with --out DIR or --dry-run"
        )
    return token


def find_splits(path: str | Path) -> dict[str, Path]:
    """{split: file}: a file is the train split; a folder gives its train/test/validation files."""
    p = Path(path)
    if p.is_file():
        return {"train": p}
    if not p.is_dir():
        raise ZaoshuError("no such file or folder", path=p)
    found: dict[str, Path] = {}
    for f in sorted(p.iterdir()):
        name = SPLIT_NAMES.get(f.stem.lower())
        if name and f.suffix.lower() in (".jsonl", ".json") and f.is_file():
            if name in found:
                raise ZaoshuError(f"two files for the {name} split: {found[name].name} and {f.name}", path=p)
            found[name] = f
    if not found:
        raise ZaoshuError("folder holds no train.jsonl / test.jsonl (make one with `zaoshu split`)", path=p)
    order = ["train", "validation", "test"]
    return {k: found[k] for k in order if k in found}


# ---------------------------------------------------------------- parquet


def _axis_columns(splits: dict[str, list[Record]]) -> dict[str, str]:
    """axis name -> column name, in order of first appearance (prefixed when it collides)."""
    out: dict[str, str] = {}
    for records in splits.values():
        for r in records:
            for axis in r.get("axes") or {}:
                if axis not in out:
                    out[axis] = f"axis_{axis}" if axis in BASE_COLUMNS else axis
    return out


def _features(axes: dict[str, str], with_loss: bool, with_meta: bool) -> Any:
    """The columns' types, declared so an all-null axis or meta column is still a string column."""
    from datasets import Features, Value

    turn = {"role": Value("string"), "content": Value("string")}
    if with_loss:
        turn["loss"] = Value("bool")
    columns: dict[str, Any] = {"id": Value("string"), "recipe": Value("string")}
    columns |= {column: Value("string") for column in axes.values()}
    columns["messages"] = [turn]
    if with_meta:
        columns["meta"] = Value("string")
    return Features(columns)


def _row(record: Record, axes: dict[str, str], with_loss: bool, with_meta: bool) -> dict[str, Any]:
    """One record as a row: axis values (a number or list becomes its JSON text) and meta as JSON text."""
    keys = ("role", "content", "loss") if with_loss else ("role", "content")
    given = record.get("axes") or {}
    row: dict[str, Any] = {"id": record.get("id"), "recipe": record.get("recipe")}
    for axis, column in axes.items():
        v = given.get(axis)
        row[column] = v if v is None or isinstance(v, str) else orjson.dumps(v).decode()
    row["messages"] = [{k: m.get(k) for k in keys} for m in record["messages"]]
    if with_meta:
        row["meta"] = orjson.dumps(record["meta"]).decode() if record.get("meta") else None
    return row


def write_parquet(
    splits: dict[str, list[Record]], folder: Path, *, with_meta: bool = True
) -> tuple[list[Path], list[dict[str, str]]]:
    """data/{split}-0000i-of-0000n.parquet per split, written by `datasets` (the library the Hub's
    loader reads them with); returns the files and the column descriptions."""
    from datasets import Dataset
    from datasets.utils import logging as ds_logging

    axes = _axis_columns(splits)
    with_loss = any("loss" in m for rs in splits.values() for r in rs for m in r["messages"])
    with_meta = with_meta and any(r.get("meta") for rs in splits.values() for r in rs)
    features = _features(axes, with_loss, with_meta)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()  # the command prints its own summary; a bar per shard is noise
    try:
        for split, records in splits.items():
            table = Dataset.from_list(
                [_row(r, axes, with_loss, with_meta) for r in records], features=features
            )
            approx = sum(len(orjson.dumps(r["messages"])) for r in records[:1000]) / max(
                1, min(len(records), 1000)
            )
            # never more shards than records: an empty parquet file would be a shard of nothing
            shards = max(1, min(len(records), math.ceil(approx * len(records) / SHARD_BYTES)))
            for i in range(shards):
                path = folder / "data" / f"{split}-{i:05d}-of-{shards:05d}.parquet"
                table.shard(shards, i, contiguous=True).to_parquet(path)
                files.append(path)
    finally:
        if bars:
            ds_logging.enable_progress_bar()
    columns = [
        {"name": "id", "type": "string", "about": "stable id (a hash of the task, or of the conversation)"},
        {"name": "recipe", "type": "string", "about": "the recipe that made the record"},
    ]
    for axis, column in axes.items():
        columns.append({"name": column, "type": "string", "about": f"axis `{axis}` of the recipe"})
    loss = ", `loss` (bool: whether the turn is trained on; XTuner)" if with_loss else ""
    columns.append(
        {
            "name": "messages",
            "type": "list of {role, content}",
            "about": f"the conversation (OpenAI chat format{loss})",
        }
    )
    if with_meta:
        columns.append(
            {
                "name": "meta",
                "type": "string (JSON)",
                "about": "generation details: prompt, model, usage, cleaning",
            }
        )
    return files, columns


# ---------------------------------------------------------------- the card


def _first_line(text: str, limit: int = 80) -> str:
    line = " ".join(text.strip().splitlines()[:1]) if text else ""
    line = line.replace("|", "\\|")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def recipe_context(path: Path) -> dict[str, Any]:
    from zaoshu.recipes import load_recipe

    recipe = load_recipe(path)
    axes = []
    for name, values in recipe.values.items():
        sample = "、".join(str(v) for v in values[:12]) + ("…" if len(values) > 12 else "")
        axes.append({"name": name, "count": len(values), "sample": sample.replace("|", "\\|")})
    axes.append({"name": "style", "count": len(recipe.styles), "sample": "、".join(recipe.styles)})
    styles = []
    for name, style in recipe.styles.items():
        limit = " – ".join(str(x) for x in (style.min_chars, style.max_chars) if x) or "–"
        styles.append(
            {
                "name": name,
                "instruction": _first_line(style.instruction),
                "limit": f"≤ {style.max_chars} chars" if style.max_chars and not style.min_chars else limit,
                "templates": "; ".join(f"`{t}`" for t in style.user_templates[:3]).replace("|", "\\|"),
            }
        )
    model = ", ".join(f"{k} {v}" for k, v in recipe.model.model_dump().items() if v is not None)
    return {
        "planned": planned_count(recipe),
        "name": recipe.name,
        "description": recipe.description,
        "rounds": recipe.rounds,
        "excluded_rules": len(recipe.exclude),
        "axes": axes,
        "styles": styles,
        "system": recipe.system.replace("`", "'"),
        "model": model,
        "prompt": recipe.prompt.rstrip(),
    }


def planned_count(recipe: Any) -> int:
    """How many tasks the recipe plans (rounds × styles × axis combinations, minus exclusions), counted
    without rendering a prompt."""
    from zaoshu.recipes import is_excluded

    names = list(recipe.values)
    per_round = 0
    for style in recipe.styles:
        for combo in itertools.product(*(recipe.values[n] for n in names)):
            axes = {**{n: str(v) for n, v in zip(names, combo, strict=True)}, "style": style}
            per_round += not is_excluded(recipe, axes)
    return per_round * recipe.rounds


def stats_tasks(path: Path | None) -> int | None:
    """The tasks the generation planned (after `--limit`), from its `*.stats.json`; None if unknown."""
    if path is None:
        return None
    data = _read_json(path)
    tasks = data.get("tasks") if isinstance(data, dict) else None
    return tasks if isinstance(tasks, int) and not isinstance(tasks, bool) else None


def _flatten(data: Any, prefix: str = "", depth: int = 2) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and depth > 0:
                rows += _flatten(v, key + ".", depth - 1)
            elif isinstance(v, (str, int, float, bool)) and not (isinstance(v, str) and len(v) > 120):
                rows.append((key, v))
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def _newest(paths: list[Path]) -> Path | None:
    paths = [p for p in paths if p.is_file()]
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise ZaoshuError(f"cannot read it as JSON: {e}", path=path) from None


def stats_context(path: Path | None) -> dict[str, Any] | None:
    """Generation figures from the generator's `*.stats.json` (or a run's summary.json), read by field
    name: model, tokens_in, tokens_out, cost, currency; the other figures as rows."""
    if path is None:
        return None
    data = _read_json(path)
    if not isinstance(data, dict):
        return None
    # local paths (output, failures) say nothing to readers of a public card
    rows = [(k, v) for k, v in _flatten(data) if not (isinstance(v, str) and ("/" in v or "\\" in v))]
    if not rows:
        return None
    head = []
    if isinstance(data.get("model"), str) and data["model"]:
        head.append(f"model `{data['model']}`")
    tokens = [f"{k} {_fmt(data[k])}" for k in ("tokens_in", "tokens_out") if isinstance(data.get(k), int)]
    if tokens:
        head.append("tokens: " + ", ".join(tokens))
    if isinstance(data.get("cost"), (int, float)):
        currency = f" {data['currency']}" if data.get("currency") else ""
        head.append(f"cost {_fmt(data['cost'])}{currency}")
    return {"file": path.name, "headline": "; ".join(head), "rows": [(k, _fmt(v)) for k, v in rows[:40]]}


def report_context(path: Path | None) -> dict[str, Any] | None:
    """The cleaning report's counts and its `by_reason` (reason -> rejected records), read by name."""
    if path is None:
        return None
    data = _read_json(path)
    if not isinstance(data, dict):
        return None
    rows = [(k, _fmt(v)) for k, v in _flatten(data, depth=0)[:30]]
    by_reason = data.get("by_reason") if isinstance(data.get("by_reason"), dict) else {}
    reasons = [(str(k), _fmt(n)) for k, n in by_reason.items() if isinstance(n, (int, float))]
    counts = data.get("counts")
    if isinstance(counts, dict):
        rows += [(f"counts.{k}", _fmt(v)) for k, v in _flatten(counts, depth=0)]
    return {"file": f"{path.parent.name}/{path.name}", "rows": rows, "reasons": reasons[:40]}


def size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    for limit, name in ((10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < limit:
            return name
    return "n>1T" if n >= 1_000_000_000_000 else "1B<n<10B"


_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


def languages(records: list[Record]) -> list[str]:
    """zh and/or en from the share of Han and Latin letters in a sample of the conversations."""
    text = "".join(m["content"] for r in records[:2000] for m in r["messages"] if m["role"] != "system")
    han, latin = len(_CJK.findall(text)), len(_LATIN.findall(text)) / 4  # ~4 letters make a word
    out = []
    if han >= 0.2 * (han + latin):
        out.append("zh")
    if latin >= 0.2 * (han + latin):
        out.append("en")
    return out or ["zh"]


def _axis_counts(records: list[Record]) -> list[dict[str, Any]]:
    counters: dict[str, Counter] = {}
    for r in records:
        for axis, value in (r.get("axes") or {}).items():
            counters.setdefault(axis, Counter())[str(value)] += 1
    out = []
    for axis, counter in counters.items():
        rows = counter.most_common(30)
        out.append({"name": axis, "distinct": len(counter), "rows": rows, "truncated": len(counter) > 30})
    return out


def _lengths(records: list[Record]) -> list[dict[str, Any]]:
    by_style: dict[str, list[int]] = {}
    for r in records:
        style = (r.get("axes") or {}).get("style")
        if style is not None:
            by_style.setdefault(str(style), []).append(len(assistant_text(r)))
    return [
        {"style": s, "n": len(v), "mean": round(sum(v) / len(v), 1), "min": min(v), "max": max(v)}
        for s, v in sorted(by_style.items())
    ]


def card(
    repo: str,
    splits: dict[str, list[Record]],
    columns: list[dict[str, str]],
    *,
    recipe: Path | None,
    stats: Path | None,
    report: Path | None,
    license: str,
    language: list[str] | None,
    pretty_name: str | None = None,
    explicit_recipe: bool = False,
) -> str:
    everything = [r for rs in splits.values() for r in rs]
    names = Counter(r.get("recipe") for r in everything if r.get("recipe"))
    recipe_name = names.most_common(1)[0][0] if names else None
    recipe_ctx = None
    recipe_problem = None
    if recipe is not None:
        try:
            recipe_ctx = recipe_context(recipe)
        except RecipeError as e:
            if explicit_recipe:
                raise
            recipe_problem = f"{recipe.name} was found but does not load: {e}"
    title = pretty_name or (
        recipe_ctx["description"] if recipe_ctx and recipe_ctx["description"] else repo.split("/")[1]
    )
    from huggingface_hub import DatasetCardData

    header = DatasetCardData(
        license=license,
        language=language or languages(everything),
        task_categories=["text-generation"],
        size_categories=[size_category(len(everything))],
        pretty_name=title,
        tags=["synthetic", "sft", "zaoshu"] + ([recipe_name] if recipe_name else []),
        configs=[
            {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}
        ],
    )
    example = None
    first = next(iter(splits.values()))
    if first:
        shown = {k: v for k, v in first[0].items() if k != "meta"}
        example = orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(CARD.parent), trim_blocks=True, lstrip_blocks=True, autoescape=False
    )
    text = env.get_template(CARD.name).render(
        header=header.to_yaml() + "\n",
        title=title,
        description=recipe_ctx["description"] if recipe_ctx and recipe_ctx["description"] != title else "",
        repo=repo,
        total=len(everything),
        splits=[{"name": s, "count": len(rs)} for s, rs in splits.items()],
        columns=columns,
        has_loss=any("loss" in m for r in everything for m in r["messages"]),
        example=example,
        axes_counts=_axis_counts(everything),
        lengths=_lengths(everything),
        recipe_name=recipe_name,
        recipe_problem=recipe_problem,
        recipe=recipe_ctx,
        stats=stats_context(stats),
        run_tasks=stats_tasks(stats),
        report=report_context(report),
    )
    return re.sub(r"\n{3,}", "\n\n", text)


# ---------------------------------------------------------------- build and upload


def build(
    input: str | Path,
    repo: str,
    folder: str | Path,
    *,
    recipe: str | Path | None = None,
    stats: str | Path | None = None,
    report: str | Path | None = None,
    license: str = "other",
    language: list[str] | None = None,
    with_meta: bool = True,
) -> Published:
    """Write the dataset folder (data/*.parquet + README.md) for `input` into `folder`."""
    # the shards are written by datasets, the card's header is huggingface_hub's DatasetCardData
    require_extra("pyarrow", "datasets", "huggingface_hub")
    for option, given in (("--recipe", recipe), ("--stats", stats), ("--report", report)):
        if given is not None and not Path(given).is_file():
            raise ZaoshuError(f"{option}: file not found", path=given)
    split_files = find_splits(input)
    splits = {name: read_any(path) for name, path in split_files.items()}
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        if not (folder / "README.md").exists() or not (folder / "data").is_dir():
            raise ZaoshuError(
                "output folder is not empty and is not a dataset folder; choose another", path=folder
            )
        shutil.rmtree(folder / "data")
    folder.mkdir(parents=True, exist_ok=True)
    files, columns = write_parquet(splits, folder, with_meta=with_meta)
    near = sorted({p.parent.resolve() for p in split_files.values()})
    if recipe is not None:
        recipe_path: Path | None = Path(recipe)
    else:
        names = Counter(r.get("recipe") for rs in splits.values() for r in rs if r.get("recipe"))
        from zaoshu.recipes import find_recipe

        recipe_path = find_recipe(names.most_common(1)[0][0] if names else None, near)
    search = [d for p in near for d in (p, p.parent)]
    stats_path = Path(stats) if stats else _newest([f for d in search for f in d.glob("*.stats.json")])
    report_path = (
        Path(report)
        if report
        else _newest([f for d in search for g in ("*.report", "report") for f in d.glob(f"{g}/report.json")])
    )
    text = card(
        repo,
        splits,
        columns,
        recipe=recipe_path,
        stats=stats_path,
        report=report_path,
        license=license,
        language=language,
        explicit_recipe=recipe is not None,
    )
    (folder / "README.md").write_text(text, encoding="utf-8")
    return Published(
        folder=folder,
        repo=repo,
        files=[(f.relative_to(folder).as_posix(), f.stat().st_size) for f in [*files, folder / "README.md"]],
        counts={name: len(rs) for name, rs in splits.items()},
    )


def _connection_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    try:
        import requests

        found.append(requests.ConnectionError)
    except ImportError:
        pass
    try:
        import httpx

        found.append(httpx.TransportError)
    except ImportError:
        pass
    return tuple(found) or (ConnectionError,)


def upload(folder: Path, repo: str, *, token: str, private: bool = False) -> str:
    """Create the dataset repo if needed and commit the folder; returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    endpoint = os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo, repo_type="dataset", private=private or None, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo,
            repo_type="dataset",
            commit_message="Upload dataset made with zaoshu",
        )
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        what = {401: "the token was refused (401)", 403: "no write access to this namespace (403)"}.get(
            status or 0, str(e).splitlines()[0]
        )
        raise ZaoshuError(f"upload to {repo} failed: {what}".replace(token, "***")) from None
    except _connection_errors() as e:  # requests' derive from OSError, httpx's (newer hubs) do not
        where = endpoint or "https://huggingface.co"
        raise ZaoshuError(
            f"upload to {repo} failed: cannot reach the Hub at {where} ({type(e).__name__}); check the "
            "network (or HF_ENDPOINT) and rerun; nothing was uploaded"
        ) from None
    except (OSError, ValueError) as e:  # bad replies
        raise ZaoshuError(f"upload to {repo} failed: {e}".replace(token, "***")) from None
    return str(info.commit_url)


def publish(
    input: str | Path,
    repo: str,
    *,
    private: bool = False,
    out: str | Path | None = None,
    dry_run: bool = False,
    **card_options: Any,
) -> Published:
    """Build the dataset folder and upload it; `out` or `dry_run` stop before the upload (no token needed)."""
    check_repo(repo)
    uploads = out is None and not dry_run
    require_extra("pyarrow", "datasets", "huggingface_hub")
    token = hf_token() if uploads else None  # before any work
    if out is not None:
        given = [card_options.get(k) for k in ("recipe", "stats", "report")]
        guard_outputs([], [input, *given], output_dirs=[out])
        check_writable(dirs=[out])
        return build(input, repo, out, **card_options)
    tmp = Path(tempfile.mkdtemp(prefix="zaoshu-publish-"))
    try:
        result = build(input, repo, tmp / repo.split("/")[1], **card_options)
        if dry_run:
            return result
        result.url = upload(result.folder, repo, token=token or "", private=private)
        return result
    finally:
        if not dry_run:
            shutil.rmtree(tmp, ignore_errors=True)
