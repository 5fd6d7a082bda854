"""Normalizers: change the assistant text, never drop it; every change is named.

All steps are polars string/regex expressions (Rust regex, run over whole columns), applied until nothing
changes, so normalizing normalized text is a no-op. A step that would leave no text at all is undone for
that row (the whole first line is kept instead), so a reply is only ever rejected by a rule, never emptied
here. `normalize_text` runs the same expressions on one string for callers outside a frame.
"""

from __future__ import annotations

import polars as pl

# Opening brackets and quotes are content ("「福」到了"); every other punctuation mark at the start is debris.
_OPEN = r"“‘「『（(《【〈\[{\"'"
_STRAY = rf"[[\p{{P}}~～]--[{_OPEN}]]"
_PARTICLE = "[啦哦呀嘛呢吧哟噢喔]"
_TALK = r"(?:以下是|下面是|这里是|这是|如下|为您|为你|给您|给你|祝福语|祝福文案|文案)"
_ACK = r"(?:当然可以|当然|好的|好嘞|没问题|可以的|收到)"

_THINK = r"(?s)^\s*<think>.*?</think>\s*"
# Whole lines of talk before the wish: "好的，以下是为赵老师写的祝福语：" or a lone "当然可以！".
_PREAMBLE_LINES = (
    rf"^(?:[^\S\n]*(?:[^\n]{{0,30}}{_TALK}[^\n]{{0,30}}[：:]|{_ACK}[！!。.，,~～：:]*)[^\S\n]*\n\s*)+"
)
_FIRST_LINE = r"(?s)\n.*$"
# Lines with nothing a person would read (a lone "：", "---", "###") before the first real line.
_NO_CONTENT_LINES = r"^(?:[^\p{L}\p{N}\p{So}\n]*\n)+"
# Talk at the start of the kept line: "当然可以！", "好的，", "以下是…：", "祝福语如下：".
_PREAMBLE_INLINE = (
    rf"^(?:{_ACK}[！!。.，,~～：:\s]+)?(?:(?:以下是|下面是|这里是|这是)[^：:\n]{{0,30}}[：:]\s*|"
    rf"[^：:\n]{{0,20}}(?:祝福语|祝福文案|文案)(?:如下|是)?[：:]\s*|[^：:\n]{{0,20}}如下[：:]\s*)?"
)
_ACK_ONLY = rf"^{_ACK}[！!。.，,~～：:\s]+"
# A reply wrapped whole in one pair of quotes.
_QUOTES = [rf"^{a}([^{a}{b}]+){b}$" for a, b in ('""', "“”", "「」", "『』", "''", "‘’")]
_LEADING = rf"^(?:{_PARTICLE}{{0,2}}(?:{_STRAY}|\s)+)+"
_SPACES = r"\s+"
_CONTENT = r"[\p{L}\p{N}\p{So}]"


#: each step by its change code (written to `meta.clean.changes`), in the order the steps run: (pattern,
#: replacement) pairs applied in order; `*` marks replace_all, "strip" strips
_STEPS = {
    "think": [(r"*\r\n?|\x{2028}|\x{2029}", "\n"), (_THINK, "")],
    "first_line": [("strip", ""), (_NO_CONTENT_LINES, ""), (_PREAMBLE_LINES, ""), (_FIRST_LINE, "")],
    "preamble": [(_PREAMBLE_INLINE, ""), (_ACK_ONLY, "")],
    "quotes": [(p, "${1}") for p in _QUOTES],
    "leading_punct": [(_LEADING, "")],
    "whitespace": [("*" + _SPACES, " "), ("strip", "")],
}
STEPS = tuple(_STEPS)


def _apply(expr: pl.Expr, ops: list[tuple[str, str]]) -> pl.Expr:
    for pattern, repl in ops:
        if pattern == "strip":
            expr = expr.str.strip_chars()
        elif pattern.startswith("*"):
            expr = expr.str.replace_all(pattern[1:], repl)
        else:
            expr = expr.str.replace(pattern, repl)
    return expr


def _fallback(original: pl.Expr) -> pl.Expr:
    """What a row keeps when the steps would empty it: its first non-empty line, spaces collapsed."""
    return (
        original.str.replace_all(r"\r\n?|\x{2028}|\x{2029}", "\n")
        .str.strip_chars()
        .str.replace(_NO_CONTENT_LINES, "")
        .str.replace(_FIRST_LINE, "")
        .str.replace_all(_SPACES, " ")
        .str.strip_chars()
    )


def _one_pass(frame: pl.DataFrame, src: str) -> pl.DataFrame:
    """Run every step once on column `src`; adds `_out` and one boolean `_c_<step>` per step.

    Each step is materialized as its own column so polars evaluates it once (a nested chain of
    expressions compared step by step would be recomputed for every comparison).
    """
    lazy = frame.lazy()
    prev = src
    for name, ops in _STEPS.items():
        lazy = lazy.with_columns(_apply(pl.col(prev), ops).alias(f"_s_{name}"))
        lazy = lazy.with_columns((pl.col(f"_s_{name}") != pl.col(prev)).alias(f"_c_{name}"))
        prev = f"_s_{name}"
    return lazy.with_columns(pl.col(prev).alias("_out")).collect()


# Every row a step could change matches this (newlines, odd spaces, a colon, a mark or talk at the start);
# rows that do not are already normalized and skip the steps (most rows of real data).
_DIRTY = (
    r"^\s|\s$|\s\s|[^\S ]|\x{2028}|\x{2029}|[：:]|"
    rf"^(?:\p{{P}}|[~～<]|{_PARTICLE}|{_ACK}|以下|下面|这里|这是)|^[^\n]{{0,20}}如下"
)


#: passes of the steps at most (each pass runs on the rows the one before changed)
_MAX_PASSES = 5


def normalize_frame(texts: pl.Series, *, _inner: bool = False) -> pl.DataFrame:
    """Normalize a column of texts. Returns columns `text` (normalized) and `changes` (list of step codes).

    Only rows matching a cheap "could change" pattern go through the steps.
    """
    texts = texts.fill_null("").rename("orig")
    dirty = texts.str.contains(_DIRTY)
    if not dirty.any():
        empty = pl.Series("changes", [[]] * len(texts), dtype=pl.List(pl.Utf8))
        return pl.DataFrame({"text": texts, "changes": empty})
    idx = dirty.arg_true()
    part = _normalize_all(texts.gather(idx), _inner=_inner)
    text = texts.scatter(idx, part["text"]).rename("text")
    moved = part.select(pl.Series("i", idx), "changes")
    changes = (  # a join: polars cannot scatter into a list column
        pl.DataFrame({"i": pl.int_range(len(texts), eager=True, dtype=idx.dtype)})
        .join(moved, on="i", how="left", maintain_order="left")
        .select(pl.col("changes").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))))
        .to_series()
    )
    return pl.DataFrame({"text": text, "changes": changes})


def _normalize_all(texts: pl.Series, *, _inner: bool) -> pl.DataFrame:
    """`normalize_frame` of rows that may change.

    Steps repeat on the rows that still change (a quote inside a preamble, a preamble inside quotes) until
    a pass changes nothing, which is what makes the result idempotent.
    """
    frame = pl.DataFrame({"orig": texts, "cur": texts})
    changed = {name: pl.Series(f"_c_{name}", [False] * len(frame), dtype=pl.Boolean) for name in STEPS}
    index = pl.Series("idx", range(len(frame)), dtype=pl.UInt32)
    active = frame.with_columns(index)
    for _ in range(_MAX_PASSES):
        passed = _one_pass(active.select("cur"), "cur").with_columns(active["idx"])
        moved = passed.filter(pl.col("_out") != pl.col("cur"))
        if moved.height == 0:
            break
        idx = moved["idx"]
        cur = frame["cur"].scatter(idx, moved["_out"])
        frame = frame.with_columns(cur)
        for name in STEPS:
            flags = moved[f"_c_{name}"]
            if flags.any():
                changed[name] = changed[name].scatter(idx.filter(flags), True)
        active = pl.DataFrame({"cur": moved["_out"], "idx": idx})
    has_content = pl.col("cur").str.contains(_CONTENT)
    orig_has = pl.col("orig").str.contains(_CONTENT)
    frame = frame.with_columns(*changed.values())
    frame = frame.with_columns(
        pl.when(~has_content & orig_has)
        .then(_fallback(pl.col("orig")))
        .otherwise(pl.col("cur"))
        .alias("text")
    )
    fell_back = (pl.col("text") != pl.col("cur")) & ~has_content
    change_list = pl.concat_list(
        [pl.when(pl.col(f"_c_{name}")).then(pl.lit(name)).otherwise(None) for name in STEPS]
    ).list.drop_nulls()
    frame = frame.with_columns(
        pl.when(fell_back)
        .then(
            pl.when(pl.col("text") != pl.col("orig"))
            .then(pl.concat_list([pl.lit("first_line")]))
            .otherwise(pl.lit([], dtype=pl.List(pl.Utf8)))
        )
        .otherwise(change_list)
        .alias("changes")
    )
    # The kept line may itself normalize to something with content ("好的！\n：祝你快乐" style input);
    # one more pass over fallback rows makes the result a fixed point either way.
    fb = frame["text"].filter(frame.select(fell_back).to_series())
    if len(fb) and not _inner:
        again = normalize_frame(fb, _inner=True)
        idx = frame.select(fell_back.arg_true()).to_series()
        frame = frame.with_columns(frame["text"].scatter(idx, again["text"]))
    # A change flag can be set by a step that a later step undid; only rows whose text moved report changes.
    frame = frame.with_columns(
        pl.when(pl.col("text") == pl.col("orig"))
        .then(pl.col("changes").list.slice(0, 0))
        .otherwise(pl.col("changes"))
        .alias("changes")
    )
    return frame.select("text", "changes")


def normalize_text(text: str) -> str:
    """Normalize one text (the same expressions as a column; for tests and one-off callers)."""
    return normalize_frame(pl.Series([text], dtype=pl.Utf8))["text"][0]


# The dedup key: NFKC, lower case, without punctuation, symbols (emoji), spaces, joiners and selectors.
_KEY_DROP = r"[\p{P}\p{S}\p{Z}\s\p{Cf}\p{Cc}\x{FE00}-\x{FE0F}\p{Me}]+"


def key_expr(text: pl.Expr) -> pl.Expr:
    """Exact-duplicate key of a normalized text; also what near-dup shingles are cut from."""
    return text.str.normalize("NFKC").str.to_lowercase().str.replace_all(_KEY_DROP, "")


#: the Unicode blocks that hold most emoji (a character class body)
EMOJI_BLOCKS = r"\x{1F000}-\x{1FAFF}\x{2600}-\x{27BF}"

# Text made only of these needs no NFKC or case folding for its key (CJK, lower ASCII, punctuation,
# common emoji); other rows (full-width letters, upper case, compatibility characters) take the full path.
_FOLD_FREE = (
    r"^[\x{00}-\x{40}\x{5B}-\x{7F}\x{4E00}-\x{9FFF}\x{3000}-\x{3029}\x{3030}-\x{3037}\x{303B}-\x{303F}\x{FF01}-\x{FF0F}"
    r"\x{FF1A}-\x{FF20}\x{FF3B}-\x{FF40}\x{FF5B}-\x{FF65}\x{2010}-\x{2016}\x{2018}-\x{2027}"
    rf"{EMOJI_BLOCKS}\x{{FE0F}}\x{{200D}}]*$"
)


def dedup_keys(texts: pl.Series) -> pl.Series:
    """`key_expr` over a column: rows that need no folding only lose their punctuation and symbols."""
    texts = texts.fill_null("")
    keys = texts.str.replace_all(_KEY_DROP, "").rename("key")
    fold = ~texts.str.contains(_FOLD_FREE)
    if fold.any():
        idx = fold.arg_true()
        keys = keys.scatter(idx, pl.select(key_expr(pl.lit(texts.gather(idx)))).to_series())
    return keys


def dedup_key(text: str) -> str:
    return pl.select(key_expr(pl.lit(text, dtype=pl.Utf8))).item()
