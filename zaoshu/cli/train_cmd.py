"""`zaoshu train` and `zaoshu chat`: parse options, call zaoshu.trainer."""

from __future__ import annotations

from pathlib import Path

import typer

from zaoshu.cli import app
from zaoshu.cli.common import console, user_errors


def _echo(line: str) -> None:
    console.out(line, highlight=False)


@app.command("train")
@user_errors
def train_command(
    data: Path = typer.Argument(
        ..., help="Cleaned records (any format zaoshu reads) or a train/test split folder."
    ),
    model: Path = typer.Option(..., "--model", help="Local Hugging Face model directory (with config.json)."),
    method: str = typer.Option("qlora", help="qlora (4-bit + LoRA, needs CUDA), lora, or full."),
    template: str = typer.Option(
        "auto", help="XTuner prompt template; auto picks it from config.json's model_type."
    ),
    work_dir: Path | None = typer.Option(
        None,
        "--work-dir",
        help="Where config, data, checkpoints and models go (default: work_dirs/<recipe or data name>).",
    ),
    epochs: int = typer.Option(1, help="Training epochs."),
    max_length: int = typer.Option(2048, "--max-length", help="Tokens per packed sample."),
    batch_size: int = typer.Option(1, "--batch-size", help="Samples per device per iteration."),
    grad_accum: int = typer.Option(16, "--grad-accum", help="Iterations per optimizer step."),
    lr: float = typer.Option(2e-4, help="Learning rate."),
    lora_r: int = typer.Option(64, "--lora-r", help="LoRA rank."),
    lora_alpha: int = typer.Option(16, "--lora-alpha", help="LoRA alpha."),
    eval_inputs: Path | None = typer.Option(
        None, "--eval-inputs", help="File of evaluation prompts (one a line, or a JSON/YAML list)."
    ),
    system: str | None = typer.Option(None, help="SYSTEM prompt (default: the recipe's, else the data's)."),
    recipe: str | None = typer.Option(
        None, help="Recipe (path or name in prompts/) for SYSTEM and eval inputs."
    ),
    gpus: int = typer.Option(1, help="GPUs on this node (N > 1 runs XTuner's torchrun path)."),
    deepspeed: str | None = typer.Option(None, help="DeepSpeed ZeRO stage: zero2 or zero3."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest checkpoint in the work dir."
    ),
    force: bool = typer.Option(False, "--force", help="Start over in a work dir that holds another run."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Render config and data, print the commands, stop."
    ),
    no_merge: bool = typer.Option(False, "--no-merge", help="Keep the LoRA adapter unmerged."),
    max_iters: int | None = typer.Option(None, "--max-iters", help="Stop after this many iterations."),
    save_steps: int = typer.Option(50, "--save-steps", help="Save a checkpoint every N iterations."),
    eval_freq: int = typer.Option(50, "--eval-freq", help="Sample the evaluation inputs every N iterations."),
    eval_max_new_tokens: int = typer.Option(
        600, "--eval-max-new-tokens", help="Tokens per evaluation reply."
    ),
    seed: int | None = typer.Option(None, help="Random seed for the run."),
) -> None:
    """Fine-tune a model on the records with XTuner: train -> pth_to_hf -> merge, then print the chat command."""
    from zaoshu.trainer import TrainOptions, train

    options = TrainOptions(
        data=str(data),
        model=str(model),
        method=method,
        template=template,
        work_dir=str(work_dir) if work_dir else None,
        epochs=epochs,
        max_length=max_length,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        eval_inputs=str(eval_inputs) if eval_inputs else None,
        system=system,
        recipe=recipe,
        gpus=gpus,
        deepspeed=deepspeed,
        resume=resume,
        force=force,
        dry_run=dry_run,
        no_merge=no_merge,
        max_iters=max_iters,
        save_steps=save_steps,
        eval_freq=eval_freq,
        eval_max_new_tokens=eval_max_new_tokens,
        seed=seed,
    )
    train(options, echo=_echo)


@app.command("chat")
@user_errors
def chat_command(
    model_dir: Path = typer.Argument(
        ..., help="Model directory (a merged model, or the base with --adapter)."
    ),
    adapter: Path | None = typer.Option(None, help="LoRA adapter directory (zaoshu train's DIR/hf)."),
    system: str | None = typer.Option(None, help="SYSTEM prompt (default: the one used in training)."),
    recipe: str | None = typer.Option(None, help="Take SYSTEM from this recipe."),
    template: str | None = typer.Option(
        None, help="XTuner prompt template (default: the one used in training)."
    ),
    temperature: float = typer.Option(0.7, help="Sampling temperature; 0 is greedy."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Longest reply in tokens."),
    prompt: str | None = typer.Option(None, help="Reply to this one prompt and exit (no interactive chat)."),
    seed: int | None = typer.Option(None, help="Random seed for sampling."),
) -> None:
    """Chat with a trained model; `--prompt` prints one reply and exits."""
    from zaoshu.trainer import ChatSession
    from zaoshu.trainer.run import resolve_recipe

    if recipe and system is None:
        from zaoshu.recipes import load_recipe

        system = load_recipe(resolve_recipe(recipe)).system
    session = ChatSession(
        model_dir,
        adapter=adapter,
        system=system,
        template=template,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )
    if prompt is not None:
        console.out(session.reply(prompt), highlight=False)
        return
    console.print("EXIT to quit, RESET to forget the conversation.", style="dim")
    while True:
        try:
            text = input(">>> ")
        except EOFError:
            break
        if text.strip() == "EXIT":
            break
        if text.strip() == "RESET":
            session.reset()
            console.print("(history cleared)", style="dim")
            continue
        if text.strip():
            console.out(session.reply(text), highlight=False)
