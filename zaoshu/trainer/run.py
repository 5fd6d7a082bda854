"""`zaoshu train`: check everything, render data and config, then train -> pth_to_hf -> merge.

    prepare(options)  -> Run        checks (nothing written on failure), settings, paths, commands
    write_inputs(run)               the XTuner data file, the config, the run manifest
    execute(run, echo)              the XTuner steps, each checked by exit status *and* its outputs
    train(options, echo)            all three; what the CLI calls

Work dir layout (DIR = --work-dir):
    DIR/zaoshu-train.json   what this run is (to refuse mixing runs, and for --resume)
    DIR/xtuner_config.py    the rendered config: edit it and run `xtuner train` on it yourself
    DIR/data/train.jsonl    the training data in XTuner's OpenAI-messages format
    DIR/xtuner/             XTuner's own work dir: logs, iter_*.pth checkpoints, last_checkpoint
    DIR/hf/                 pth_to_hf output: the LoRA adapter (or the full model for --method full)
    DIR/merged/             base model + adapter merged (LoRA/QLoRA, unless --no-merge)
    DIR/logs/               the streamed output of each step
XTuner writes a copy of the config into its work dir; keeping it in DIR/xtuner/ leaves ours untouched.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from zaoshu.errors import ZaoshuError
from zaoshu.files import guard_outputs, write_bytes_atomic, write_text_atomic
from zaoshu.recipes import Recipe, find_recipe, load_recipe
from zaoshu.records import utc_now
from zaoshu.trainer import data as tdata
from zaoshu.trainer.config import (
    METHODS,
    TrainSettings,
    default_map_num_proc,
    render_config,
    resolve_template,
)
from zaoshu.trainer.extra import INSTALL_HINT
from zaoshu.trainer.process import (
    MERGE,
    PTH_TO_HF,
    TRAIN,
    Echo,
    Step,
    distributed_argv,
    run_step,
    tool_argv,
)

MANIFEST = "zaoshu-train.json"
CONFIG_NAME = "xtuner_config.py"
CHAT_SIDECAR = "zaoshu-chat.json"  # template + system next to a trained model, read by `zaoshu chat`
DEEPSPEED = ("zero2", "zero3")
OUR_OUTPUTS = ("xtuner", "hf", "merged", "logs")
_ITER = re.compile(r"^iter_(\d+)\.pth$")


@dataclass
class TrainOptions:
    """The `zaoshu train` command line, as data (defaults: those of the Tianji wishes fine-tune)."""

    data: str
    model: str
    method: str = "qlora"
    template: str = "auto"
    work_dir: str | None = None
    epochs: int = 1
    max_length: int = 2048
    batch_size: int = 1
    grad_accum: int = 16
    lr: float = 2e-4
    lora_r: int = 64
    lora_alpha: int = 16
    eval_inputs: str | None = None
    system: str | None = None
    recipe: str | None = None
    gpus: int = 1
    deepspeed: str | None = None
    resume: bool = False
    force: bool = False
    dry_run: bool = False
    no_merge: bool = False
    max_iters: int | None = None
    save_steps: int = 50
    eval_freq: int = 50
    eval_max_new_tokens: int = 600
    seed: int | None = None


@dataclass
class Run:
    """A checked, ready-to-write training run."""

    options: TrainOptions
    settings: TrainSettings
    work_dir: Path
    device: str
    records: int
    data_bytes: bytes
    resume_from: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cpu(self) -> bool:
        """Training on CPU: the tools then run through the shim launcher, with fp32 conversion."""
        return self.device == "cpu"

    @property
    def config_path(self) -> Path:
        return self.work_dir / CONFIG_NAME

    @property
    def data_path(self) -> Path:
        return self.work_dir / "data" / "train.jsonl"

    @property
    def xtuner_dir(self) -> Path:
        return self.work_dir / "xtuner"

    @property
    def hf_dir(self) -> Path:
        return self.work_dir / "hf"

    @property
    def merged_dir(self) -> Path:
        return self.work_dir / "merged"

    @property
    def merges(self) -> bool:
        return self.settings.method != "full" and not self.options.no_merge

    @property
    def final_model(self) -> Path:
        return self.merged_dir if self.merges else self.hf_dir

    def train_step(self) -> Step:
        args = [str(self.config_path), "--work-dir", str(self.xtuner_dir)]
        if self.options.deepspeed:
            args += ["--deepspeed", f"deepspeed_{self.options.deepspeed}"]
        env: dict[str, str] = {}
        if self.resume_from is not None:
            args += ["--resume", str(self.resume_from)]
            # mmengine's resume calls torch.load on its own checkpoint (optimizer state, message hub), which
            # torch >= 2.6 refuses under its weights_only default; the checkpoint is this run's own.
            env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        if self.options.gpus > 1:
            env["NPROC_PER_NODE"] = str(self.options.gpus)
            return Step("xtuner train", distributed_argv(self.options.gpus, TRAIN, *args, cpu=self.cpu), env)
        return Step("xtuner train", tool_argv(TRAIN, *args, cpu=self.cpu), env)

    def convert_step(self, checkpoint: Path | str) -> Step:
        args = [str(self.config_path), str(checkpoint), str(self.hf_dir), "--safe-serialization"]
        if self.cpu:
            args.append("--fp32")
        return Step("pth_to_hf", tool_argv(PTH_TO_HF, *args, cpu=self.cpu), {})

    def merge_step(self) -> Step:
        args = [self.settings.model_path, str(self.hf_dir), str(self.merged_dir), "--safe-serialization"]
        args += ["--device", "cpu" if self.cpu else "cuda"]
        return Step("merge", tool_argv(MERGE, *args, cpu=self.cpu), {})

    def chat_command(self) -> str:
        argv = ["zaoshu", "chat", str(self.final_model)]
        if self.settings.method != "full" and self.options.no_merge:
            argv = ["zaoshu", "chat", self.settings.model_path, "--adapter", str(self.hf_dir)]
        return shlex.join(argv)

    def eval_command(self) -> str:
        """`zaoshu eval` of the base model against the trained one (the split's test.jsonl when it is
        beside the data, else the recipe's eval_inputs)."""
        tuned = ["--model", str(self.final_model)]
        if self.settings.method != "full" and self.options.no_merge:
            tuned = ["--model", self.settings.model_path, "--adapter", str(self.hf_dir)]
        argv = ["zaoshu", "eval", "--model", self.settings.model_path, *tuned]
        test = Path(self.options.data).with_name("test.jsonl")
        if test.is_file() and test.resolve() != Path(self.options.data).resolve():
            argv += ["--inputs", str(test)]
        if self.options.recipe:
            argv += ["--recipe", str(self.options.recipe)]
        return shlex.join([*argv, "-o", str(self.work_dir / "eval")])


# --------------------------------------------------------------------------- checks


def _cuda() -> tuple[bool, int]:
    try:
        import torch
    except ImportError:
        return False, 0
    available = torch.cuda.is_available()
    return available, (torch.cuda.device_count() if available else 0)


def _check_options(o: TrainOptions) -> None:
    if o.method not in METHODS:
        raise ZaoshuError(f"unknown --method {o.method!r}; choose one of: {', '.join(METHODS)}")
    if o.deepspeed is not None and o.deepspeed not in DEEPSPEED:
        raise ZaoshuError(f"unknown --deepspeed {o.deepspeed!r}; choose one of: {', '.join(DEEPSPEED)}")
    positive = {
        "--epochs": o.epochs,
        "--max-length": o.max_length,
        "--batch-size": o.batch_size,
        "--grad-accum": o.grad_accum,
        "--lr": o.lr,
        "--lora-r": o.lora_r,
        "--lora-alpha": o.lora_alpha,
        "--gpus": o.gpus,
        "--save-steps": o.save_steps,
        "--eval-freq": o.eval_freq,
        "--eval-max-new-tokens": o.eval_max_new_tokens,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ZaoshuError(f"{name} must be positive, got {value}")
    if o.max_iters is not None and o.max_iters < 2:
        raise ZaoshuError(f"--max-iters must be at least 2, got {o.max_iters}")
    if o.resume and o.force:
        raise ZaoshuError("--resume and --force contradict each other: continue a run, or start over")


def _check_environment(o: TrainOptions) -> tuple[str, list[str]]:
    """The device to render for; raises before any work when the run cannot start here."""
    notes: list[str] = []
    if importlib.util.find_spec("xtuner") is None:
        if not o.dry_run:
            raise ZaoshuError(f"XTuner is not installed; install the train extra: {INSTALL_HINT}")
        notes.append(f"XTuner is not installed here ({INSTALL_HINT}); rendering only")
    cuda, count = _cuda()
    if o.method == "qlora" and not cuda:
        if not o.dry_run:
            raise ZaoshuError(
                "QLoRA needs a CUDA GPU (bitsandbytes 4-bit quantization); none is available here. "
                "Use --method lora to train on CPU"
            )
        notes.append("no CUDA here: the QLoRA config is rendered for a GPU machine")
    if o.gpus > 1 and count < o.gpus and not o.dry_run:
        raise ZaoshuError(f"--gpus {o.gpus} asked, but {count} CUDA device(s) are available")
    if o.deepspeed and importlib.util.find_spec("deepspeed") is None and not o.dry_run:
        raise ZaoshuError("--deepspeed needs DeepSpeed: pip install 'deepspeed>=0.12.3'")
    device = "cuda" if cuda or o.method == "qlora" else "cpu"
    return device, notes


def _check_model(model: str) -> Path:
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ZaoshuError("model directory not found (expected a local Hugging Face model folder)", path=path)
    if not (path / "config.json").is_file():
        raise ZaoshuError(
            "model directory has no config.json (expected a Hugging Face model folder)", path=path
        )
    return path.resolve()


def resolve_recipe(name: str) -> Path:
    """`find_recipe`, or the path as given (load_recipe then says it is missing)."""
    return find_recipe(name) or Path(name)


def records_recipe(data: tdata.TrainData) -> Recipe | None:
    """The recipe every training record names (zaoshu-made data), when it can be found; else None."""
    names = {r.get("recipe") for r in data.train}
    if len(names) != 1 or not isinstance(next(iter(names)), str):
        return None
    path = find_recipe(str(next(iter(names))))
    if path is None:
        return None
    try:
        return load_recipe(path)
    except ZaoshuError:
        return None


def system_and_eval_inputs(
    o: TrainOptions, data: tdata.TrainData, recipe: Recipe | None
) -> tuple[str, list[str], str]:
    """SYSTEM and the evaluation inputs, and where they came from (for the summary)."""
    if o.system is not None:
        system = o.system
    elif recipe is not None and recipe.system:
        system = recipe.system
    else:
        system = tdata.data_system(data.train)
    if o.eval_inputs:
        inputs, source = tdata.read_eval_inputs(o.eval_inputs), o.eval_inputs
    elif recipe is not None and recipe.eval_inputs:
        inputs, source = list(recipe.eval_inputs), f"recipe {recipe.name}"
    else:
        inputs = tdata.sample_eval_inputs(data)
        source = "sampled from the test split" if data.test else "sampled from the training data"
    return system, inputs, source


def newest_checkpoint(xtuner_dir: Path) -> Path | None:
    """The newest `iter_N.pth` (a file, or a folder under DeepSpeed): XTuner's `last_checkpoint`, else the
    highest N."""
    last = xtuner_dir / "last_checkpoint"
    if last.is_file():
        named = Path(last.read_text(encoding="utf-8").strip())
        if not named.is_absolute():
            named = xtuner_dir / named
        if named.exists():
            return named
    found = [(int(m.group(1)), p) for p in xtuner_dir.glob("iter_*.pth") if (m := _ITER.match(p.name))]
    return max(found)[1] if found else None


def _work_dir_state(work_dir: Path) -> tuple[dict[str, Any] | None, bool]:
    """(the manifest if any, whether the dir holds anything else)."""
    if not work_dir.exists():
        return None, False
    if not work_dir.is_dir():
        raise ZaoshuError("--work-dir exists and is not a directory", path=work_dir)
    manifest = work_dir / MANIFEST
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text(encoding="utf-8")), True
        except ValueError:
            return {}, True
    return None, any(work_dir.iterdir())


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:6])


def _check_work_dir(run: Run, identity: dict[str, Any]) -> None:
    o, work_dir = run.options, run.work_dir
    manifest, occupied = _work_dir_state(work_dir)
    if not occupied or o.force:
        return
    if manifest is None:
        raise ZaoshuError(
            "work dir is not empty and holds no zaoshu training run; choose another --work-dir, "
            "or --force to use it (zaoshu replaces only its own outputs there)",
            path=work_dir,
        )
    old = manifest.get("identity") or {}
    checkpoint = newest_checkpoint(run.xtuner_dir)
    if old != identity and not o.resume:
        raise ZaoshuError(
            f"work dir holds a different run ({_diff(old, identity) or 'unreadable manifest'}); "
            "use another --work-dir, --resume to continue it with these settings, or --force to start over",
            path=work_dir,
        )
    if checkpoint is not None and not o.resume and not o.dry_run:
        raise ZaoshuError(
            f"work dir already holds checkpoints of this run (newest {checkpoint.name}); "
            "--resume to continue, or --force to start over",
            path=work_dir,
        )


# --------------------------------------------------------------------------- the run


def prepare(o: TrainOptions) -> Run:
    """All checks, in order, before anything is written; returns the run to write and execute."""
    _check_options(o)
    device, notes = _check_environment(o)
    model_path = _check_model(o.model)
    template, model_type = resolve_template(model_path, o.template)
    data = tdata.load_train_data(o.data)
    recipe = load_recipe(resolve_recipe(o.recipe)) if o.recipe else records_recipe(data)
    if recipe is not None and not o.recipe:
        notes.append(f"recipe {recipe.name}: named by the records (SYSTEM and evaluation inputs from it)")
    system, inputs, inputs_source = system_and_eval_inputs(o, data, recipe)
    notes.append(f"evaluation inputs: {len(inputs)}, {inputs_source}")
    data_bytes = b"".join(orjson.dumps(tdata.xtuner_row(r)) + b"\n" for r in data.train)

    # Default work dir: work_dirs/<recipe name>, else work_dirs/<data file or split folder name>.
    name = recipe.name if recipe is not None else (Path(o.data).resolve().stem or "data")
    work_dir = Path(o.work_dir or Path("work_dirs") / name).expanduser().resolve()
    settings = TrainSettings(
        model_path=str(model_path),
        data_files=[str(work_dir / "data" / "train.jsonl")],
        template=template,
        method=o.method,
        device=device,
        model_type=model_type,
        max_length=o.max_length,
        batch_size=o.batch_size,
        grad_accum=o.grad_accum,
        epochs=o.epochs,
        max_iters=o.max_iters,
        lr=o.lr,
        lora_r=o.lora_r,
        lora_alpha=o.lora_alpha,
        save_steps=o.save_steps,
        evaluation_freq=o.eval_freq,
        evaluation_max_new_tokens=o.eval_max_new_tokens,
        system=system,
        evaluation_inputs=inputs,
        map_num_proc=default_map_num_proc(device),
        seed=o.seed,
        estimated_iters=tdata.estimate_iterations(
            data.train,
            model_path,
            max_length=o.max_length,
            batch_size=o.batch_size,
            devices=o.gpus,
            pack=True,
        ),
    )
    settings.log_interval = max(1, min(10, settings.total_iters // 2))  # short runs still log their loss
    run = Run(o, settings, work_dir, device, len(data.train), data_bytes, notes=notes)
    # The work dir's data file, config and manifest (and, with --force, the folders it clears) must not be
    # the data, recipe or evaluation inputs this run reads.
    guard_outputs(
        [run.data_path, run.config_path, work_dir / MANIFEST],
        [o.data, o.eval_inputs, *(recipe.input_files() if recipe is not None else [])],
        output_dirs=[work_dir / name for name in OUR_OUTPUTS] if o.force else [],
    )
    identity = {**settings.identity(), "data_sha256": hashlib.sha256(data_bytes).hexdigest()}
    _check_work_dir(run, identity)
    if o.resume and not o.dry_run:
        run.resume_from = newest_checkpoint(run.xtuner_dir)
        if run.resume_from is None:
            raise ZaoshuError("--resume: no checkpoint to continue from (no iter_*.pth)", path=run.xtuner_dir)
    return run


def write_inputs(run: Run) -> None:
    """Write the data, the config and the manifest (and clear our old outputs under --force)."""
    if run.options.force and not run.options.dry_run:
        for name in OUR_OUTPUTS:
            shutil.rmtree(run.work_dir / name, ignore_errors=True)
    write_bytes_atomic(run.data_path, run.data_bytes)
    text = render_config(run.settings, config_path=run.config_path, work_dir=run.work_dir)
    write_text_atomic(run.config_path, text)
    manifest = {
        "created_at": utc_now(),
        "data": str(Path(run.options.data).resolve()),
        "records": run.records,
        "identity": {
            **run.settings.identity(),
            "data_sha256": hashlib.sha256(run.data_bytes).hexdigest(),
        },
        "options": asdict(run.options),
    }
    write_text_atomic(run.work_dir / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2))


def planned_steps(run: Run) -> list[Step]:
    """The commands a run executes (the checkpoint name is a placeholder until training ends)."""
    steps = [run.train_step(), run.convert_step(run.xtuner_dir / "iter_<N>.pth")]
    if run.merges:
        steps.append(run.merge_step())
    return steps


def _write_chat_sidecar(run: Run, model_dir: Path) -> None:
    sidecar = {"template": run.settings.template, "system": run.settings.system}
    write_text_atomic(model_dir / CHAT_SIDECAR, json.dumps(sidecar, ensure_ascii=False, indent=2))


def _require(path: Path, what: str, step: str, log: Path) -> None:
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        raise ZaoshuError(f"{step} exited 0 but wrote no {what} ({path}); see {log}")


def execute(run: Run, echo: Echo | None = print) -> Path:
    """Train, convert and merge; returns the model to chat with. Each step must exit 0 *and* leave its output."""
    cpu = run.cpu
    logs = run.work_dir / "logs"
    say = echo or (lambda _line: None)

    before = newest_checkpoint(run.xtuner_dir) if run.resume_from is not None else None
    started = time.time()
    say(f"==> xtuner train ({run.records} records, {run.settings.method}, {run.device})")
    run_step(run.train_step(), log_path=logs / "train.log", echo=echo, cpu=cpu)
    checkpoint = newest_checkpoint(run.xtuner_dir)
    fresh = checkpoint is not None and checkpoint.stat().st_mtime >= started - 1
    if checkpoint is None or not (fresh or (before is not None and checkpoint == before)):
        stale = f"; the newest there, {checkpoint.name}, is older than this run" if checkpoint else ""
        raise ZaoshuError(
            f"xtuner train exited 0 but wrote no checkpoint (a crash it did not report?){stale}; "
            f"see {logs / 'train.log'}",
            path=run.xtuner_dir,
        )
    say(f"==> checkpoint {checkpoint}")

    shutil.rmtree(run.hf_dir, ignore_errors=True)
    say(f"==> pth_to_hf -> {run.hf_dir}")
    run_step(run.convert_step(checkpoint), log_path=logs / "pth_to_hf.log", echo=echo, cpu=cpu)
    _require(run.hf_dir, "Hugging Face model", "pth_to_hf", logs / "pth_to_hf.log")
    _write_chat_sidecar(run, run.hf_dir)

    shutil.rmtree(run.merged_dir, ignore_errors=True)  # a merge of an older checkpoint would mislead
    if run.merges:
        say(f"==> merge -> {run.merged_dir}")
        run_step(run.merge_step(), log_path=logs / "merge.log", echo=echo, cpu=cpu)
        _require(run.merged_dir / "config.json", "merged model", "merge", logs / "merge.log")
        _write_chat_sidecar(run, run.merged_dir)
    return run.final_model


def train(o: TrainOptions, echo: Echo | None = print) -> Path | None:
    """The whole of `zaoshu train`: prepare, write, then (unless --dry-run) execute. Returns the final model."""
    run = prepare(o)
    write_inputs(run)
    say = echo or (lambda _line: None)
    say(f"config:  {run.config_path}")
    say(f"data:    {run.data_path} ({run.records} records)")
    say(
        f"model:   {run.settings.model_path} (template {run.settings.template}, method {run.settings.method})"
    )
    for note in run.notes:
        say(f"note:    {note}")
    if o.dry_run:
        say("commands (dry run, nothing started):")
        for step in planned_steps(run):
            say("  " + step.shell())
        say("then chat with:  " + run.chat_command())
        say("then evaluate:   " + run.eval_command())
        return None
    final = execute(run, echo)
    say(f"done: {final}")
    say("chat with:  " + run.chat_command())
    say("evaluate:   " + run.eval_command())
    return final
