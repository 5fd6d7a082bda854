"""Small builders of canonical records for the cleaning tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

_counter = [0]


def record(
    text: str,
    *,
    recipient: str = "姐姐",
    scene: str = "生日",
    style: str = "正常",
    finish: str = "stop",
    rid: str | None = None,
) -> dict[str, Any]:
    _counter[0] += 1
    return {
        "id": rid or f"t{_counter[0]:06d}",
        "recipe": "wishes",
        "axes": {"recipient": recipient, "scene": scene, "style": style},
        "messages": [
            {"role": "system", "content": "你现在是一个送祝福大师，帮我针对不同人和事情、节日送对应的祝福"},
            {"role": "user", "content": f"祝{recipient}{scene}"},
            {"role": "assistant", "content": text},
        ],
        "meta": {"finish_reason": finish, "provider": "test"},
    }


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
