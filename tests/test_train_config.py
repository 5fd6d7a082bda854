"""`zaoshu train` without training: the rendered XTuner config (loaded by mmengine), the data it writes,
SYSTEM / evaluation inputs, and every check that must refuse before anything is started."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import orjson
import pytest

if importlib.util.find_spec("xtuner") is None:
    pytest.skip('needs the train extra: pip install -e ".[train]"', allow_module_level=True)

from tiny_model import wishes_records
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.errors import ZaoshuError
from zaoshu.records import write_records
from zaoshu.trainer import TrainOptions, TrainSettings, prepare, render_config, resolve_template, shims
from zaoshu.trainer.data import estimate_iterations
from zaoshu.trainer.process import tool_argv
from zaoshu.trainer.run import planned_steps

ROOT = Path(__file__).resolve().parent.parent
WISHES = ROOT / "prompts" / "wishes.yaml"
shims.apply()  # before anything imports transformers/xtuner (see zaoshu/trainer/shims.py)

WISHES_SYSTEM = "你现在是一个送祝福大师，帮我针对不同人和事情、节日送对应的祝福"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _model_dir(tmp_path: Path, model_type: str, **extra: object) -> Path:
    """A model folder with only a config.json: enough for template choice and rendering."""
    path = tmp_path / f"m-{model_type}"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": model_type, **extra}))
    return path


def _load(text: str, tmp_path: Path, name: str):  # type: ignore[no-untyped-def]
    from mmengine.config import Config

    shims.apply()
    path = tmp_path / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    return Config.fromfile(str(path))


def _name(value: object) -> str:
    return value if isinstance(value, str) else getattr(value, "__name__", str(value))


# --------------------------------------------------------------------------- template choice


@pytest.mark.parametrize(
    ("model_type", "extra", "template"),
    [
        ("internlm2", {}, "internlm2_chat"),
        ("qwen2", {}, "qwen_chat"),
        ("qwen", {}, "qwen_chat"),
        ("llama", {"vocab_size": 128256}, "llama3_chat"),
        ("llama", {"vocab_size": 32000}, "llama2_chat"),
        ("chatglm", {}, "chatglm3"),
        ("mistral", {}, "mistral"),
    ],
)
def test_template_follows_the_model_family(
    tmp_path: Path, model_type: str, extra: dict, template: str
) -> None:
    assert resolve_template(_model_dir(tmp_path, model_type, **extra)) == (template, model_type)


def test_unknown_family_is_an_error_listing_the_choices(tmp_path: Path) -> None:
    model = _model_dir(tmp_path, "mamba9000")
    with pytest.raises(ZaoshuError) as e:
        resolve_template(model)
    message = str(e.value)
    assert "mamba9000" in message and "--template" in message
    assert "internlm2 -> internlm2_chat" in message and "qwen_chat" in message
    assert resolve_template(model, "qwen_chat") == ("qwen_chat", "mamba9000")  # --template overrides
    with pytest.raises(ZaoshuError, match="unknown prompt template 'nope'"):
        resolve_template(model, "nope")


# --------------------------------------------------------------------------- the rendered config


def _settings(**kw: object) -> TrainSettings:
    base: dict[str, object] = {
        "model_path": "/models/m",
        "data_files": ["/work/data/train.jsonl"],
        "template": "qwen_chat",
        "system": WISHES_SYSTEM,
        "evaluation_inputs": ["祝姐姐生日快乐，严肃风格", "祝大家元宵节快乐"],
        "estimated_iters": 40,
    }
    base.update(kw)
    return TrainSettings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("template", ["qwen_chat", "internlm2_chat", "llama3_chat"])
@pytest.mark.parametrize("method", ["qlora", "lora", "full"])
def test_rendered_config_loads_with_mmengine(tmp_path: Path, method: str, template: str) -> None:
    from xtuner.utils import PROMPT_TEMPLATE

    device = "cuda" if method == "qlora" else "cpu"
    settings = _settings(
        method=method, template=template, device=device, lr=1e-4, max_length=512, grad_accum=8
    )
    text = render_config(settings, config_path=tmp_path / "c.py", work_dir=tmp_path)
    cfg = _load(text, tmp_path, f"{method}_{template}")

    assert cfg.pretrained_model_name_or_path == "/models/m"
    assert cfg.data_files == ["/work/data/train.jsonl"]
    assert _name(cfg.train_dataset.dataset_map_fn) == "openai_map_fn"
    assert dict(cfg.prompt_template) == dict(PROMPT_TEMPLATE[template])
    assert cfg.SYSTEM == WISHES_SYSTEM
    assert cfg.evaluation_inputs == ["祝姐姐生日快乐，严肃风格", "祝大家元宵节快乐"]
    assert (cfg.lr, cfg.max_length, cfg.accumulative_counts, cfg.max_epochs) == (1e-4, 512, 8, 1)
    assert cfg.param_scheduler[0].end == cfg.warmup_iters >= 1
    llm = cfg.model.llm
    if method == "qlora":
        q = llm.quantization_config
        assert _name(q.type) == "BitsAndBytesConfig"
        assert q.load_in_4bit is True and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
        assert (cfg.model.lora.r, cfg.model.lora.lora_alpha) == (64, 16)
        assert _name(cfg.optim_wrapper.type) == "AmpOptimWrapper"
        assert cfg.env_cfg.dist_cfg.backend == "nccl"
    else:
        assert "quantization_config" not in llm
        assert _name(cfg.optim_wrapper.type) == "OptimWrapper"  # CPU: AmpOptimWrapper refuses to run
        assert cfg.env_cfg.dist_cfg.backend == "gloo"
        assert cfg.map_num_proc == 1
    if method == "full":
        assert "lora" not in cfg.model
    else:
        assert _name(cfg.model.lora.type) == "LoraConfig"


def test_gpu_lora_uses_fp16_amp_and_nccl(tmp_path: Path) -> None:
    cfg = _load(
        render_config(_settings(method="lora", device="cuda"), config_path="c.py", work_dir=tmp_path),
        tmp_path,
        "gpu_lora",
    )
    assert _name(cfg.optim_wrapper.type) == "AmpOptimWrapper" and cfg.optim_wrapper.dtype == "float16"
    assert str(cfg.model.llm.torch_dtype) == "torch.float16"
    assert cfg.env_cfg.dist_cfg.backend == "nccl"


def test_max_iters_caps_the_loop_and_keeps_warmup_short_of_it(tmp_path: Path) -> None:
    settings = _settings(method="lora", device="cpu", max_iters=3, estimated_iters=1000)
    cfg = _load(render_config(settings, config_path="c.py", work_dir=tmp_path), tmp_path, "iters")
    assert cfg.train_cfg.max_iters == 3 and "max_epochs" not in cfg.train_cfg
    assert cfg.param_scheduler[0].end < cfg.param_scheduler[1].end == 3


def test_small_data_gets_at_least_one_warmup_iteration() -> None:
    # XTuner's stock configs warm up over 3% of an epoch, which rounds to 0 (and crashes) below 34 iterations.
    assert _settings(estimated_iters=5).warmup_iters == 1
    assert _settings(estimated_iters=1000, epochs=2).warmup_iters == 60


def test_iteration_estimate_counts_packed_tokens(tiny: Path) -> None:
    records = wishes_records(50)
    packed = estimate_iterations(records, tiny, max_length=64, batch_size=1, devices=1, pack=True)
    assert 5 < packed < 200
    assert estimate_iterations(records, tiny, max_length=64, batch_size=1, devices=2, pack=True) == -(
        -packed // 2
    )
    assert estimate_iterations(records, tiny, max_length=64, batch_size=1, devices=1, pack=False) == 50


# --------------------------------------------------------------------------- dry run: data, SYSTEM, eval inputs


def _train(*args: str) -> object:
    return CliRunner().invoke(app, ["train", *args])


def test_dry_run_writes_config_and_data_and_prints_the_commands(
    tiny: Path, records_file: Path, tmp_path: Path
) -> None:
    work = tmp_path / "run"
    result = _train(str(records_file), "--model", str(tiny), "--method", "lora", "--work-dir", str(work),
                    "--recipe", str(WISHES), "--dry-run")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    # what will really run: the CPU shim launcher here, the plain module where CUDA trains
    assert ("-m xtuner.tools.train" if _cuda() else "-m zaoshu.trainer.launch xtuner.tools.train") in out
    assert "xtuner.tools.model_converters.pth_to_hf" in out and "--safe-serialization --fp32" in out
    assert "xtuner.tools.model_converters.merge" in out and "zaoshu chat" in out
    assert f"zaoshu eval --model {tiny} --model {work / 'merged'} --recipe {WISHES}" in out.replace("\n", "")
    assert not (work / "xtuner").exists()  # nothing started

    rows = [orjson.loads(line) for line in (work / "data" / "train.jsonl").read_bytes().splitlines()]
    assert len(rows) == 50 and set(rows[0]) == {"messages"}
    assert rows[0]["messages"][0] == {"role": "system", "content": WISHES_SYSTEM}

    cfg = _load((work / "xtuner_config.py").read_text(encoding="utf-8"), tmp_path, "dry")
    assert cfg.SYSTEM == WISHES_SYSTEM
    assert cfg.evaluation_inputs[:2] == ["祝姐姐生日快乐", "祝姐姐生日快乐，严肃风格"]  # the recipe's list
    assert cfg.data_files == [str(work / "data" / "train.jsonl")]


def test_split_folder_samples_eval_inputs_from_test_and_system_from_data(tiny: Path, tmp_path: Path) -> None:
    records = [{**r, "recipe": None} for r in wishes_records(60)]  # imported data: no recipe to ask
    split = tmp_path / "split"
    write_records(split / "train.jsonl", records[:50])
    write_records(split / "test.jsonl", records[50:])
    run = prepare(TrainOptions(data=str(split), model=str(tiny), method="lora", work_dir=str(tmp_path / "w"),
                               dry_run=True))  # fmt: skip
    assert run.records == 50
    test_inputs = {r["messages"][1]["content"] for r in records[50:]}
    assert run.settings.evaluation_inputs and set(run.settings.evaluation_inputs) <= test_inputs
    assert run.settings.system == WISHES_SYSTEM  # no --system/--recipe: the data's own system turn
    override = prepare(TrainOptions(data=str(split), model=str(tiny), method="lora", system="你好",
                                    work_dir=str(tmp_path / "w"), dry_run=True))  # fmt: skip
    assert override.settings.system == "你好"
    assert override.work_dir == (tmp_path / "w").resolve()


def test_records_naming_a_recipe_bring_its_eval_inputs_and_work_dir(
    tiny: Path, records_file: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = prepare(TrainOptions(data=str(records_file), model=str(tiny), method="lora", dry_run=True))
    assert run.settings.evaluation_inputs[0] == "祝姐姐生日快乐"  # prompts/wishes.yaml's list
    assert run.work_dir == tmp_path / "work_dirs" / "wishes"
    assert any("named by the records" in note for note in run.notes)


def test_other_formats_and_eval_inputs_file(tiny: Path, tmp_path: Path) -> None:
    # XTuner's own `conversation` JSON array is read by the formats stage and written as messages.
    data = tmp_path / "wishes.json"
    data.write_text(json.dumps([{"conversation": [{"system": "S", "input": "祝妹妹生日", "output": "生日快乐"}]}] * 3,
                               ensure_ascii=False), encoding="utf-8")  # fmt: skip
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("祝哥哥中秋节快乐\n\n祝弟弟工作升职\n", encoding="utf-8")
    run = prepare(TrainOptions(data=str(data), model=str(tiny), method="full", eval_inputs=str(inputs),
                               work_dir=str(tmp_path / "w"), dry_run=True))  # fmt: skip
    assert run.settings.evaluation_inputs == ["祝哥哥中秋节快乐", "祝弟弟工作升职"]
    assert orjson.loads(run.data_bytes.splitlines()[0]) == {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "祝妹妹生日"},
            {"role": "assistant", "content": "生日快乐", "loss": True},
        ]
    }


# --------------------------------------------------------------------------- checks before any work


def _refused(result: object, *needles: str, work: Path | None = None) -> None:
    assert result.exit_code != 0, result.output  # type: ignore[attr-defined]
    assert "error:" in result.output  # type: ignore[attr-defined]
    for needle in needles:
        assert needle in result.output, result.output  # type: ignore[attr-defined]
    if work is not None:
        assert not work.exists(), "a refused run must not write anything"


def test_refuses_a_missing_model_dir(records_file: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    _refused(_train(str(records_file), "--model", str(tmp_path / "nope"), "--method", "lora", "--work-dir",
                    str(work)), "model directory not found", work=work)  # fmt: skip


def test_refuses_a_model_dir_without_config(records_file: Path, tmp_path: Path) -> None:
    model = tmp_path / "empty-model"
    model.mkdir()
    work = tmp_path / "w"
    _refused(_train(str(records_file), "--model", str(model), "--method", "lora", "--work-dir", str(work)),
             "no config.json", work=work)  # fmt: skip


@pytest.mark.skipif(_cuda(), reason="this machine has CUDA")
def test_refuses_qlora_without_cuda(tiny: Path, records_file: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    _refused(_train(str(records_file), "--model", str(tiny), "--method", "qlora", "--work-dir", str(work)),
             "QLoRA needs a CUDA GPU", "--method lora", work=work)  # fmt: skip


def test_refuses_empty_data(tiny: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    work = tmp_path / "w"
    _refused(_train(str(empty), "--model", str(tiny), "--method", "lora", "--work-dir", str(work)),
             "empty", work=work)  # fmt: skip


def test_refuses_unknown_data_format(tiny: Path, tmp_path: Path) -> None:
    weird = tmp_path / "weird.jsonl"
    weird.write_text('{"question": "q", "answer": "a"}\n')
    work = tmp_path / "w"
    _refused(_train(str(weird), "--model", str(tiny), "--method", "lora", "--work-dir", str(work)),
             "no known format", work=work)  # fmt: skip


def test_refuses_an_unknown_model_family(records_file: Path, tmp_path: Path) -> None:
    model = _model_dir(tmp_path, "mamba9000")
    work = tmp_path / "w"
    _refused(_train(str(records_file), "--model", str(model), "--method", "lora", "--work-dir", str(work)),
             "mamba9000", "--template", work=work)  # fmt: skip


def test_refuses_a_work_dir_holding_a_different_run(tiny: Path, records_file: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    common = [
        str(records_file),
        "--model",
        str(tiny),
        "--method",
        "lora",
        "--work-dir",
        str(work),
        "--dry-run",
    ]
    assert _train(*common).exit_code == 0
    assert _train(*common).exit_code == 0  # the same run again is fine
    config = (work / "xtuner_config.py").read_text(encoding="utf-8")
    _refused(_train(*common, "--lr", "1e-4"), "holds a different run", "lr 0.0002 -> 0.0001", "--force")
    assert (work / "xtuner_config.py").read_text(encoding="utf-8") == config  # untouched
    assert _train(*common, "--lr", "1e-4", "--force").exit_code == 0
    assert "lr = 0.0001" in (work / "xtuner_config.py").read_text(encoding="utf-8")

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _refused(_train(str(records_file), "--model", str(tiny), "--method", "lora", "--work-dir", str(foreign)),
             "holds no zaoshu training run")  # fmt: skip


def test_refuses_bad_option_values(tiny: Path, records_file: Path, tmp_path: Path) -> None:
    base = [str(records_file), "--model", str(tiny), "--work-dir", str(tmp_path / "w")]
    _refused(_train(*base, "--method", "sft"), "unknown --method 'sft'", "qlora, lora, full")
    _refused(_train(*base, "--method", "lora", "--deepspeed", "zero9"), "zero2, zero3")
    _refused(_train(*base, "--method", "lora", "--lr", "0"), "--lr must be positive")
    _refused(_train(*base, "--method", "lora", "--resume", "--force"), "contradict")


def test_multi_gpu_deepspeed_dry_run_prints_xtuners_torchrun_path(
    tiny: Path, records_file: Path, tmp_path: Path
) -> None:
    result = _train(str(records_file), "--model", str(tiny), "--method", "qlora", "--gpus", "2",
                    "--deepspeed", "zero2", "--work-dir", str(tmp_path / "w"), "--dry-run")  # fmt: skip
    assert result.exit_code == 0, result.output
    train_line = next(line for line in result.output.splitlines() if "xtuner.tools.train" in line)
    assert train_line.strip().startswith("NPROC_PER_NODE=2 ")
    assert "-m torch.distributed.run --nproc_per_node=2" in train_line
    # QLoRA renders for CUDA: the plain module, no shim launcher
    assert " -m xtuner.tools.train " in train_line and "zaoshu.trainer.launch" not in train_line
    assert "--deepspeed deepspeed_zero2" in train_line and train_line.endswith("--launcher pytorch")
    if not _cuda():
        assert "rendered for a GPU machine" in result.output
    cfg = _load((tmp_path / "w" / "xtuner_config.py").read_text(encoding="utf-8"), tmp_path, "gpus")
    assert cfg.model.llm.quantization_config.load_in_4bit is True


@pytest.mark.skipif(_cuda(), reason="this machine has CUDA")
def test_refuses_gpus_and_deepspeed_it_cannot_provide(tiny: Path, records_file: Path, tmp_path: Path) -> None:
    base = [str(records_file), "--model", str(tiny), "--method", "lora", "--work-dir", str(tmp_path / "w")]
    _refused(_train(*base, "--gpus", "2"), "--gpus 2 asked, but 0 CUDA device(s)")
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        _refused(_train(*base, "--deepspeed", "zero2"), "pip install 'deepspeed")


def test_chat_prompt_follows_the_training_template(tiny: Path) -> None:
    from zaoshu.trainer import ChatSession

    session = ChatSession(tiny, template="qwen_chat", system="S", temperature=0)
    assert (
        session.prompt("你好")
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    )
    session.history.append(("你好", "您好"))
    assert session.prompt("再见").endswith(
        "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n您好<|im_end|>\n"
        "<|im_start|>user\n再见<|im_end|>\n<|im_start|>assistant\n"
    )
    # without a template name: the tokenizer's own chat template
    plain = ChatSession(tiny, system="S", temperature=0)
    assert (
        plain.prompt("你好")
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    )
    reply = plain.reply("你好")
    assert isinstance(reply, str) and plain.history == [("你好", reply)]
    with pytest.raises(ZaoshuError, match="model directory not found"):
        ChatSession(tiny / "missing")


def test_newest_checkpoint_by_iteration_number_and_deepspeed_folders(tmp_path: Path) -> None:
    from zaoshu.trainer import newest_checkpoint

    assert newest_checkpoint(tmp_path) is None
    for name in ("iter_2.pth", "iter_10.pth", "iter_9.pth", "not_a_checkpoint.pth"):
        (tmp_path / name).write_bytes(b"x")
    assert newest_checkpoint(tmp_path) == tmp_path / "iter_10.pth"  # 10 > 9, not string order
    (tmp_path / "iter_12.pth").mkdir()  # DeepSpeed saves a folder
    assert newest_checkpoint(tmp_path) == tmp_path / "iter_12.pth"
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_9.pth"))
    assert newest_checkpoint(tmp_path) == tmp_path / "iter_9.pth"  # XTuner's own record wins
    (tmp_path / "last_checkpoint").write_text("/moved/elsewhere/iter_99.pth")
    assert newest_checkpoint(tmp_path) == tmp_path / "iter_12.pth"


def test_tools_run_as_plain_modules_on_cuda_and_through_the_shim_launcher_on_cpu(
    tiny: Path, records_file: Path, tmp_path: Path
) -> None:
    """The issue's `python -m xtuner.tools.train` with our interpreter; the shims only where they are needed."""
    train = "xtuner.tools.train"
    assert tool_argv(train, "cfg.py", cpu=False) == [sys.executable, "-m", train, "cfg.py"]
    assert tool_argv(train, "cfg.py", cpu=True) == [
        sys.executable,
        "-m",
        "zaoshu.trainer.launch",
        train,
        "cfg.py",
    ]

    run = prepare(TrainOptions(data=str(records_file), model=str(tiny), method="lora",
                               work_dir=str(tmp_path / "w"), dry_run=True))  # fmt: skip
    modules = [
        "xtuner.tools.train",
        "xtuner.tools.model_converters.pth_to_hf",
        "xtuner.tools.model_converters.merge",
    ]
    for device in ("cuda", "cpu"):
        steps = planned_steps(dataclasses.replace(run, device=device))
        assert [s.argv[0] for s in steps] == [sys.executable] * 3
        if device == "cuda":
            assert [s.argv[1:3] for s in steps] == [["-m", m] for m in modules]
            assert "--fp32" not in steps[1].argv and steps[2].argv[-2:] == ["--device", "cuda"]
        else:
            assert [s.argv[1:4] for s in steps] == [["-m", "zaoshu.trainer.launch", m] for m in modules]
            assert "--fp32" in steps[1].argv and steps[2].argv[-2:] == ["--device", "cpu"]
