"""Normalizers: the junk models add around a wish (二次清洗), idempotence and never emptying a wish."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zaoshu.cleaners.normalize import dedup_key, dedup_keys, key_expr, normalize_frame, normalize_text

CASES = [
    # leading punctuation and particles left by the style's modal particles (the seed's examples)
    ("！啦~祝你生日快乐，天天开心🎉", "祝你生日快乐，天天开心🎉", ["leading_punct"]),
    ("。哦！愿你前程似锦，万事胜意", "愿你前程似锦，万事胜意", ["leading_punct"]),
    ("~新年快乐，阖家幸福", "新年快乐，阖家幸福", ["leading_punct"]),
    ("，万事如意，心想事成", "万事如意，心想事成", ["leading_punct"]),
    # wrapping quotes (the seed stripped '"' everywhere; we only strip a wrapping pair)
    ('"祝你生日快乐！"', "祝你生日快乐！", ["quotes"]),
    ("“祝赵老师桃李满天下”", "祝赵老师桃李满天下", ["quotes"]),
    ("「岁岁平安，年年有余」", "岁岁平安，年年有余", ["quotes"]),
    ("'万事胜意'", "万事胜意", ["quotes"]),
    # preambles: talk about the answer
    ("当然可以！祝赵老师生日快乐，桃李满天下。", "祝赵老师生日快乐，桃李满天下。", ["preamble"]),
    ("好的，以下是为赵老师写的祝福语：祝您生日快乐，身体健康", "祝您生日快乐，身体健康", ["preamble"]),
    ("以下是为赵老师写的祝福语：祝您生日快乐", "祝您生日快乐", ["preamble"]),
    ("祝福语如下：新春快乐，阖家幸福", "新春快乐，阖家幸福", ["preamble"]),
    ("当前祝福语如下：祝你中秋快乐", "祝你中秋快乐", ["preamble"]),
    # extra lines: keep the first non-empty line (a preamble line before it is dropped)
    ("祝你生日快乐！\n\n这条祝福语简洁大方。", "祝你生日快乐！", ["first_line"]),
    ("好的，以下是祝福语：\n祝姐姐生日快乐！", "祝姐姐生日快乐！", ["first_line"]),
    ("\n\n  祝你快乐\n另一条", "祝你快乐", ["first_line"]),
    ("<think>先想一想</think>祝你快乐", "祝你快乐", ["think"]),
    # whitespace
    ("祝你  生日\t快乐", "祝你 生日 快乐", ["whitespace"]),
    ("  祝你平安  ", "祝你平安", ["first_line"]),
    # combined: quotes inside a preamble, a preamble inside quotes
    ("好的：“祝你快乐，万事如意”", "祝你快乐，万事如意", ["preamble", "quotes"]),
    ("“好的，祝你快乐”", "祝你快乐", ["preamble", "quotes"]),
]

UNCHANGED = [
    "好的开始是成功的一半，祝你新学期顺利",  # "好的" without punctuation is content
    "「福」到了，祝你新年快乐",  # an opening bracket that does not wrap the text
    "“福”字倒贴，福气到家",
    "祝你生日快乐🎂，天天开心！",
    "🌕🎉 哥，中秋月圆人团圆",  # a leading emoji is content (小红书)
    "愿所念之人 平安喜乐。愿所想之事 顺心如意！",
    "当前祝福语如下",  # meta text is a rule's job (meta_text), not the normalizer's
]


@pytest.mark.parametrize(("raw", "expected", "changes"), CASES)
def test_junk_is_normalized(raw: str, expected: str, changes: list[str]) -> None:
    frame = normalize_frame(pl.Series([raw]))
    assert frame["text"][0] == expected
    assert frame["changes"][0].to_list() == changes


@pytest.mark.parametrize("text", UNCHANGED)
def test_clean_text_is_left_alone(text: str) -> None:
    frame = normalize_frame(pl.Series([text]))
    assert frame["text"][0] == text
    assert frame["changes"][0].to_list() == []


def test_text_that_would_vanish_keeps_its_first_line() -> None:
    # "好的" alone would be stripped as a preamble: the text is kept for the rules to judge
    assert normalize_text("好的") == "好的"
    assert normalize_text("好的！\n\n") == "好的！"
    assert normalize_text("！！！") == ""  # nothing but punctuation: empty, rejected by the `empty` rule
    assert normalize_text("   \n ") == ""


def test_dedup_key_ignores_width_case_punctuation_spaces_and_emoji() -> None:
    assert dedup_key("ＡＢＣ，祝你 生日快乐🎉❤️！") == dedup_key("abc祝你生日快乐")
    assert dedup_key("祝你生日快乐！👨‍👩‍👧") == "祝你生日快乐"
    assert dedup_key("🇨🇳 中国") == "中国"


WISH_CHARS = "祝你生日快乐天天开心万事如意前程似锦岁岁平安福如东海姐姐老师"
JUNK = [
    "！",
    "。",
    "~",
    "，",
    "啦",
    "哦",
    "“",
    "”",
    '"',
    "「",
    "」",
    " ",
    "\n",
    "：",
    "好的",
    "当然可以",
    "以下是",
    "如下",
    "🎉",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(WISH_CHARS) + JUNK), max_size=30))
def test_normalizing_is_idempotent(parts: list[str]) -> None:
    text = "".join(parts)
    once = normalize_text(text)
    assert normalize_text(once) == once


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(JUNK), max_size=6),
    st.text(alphabet=WISH_CHARS, min_size=1, max_size=40),
    st.lists(st.sampled_from(JUNK), max_size=6),
)
def test_a_wish_is_never_emptied(before: list[str], wish: str, after: list[str]) -> None:
    text = "".join(before) + wish + "".join(after)
    assert normalize_text(text) != ""


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_normalizes_idempotently(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), min_size=1, max_size=20))
def test_fast_dedup_keys_match_the_full_expression(texts: list[str]) -> None:
    series = pl.Series(texts, dtype=pl.Utf8)
    assert dedup_keys(series).to_list() == pl.select(key_expr(pl.lit(series))).to_series().to_list()
