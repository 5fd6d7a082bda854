"""The veto on near-duplicate pairs: an edit that changes who, what or how many a text is about.

Edit similarity alone cannot tell "祝姐姐生日快乐…" from "祝妹妹生日快乐…": one word apart, 0.9 similar, yet a
different wish. Without the recipe's axes, the edit script itself says it: a pair is refused when the
edit between the two dedup keys (rapidfuzz `Levenshtein.opcodes`)

- ``block``: replaces a block of characters on both sides that share no character, three or more on
  each side, or two where both sides start with a surname or overlap a known word (姐姐→妹妹, 生日→春节,
  a different name): a word was swapped, not typos made;
- ``number``: replaces a numeral by another, or adds or drops one beside another (18岁→20岁, 三十→四十,
  第1年→第10年);
- ``negation``: adds, drops or swaps a negation (不, 没, 别, 无, 未, 非, 莫, 勿);
- ``kin``: swaps one kinship or address character for another (外公→外婆, 表哥→表姐, 老师→老板), or one
  common surname for another (王老师→李老师).

Only pairs whose edit could hold such a change are scripted (see `Verifier.needs`), so the Python loop
runs over a share of the pairs.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import Indel, Levenshtein

from zaoshu.cleaners.minhash import _P, _mix64, codepoints

VETOES = ("block", "number", "negation", "kin")
#: veto codes: 0 passes, i + 1 is VETOES[i]; UNCHECKED: not scripted, as it could change no cluster
PASS = 0
UNCHECKED = len(VETOES) + 1

NEGATION = frozenset("不没别无未非莫勿")
NUMERALS = frozenset("0123456789零一二三四五六七八九十百千万亿两")
# Characters that say who a wish is for: a kinship or address term changed in one character is another
# person (父/母, 公/婆, 哥/姐, 师/板), not a typo.
KIN = frozenset("父母爸妈爷奶公婆外哥姐弟妹兄嫂叔婶伯姑姨舅侄甥孙儿女夫妻媳婿岳师板总生徒长")
SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
#: Words of address and occasions: one character apart, still another person or day (老师/导师,
#: 室友/战友, 表妹/妹妹, 中秋/中考). Used where the recipe's axis values are not known.
WORDS = frozenset(
    (  # noqa: SIM905 - a list of words reads best as words
        "爸爸 妈妈 父亲 母亲 爷爷 奶奶 外公 外婆 姥姥 姥爷 哥哥 姐姐 弟弟 妹妹 叔叔 阿姨 舅舅 "
        "舅妈 伯伯 伯父 伯母 婶婶 姑姑 姑父 姑妈 姨妈 姨父 表哥 表姐 表弟 表妹 堂哥 堂姐 堂弟 "
        "堂妹 堂兄 儿子 女儿 孙子 孙女 外孙 侄子 侄女 老公 老婆 丈夫 妻子 媳妇 女婿 岳父 岳母 "
        "公公 婆婆 嫂子 姐夫 妹夫 弟媳 宝贝 宝宝 亲家 老师 导师 恩师 师父 师傅 师兄 师姐 师弟 "
        "师妹 学长 学姐 学弟 学妹 同学 同事 同桌 室友 舍友 战友 队友 朋友 好友 闺蜜 兄弟 领导 "
        "老板 老总 上司 下属 客户 医生 护士 教练 校长 班长 主任 经理 总裁 董事 邻居 房东 老乡 "
        "网友 男友 女友 先生 女士 小姐 生日 新年 春节 元旦 元宵 端午 中秋 重阳 七夕 除夕 小年 "
        "冬至 清明 国庆 圣诞 新婚 结婚 订婚 乔迁 开业 开学 毕业 升学 中考 高考 考研 退休 满月 "
        "周岁 百天 升职 加薪 出院 康复 情人节 教师节 母亲节 父亲节 儿童节 劳动节 妇女节 青年节 "
        "建军节 国庆节 中秋节 端午节 元宵节 重阳节 七夕节 圣诞节 感恩节 腊八节"
    ).split()
)
_WORD_CHARS = frozenset("".join(WORDS))


def _table(chars: frozenset[str]) -> np.ndarray:
    table = np.zeros(0x110000, dtype=bool)  # one entry per code point: a lookup, not a search
    table[[ord(c) for c in chars]] = True
    return table


_NEG_NUM = _table(NEGATION | NUMERALS)
_WHO = _table(KIN | SURNAMES | _WORD_CHARS)


def _subsequence_hash(cps: np.ndarray, offsets: np.ndarray, chars: np.ndarray) -> np.ndarray:
    """Per key: a 64-bit hash of the sequence of its characters that are in `chars`, a lookup table
    by code point (equal sequences,
    equal hashes): the sum over those characters of a mix of the character and its rank among them.

    numpy over all code points at once: a polars regex that deletes the other characters cost 5x."""
    keep = np.flatnonzero(chars[cps])
    first = np.searchsorted(keep, offsets)  # index in `keep` of each key's first kept character
    owner = np.repeat(np.arange(len(offsets) - 1), np.diff(first))
    rank = np.arange(len(keep)) - first[owner]
    with np.errstate(over="ignore"):
        mixed = _mix64(cps[keep].astype(np.uint64) * _P + rank.astype(np.uint64))
    out = np.zeros(len(offsets) - 1, dtype=np.uint64)
    some = np.flatnonzero(np.diff(first) > 0)
    if len(some):
        out[some] = np.add.reduceat(mixed, first[some])
    return out


def veto_hashes(keys: pl.Series, block: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Per key, what tells whether a pair needs its edit script: a hash of its numerals and negations,
    and one of its kinship, surname and address characters (equal hashes: an edit touched none)."""
    neg_num, who = [np.zeros(0, dtype=np.uint64)], [np.zeros(0, dtype=np.uint64)]
    for lo in range(0, len(keys), block):  # a block of code points at a time: 4 bytes a character
        cps, offsets = codepoints(keys.slice(lo, block))
        neg_num.append(_subsequence_hash(cps, offsets, _NEG_NUM))
        who.append(_subsequence_hash(cps, offsets, _WHO))
    return np.concatenate(neg_num), np.concatenate(who)


class Verifier:
    """The veto over pairs of rows of one key column, with its keys' `veto_hashes` (computed here
    unless given: the clean stage makes them in its first pass, where its workers share them out)."""

    def __init__(self, keys: pl.Series, hashes: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.neg_num, self.who = hashes if hashes is not None else veto_hashes(keys)

    def needs(
        self, ra: np.ndarray, rb: np.ndarray, a: np.ndarray, b: np.ndarray, *, workers: int = 1
    ) -> np.ndarray:
        """Per pair of rows ra[i], rb[i] with keys a[i], b[i]: 0 when its edit needs no script, 1 when
        only a swapped block could refuse it, 2 when its numerals, negations or names differ too."""
        lev = process.cpdist(a, b, scorer=Levenshtein.distance, workers=workers)
        indel = process.cpdist(a, b, scorer=Indel.distance, workers=workers)
        # What needs the script: two or more characters replaced (indel - lev counts replacements;
        # a block may be a swapped word), a replaced kinship, surname or address character, or an
        # added, dropped or replaced numeral or negation. One ordinary character replaced, inserted
        # or dropped, the usual edit of a copy, passes without it.
        subs = indel - lev
        numbers, who = self.neg_num[ra] != self.neg_num[rb], self.who[ra] != self.who[rb]
        look = (subs >= 2) | numbers | ((subs == 1) & who)
        return np.where(look, np.where(numbers | who, 2, 1), 0).astype(np.int8)

    def codes(
        self, ra: np.ndarray, rb: np.ndarray, a: np.ndarray, b: np.ndarray, *, workers: int = 1
    ) -> np.ndarray:
        """For rows ra[i], rb[i] with keys a[i], b[i]: PASS, or the code of the veto that refuses the pair."""
        if len(a) == 0:
            return np.zeros(0, dtype=np.int8)
        return script(a, b, self.needs(ra, rb, a, b, workers=workers))


def script(a: np.ndarray, b: np.ndarray, needs: np.ndarray) -> np.ndarray:
    """The veto's codes of pairs of keys by their `Verifier.needs`: the edit script of those that need it."""
    codes = np.zeros(len(a), dtype=np.int8)
    for i in np.flatnonzero(needs):
        codes[i] = _veto(a[i], b[i], named=needs[i] == 2)
    return codes


def _veto(a: str, b: str, *, named: bool = True) -> int:
    """The first veto (its code) the edit from key a to key b triggers, or PASS.

    `named`: the keys' numerals, negations or name characters differ. When they do not, only the block
    veto can refuse the pair (the other vetoes look for an edit of exactly those characters), and most
    pairs the check lets through are such copies: their edit script is read for blocks only."""
    ops = Levenshtein.opcodes(a, b).as_list()
    # two random typos side by side look like a two-character block too: a short block is a swapped
    # word only where both sides name someone or something (a surname, a known word)
    for i1, i2, j1, j2 in _regions(ops):
        if (i2 - i1 < 2 or j2 - j1 < 2) or (a[i1:i2] == b[j1:j2]):
            continue
        if (_names(a, i1, i2) and _names(b, j1, j2)) or (
            i2 - i1 >= 3 and j2 - j1 >= 3 and not set(a[i1:i2]) & set(b[j1:j2])
        ):
            return 1
    if not named:
        return PASS
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            continue
        sa, sb = set(a[i1:i2]), set(b[j1:j2])
        if (sa & NUMERALS and sb & NUMERALS) or (
            tag != "replace" and (_numeral_run(a, i1, i2) or _numeral_run(b, j1, j2))
        ):
            return 2
        # a negation added, dropped or swapped for another; 别 replaced by or for an ordinary character
        # is a typo as often as not (别人, 特别)
        na, nb = sa & NEGATION, sb & NEGATION
        if na != nb and (tag != "replace" or (na and nb) or (na | nb) - {"别"}):
            return 3
        if tag == "replace" and (
            (sa & KIN and sb & KIN)
            or (i2 - i1 == 1 and a[i1] in SURNAMES and b[j1] in SURNAMES)
            or ((sa | sb) & _WORD_CHARS and _word_swap(a, i1, i2, b, j1, j2))
        ):
            return 4
    return PASS


def _regions(ops: list) -> list[tuple[int, int, int, int]]:
    """The changed regions of an edit script: runs of non-equal operations merged (a name swapped for a
    longer one is a replace beside an insert)."""
    out: list[tuple[int, int, int, int]] = []
    cur: tuple[int, int, int, int] | None = None
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            if cur is not None:
                out.append(cur)
            cur = None
        else:
            cur = (i1, i2, j1, j2) if cur is None else (cur[0], i2, cur[2], j2)
    if cur is not None:
        out.append(cur)
    return out


def _names(text: str, lo: int, hi: int) -> bool:
    """Whether text[lo:hi] starts with a surname or overlaps a word of `WORDS`."""
    if text[lo] in SURNAMES:
        return True
    for size in (2, 3):
        for start in range(max(lo - size + 1, 0), hi):
            if text[start : start + size] in WORDS:
                return True
    return False


def _word_swap(a: str, i1: int, i2: int, b: str, j1: int, j2: int) -> bool:
    """Whether a word of `WORDS` covering a[i1:i2] became another one covering b[j1:j2]."""
    for size in (2, 3):
        for lead in range(size - (i2 - i1) + 1):
            wa = a[max(i1 - lead, 0) : i1 - lead + size]
            if wa not in WORDS:
                continue
            for lead_b in range(size - (j2 - j1) + 1):
                wb = b[max(j1 - lead_b, 0) : j1 - lead_b + size]
                if wb != wa and wb in WORDS:
                    return True
    return False


def _numeral_run(text: str, lo: int, hi: int) -> bool:
    """Whether text[lo:hi] holds a numeral that is part of a number (another numeral beside it)."""
    if not NUMERALS.intersection(text[lo:hi]):
        return False
    around = text[max(lo - 1, 0) : hi + 1]
    return sum(c in NUMERALS for c in around) >= 2
