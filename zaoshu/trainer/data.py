"""Training data for XTuner: read records (a file in any format, or a train/test split folder), write them
in XTuner's custom SFT format, and pick SYSTEM and evaluation inputs.

Why XTuner's OpenAI-messages format (its custom SFT format, read by `openai_map_fn`) and not the
`conversation` JSON: it *is* our record's `messages`, so nothing is translated or lost — multi-turn dialogues
and per-turn `"loss": false` pass through unchanged, a system turn stays where it was — and the file is
JSON Lines, which `datasets` streams instead of parsing one giant JSON array.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zaoshu.errors import ZaoshuError
from zaoshu.formats import read_any
from zaoshu.records import Record

SPLIT_NAMES = ("train", "test")
DATA_SUFFIXES = (".jsonl", ".json")
EVAL_SAMPLE = 6  # a handful: enough to see the style during training, cheap to generate each time


@dataclass
class TrainData:
    """The records to train on, and a held-out split if the input had one."""

    source: Path
    train: list[Record]
    test: list[Record] = field(default_factory=list)


def read_data_file(path: Path) -> list[Record]:
    """Records from a file in any format the formats stage reads (detected from its rows)."""
    return read_any(path)


def _split_file(folder: Path, name: str) -> Path | None:
    for suffix in DATA_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def load_train_data(path: str | Path) -> TrainData:
    """Records from a file, or from a split folder's train.* (and test.* when present)."""
    path = Path(path)
    if path.is_dir():
        train_file = _split_file(path, "train")
        if train_file is None:
            raise ZaoshuError(
                f"split folder has no train file (expected train{{{','.join(DATA_SUFFIXES)}}})", path=path
            )
        test_file = _split_file(path, "test")
        data = TrainData(path, read_data_file(train_file), read_data_file(test_file) if test_file else [])
        where = train_file
    elif path.is_file():
        data = TrainData(path, read_data_file(path))
        where = path
    else:
        raise ZaoshuError("data not found (expected a records file or a train/test split folder)", path=path)
    if not data.train:
        raise ZaoshuError("no training records: the data is empty", path=where)
    return data


def xtuner_row(record: Record) -> dict[str, Any]:
    """A record as XTuner's custom SFT row: only `messages`, role and content, and `loss` on every assistant turn.

    The flag is written even where it is the default (true): with older `datasets`, a column where only some
    turns carry `loss` is filled with null, and `openai_map_fn` reads null as "no loss".
    """
    messages = []
    for m in record["messages"]:
        row = {"role": m["role"], "content": m["content"]}
        if m["role"] == "assistant":
            row["loss"] = bool(m.get("loss", True))
        messages.append(row)
    return {"messages": messages}


def _user_turns(records: list[Record]) -> list[str]:
    return [
        m["content"]
        for r in records
        for m in r["messages"][:2]
        if m["role"] == "user" and m["content"].strip()
    ]


def sample_eval_inputs(data: TrainData, n: int = EVAL_SAMPLE, seed: int = 0) -> list[str]:
    """First user turns sampled from the test split (the train data when there is none), deterministic."""
    pool = list(dict.fromkeys(_user_turns(data.test) or _user_turns(data.train)))
    random.Random(seed).shuffle(pool)
    return pool[:n]


def data_system(records: list[Record]) -> str:
    """The system prompt most records carry ('' when none has one)."""
    systems = Counter(
        r["messages"][0]["content"] for r in records if r["messages"] and r["messages"][0]["role"] == "system"
    )
    return systems.most_common(1)[0][0] if systems else ""


def read_eval_inputs(path: str | Path) -> list[str]:
    """Evaluation inputs from a file: a JSON/YAML list of strings, or one input per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZaoshuError(f"cannot read evaluation inputs: {e}", path=path) from None
    if path.suffix in (".json", ".yaml", ".yml"):
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ZaoshuError(f"not valid YAML/JSON: {e}", path=path) from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ZaoshuError("expected a list of strings", path=path)
        inputs = [v for v in value if v.strip()]
    else:
        inputs = [line.strip() for line in text.splitlines() if line.strip()]
    if not inputs:
        raise ZaoshuError("no evaluation inputs in the file", path=path)
    return inputs


def estimate_iterations(
    records: list[Record],
    model_path: str | Path,
    *,
    max_length: int,
    batch_size: int,
    devices: int,
    pack: bool,
) -> int:
    """About how many iterations one epoch takes (to size the warm-up; an estimate is enough).

    Tokens come from the model's tokenizer.json when it has one, else one token per character.
    """
    texts = [m["content"] for r in records for m in r["messages"]]
    tokens = sum(len(t) for t in texts)
    tokenizer_file = Path(model_path) / "tokenizer.json"
    if tokenizer_file.is_file():
        try:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))
        except Exception:
            pass
    tokens += 8 * len(texts)  # the template's role markers around each turn
    samples = math.ceil(tokens / max_length) if pack else len(records)
    return max(1, math.ceil(samples / (batch_size * max(1, devices))))
