"""Generation: plan (recipe -> tasks), providers (LLM APIs), engine (async run), sink (crash-safe output)."""

from zaoshu.generator.plan import Plan, Task, plan

__all__ = ["Plan", "Task", "plan"]
