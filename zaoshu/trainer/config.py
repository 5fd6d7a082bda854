"""Training settings and the XTuner config rendered from them (templates/xtuner_config.py.j2).

The config is a plain, commented XTuner `.py` a user can edit and run with `xtuner train` directly;
zaoshu only fills in the blanks people used to edit by hand (model path, data, template, SYSTEM,
evaluation inputs, method block, hyper-parameters).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import jinja2

from zaoshu.errors import ZaoshuError

Method = Literal["qlora", "lora", "full"]
METHODS: tuple[str, ...] = ("qlora", "lora", "full")

# config.json `model_type` -> XTuner PROMPT_TEMPLATE name. Llama is split by vocabulary size below.
FAMILY_TEMPLATES: dict[str, str] = {
    "internlm2": "internlm2_chat",
    "internlm3": "internlm2_chat",
    "internlm": "internlm_chat",
    "qwen": "qwen_chat",
    "qwen2": "qwen_chat",
    "qwen2_moe": "qwen_chat",
    "qwen3": "qwen_chat",
    "chatglm": "chatglm3",
    "baichuan": "baichuan2_chat",
    "mistral": "mistral",
    "mixtral": "mixtral",
    "gemma": "gemma",
    "gemma2": "gemma",
    "deepseek_v2": "deepseek_v2",
    "minicpm": "minicpm",
    "minicpm3": "minicpm3",
    "cohere": "cohere_chat",
    "phi3": "phi3_chat",
    "llama": "llama3_chat",
}
# XTuner 0.2.0's PROMPT_TEMPLATE names, for `--template` and the error that lists the choices.
TEMPLATES: tuple[str, ...] = (
    "default",
    "zephyr",
    "internlm_chat",
    "internlm2_chat",
    "moss_sft",
    "llama2_chat",
    "code_llama_chat",
    "chatglm2",
    "chatglm3",
    "qwen_chat",
    "baichuan_chat",
    "baichuan2_chat",
    "wizardlm",
    "wizardcoder",
    "vicuna",
    "deepseek_coder",
    "deepseekcoder",
    "deepseek_moe",
    "deepseek_v2",
    "mistral",
    "mixtral",
    "minicpm",
    "minicpm3",
    "gemma",
    "cohere_chat",
    "llama3_chat",
    "phi3_chat",
)

TEMPLATE_DIR = Path(__file__).parent / "templates"
CONFIG_TEMPLATE = "xtuner_config.py.j2"


@dataclass
class TrainSettings:
    """Everything that goes into the XTuner config; defaults are those of the Tianji wishes fine-tune this tool grew from (one epoch)."""

    model_path: str
    data_files: list[str]
    template: str
    method: str = "qlora"
    device: str = "cuda"  # "cuda" or "cpu": decides dtype, optimizer wrapper and dist backend
    model_type: str = ""
    max_length: int = 2048
    pack_to_max_length: bool = True
    batch_size: int = 1
    grad_accum: int = 16
    epochs: int = 1
    max_iters: int | None = None
    lr: float = 2e-4
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    save_steps: int = 50
    save_total_limit: int = 10
    evaluation_freq: int = 50
    evaluation_max_new_tokens: int = 600
    log_interval: int = 10
    system: str = ""
    evaluation_inputs: list[str] = field(default_factory=list)
    map_num_proc: int = 1
    seed: int | None = None
    warmup_ratio: float = 0.03
    estimated_iters: int = 0  # iterations per epoch, estimated from the data (sizes the warm-up)

    @property
    def total_iters(self) -> int:
        if self.max_iters:
            return self.max_iters
        return max(1, math.ceil(self.estimated_iters * self.epochs))

    @property
    def warmup_iters(self) -> int:
        """warmup_ratio of the run in iterations: at least 1, and short of the end of an iteration-capped run."""
        warmup = max(1, round(self.warmup_ratio * self.total_iters))
        if self.max_iters:
            warmup = min(warmup, self.max_iters - 1)
        return warmup

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (evaluation and logging settings don't)."""
        keep = (
            "model_path",
            "template",
            "method",
            "max_length",
            "pack_to_max_length",
            "batch_size",
            "grad_accum",
            "epochs",
            "max_iters",
            "lr",
            "lora_r",
            "lora_alpha",
            "lora_dropout",
            "system",
        )
        data = asdict(self)
        return {key: data[key] for key in keep}


def resolve_template(model_path: str | Path, template: str = "auto") -> tuple[str, str]:
    """(template, model_type): `template` unless "auto", else chosen from config.json's model_type."""
    model_type = read_model_config(model_path).get("model_type", "") or ""
    if template != "auto":
        if template not in TEMPLATES:
            raise ZaoshuError(
                f"unknown prompt template {template!r}; choose one of: auto, {', '.join(TEMPLATES)}"
            )
        return template, model_type
    family = model_type.lower()
    if family == "llama":
        vocab = int(read_model_config(model_path).get("vocab_size") or 0)
        return ("llama3_chat" if vocab >= 128000 else "llama2_chat"), model_type
    if family in FAMILY_TEMPLATES:
        return FAMILY_TEMPLATES[family], model_type
    known = ", ".join(f"{k} -> {v}" for k, v in FAMILY_TEMPLATES.items())
    raise ZaoshuError(
        f"cannot choose a prompt template for model_type {model_type!r}; known families: {known}. "
        f"Pass --template with one of: {', '.join(TEMPLATES)}",
        path=Path(model_path) / "config.json",
    )


def read_model_config(model_path: str | Path) -> dict[str, Any]:
    path = Path(model_path) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZaoshuError(
            "model directory has no config.json (expected a Hugging Face model folder)", path=model_path
        ) from None
    except (OSError, ValueError) as e:
        raise ZaoshuError(f"cannot read the model config: {e}", path=path) from None
    if not isinstance(data, dict):
        raise ZaoshuError("config.json is not a JSON object", path=path)
    return data


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = repr  # Python literals; repr keeps Chinese readable
    return env


def render_config(settings: TrainSettings, *, config_path: str | Path, work_dir: str | Path) -> str:
    """The XTuner config text for these settings (device decides fp32/OptimWrapper/gloo on CPU)."""
    if settings.max_iters is not None and settings.max_iters < 2:
        raise ZaoshuError("--max-iters must be at least 2 (one warm-up iteration, one more)")
    if settings.method not in METHODS:
        raise ZaoshuError(f"unknown method {settings.method!r}; choose one of: {', '.join(METHODS)}")
    cpu = settings.device == "cpu"
    if settings.method == "qlora":
        torch_dtype = "float16"
    elif settings.method == "lora":
        torch_dtype = "float32" if cpu else "float16"
    else:  # full: fp32 master weights; AMP does the fp16 compute on GPUs
        torch_dtype = "float32" if cpu else None
    values = asdict(settings)
    values.update(
        created_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        config_path=str(config_path),
        work_dir=str(work_dir),
        xtuner_work_dir=str(Path(work_dir) / "xtuner"),
        torch_dtype=torch_dtype,
        optim_wrapper_type="OptimWrapper" if cpu else "AmpOptimWrapper",
        amp_dtype="float16" if settings.method != "full" else None,
        dist_backend="gloo" if cpu else "nccl",
        warmup_iters=settings.warmup_iters,
        estimated_iters=settings.total_iters,
    )
    return _environment().get_template(CONFIG_TEMPLATE).render(**values)


def default_map_num_proc(device: str) -> int:
    """One process on CPU (the machine is busy training); a few on a GPU box (XTuner's default is 32)."""
    return 1 if device == "cpu" else max(1, min(32, os.cpu_count() or 1))
