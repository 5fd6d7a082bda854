"""Each model answers every input: transformers `generate` here (batched, seeded), or any provider (a model
served by vLLM or llama.cpp) through the generation engine. Both models get the same system prompt and
sampling."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zaoshu.evaluate.inputs import EvalInput
from zaoshu.generator.engine import GenerateOptions, agenerate
from zaoshu.records import iter_lines, parse_line


@dataclass
class Sampling:
    temperature: float = 0.7
    max_new_tokens: int = 256
    seed: int = 0
    batch_size: int = 8
    #: torch CPU threads. 1 by default: on a busy 2-core machine two threads made the tiny model's
    #: generate 10-30x slower (0.3 s vs 3-12 s a batch), spinning against other work.
    threads: int = 1


def answer_local(
    model_dir: Path,
    adapter: Path | None,
    inputs: list[EvalInput],
    sampling: Sampling,
    *,
    template: str | None = None,
) -> tuple[list[str], float]:
    """Answers from a model directory (plus a LoRA adapter), left-padded batches, one seed per batch;
    and the seconds spent generating (loading the model aside)."""
    from zaoshu.trainer.chat import ChatSession

    session = ChatSession(
        model_dir,
        adapter=adapter,
        system="",
        template=template,
        temperature=sampling.temperature,
        max_new_tokens=sampling.max_new_tokens,
        seed=sampling.seed,
    )
    import torch

    if session.device == "cpu":
        torch.set_num_threads(sampling.threads)
    tok, model = session.tokenizer, session.model
    tok.padding_side = "left"  # decoder-only: the prompt must end where generation starts
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    add_special = session.xtuner_template is not None
    answers: list[str] = []
    t0 = time.monotonic()
    for lo in range(0, len(inputs), sampling.batch_size):
        batch = inputs[lo : lo + sampling.batch_size]
        prompts = []
        for item in batch:
            session.system = item.system
            prompts.append(session.prompt(item.user))
        ids = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special).to(
            session.device
        )
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": sampling.temperature > 0,
            "pad_token_id": tok.pad_token_id,
        }
        if sampling.temperature > 0:
            kwargs["temperature"] = sampling.temperature
        if session.stop_words:
            kwargs.update(stop_strings=session.stop_words, tokenizer=tok)
        torch.manual_seed(sampling.seed + lo)  # the same draws for both models on the same batch
        with torch.no_grad():
            out = model.generate(**ids, **kwargs)
        width = ids["input_ids"].shape[1]
        for row in out:
            text = tok.decode(row[width:], skip_special_tokens=True)
            for word in session.stop_words:
                text = text.split(word)[0]
            answers.append(text.strip())
    return answers, time.monotonic() - t0


@dataclass(frozen=True)
class AnswerTask:
    """One question to a served model; quacks like generator.plan.Task for the engine."""

    id: str
    recipe: str
    axes: dict[str, str]
    prompt: str
    request: list[dict[str, str]] = field(repr=False)

    @property
    def user(self) -> str:
        return self.prompt

    def to_record(self, reply: str, meta: dict[str, Any]) -> dict[str, Any]:
        """A record (the engine resumes from its own records: `meta.fingerprint` says what asked)."""
        return {
            "id": self.id,
            "recipe": self.recipe,
            "axes": self.axes,
            "messages": [*self.request, {"role": "assistant", "content": reply}],
            "meta": meta,
        }


def answer_provider(
    model: str,
    inputs: list[EvalInput],
    sampling: Sampling,
    options: GenerateOptions,
    out: Path,
    recipe: Any,
) -> list[str]:
    """Answers from a provider's model, appended to `out` (a rerun asks only what is missing)."""
    tasks = [
        AnswerTask(
            item.id,
            getattr(recipe, "name", "eval"),
            item.axes,
            item.user,
            ([{"role": "system", "content": item.system}] if item.system else [])
            + [{"role": "user", "content": item.user}],
        )
        for item in inputs
    ]
    params = {
        "temperature": sampling.temperature,
        "max_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
    }
    options = options.model_copy(update={"model": model, "label": "answer"})
    asyncio.run(agenerate(recipe, out, options, tasks=tasks, params=params))
    got: dict[str, str] = {}
    for number, raw in iter_lines(out):
        row = parse_line(raw, path=out, line=number)
        got[row["id"]] = row["messages"][-1]["content"]
    return [got.get(item.id, "") for item in inputs]
