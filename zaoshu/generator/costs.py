"""Estimated cost of a run from a price table per model (shipped `prices.yaml`, overridable by a user YAML).

Every attempt the provider may bill counts, failed ones too: an attempt that returned usage counts its
usage; one that timed out or broke mid-answer counts its prompt (estimated from its length), since the
provider may have processed it. 429s, 401s and 400s are not billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from zaoshu.errors import ZaoshuError

SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€"}


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # per 1M tokens
    output: float
    currency: str
    batch_input: float | None = None  # through the provider's batch API; half the online price if unset
    batch_output: float | None = None

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / 1e6

    def batch_cost(self, tokens_in: int, tokens_out: int) -> float:
        i = self.input / 2 if self.batch_input is None else self.batch_input
        o = self.output / 2 if self.batch_output is None else self.batch_output
        return (tokens_in * i + tokens_out * o) / 1e6

    def format(self, amount: float) -> str:
        return f"{SYMBOLS.get(self.currency, self.currency + ' ')}{amount:.4f}"


def _parse(data: Any, source: str) -> dict[str, Price]:
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ZaoshuError(
            "expected a mapping with a 'models:' mapping of model -> {input, output, currency}", path=source
        )
    out = {}
    for name, entry in data["models"].items():
        try:
            batch_in, batch_out = entry.get("batch_input"), entry.get("batch_output")
            out[str(name)] = Price(
                float(entry["input"]),
                float(entry["output"]),
                str(entry.get("currency", "USD")),
                None if batch_in is None else float(batch_in),
                None if batch_out is None else float(batch_out),
            )
        except (TypeError, KeyError, ValueError):
            raise ZaoshuError(
                f"models.{name}: expected {{input: <per 1M tokens>, output: <per 1M tokens>, currency: CNY|USD"
                ", batch_input/batch_output: <optional, per 1M tokens through a batch API>}",
                path=source,
            ) from None
    return out


def load_prices(user: str | Path | None = None) -> dict[str, Price]:
    """The shipped table, with the user's entries (if any) replacing or adding models."""
    shipped = resources.files("zaoshu.generator").joinpath("prices.yaml").read_text(encoding="utf-8")
    prices = _parse(yaml.safe_load(shipped), "zaoshu/generator/prices.yaml")
    if user is not None:
        path = Path(user)
        if not path.is_file():
            raise ZaoshuError("price file not found", path=path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ZaoshuError(f"not valid YAML: {e}", path=path) from None
        prices.update(_parse(data, str(path)))
    return prices


def price_for(prices: dict[str, Price], model: str) -> Price | None:
    """Exact name, else the longest key the model name starts with (gpt-4o-mini-2024-07-18 -> gpt-4o-mini)."""
    if model in prices:
        return prices[model]
    best = max((k for k in prices if model.startswith(k)), key=len, default=None)
    return prices[best] if best else None


def estimate_tokens(text: str) -> int:
    """A rough token count: one per CJK/non-ASCII character, one per four ASCII characters."""
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return (len(text) - ascii_chars) + (ascii_chars + 3) // 4
