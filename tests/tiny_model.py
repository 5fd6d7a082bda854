"""A tiny Qwen2 chat model built locally (random weights, a tokenizer trained here): no downloads.

XTuner needs a real Hugging Face model directory: `config.json`, weights, and a tokenizer with a chat
template. This builds one of a few MB in about a second, so the training tests run real XTuner on CPU.
The tokenizer is wrapped as `Qwen2TokenizerFast` (not the generic `PreTrainedTokenizerFast`): XTuner's
`qwen_chat` template and bos handling expect what a Qwen2 tokenizer reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Qwen2's ChatML template, as shipped with Qwen2 chat models (default system prompt dropped).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = [
    "你现在是一个送祝福大师，帮我针对不同人和事情、节日送对应的祝福",
    "祝姐姐生日快乐，严肃风格",
    "祝妹妹谈判顺利，小红书风格",
    "祝大家元宵节快乐",
    "祝领导春节快乐，严肃风格",
    "尊敬的赵老师，值此佳辰，恭祝您福寿安康，事业蒸蒸日上。",
    "默念你的名,祝你前途云蒸霞蔚，灿若星河。愿你度过的叫吉时，得到的叫如愿！",
    "希望你岁末将至，敬颂冬绥，平安喜乐，万事胜意。",
    "前方荣光万丈，身后温暖一方，凡是过往，皆为序章。",
    "愿所念之人 平安喜乐。愿所想之事 顺心如意！",
    "春风得意马蹄疾，财源滚滚至君前",
    "烟火年年，暖意洋洋，家是心之所向。",
    "Hello, world. The quick brown fox jumps over the lazy dog 0123456789",
]


def build_tiny_qwen2(
    out_dir: str | Path,
    extra_text: Iterable[str] = (),
    *,
    vocab_size: int = 1200,
    hidden_size: int = 64,
    layers: int = 2,
) -> Path:
    """Write a tiny Qwen2ForCausalLM with a locally trained byte-level BPE tokenizer into `out_dir`."""
    from zaoshu.trainer import shims

    shims.apply()  # transformers imports torchvision, whose ops may not load with the CPU torch wheel
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2TokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([*CORPUS, *extra_text] * 4, trainer=trainer)

    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=bpe,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )
    tokenizer.save_pretrained(out)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, max_new_tokens=32
    )
    model.save_pretrained(out, safe_serialization=True)
    return out


if __name__ == "__main__":
    import sys

    print(build_tiny_qwen2(sys.argv[1] if len(sys.argv) > 1 else "tiny-qwen2"))


def wishes_records(n: int = 50, seed: int = 0) -> list[dict]:
    """`n` canonical records of the wishes recipe (its plan, its system prompt), with short made-up replies."""
    from zaoshu.generator.plan import plan
    from zaoshu.recipes import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "prompts" / "wishes.yaml")
    tasks = plan(recipe, limit=n, seed=seed).tasks
    return [
        task.to_record(
            f"祝{task.axes['recipient']}{task.axes['scene']}快乐，平安喜乐，万事胜意！",
            {"provider": "test", "model": "none"},
        )
        for task in tasks
    ]
