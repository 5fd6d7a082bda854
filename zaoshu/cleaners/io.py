"""Reading records into columns and writing the kept and rejected records back out.

Records are not held in memory: the first pass keeps only the columns cleaning looks at (id, axes,
assistant text, finish_reason), the second pass streams the input again and writes each line as it is
(kept, untouched), rewritten (kept, normalized text + `meta.clean`) or with its `reject`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from zaoshu.errors import RecordError, ZaoshuError
from zaoshu.records import assistant_text, check_record, content_id, dumps, iter_lines, parse_line

CHUNK = 100_000


def expand_inputs(inputs: list[Path], *, exclude: set[Path]) -> list[Path]:
    """Files as given; folders become their `*.jsonl` files in sorted order (outputs left out)."""
    files: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.glob("*.jsonl") if p.resolve() not in exclude)
            if not found:
                raise ZaoshuError("folder has no *.jsonl files", path=item)
            files.extend(found)
        elif item.is_file():
            if item.resolve() in exclude:
                raise ZaoshuError("input is also an output of this run; choose another -o", path=item)
            files.append(item)
        else:
            raise ZaoshuError("no such file or folder", path=item)
    return files


def _record(raw: bytes, path: Path, line: int) -> dict[str, Any]:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = parse_line(raw, path=path, line=line)  # raises with the precise message
    return check_record(record, path=path, line=line)


def read_columns(files: list[Path], *, skip_bad_lines: bool = False) -> pl.DataFrame:
    """One row per non-blank input line: file, line, id, style, finish_reason, raw text, ax_<axis>, bad."""
    frames: list[pl.DataFrame] = []
    cols: dict[str, list[Any]] = {}
    axes_rows: list[dict[str, Any]] = []

    def flush() -> None:
        if not axes_rows:
            return
        names = sorted({k for a in axes_rows for k in a if k != "style"})
        data: dict[str, Any] = {k: v for k, v in cols.items()}
        for name in names:
            data[f"ax_{name}"] = [None if (v := a.get(name)) is None else str(v) for a in axes_rows]
        frames.append(
            pl.DataFrame(
                data,
                schema_overrides={
                    "file": pl.UInt16,
                    "line": pl.UInt32,
                    "style": pl.Utf8,
                    "finish_reason": pl.Utf8,
                    "bad": pl.Utf8,
                },
            )
        )
        for v in cols.values():
            v.clear()
        axes_rows.clear()

    for key in ("file", "line", "id", "style", "finish_reason", "raw", "bad"):
        cols[key] = []
    for fi, path in enumerate(files):
        for number, raw in iter_lines(path):
            try:
                record = _record(raw, path, number)
            except RecordError as e:
                if not skip_bad_lines:
                    raise
                record, bad = None, str(e)
            else:
                bad = None
            axes = (record or {}).get("axes") or {}
            if not isinstance(axes, dict):
                if not skip_bad_lines:
                    raise RecordError("'axes' must be an object", path=path, line=number)
                record, bad, axes = None, f"{path}:{number}: 'axes' must be an object", {}
            meta = (record or {}).get("meta") or {}
            cols["file"].append(fi)
            cols["line"].append(number)
            cols["id"].append(None if record is None else record.get("id") or content_id(record["messages"]))
            cols["style"].append(None if axes.get("style") is None else str(axes.get("style")))
            cols["finish_reason"].append(meta.get("finish_reason") if isinstance(meta, dict) else None)
            cols["raw"].append("" if record is None else assistant_text(record))
            cols["bad"].append(bad)
            axes_rows.append(axes)
            if len(axes_rows) >= CHUNK:
                flush()
    flush()
    if not frames:
        return pl.DataFrame(
            schema={
                "file": pl.UInt16,
                "line": pl.UInt32,
                "id": pl.Utf8,
                "style": pl.Utf8,
                "finish_reason": pl.Utf8,
                "raw": pl.Utf8,
                "bad": pl.Utf8,
            }
        )
    return pl.concat(frames, how="diagonal_relaxed")


def _set_assistant(record: dict[str, Any], text: str) -> None:
    for message in reversed(record["messages"]):
        if message.get("role") == "assistant":
            message["content"] = text
            return


class Outputs:
    """The kept and rejects files, written to temp files and renamed into place only on success."""

    def __init__(self, out: Path, rejects: Path) -> None:
        self.targets = [Path(out), Path(rejects)]
        self.tmps = [p.with_name(p.name + ".tmp") for p in self.targets]
        for p in self.targets:
            p.parent.mkdir(parents=True, exist_ok=True)
        self.kept = open(self.tmps[0], "wb")  # noqa: SIM115 - closed in commit/abort
        self.rejected = open(self.tmps[1], "wb")  # noqa: SIM115

    def commit(self) -> None:
        self.kept.close()
        self.rejected.close()
        for tmp, target in zip(self.tmps, self.targets, strict=False):
            os.replace(tmp, target)

    def abort(self) -> None:
        self.kept.close()
        self.rejected.close()
        for tmp in self.tmps:
            tmp.unlink(missing_ok=True)


def write_outputs(files: list[Path], decisions: pl.DataFrame, outputs: Outputs) -> None:
    """Second pass: stream the inputs again and route each line by its row of `decisions`.

    `decisions` has one row per input row, in input order: status (0 keep as is, 1 keep rewritten,
    2 reject), text, changes, raw, reason, detail, duplicate_of.
    """
    rows = _decision_rows(decisions)
    kept, rejected = outputs.kept, outputs.rejected
    for path in files:
        for number, raw in iter_lines(path):
            status, text, changes, original, reason, detail, dup = next(rows)
            if status == 0:
                kept.write(raw if raw.endswith(b"\n") else raw + b"\n")
                continue
            if reason == "bad_line":
                rejected.write(
                    dumps(
                        {
                            "reject": {"reason": reason, "detail": detail, "file": str(path), "line": number},
                            "raw": raw.decode("utf-8", errors="replace").rstrip("\r\n"),
                        }
                    )
                )
                continue
            record = orjson.loads(raw)
            if status == 1:
                _set_assistant(record, text)
                meta = record.setdefault("meta", {})
                meta["clean"] = {"changes": changes, "original": original}
                kept.write(dumps(record))
            else:
                info: dict[str, Any] = {"reason": reason, "detail": detail}
                if dup is not None:
                    info["duplicate_of"] = dup
                if changes:
                    info["normalized"] = text
                info["file"] = str(path)
                info["line"] = number
                record["reject"] = info
                rejected.write(dumps(record))


def _decision_rows(decisions: pl.DataFrame) -> Iterator[tuple[Any, ...]]:
    cols = ["status", "text", "changes", "raw", "reason", "detail", "duplicate_of"]
    for lo in range(0, decisions.height, CHUNK):
        part = decisions.slice(lo, CHUNK).select(cols)
        yield from zip(*(part[c].to_list() for c in cols), strict=False)
