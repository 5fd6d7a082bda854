"""The recipe's `clean:` block as a pydantic model, with defaults that fit any recipe.

Every key is optional; an unknown key, an unknown rule name or an invalid regex is a RecipeError that
names the recipe file and the key path (`clean.disable[1]: unknown rule 'lenght'; known: ...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zaoshu.errors import RecipeError, ZaoshuError

#: Phrases that mark talk about the answer, refusals or meta text rather than a wish (any recipe).
DEFAULT_META_PHRASES = (  # noqa: SIM905 - a list of words reads best as words
    "当前祝福语如下 祝福语如下 以下是 作为一个AI 作为AI 作为一个人工智能 作为人工智能 语言模型 AI助手 "
    "抱歉 我无法 无法满足 字数 ### 请直接返回 不要说任何其他话"
).split()

_NAME = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StyleRules(_Strict):
    """Per-style overrides; length limits default to the recipe style's `min_chars` / `max_chars`."""

    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=1)
    #: allowed emoji count [min, max]; None: no emoji rule for this style.
    emoji: tuple[int, int] | None = None

    @field_validator("emoji")
    @classmethod
    def _ordered(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and (v[0] < 0 or v[0] > v[1]):
            raise ValueError("emoji must be [min, max] with 0 <= min <= max")
        return v


class RegexRule(_Strict):
    """A user rule: reject when `pattern` matches the normalized text (or the dedup key)."""

    name: str = Field(pattern=_NAME)
    pattern: str
    reason: str = Field(default="regex", pattern=_NAME)
    target: str = Field(default="text", pattern=r"^(text|key)$")
    #: True: reject when the pattern does NOT match (a required shape).
    require: bool = False


class NearDupConfig(_Strict):
    """Near-duplicate removal. Defaults measured in benchmarks/clean.py (see the README)."""

    enabled: bool = True
    #: final decision: rapidfuzz Indel normalized similarity of the two keys.
    threshold: float = Field(default=0.85, gt=0, le=1)
    #: MinHash LSH candidate threshold (Jaccard of shingle sets), set low on purpose: the check decides.
    lsh_threshold: float = Field(default=0.5, gt=0, lt=1)
    #: 64, not 32: 32 is 40 % faster in dedup but misses 3-character edits (F1 0.981 vs 0.985 at 200k).
    num_perm: int = Field(default=64, ge=8, le=512)
    ngram: int = Field(default=2, ge=1, le=8)
    #: keys shorter than this are also paired by one-character deletions (edit distance <= 1).
    short_chars: int = Field(default=12, ge=0)
    #: refuse to merge two texts that each name an axis value the other lacks (姐姐 vs 妹妹).
    axis_guard: bool = True
    #: refuse pairs whose edit swaps a word, a number, a negation or a kinship term (see cleaners/verify.py).
    veto: bool = True
    seed: int = 1


class PoliteConfig(_Strict):
    recipients: list[str] = Field(default_factory=list)
    #: empty: every style
    styles: list[str] = Field(default_factory=list)


class CleanConfig(_Strict):
    #: rule names in the order they run; None: every registered rule in its default order.
    rules: list[str] | None = None
    disable: list[str] = Field(default_factory=list)
    #: fraction over a style's max_chars still accepted (0.1: a 50-char limit accepts 55).
    length_tolerance: float = Field(default=0.1, ge=0, le=10)
    min_chars: int = Field(default=2, ge=0)
    styles: dict[str, StyleRules] = Field(default_factory=dict)
    meta_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_META_PHRASES))
    extra_meta_phrases: list[str] = Field(default_factory=list)
    #: fragments of the recipe's prompts at least this long count as a leaked instruction.
    leak_min_chars: int = Field(default=6, ge=2)
    extra_leak_phrases: list[str] = Field(default_factory=list)
    min_han: int = Field(default=2, ge=0)
    #: Han characters / all letters and digits.
    min_chinese_ratio: float = Field(default=0.5, ge=0, le=1)
    #: share of key positions that repeat the character `p` places before (for some p in 1..8).
    max_repeat_ratio: float = Field(default=0.5, gt=0, le=1)
    repeat_min_chars: int = Field(default=8, ge=2)
    regex: list[RegexRule] = Field(default_factory=list)
    #: axis -> value -> phrases that say the value (off_topic, wrong_recipient), beside axis values' `keywords`.
    keywords: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    #: stock phrases that hold a keyword but name no value (步步高升 holds 高升).
    neutral_phrases: list[str] = Field(default_factory=list)
    #: the axis whose values are the people addressed (wrong_recipient); the others are topics (off_topic).
    recipient_axis: str = "recipient"
    #: recipients owed the polite 您 (elders, superiors) and the styles where 你 to them is rejected (impolite).
    polite: PoliteConfig | None = None
    exact_dup: bool = True
    near_dup: NearDupConfig = Field(default_factory=NearDupConfig)


@dataclass
class CleanOptions:
    """Run-time options (the CLI flags); None leaves the recipe's `clean:` value."""

    near_dup: bool | None = None
    threshold: float | None = None
    lsh_threshold: float | None = None
    num_perm: int | None = None
    ngram: int | None = None
    length_tolerance: float | None = None
    against: list[Path] = field(default_factory=list)
    skip_bad_lines: bool = False
    #: worker processes for pass 1 over more than one 16 MB chunk; threads for the similarity check.
    workers: int = 2
    #: samples per reason in the report.
    samples: int = 5
    #: where the stage runs: "local", or "ray" (near-duplicate search on a Ray cluster, same results).
    engine: str = "local"
    #: the Ray cluster to join (HOST:PORT, ray://HOST:PORT or auto); None starts a local Ray.
    ray_address: str | None = None

    def check(self) -> None:
        """Raise ZaoshuError naming the flag of the first value out of range (over the defaults)."""
        self.apply(CleanConfig())

    def apply(self, config: CleanConfig) -> CleanConfig:
        """`config` with these options over it, validated: a bad value is a ZaoshuError naming its flag."""
        if self.workers < 1:
            raise ZaoshuError(f"--workers: must be at least 1, got {self.workers}")
        near = config.near_dup.model_dump()
        for name in ("threshold", "lsh_threshold", "num_perm", "ngram"):
            value = getattr(self, name)
            if value is not None:
                near[name] = value
        if self.near_dup is not None:
            near["enabled"] = self.near_dup
        data = config.model_dump() | {"near_dup": near}
        if self.length_tolerance is not None:
            data["length_tolerance"] = self.length_tolerance
        try:
            return CleanConfig.model_validate(data)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                field = str(err["loc"][-1])
                flag = FLAGS.get(field, f"clean.{'.'.join(map(str, err['loc']))}")
                problems.append(f"{flag}: {err['msg'].lower()}, got {err.get('input')!r}")
            raise ZaoshuError("; ".join(problems)) from None


#: CleanConfig fields set from the command line, and their flags (for error messages).
FLAGS = {
    "threshold": "--near-dup-threshold",
    "lsh_threshold": "--lsh-threshold",
    "num_perm": "--num-perm",
    "ngram": "--ngram",
    "length_tolerance": "--length-tolerance",
}


def _loc(parts: tuple[Any, ...]) -> str:
    out = "clean"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def parse_clean_config(
    data: dict[str, Any] | None,
    *,
    path: str | Path | None = None,
    known_rules: list[str],
    styles: list[str] | None = None,
) -> CleanConfig:
    """Validate a `clean:` mapping; errors name the recipe file and the key path."""
    try:
        config = CleanConfig.model_validate(data or {})
    except ValidationError as e:
        first = e.errors()[0]
        loc = _loc(tuple(p for p in first["loc"] if not str(p).startswith(("function-", "tuple["))))
        raise RecipeError(f"{loc}: {first['msg']}", path=path) from None
    known = ", ".join(known_rules)
    for key in ("rules", "disable"):
        for i, name in enumerate(getattr(config, key) or []):
            if name not in known_rules:
                raise RecipeError(f"clean.{key}[{i}]: unknown rule {name!r}; known: {known}", path=path)
    if styles is not None:
        for name in config.styles:
            if name not in styles:
                raise RecipeError(
                    f"clean.styles.{name}: not a style of the recipe; styles are {', '.join(styles)}",
                    path=path,
                )
    seen: set[str] = set()
    for i, rule in enumerate(config.regex):
        if rule.name in seen:
            raise RecipeError(f"clean.regex[{i}].name: duplicate rule name {rule.name!r}", path=path)
        seen.add(rule.name)
        if rule.reason in known_rules and rule.reason != "regex":
            raise RecipeError(
                f"clean.regex[{i}].reason: {rule.reason!r} is a built-in rule's reason; choose another name",
                path=path,
            )
        try:
            regex.compile(rule.pattern)
        except regex.error as e:
            raise RecipeError(f"clean.regex[{i}].pattern: invalid regex ({e})", path=path) from None
    return config
