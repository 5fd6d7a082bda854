"""`zaoshu eval` on the tiny local model: against itself and against a LoRA copy, with a loopback judge."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from zaoshu.cli import app
from zaoshu.errors import ZaoshuError
from zaoshu.evaluate import EvalOptions, Sampling, evaluate
from zaoshu.testing import FakeServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SAMPLING = Sampling(temperature=0.7, max_new_tokens=16, seed=3, batch_size=4)


@pytest.fixture(scope="module")
def judge_server():
    with FakeServer(reply="judge") as srv:
        yield srv


@pytest.fixture(scope="module")
def lora(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA copy of the tiny model: an adapter with non-zero weights, so its answers differ."""
    from zaoshu.trainer import shims

    shims.apply()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny), torch_dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    get_peft_model(model, config).save_pretrained(str(out))
    return out


def _judge_options(srv: FakeServer):
    from generate_helpers import local_options

    return local_options(srv.base_url)


def test_model_against_itself_with_a_position_biased_judge(
    tiny: Path, tmp_path: Path, wishes_recipe_path: Path, judge_server: FakeServer
) -> None:
    """A judge that always says "A" gives TUNED 0 in A/B and 1 in B/A: asking both orders cancels it."""
    judge_server.configure(reply="judge", judge_prefer="@A", judge_default=4)
    out = tmp_path / "eval"
    lines: list[str] = []
    result = evaluate(
        EvalOptions(
            models=[str(tiny), str(tiny)],
            out_dir=out,
            recipe=wishes_recipe_path,
            sampling=SAMPLING,
            judge=_judge_options(judge_server),
        ),
        echo=lines.append,
    )
    assert any("same path" in line for line in lines)
    rows = [orjson.loads(x) for x in (out / "answers.jsonl").read_bytes().splitlines()]
    assert len(rows) == result["inputs"] == 6
    assert all(r["base"]["answer"] == r["tuned"]["answer"] for r in rows)  # same model, same seed
    p = result["pairwise"]
    assert (p["win_rate_tuned_ab"], p["win_rate_tuned_ba"], p["win_rate_tuned"]) == (0.0, 1.0, 0.5)
    assert p["verdicts"] == 12 and p["orders_agree"] == 0.0
    base = result["metrics"]["base"]
    assert base["overall"]["judge_mean"] == 4.0 and 0 <= base["overall"]["pass_rate"] <= 1
    assert set(base["by_style"]) <= {"正常", "严肃", "小红书"}
    assert result["metrics"]["base"] == result["metrics"]["tuned"]
    assert rows[0]["base"]["rules"].keys() == {"kept", "reason", "detail"}
    assert "where they differ most" in (out / "report.html").read_text(encoding="utf-8")
    assert orjson.loads((out / "eval.json").read_bytes())["seconds_per_100_inputs"]["base"] > 0


def test_base_against_a_lora_copy_with_a_judge_preferring_tuned(
    tiny: Path, lora: Path, tmp_path: Path, wishes_recipe_path: Path, judge_server: FakeServer
) -> None:
    options = EvalOptions(
        models=[str(tiny)], adapter=lora, out_dir=tmp_path / "a", recipe=wishes_recipe_path, sampling=SAMPLING
    )
    first = evaluate(options)
    assert first["pairwise"] is None
    rows = [orjson.loads(x) for x in (tmp_path / "a" / "answers.jsonl").read_bytes().splitlines()]
    tuned = [r["tuned"]["answer"] for r in rows]
    assert all(r["base"]["answer"] != r["tuned"]["answer"] for r in rows)
    assert not any(t in r["base"]["answer"] for t in tuned for r in rows)
    judge_server.configure(reply="judge", judge_prefer=tuned)
    options.out_dir, options.judge = tmp_path / "b", _judge_options(judge_server)
    second = evaluate(options)
    p = second["pairwise"]
    assert (p["win_rate_tuned_ab"], p["win_rate_tuned_ba"], p["win_rate_tuned"]) == (1.0, 1.0, 1.0)
    assert p["orders_agree"] == 1.0 and second["models"]["tuned"]["adapter"] == str(lora)


def test_bad_inputs(tiny: Path, tmp_path: Path, wishes_recipe_path: Path) -> None:
    src = tmp_path / "test.jsonl"
    src.write_text('{"messages": [{"role": "assistant", "content": "只有回答"}]}\n', encoding="utf-8")
    with pytest.raises(ZaoshuError, match="no user turn") as e:
        evaluate(
            EvalOptions(
                models=[str(tiny), str(tiny)], out_dir=tmp_path, recipe=wishes_recipe_path, inputs=src
            )
        )
    assert e.value.line == 1
    with pytest.raises(ZaoshuError, match="two --model"):
        evaluate(EvalOptions(models=[str(tiny)], out_dir=tmp_path, recipe=wishes_recipe_path))


def test_cli_with_test_split_inputs(tiny: Path, tmp_path: Path, wishes_recipe_path: Path) -> None:
    src = tmp_path / "test.jsonl"
    rec = {
        "id": "t1",
        "axes": {"recipient": "哥哥", "scene": "春节", "style": "正常"},
        "messages": [
            {"role": "system", "content": "你现在是一个送祝福大师"},
            {"role": "user", "content": "祝哥哥春节快乐"},
            {"role": "assistant", "content": "哥哥新年快乐！"},
        ],
    }
    src.write_bytes(orjson.dumps(rec) + b"\n")
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny), "--model", str(tiny), "--inputs", str(src), "--recipe"]
    result = CliRunner().invoke(
        app, [*args, str(wishes_recipe_path), "-o", str(out), "--max-new-tokens", "8"]
    )
    assert result.exit_code == 0, result.output
    assert "same path" in result.output and "base: rules pass" in result.output
    row = orjson.loads((out / "answers.jsonl").read_bytes())
    assert row["reference"] == "哥哥新年快乐！" and row["system"] == "你现在是一个送祝福大师"


def test_served_models_through_a_provider(
    tmp_path: Path, wishes_recipe_path: Path, judge_server: FakeServer
) -> None:
    """--provider: both models answer through the engine (a model served by vLLM or llama.cpp)."""
    from generate_helpers import local_options

    judge_server.configure(reply="judge", judge_prefer="@B", judge_default=2)
    with FakeServer(reply="echo") as served:
        result = evaluate(
            EvalOptions(
                models=["base-model", "tuned-model"],
                out_dir=tmp_path,
                recipe=wishes_recipe_path,
                provider=local_options(served.base_url),
                judge=_judge_options(judge_server),
            )
        )
    rows = [orjson.loads(x) for x in (tmp_path / "answers.jsonl").read_bytes().splitlines()]
    assert len(rows) == 6 and all(r["base"]["answer"].startswith("回复") for r in rows)
    p = result["pairwise"]
    assert (p["win_rate_tuned_ab"], p["win_rate_tuned_ba"]) == (1.0, 0.0)
    assert result["metrics"]["tuned"]["overall"]["judge_mean"] == 2.0
