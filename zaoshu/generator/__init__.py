"""Generation: plan (recipe -> tasks), providers (LLM APIs), engine (async run), sink (crash-safe output).

The engine and providers are imported on first use, so `import zaoshu` stays light for other stages.
"""

from typing import Any

from zaoshu.generator.plan import Plan, Task, plan

_LAZY = {
    "GenerateOptions": "zaoshu.generator.options",
    "GenerateStats": "zaoshu.generator.engine",
    "agenerate": "zaoshu.generator.engine",
    "generate": "zaoshu.generator.engine",
    "Endpoint": "zaoshu.generator.providers",
    "Provider": "zaoshu.generator.providers",
    "get_provider": "zaoshu.generator.providers",
    "register_provider": "zaoshu.generator.providers",
}

__all__ = ["Plan", "Task", "plan", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
