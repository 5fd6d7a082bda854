"""`zaoshu train` end to end over real XTuner on CPU: a tiny Qwen2 model built here, 50 wishes records,
LoRA for a few iterations -> pth_to_hf -> merge -> `zaoshu chat`; resume; and crashes that must fail."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("xtuner") is None:
    pytest.skip('needs the train extra: pip install -e ".[train]"', allow_module_level=True)

from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.errors import ZaoshuError
from zaoshu.trainer import TrainOptions, execute, prepare, shims, write_inputs

shims.apply()

ROOT = Path(__file__).resolve().parent.parent
WISHES = ROOT / "prompts" / "wishes.yaml"
TINY_RUN = ["--max-length", "128", "--grad-accum", "1", "--max-iters", "4", "--eval-max-new-tokens", "4"]

pytestmark = [pytest.mark.slow, pytest.mark.train]


@pytest.fixture(scope="module", autouse=True)
def _quiet_offline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Training children stay on one thread (the machine is shared) and never touch the network."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("MKL_NUM_THREADS", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))
        yield


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _steps(work: Path) -> list[dict]:
    lines = (work / "logs" / "steps.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def trained(tiny: Path, records_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    work = tmp_path_factory.mktemp("run") / "wishes-lora"
    result = CliRunner().invoke(
        app,
        ["train", str(records_file), "--model", str(tiny), "--method", "lora", "--work-dir", str(work),
         "--recipe", str(WISHES), *TINY_RUN],
    )  # fmt: skip
    return work, result


def test_train_converts_merges_and_chats(trained: tuple[Path, object]) -> None:
    work, result = trained
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    # each step ran with our interpreter (through the shim launcher on CPU) and exited 0
    steps = _steps(work)
    assert [s["step"] for s in steps] == ["xtuner train", "pth_to_hf", "merge"]
    assert all(s["rc"] == 0 for s in steps)
    launcher = [] if _cuda() else ["zaoshu.trainer.launch"]
    assert all(s["argv"][:2] == [sys.executable, "-m"] for s in steps)
    assert [s["argv"][2 : 3 + len(launcher)] for s in steps] == [
        [*launcher, m]
        for m in (
            "xtuner.tools.train",
            "xtuner.tools.model_converters.pth_to_hf",
            "xtuner.tools.model_converters.merge",
        )
    ]
    # train: four iterations, one checkpoint at the end
    assert (work / "xtuner" / "iter_4.pth").is_file()
    assert (work / "xtuner" / "last_checkpoint").read_text().strip().endswith("iter_4.pth")
    log = (work / "logs" / "train.log").read_text(encoding="utf-8")
    assert "Iter(train) [4/4]" in log and "loss:" in log
    # pth_to_hf: a LoRA adapter in safetensors
    assert (work / "hf" / "adapter_config.json").is_file()
    assert (work / "hf" / "adapter_model.safetensors").is_file()
    # merge: a complete model that transformers can load on its own
    merged = work / "merged"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (merged / name).is_file(), name
    assert json.loads((merged / "zaoshu-chat.json").read_text(encoding="utf-8"))["template"] == "qwen_chat"
    assert f"zaoshu chat {merged}" in result.output  # type: ignore[attr-defined]

    chat = CliRunner().invoke(
        app, ["chat", str(merged), "--prompt", "祝姐姐生日快乐", "--max-new-tokens", "16", "--seed", "0"]
    )
    assert chat.exit_code == 0, chat.output
    assert chat.stdout.strip(), "chat printed no reply"

    interactive = CliRunner().invoke(
        app,
        ["chat", str(merged), "--max-new-tokens", "4", "--seed", "0"],
        input="祝姐姐生日快乐\nRESET\nEXIT\n",
    )
    assert interactive.exit_code == 0, interactive.output
    assert "(history cleared)" in interactive.output


def test_rerun_without_resume_refuses_then_resume_continues(
    trained: tuple[Path, object], tiny: Path, records_file: Path
) -> None:
    work, first = trained
    assert first.exit_code == 0  # type: ignore[attr-defined]
    base = ["train", str(records_file), "--model", str(tiny), "--method", "lora", "--work-dir", str(work),
            "--recipe", str(WISHES), "--max-length", "128", "--grad-accum", "1", "--eval-max-new-tokens", "4"]  # fmt: skip
    again = CliRunner().invoke(app, [*base, "--max-iters", "4"])
    assert again.exit_code != 0 and "--resume" in again.output and "iter_4.pth" in again.output

    resumed = CliRunner().invoke(app, [*base, "--max-iters", "6", "--resume", "--no-merge"])
    assert resumed.exit_code == 0, resumed.output
    assert "resumed" in (work / "logs" / "train.log").read_text(encoding="utf-8")
    assert (work / "xtuner" / "iter_6.pth").is_file()
    assert (work / "hf" / "adapter_model.safetensors").is_file()
    assert not (work / "merged").exists()  # the old merge was of iter_4: gone, not left to mislead
    assert [s["rc"] for s in _steps(work)[-2:]] == [0, 0]
    assert f"zaoshu chat {tiny} --adapter {work / 'hf'}" in resumed.output

    chat = CliRunner().invoke(
        app, ["chat", str(tiny), "--adapter", str(work / "hf"), "--prompt", "祝妹妹春节快乐",
              "--max-new-tokens", "8", "--seed", "0"]
    )  # fmt: skip
    assert chat.exit_code == 0, chat.output


def test_a_crash_inside_training_fails_the_run(tiny: Path, records_file: Path, tmp_path: Path) -> None:
    # A learning rate of the wrong type: AdamW raises inside `xtuner train`, after the config loaded.
    run = prepare(TrainOptions(data=str(records_file), model=str(tiny), method="lora",
                               work_dir=str(tmp_path / "w"), max_length=128, grad_accum=1, max_iters=4))  # fmt: skip
    write_inputs(run)
    config = run.config_path.read_text(encoding="utf-8")
    run.config_path.write_text(config.replace("\nlr = 0.0002\n", "\nlr = '2e-4'\n"), encoding="utf-8")
    lines: list[str] = []
    with pytest.raises(ZaoshuError) as e:
        execute(run, echo=lines.append)
    assert "xtuner train failed (exit 1)" in str(e.value) and "TypeError" in str(e.value)
    assert any("TypeError" in line for line in lines)  # the traceback was streamed to the user
    last = _steps(run.work_dir)[-1]
    assert (last["step"], last["rc"]) == ("xtuner train", 1)
    assert not run.hf_dir.exists()


def test_exit_0_without_a_fresh_checkpoint_fails_the_run(
    tiny: Path, records_file: Path, tmp_path: Path
) -> None:
    """Don't trust xtuner's exit 0: the real `xtuner.tools.train` process ends with status 0 before training (its
    config stops it with SystemExit(0)); the run fails on the missing checkpoint, and on a stale one too."""
    run = prepare(TrainOptions(data=str(records_file), model=str(tiny), method="lora",
                               work_dir=str(tmp_path / "w"), max_length=128, grad_accum=1, max_iters=4))  # fmt: skip
    write_inputs(run)
    config = run.config_path.read_text(encoding="utf-8")
    run.config_path.write_text("raise SystemExit(0)  # ends the tool cleanly, nothing trained\n" + config)
    for stale in (False, True):
        if stale:  # a checkpoint older than this run (say, copied in): not this run's output either
            run.xtuner_dir.mkdir(parents=True, exist_ok=True)
            old = run.xtuner_dir / "iter_2.pth"
            old.write_bytes(b"not this run's")
            os.utime(old, (old.stat().st_atime - 3600, old.stat().st_mtime - 3600))
        with pytest.raises(ZaoshuError) as e:
            execute(run, echo=None)
        assert "xtuner train exited 0 but wrote no checkpoint" in str(e.value)
        assert str(run.work_dir / "logs" / "train.log") in str(e.value)
        assert ("iter_2.pth, is older than this run" in str(e.value)) == stale
        last = _steps(run.work_dir)[-1]
        assert (last["step"], last["rc"]) == ("xtuner train", 0)  # the tool itself said success
        assert not run.hf_dir.exists() and not run.merged_dir.exists()  # nothing converted from nothing


def test_cli_exits_non_zero_when_training_crashes(tiny: Path, records_file: Path, tmp_path: Path) -> None:
    # A model whose weights file is cut short (an interrupted download): the model fails to load in training.
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for item in tiny.iterdir():
        data = item.read_bytes()
        (broken / item.name).write_bytes(data[: len(data) // 3] if item.name == "model.safetensors" else data)
    work = tmp_path / "w"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(records_file),
            "--model",
            str(broken),
            "--method",
            "lora",
            "--work-dir",
            str(work),
            *TINY_RUN,
        ],
    )
    assert result.exit_code != 0
    assert "error: xtuner train failed (exit 1)" in result.output
    assert not (work / "hf").exists() and not (work / "merged").exists()
    assert os.path.isfile(work / "logs" / "train.log")
