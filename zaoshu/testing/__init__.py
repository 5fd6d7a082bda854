"""Test helpers shipped with zaoshu: an OpenAI-compatible fake provider (see `fakeserver`).

`FakeServer` is imported lazily so `python -m zaoshu.testing.fakeserver` runs without a double import.
"""

from typing import Any

__all__ = ["FakeServer"]


def __getattr__(name: str) -> Any:
    if name == "FakeServer":
        from zaoshu.testing.fakeserver import FakeServer

        return FakeServer
    raise AttributeError(name)
