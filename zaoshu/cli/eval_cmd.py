"""`zaoshu eval`: did training help? (thin over zaoshu.evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zaoshu.cli import app
from zaoshu.cli import options as opt
from zaoshu.cli.common import console, user_errors


@app.command("eval")
@user_errors
def eval_command(
    model: Annotated[
        list[str],
        typer.Option("--model", "-m", help="BASE then TUNED (model directories, or provider models)."),
    ],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Folder for eval.json, answers.jsonl, report.html.")
    ],
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="Recipe: rules, styles, judge rubric.")],
    inputs: Annotated[
        Path | None, typer.Option(help="Records whose user turns are asked (a split's test.jsonl).")
    ] = None,
    adapter: Annotated[
        Path | None, typer.Option(help="LoRA adapter for TUNED (zaoshu train's DIR/hf).")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="XTuner prompt template (default: as trained).")
    ] = None,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature for both models; 0 is greedy.")
    ] = 0.7,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 256,
    batch_size: Annotated[int, typer.Option(help="Inputs per generate() batch (transformers).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the sampling, the same for both models.")] = 0,
    threads: Annotated[
        int, typer.Option(help="CPU threads for transformers (1 is fastest on a busy machine).")
    ] = 1,
    limit: Annotated[int | None, typer.Option(help="Only the first N inputs.")] = None,
    provider: Annotated[
        str | None, typer.Option(help="Answer through this provider (a model served by vLLM or llama.cpp).")
    ] = None,
    base_url: opt.BaseUrl = None,
    judge_provider: Annotated[str | None, typer.Option(help="Judge the answers with this provider.")] = None,
    judge_model: Annotated[str | None, typer.Option(help="The judge's model.")] = None,
    judge_base_url: Annotated[str | None, typer.Option(help="The judge provider's base URL.")] = None,
    concurrency: opt.Concurrency = None,
    quiet: opt.Quiet = False,
) -> None:
    """Ask BASE and TUNED the same inputs; compare with the recipe's rules and, with a judge, scores and a
    pairwise win rate asked in both orders (A/B and B/A)."""
    from zaoshu.evaluate import EvalOptions, Sampling, evaluate

    provider_options = judge_options = None
    if provider is not None:
        provider_options = opt.generate_options(
            provider=provider, base_url=base_url, concurrency=concurrency, quiet=quiet
        )
    if judge_provider is not None:
        judge_options = opt.generate_options(
            provider=judge_provider,
            model=judge_model,
            base_url=judge_base_url,
            concurrency=concurrency,
            quiet=quiet,
        )
    options = EvalOptions(
        models=model,
        out_dir=out,
        recipe=recipe,
        inputs=inputs,
        adapter=adapter,
        sampling=Sampling(
            temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size
        ),
        template=template,
        limit=limit,
        provider=provider_options,
        judge=judge_options,
    )

    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True, highlight=False)

    result = evaluate(options, echo=say)
    for label in ("base", "tuned"):
        m = result["metrics"][label]["overall"]
        say(
            f"{label}: rules pass {m['pass_rate']}, mean {m['mean_chars']} chars, over max_chars "
            f"{m['over_max_chars']}, distinct-2 {m['distinct_2']}"
            + (f", judge mean {m['judge_mean']}" if m["judge_mean"] is not None else "")
        )
    if result["pairwise"]:
        p = result["pairwise"]
        say(
            f"pairwise: TUNED win rate {p['win_rate_tuned']} (A/B {p['win_rate_tuned_ab']}, B/A "
            f"{p['win_rate_tuned_ba']}), ties {p['ties']}, orders agree {p['orders_agree']}"
        )
    say(f"report: {out / 'report.html'}")
