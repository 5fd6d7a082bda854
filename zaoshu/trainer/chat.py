"""`zaoshu chat`: talk to a trained model with transformers' generate.

The prompt follows the template the model was trained with: the XTuner prompt template named by
`--template` or by the `zaoshu-chat.json` that `zaoshu train` leaves next to the model, else the
tokenizer's own chat template. SYSTEM defaults to the training SYSTEM from that same file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zaoshu.errors import ZaoshuError

CHAT_SIDECAR = "zaoshu-chat.json"


def read_sidecar(*dirs: Path | None) -> dict[str, Any]:
    """The first `zaoshu-chat.json` found among `dirs` (adapter first, then model)."""
    for d in dirs:
        if d is not None and (d / CHAT_SIDECAR).is_file():
            try:
                value = json.loads((d / CHAT_SIDECAR).read_text(encoding="utf-8"))
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


@dataclass
class ChatSession:
    """A loaded model and the conversation so far."""

    model_dir: Path
    adapter: Path | None = None
    system: str | None = None
    template: str | None = None
    temperature: float = 0.7
    max_new_tokens: int = 512
    seed: int | None = None
    history: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from zaoshu.trainer import extra, shims

        extra.require("zaoshu chat", "torch", "transformers", *(["peft"] if self.adapter is not None else []))
        shims.apply()
        for path, what in ((self.model_dir, "model"), (self.adapter, "adapter")):
            if path is not None and not path.is_dir():
                raise ZaoshuError(f"{what} directory not found", path=path)
        if not (self.model_dir / "config.json").is_file():
            raise ZaoshuError("model directory has no config.json", path=self.model_dir)
        sidecar = read_sidecar(self.adapter, self.model_dir)
        if self.template is None:
            self.template = sidecar.get("template") or None
        if self.system is None:
            self.system = sidecar.get("system") or ""
        if self.template:  # an XTuner prompt template: its table comes from xtuner
            extra.require(f"zaoshu chat with template {self.template!r}", "xtuner")
        self._load()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float32 if self.device == "cpu" else "auto"
        source = (
            self.adapter
            if self.adapter is not None and (self.adapter / "tokenizer_config.json").is_file()
            else self.model_dir
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(self.model_dir), torch_dtype=dtype, trust_remote_code=True
        )
        if self.adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.adapter))
        self.model = model.to(self.device).eval()
        self.stop_words: list[str] = []
        self.xtuner_template: dict[str, Any] | None = None
        if self.template:
            from xtuner.utils import PROMPT_TEMPLATE

            if self.template not in PROMPT_TEMPLATE:
                raise ZaoshuError(
                    f"unknown prompt template {self.template!r}; choose one of: {', '.join(PROMPT_TEMPLATE)}"
                )
            self.xtuner_template = dict(PROMPT_TEMPLATE[self.template])
            self.stop_words = list(self.xtuner_template.get("STOP_WORDS", []))
        elif not getattr(self.tokenizer, "chat_template", None):
            raise ZaoshuError(
                "the tokenizer has no chat template; pass --template (the XTuner template used in training)",
                path=self.model_dir,
            )

    def prompt(self, text: str) -> str:
        """The full prompt text for the next reply, history included."""
        t = self.xtuner_template
        if t is None:
            messages = [{"role": "system", "content": self.system}] if self.system else []
            for user, reply in self.history:
                messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            messages.append({"role": "user", "content": text})
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        out = ""
        if self.system and "SYSTEM" in t:
            out += t["SYSTEM"].format(system=self.system, round=1, bot_name="BOT")
        turns = [*self.history, (text, None)]
        for n, (user, reply) in enumerate(turns, 1):
            out += t["INSTRUCTION"].format(input=user, round=n, bot_name="BOT")
            if reply is not None:
                out += reply + t.get("SUFFIX", "") + t.get("SEP", "")
        return out

    def reply(self, text: str) -> str:
        """Generate one reply and add the exchange to the history."""
        import torch

        if self.seed is not None:
            torch.manual_seed(self.seed)
        prompt = self.prompt(text)
        add_special = self.xtuner_template is not None  # a chat template already holds the specials
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special).to(self.device)
        sample = self.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
        }
        if sample:
            kwargs["temperature"] = self.temperature
        if self.stop_words:
            kwargs.update(stop_strings=self.stop_words, tokenizer=self.tokenizer)
        with torch.no_grad():
            out = self.model.generate(**ids, **kwargs)
        answer = self.tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)
        for word in self.stop_words:
            answer = answer.split(word)[0]
        answer = answer.strip()
        self.history.append((text, answer))
        return answer

    def reset(self) -> None:
        self.history.clear()
