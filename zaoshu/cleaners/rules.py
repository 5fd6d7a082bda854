"""Rule filters, registered by name: each answers "keep, or reject with this reason and detail".

A rule is built once per run from the recipe and its `clean:` block and returns (reason, condition,
detail): polars expressions over the columns of the frame (`text`, `key`, `style`, `finish_reason`,
`ax_<axis>` and the measured columns below); the condition runs over every row, the detail (a string)
only over the rows the rule rejects. Rules run in the order of `clean.rules`; a row's reason is the first
rule that rejects it. Regex rules polars cannot run (look-
arounds, back-references) fall back to the `regex` module row by row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import polars as pl
import regex

from zaoshu.cleaners import semantic
from zaoshu.cleaners.config import CleanConfig
from zaoshu.cleaners.minhash import codepoints
from zaoshu.cleaners.normalize import EMOJI_BLOCKS, dedup_key
from zaoshu.recipes import Recipe

#: An emoji as a person sees it: a pictograph with its selectors, skin tones and ZWJ continuations.
EMOJI = (
    r"\p{Extended_Pictographic}(?:\x{FE0F}|\p{Emoji_Modifier})*"
    r"(?:\x{200D}\p{Extended_Pictographic}(?:\x{FE0F}|\p{Emoji_Modifier})*)*|\p{Regional_Indicator}{2}"
)

# Characters that can start an emoji; rows without any skip the full emoji pattern.
_EMOJI_HINT = (
    rf"[{EMOJI_BLOCKS}"
    r"\x{2300}-\x{23FF}\x{2B00}-\x{2BFF}\x{2190}-\x{21FF}"
    r"\x{25A0}-\x{25FF}\x{2934}\x{2935}\x{3030}\x{303D}\x{3297}\x{3299}\x{A9}\x{AE}\x{203C}\x{2049}"
    r"\x{2122}\x{2139}\x{24C2}\x{E0020}-\x{E007F}]"
)


def count_emoji(texts: pl.Series) -> pl.Series:
    """Emoji per text (a ZWJ sequence or flag counts once); the full pattern runs only where one may be."""
    texts = texts.fill_null("")
    hint = texts.str.contains(_EMOJI_HINT)
    out = pl.Series("n_emoji", [0] * len(texts), dtype=pl.UInt32)
    if hint.any():
        idx = hint.arg_true()
        out = out.scatter(idx, texts.gather(idx).str.count_matches(EMOJI).cast(pl.UInt32))
    return out


def repetition(cps: np.ndarray, offsets: np.ndarray, *, max_period: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per key: the largest share of positions equal to the character `p` places before, and that p.

    0.9 at p = 2 is 快乐快乐快乐…; ordinary wishes stay well under 0.3. Vectorized over all keys: one
    comparison of shifted code point arrays per period (1..8: a character, a word, a short clause),
    counted per key through a cumulative sum.
    """
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    starts = offsets[:-1]
    best = np.zeros(n)
    period = np.zeros(n, dtype=np.int32)
    csum = np.zeros(len(cps) + 1, dtype=np.int32)
    for p in range(1, max_period + 1):
        if len(cps) <= p or not (lengths >= 2 * p).any():
            break
        # csum[i + 1] = number of positions j <= i with cps[j] == cps[j + p]
        np.cumsum((cps[p:] == cps[:-p]).view(np.uint8), out=csum[1 : len(cps) - p + 1])
        last = np.maximum(starts + lengths - p, starts)  # comparisons j in [start, start + len - p)
        ratio = (csum[last] - csum[starts]) / np.maximum(lengths - p, 1)
        ratio[lengths < 2 * p] = 0
        better = ratio > best
        best[better] = ratio[better]
        period[better] = p
    return best, period


@lru_cache(maxsize=1)
def _char_classes() -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables by code point: is it Han (\\p{Han}), is it a letter or digit ([\\p{L}\\p{N}])."""
    points = np.r_[0:0xD800, 0xE000:0x110000].astype(np.uint32)  # every code point but the surrogates
    chars = pl.Series([points.tobytes().decode("utf-32-le")]).str.split("").explode()
    han, alnum = np.zeros(0x110000, dtype=bool), np.zeros(0x110000, dtype=bool)
    han[points] = chars.str.contains(r"\p{Han}").to_numpy()
    alnum[points] = chars.str.contains(r"[\p{L}\p{N}]").to_numpy()
    return han, alnum


def _per_key(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many of each key's code points are flagged."""
    csum = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=csum[1:])
    return csum[offsets[1:]] - csum[offsets[:-1]]


def measure(frame: pl.DataFrame, block: int = 200_000) -> pl.DataFrame:
    """`frame` with what the rules measure, each defined here only: n_chars and n_emoji of the text;
    n_han (Han characters), n_alnum (letters and digits), repeat_ratio and repeat_period of its dedup
    key (the text without punctuation, symbols and spaces), from the key's code points in numpy, a
    block of rows at a time (two regex counts over the texts cost more than all four here)."""
    han, alnum = _char_classes()
    parts = [pl.DataFrame(schema={"n_han": pl.Int64, "n_alnum": pl.Int64, "repeat_ratio": pl.Float64,
                                  "repeat_period": pl.Int32})]  # fmt: skip
    for lo in range(0, frame.height, block):
        cps, offsets = codepoints(frame["key"].slice(lo, block))
        ratio, period = repetition(cps, offsets)
        counts = {"n_han": _per_key(han[cps], offsets), "n_alnum": _per_key(alnum[cps], offsets)}
        parts.append(pl.DataFrame(counts | {"repeat_ratio": ratio, "repeat_period": period}))
    return frame.with_columns(
        n_chars=pl.col("text").str.len_chars(), n_emoji=count_emoji(frame["text"])
    ).hstack(pl.concat(parts))


class StyleLimits(NamedTuple):
    """A style's length limits: `allowed` is `max_chars` with the length tolerance added."""

    min_chars: int
    allowed: int | None
    max_chars: int | None


@dataclass
class RuleContext:
    config: CleanConfig
    recipe: Recipe | None = None
    limits: dict[str, StyleLimits] = field(default_factory=dict)
    axes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, config: CleanConfig, recipe: Recipe | None, styles_seen: list[str]) -> RuleContext:
        ctx = cls(config=config, recipe=recipe, axes=list(recipe.values) if recipe else [])
        names = list(recipe.styles) if recipe else []
        names += [s for s in styles_seen if s not in names]
        for name in names:
            declared = recipe.styles[name] if recipe and name in recipe.styles else None
            over = config.styles.get(name)
            lo = next(
                (v for v in (over and over.min_chars, declared and declared.min_chars) if v is not None),
                config.min_chars,
            )
            hi = next((v for v in (over and over.max_chars, declared and declared.max_chars) if v), None)
            allowed = int(hi * (1 + config.length_tolerance)) if hi else None
            ctx.limits[name] = StyleLimits(lo, allowed, hi)
        return ctx


#: (reason, condition, detail): the condition runs over every row (cheap: contains, comparisons), the
#: detail only over the rows the rule rejects.
Built = list[tuple[str, pl.Expr, pl.Expr]]


@dataclass(frozen=True)
class Rule:
    name: str
    build: Callable[[RuleContext], Built]
    doc: str


RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Callable[[RuleContext], Built]], Callable[[RuleContext], Built]]:
    """Register a rule builder under `name` (also its reason code, unless it says otherwise)."""

    def deco(fn: Callable[[RuleContext], Built]) -> Callable[[RuleContext], Built]:
        RULES[name] = Rule(name, fn, (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return deco


def _detail(cond: pl.Expr, detail: pl.Expr | str) -> tuple[pl.Expr, pl.Expr]:
    return cond.fill_null(False), (pl.lit(detail) if isinstance(detail, str) else detail).cast(pl.Utf8)


def _by_style(values: dict[str, int | None]) -> pl.Expr:
    """A per-row value looked up by the row's style (null for styles without one)."""
    mapping = {k: v for k, v in values.items() if v is not None}
    if not mapping:
        return pl.lit(None, dtype=pl.Int64)
    return pl.col("style").replace_strict(mapping, default=None, return_dtype=pl.Int64)


@rule("empty")
def _empty(ctx: RuleContext) -> Built:
    """Nothing left after normalizing (blank reply, punctuation only)."""
    return [("empty", *_detail(pl.col("key").str.len_chars() == 0, "no text left after normalizing"))]


@rule("truncated")
def _truncated(ctx: RuleContext) -> Built:
    """The model stopped at max_tokens (finish_reason == "length"): the wish is cut off."""
    return [("truncated", *_detail(pl.col("finish_reason") == "length", "finish_reason=length"))]


@rule("excluded_pair")
def _excluded(ctx: RuleContext) -> Built:
    """An axis combination the recipe's `exclude` skips (data made before the rule was added)."""
    if ctx.recipe is None or not ctx.recipe.exclude:
        return []
    conds, details = [], []
    for i, spec in enumerate(ctx.recipe.exclude):
        cols = {axis: "style" if axis == "style" else f"ax_{axis}" for axis in spec}
        wanted = [pl.col(cols[a]).is_in([w] if isinstance(w, str) else list(w)) for a, w in spec.items()]
        conds.append(pl.all_horizontal(wanted).fill_null(False))
        what = pl.concat_str([pl.lit(f"{a}=") + pl.col(col) for a, col in cols.items()], separator=" ")
        details.append(pl.when(conds[-1]).then(what + pl.lit(f" (exclude[{i}])")))
    return [("excluded_pair", pl.any_horizontal(conds), pl.coalesce(pl.lit(None, dtype=pl.Utf8), *details))]


def _phrases(reason: str, column: str, phrases: list[str], say: str, *, any_case: bool = False) -> Built:
    """Reject rows whose `column` holds one of `phrases`; the detail names the first one found."""
    if not phrases:
        return []
    cond = pl.col(column).str.contains_any(phrases, ascii_case_insensitive=any_case)
    found = pl.col(column).str.extract_many(phrases, ascii_case_insensitive=any_case).list.first()
    return [(reason, *_detail(cond, pl.lit(say) + found))]


@rule("meta_text")
def _meta(ctx: RuleContext) -> Built:
    """Talk about the answer, refusals and meta text (当前祝福语如下, 作为一个AI, 抱歉, 字数, ###)."""
    phrases = [p for p in ctx.config.meta_phrases + ctx.config.extra_meta_phrases if p]
    return _phrases("meta_text", "text", phrases, "contains ", any_case=True)


def leak_phrases(ctx: RuleContext) -> list[str]:
    """Literal fragments of the recipe's generation prompt, style instructions and injections."""
    recipe = ctx.recipe
    sources: list[str] = list(ctx.config.extra_leak_phrases)
    if recipe is not None:
        sources += [recipe.prompt, recipe.generation_system, *recipe.injections]
        sources += [s.instruction for s in recipe.styles.values()]
    out: list[str] = []
    for source in sources:
        literal = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "\n", source)
        for piece in re.split(r"[\s，。！？；：、,.!?;:（）()“”\"'\[\]【】#]+", literal):
            if len(piece) >= ctx.config.leak_min_chars and piece not in out:
                out.append(piece)
    return [p for p in out if p not in ctx.config.extra_leak_phrases] + ctx.config.extra_leak_phrases


@rule("leaked_prompt")
def _leaked(ctx: RuleContext) -> Built:
    """The reply repeats an instruction of the generation prompt (注意不要有标题混在其中...)."""
    return _phrases("leaked_prompt", "text", leak_phrases(ctx), "repeats the prompt: ")


@rule("copied_example")
def _copied(ctx: RuleContext) -> Built:
    """The reply copies a few-shot example of the recipe whole instead of imitating its style."""
    if ctx.recipe is None:
        return []
    keys = sorted({k for pool in ctx.recipe.examples.values() for k in map(dedup_key, pool) if len(k) >= 8})
    return _phrases("copied_example", "key", keys, "copies the example ")


@rule("too_short")
def _too_short(ctx: RuleContext) -> Built:
    """Fewer characters than the style's min_chars (clean.styles / recipe styles / clean.min_chars)."""
    lo = _by_style({s: limit.min_chars for s, limit in ctx.limits.items()}).fill_null(ctx.config.min_chars)
    cond = pl.col("n_chars") < lo
    return [("too_short", *_detail(cond, pl.format("{} chars < {}", pl.col("n_chars"), lo)))]


@rule("too_long")
def _too_long(ctx: RuleContext) -> Built:
    """More characters than the style's max_chars plus clean.length_tolerance."""
    hi = _by_style({s: limit.allowed for s, limit in ctx.limits.items()})
    declared = _by_style({s: limit.max_chars for s, limit in ctx.limits.items()})
    cond = (pl.col("n_chars") > hi).fill_null(False)
    detail = pl.format("{} chars > {} (max_chars {} + tolerance)", pl.col("n_chars"), hi, declared)
    return [("too_long", *_detail(cond, detail))]


@rule("low_chinese")
def _low_chinese(ctx: RuleContext) -> Built:
    """Too little Chinese: fewer than min_han Han characters or a low Han share of letters and digits."""
    c = ctx.config
    ratio = pl.col("n_han") / pl.max_horizontal(pl.col("n_alnum"), 1)
    cond = (pl.col("n_han") < c.min_han) | (ratio < c.min_chinese_ratio)
    detail = pl.format("{} Han of {} letters/digits", pl.col("n_han"), pl.col("n_alnum"))
    return [("low_chinese", *_detail(cond, detail))]


@rule("repetition")
def _repetition(ctx: RuleContext) -> Built:
    """Degenerate repetition: a character or n-gram looping (快乐快乐快乐快乐, 哈哈哈哈哈哈)."""
    c = ctx.config
    cond = (pl.col("key").str.len_chars() >= c.repeat_min_chars) & (
        pl.col("repeat_ratio") > c.max_repeat_ratio
    )
    detail = pl.format(
        "{} of the text repeats with period {}", pl.col("repeat_ratio").round(2), pl.col("repeat_period")
    )
    return [("repetition", *_detail(cond, detail))]


@rule("emoji_count")
def _emoji(ctx: RuleContext) -> Built:
    """Emoji count outside the style's range (小红书 asks for 1-2, 严肃 for none)."""
    ranges = {name: rules.emoji for name, rules in ctx.config.styles.items() if rules.emoji is not None}
    if not ranges:
        return []
    lo, hi = _by_style({k: v[0] for k, v in ranges.items()}), _by_style({k: v[1] for k, v in ranges.items()})
    cond = ((pl.col("n_emoji") < lo) | (pl.col("n_emoji") > hi)).fill_null(False)
    detail = pl.format("{} emoji; style {} wants {}-{}", pl.col("n_emoji"), pl.col("style"), lo, hi)
    return [("emoji_count", *_detail(cond, detail))]


def _polars_accepts(pattern: str) -> bool:
    try:
        pl.select(pl.lit("").str.contains(pattern))
        return True
    except Exception:
        return False


@rule("regex")
def _regex(ctx: RuleContext) -> Built:
    """User rules from clean.regex: reject on a match (or, with require: true, on no match)."""
    out: Built = []
    for r in ctx.config.regex:
        col = pl.col(r.target)
        if _polars_accepts(r.pattern):
            hit = col.str.contains(r.pattern)
            match = col.str.extract(f"({r.pattern})", 1)
        else:  # look-arounds, back-references: the `regex` module, row by row
            compiled = regex.compile(r.pattern)

            def first(s: str, _c: regex.Pattern[str] = compiled) -> str | None:
                m = _c.search(s)
                return m.group(0) if m else None

            match = col.map_elements(first, return_dtype=pl.Utf8, skip_nulls=True)
            hit = match.is_not_null()
        if r.require:
            out.append((r.reason, *_detail(~hit, f"{r.name}: does not match the required pattern")))
        else:
            out.append((r.reason, *_detail(hit, pl.lit(f"{r.name}: matched ") + match)))
    return out


@rule("off_topic")
def _off_topic(ctx: RuleContext) -> Built:
    """Names another axis value's keyword and none of its own (生日 in a wish for 周年纪念)."""
    vocabs = semantic.vocabularies(ctx.recipe, ctx.config)
    return semantic.off_topic(vocabs, skip=ctx.config.recipient_axis)


@rule("wrong_recipient")
def _wrong_recipient(ctx: RuleContext) -> Built:
    """Addresses another recipient by name and never its own (姐姐 in a wish for 哥哥)."""
    vocab = semantic.vocabularies(ctx.recipe, ctx.config).get(ctx.config.recipient_axis)
    return semantic.wrong_recipient(vocab) if vocab else []


@rule("impolite")
def _impolite(ctx: RuleContext) -> Built:
    """你 and never 您 to a recipient owed the polite form (clean.polite: elders, superiors), in its styles."""
    polite = ctx.config.polite
    if polite is None or not polite.recipients:
        return []
    who = pl.col(f"ax_{ctx.config.recipient_axis}")
    cond = (
        who.is_in(polite.recipients) & pl.col("text").str.contains("你") & ~pl.col("text").str.contains("您")
    )
    if polite.styles:
        cond = cond & pl.col("style").is_in(polite.styles)
    return [
        ("impolite", *_detail(cond, pl.format("你 to {} in style {} (您 expected)", who, pl.col("style"))))
    ]


DEFAULT_ORDER = list(RULES)


def active_rules(config: CleanConfig) -> list[str]:
    names = config.rules if config.rules is not None else DEFAULT_ORDER
    return [n for n in names if n not in config.disable]


def apply_rules(frame: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
    """Add `reason` and `detail` (null for kept rows): the first rule in order that rejects the row.

    Conditions run over all rows; details are computed only for the rows a rule rejected.
    """
    built: Built = []
    for name in active_rules(ctx.config):
        built += RULES[name].build(ctx)
    frame = measure(frame)
    # A record without some axis (one checked alone, imported data): that axis is unknown, not an error.
    missing = [f"ax_{a}" for a in ctx.axes if f"ax_{a}" not in frame.columns]
    frame = frame.with_columns([pl.lit(None, dtype=pl.Utf8).alias(c) for c in missing])
    first = frame.select(  # the index of the first rule that rejects the row, null for a kept row
        pl.coalesce(
            pl.lit(None, dtype=pl.Int32),
            *(pl.when(c).then(pl.lit(i, pl.Int32)) for i, (_, c, _) in enumerate(built)),
        )
    ).to_series()
    reason = first.replace_strict(
        range(len(built)), [name for name, _, _ in built], default=None, return_dtype=pl.Utf8
    )
    detail = pl.repeat(None, frame.height, dtype=pl.Utf8, eager=True)
    idx = first.is_not_null().arg_true()
    if len(idx):
        which = pl.lit(first.gather(idx))
        explain = pl.coalesce(
            pl.lit(None, dtype=pl.Utf8), *(pl.when(which == i).then(d) for i, (_, _, d) in enumerate(built))
        )
        detail = detail.scatter(idx, frame[idx].select(explain).to_series())
    return frame.with_columns(reason.alias("reason"), detail.alias("detail"))
