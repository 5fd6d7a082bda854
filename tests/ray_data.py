"""Seeded Chinese wishes with planted exact and near duplicates, for comparing the two engines."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from clean_builders import record, write

RECIPIENTS = ["姐姐", "妹妹", "哥哥", "弟弟", "爸爸", "妈妈", "外公", "外婆", "老师", "同事"]
SCENES = ["生日", "春节", "中秋", "新婚", "升学", "乔迁"]
CHARS = "愿你天天开心快乐幸福平安健康顺利美满吉祥如意万事心想事成前程似锦步步高升岁岁年年温暖陪伴笑容灿烂"


def _text(rng: random.Random, recipient: str, scene: str) -> str:
    body = "".join(rng.choice(CHARS) for _ in range(rng.randint(14, 40)))
    return f"祝{recipient}{scene}快乐，{body}！"


def _edit(rng: random.Random, text: str) -> str:
    i = rng.randrange(3, len(text) - 1)
    kind = rng.random()
    if kind < 0.4:
        return text[:i] + rng.choice(CHARS) + text[i + 1 :]
    if kind < 0.7:
        return text[:i] + text[i + 1 :]
    return text[:i] + rng.choice(CHARS) + text[i:]


def rows(n: int, seed: int, *, axes: bool = True) -> list[dict[str, Any]]:
    """n records: originals, exact copies, one-edit copies, kin swaps (the veto's), short keys,
    a templated hot bucket (many rows alike: the bucket caps) and a few rows the rules reject."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    originals: list[tuple[str, str, str]] = []
    while len(out) < n:
        roll = rng.random()
        if roll < 0.45 or not originals:
            who, scene = rng.choice(RECIPIENTS), rng.choice(SCENES)
            text = _text(rng, who, scene)
            originals.append((text, who, scene))
        elif roll < 0.6:
            text, who, scene = rng.choice(originals)
        elif roll < 0.8:
            text, who, scene = rng.choice(originals)
            text = _edit(rng, text)
        elif roll < 0.85:
            text, who, scene = rng.choice(originals)
            other = rng.choice([r for r in RECIPIENTS if r != who])
            text, who = text.replace(who, other, 1), other
        elif roll < 0.9:
            who, scene = rng.choice(RECIPIENTS), rng.choice(SCENES)
            text = f"祝{who}{scene}{rng.choice(CHARS)}{rng.choice(CHARS)}"
        elif roll < 0.97:
            who, scene = "同事", "乔迁"
            text = f"祝同事乔迁快乐，新家温暖明亮，生活幸福美满，第{rng.randint(1, 60)}号祝福送给你！"
        elif roll < 0.985:
            who, scene = rng.choice(RECIPIENTS), rng.choice(SCENES)
            text = f"滚，{_text(rng, who, scene)}"
        else:
            who, scene = rng.choice(RECIPIENTS), rng.choice(SCENES)
            text = "太长了" * 400
        row = record(text, recipient=who, scene=scene, rid=f"r{len(out):07d}")
        if not axes:  # no axis values known: the veto decides instead of the axis guard
            del row["axes"]
        out.append(row)
    return out


def shards(folder: Path, n: int, seed: int, parts: int = 3, *, axes: bool = True) -> list[Path]:
    """`rows` dealt round-robin into `parts` files (so duplicates cross files)."""
    data = rows(n, seed, axes=axes)
    return [write(folder / f"part{i}.jsonl", data[i::parts]) for i in range(parts)]
