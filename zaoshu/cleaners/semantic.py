"""Cheap semantic rules: a reply about another axis value (a birthday wish for an anniversary) or addressed
to another recipient (姐姐 in a wish for 哥哥), found by keywords, no model.

Each axis value owns phrases: its own name, the `keywords` attribute of the value in the recipe's axes and
the recipe's `clean.keywords` map. A phrase two values share belongs to both; `clean.neutral_phrases`
belong to none (步步高升 holds 高升 but is a stock phrase of any wish). Phrases are found leftmost-longest,
so 李总监 is never read as 李总 when both are phrases, and an own name masks a shorter one inside it.

Vectorized: a row's matched phrases become the list of the values that own them, in polars, and that list
is compared with the row's own value (any number of values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from zaoshu.errors import RecipeError

if TYPE_CHECKING:
    from zaoshu.cleaners.config import CleanConfig
    from zaoshu.recipes import Recipe

#: Words before a name that make it a form of address (祝姐姐…, 亲爱的姐姐…) …
ADDRESS_BEFORE = ["祝", "致", "亲爱的", "尊敬的", "敬爱的", "愿", "希望", "恭喜", "感谢", "谢谢"]
#: … and marks after it (姐姐，… 姐姐！).
ADDRESS_AFTER = "，,：:！!～~"


@dataclass
class Vocabulary:
    """The phrases of one axis and which values own each."""

    axis: str
    values: list[str]
    owners: dict[str, set[str]] = field(default_factory=dict)
    #: the recipe gave phrases beyond the value names (off_topic runs only on such axes)
    keyworded: bool = False

    def phrases(self) -> list[str]:
        """Longest first: with leftmost matching this reads 李总监 before 李总."""
        return sorted(self.owners, key=lambda p: (-len(p), p))

    def own(self, value: str) -> list[str]:
        return [p for p in self.phrases() if value in self.owners[p]]


def vocabularies(recipe: Recipe | None, config: CleanConfig) -> dict[str, Vocabulary]:
    """Per axis: its vocabulary (value names, keywords). A `clean.keywords` entry naming an unknown axis or value
    is a RecipeError naming the key."""
    out: dict[str, Vocabulary] = {}
    if recipe is None:
        return out
    path = recipe.path
    for axis, mapping in config.keywords.items():
        if axis not in recipe.values:
            raise RecipeError(
                f"clean.keywords.{axis}: not an axis of the recipe; axes are {', '.join(recipe.values)}",
                path=path,
            )
        names = {str(v) for v in recipe.values[axis]}
        for value in mapping:
            if value not in names:
                raise RecipeError(f"clean.keywords.{axis}.{value}: not a value of axis {axis!r}", path=path)
    for axis, values in recipe.values.items():
        extra = config.keywords.get(axis, {})
        keyworded = bool(extra) or any(v.attrs.get("keywords") for v in values)
        vocab = Vocabulary(axis, [str(v) for v in values], keyworded=keyworded)
        for v in values:
            given = v.attrs.get("keywords") or []
            if isinstance(given, str) or not all(isinstance(k, str) for k in given):
                raise RecipeError(f"axes.{axis}.{v}.keywords: must be a list of strings", path=path)
            for phrase in [str(v), *given, *extra.get(str(v), [])]:
                if phrase.strip():
                    vocab.owners.setdefault(phrase.strip(), set()).add(str(v))
        for phrase in config.neutral_phrases:
            vocab.owners[phrase] = set()
        out[axis] = vocab
    return out


def _masks(found: pl.Expr, vocab: Vocabulary, own: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(own value named, another value named) from a list column of matched phrases."""
    owners = {p: sorted(o) for p, o in vocab.owners.items()}
    named = found.list.eval(
        pl.element().replace_strict(owners, default=[], return_dtype=pl.List(pl.Utf8)).explode()
    )
    return named.list.contains(own), named.list.set_difference(pl.concat_list(own)).list.len() > 0


def _explain(vocab: Vocabulary, own: pl.Expr, found: pl.Expr, what: str) -> pl.Expr:
    """The detail of a rejected row (computed only for those rows): the other value, its phrase, and
    what the row's own value would have needed."""

    def say(row: dict[str, object]) -> str:
        mine = str(row["own"])
        for phrase in row["found"] or []:  # type: ignore[union-attr]
            others = sorted(vocab.owners.get(str(phrase), set()) - {mine})
            if others:
                wanted = "/".join(vocab.own(mine)[:6])
                whose = "" if others == [phrase] else f" ({'/'.join(others)})"
                return f"{what} {phrase!s}{whose}, none of {mine}'s ({wanted})"
        return f"{what} another {vocab.axis}"

    return pl.struct(own.alias("own"), found.alias("found")).map_elements(say, return_dtype=pl.Utf8)


def off_topic(vocabs: dict[str, Vocabulary], skip: str | None) -> list[tuple[str, pl.Expr, pl.Expr]]:
    """Per keyword axis (the recipient axis aside): names another value's phrase and none of its own."""
    out = []
    for axis, vocab in vocabs.items():
        if axis == skip or not vocab.keyworded:
            continue
        own = pl.col(f"ax_{axis}")
        found = pl.col("text").str.extract_many(vocab.phrases(), leftmost=True)
        mine, other = _masks(found, vocab, own)
        cond = (other & ~mine & own.is_in(vocab.values)).fill_null(False)
        out.append(("off_topic", cond, _explain(vocab, own, found, f"{axis}: names")))
    return out


def wrong_recipient(vocab: Vocabulary) -> list[tuple[str, pl.Expr, pl.Expr]]:
    """Addresses another value of the recipient axis by name (at the start, after 祝/亲爱的…, or before
    a comma), and never its own."""
    own = pl.col(f"ax_{vocab.axis}")
    names = "|".join(re.escape(p) for p in vocab.phrases())
    before, after = "|".join(re.escape(w) for w in ADDRESS_BEFORE), f"[{re.escape(ADDRESS_AFTER)}]"
    addressed = (
        pl.col("text")
        .str.extract_all(f"(?:^|{before})(?:{names})|(?:{names}){after}")
        .list.eval(pl.element().str.replace(f"^(?:{before})|{after}$", ""))
    )
    # An own name anywhere counts (祝爷爷奶奶… for 爷爷 names 奶奶 too, and is a fine wish).
    anywhere = pl.col("text").str.extract_many(vocab.phrases(), leftmost=True)
    mine, _ = _masks(anywhere, vocab, own)
    _, other = _masks(addressed, vocab, own)
    cond = (other & ~mine & own.is_in(vocab.values)).fill_null(False)
    return [("wrong_recipient", cond, _explain(vocab, own, addressed, "addresses"))]
