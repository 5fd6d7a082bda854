"""A held-out near-duplicate set: short Chinese wishes in clusters of exact and near copies, with hard negatives.

    python3 benchmarks/heldout.py --rows 200000 --out /tmp/heldout.jsonl   # writes records + truth (.npz)

Seeded, nothing downloaded. Its vocabulary and templates are its own (not the wishes recipe's generator in
clean.py), so defaults tuned on one are checked on the other. Every true cluster has one kind:

- ``long``: a wish of 14-60 characters and its copies;
- ``short``: a wish under 12 key characters (a greeting and an idiom) and its copies;
- ``name``, ``relation``, ``scene``, ``number``, ``negation``: hard negatives, a wish and one or two siblings
  that differ only in who it is for (a name, a relation or title), the occasion, a number, or a negation.
  Each sibling is its own true cluster with its own copies: merging two siblings is a false merge.

Copies of an original: exact, punctuation/emoji/particle changes (same dedup key), a preamble or quotes
(normalization removes them), synonym swaps, and 1-3 random character edits (at most one per 8 characters).
With ``axes``, records carry recipient/scene/style axes as zaoshu's own generator writes them; without,
they carry none (data from elsewhere).
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

import numpy as np
import orjson

KINDS = ("long", "short", "name", "relation", "scene", "number", "negation")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂英华玉兰萍红鹏飞辉宇浩然欣怡晨阳婷雪琳梅建国志文斌凯佳俊"
TITLES = ["老师", "总", "经理", "阿姨", "叔叔", "医生", "师傅", "老板", "主任", "教授", "同学", "姐", "哥"]
RELATIONS = ["爸爸", "妈妈", "爷爷", "奶奶", "外公", "外婆", "哥哥", "姐姐", "弟弟", "妹妹", "叔叔", "阿姨", "舅舅",
             "舅妈", "姑姑", "姑父", "表哥", "表姐", "表弟", "表妹", "堂哥", "堂妹", "老师", "同学", "同事", "领导",
             "老板", "师傅", "医生", "护士", "班长", "校长", "闺蜜", "兄弟", "老公", "老婆", "女儿", "儿子", "岳父",
             "岳母", "公公", "婆婆", "师父", "学长", "学姐", "室友", "战友", "邻居", "导师", "教练"]  # fmt: skip
SCENES = ["生日", "新年", "春节", "元宵节", "端午节", "中秋节", "国庆节", "教师节", "母亲节", "父亲节", "圣诞节",
          "元旦", "七夕", "情人节", "重阳节", "儿童节", "劳动节", "除夕", "新婚", "乔迁之喜", "开业大吉", "毕业",
          "升学", "退休", "结婚纪念日", "高考", "出院", "满月", "周岁", "升职", "小年", "冬至", "妇女节"]  # fmt: skip
CN_NUM = "一二三四五六七八九十"
IDIOMS = re.findall(r"\S+", "万事如意 心想事成 前程似锦 岁岁平安 福如东海 寿比南山 阖家幸福 身体健康 工作顺利 步步高升 财源广进 "
          "笑口常开 平安喜乐 万事胜意 吉祥如意 鹏程万里 马到成功 一帆风顺 花开富贵 年年有余 喜气洋洋 事业有成 "
          "龙马精神 福寿安康 金玉满堂 春风得意 蒸蒸日上 大展宏图 心情愉快 幸福美满 阖家欢乐 健康长寿 青春永驻 "
          "学业进步 好运连连 顺风顺水 福星高照 紫气东来 三阳开泰 五福临门 六六大顺 前途无量 温暖如春 团团圆圆 "
          "甜甜蜜蜜 开开心心 平平安安 快快乐乐 喜上眉梢 神采奕奕 精神焕发 天天开心 美梦成真 好事成双 诸事顺遂 "
          "所愿皆成 心安体健 喜乐无忧 岁月静好 福气满满 前路坦荡 星河长明 四季平安 日日是好日 一路生花")  # fmt: skip
COMMON = ("的一是在了有和人这中大为上个我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说种面而方后多定"
          "行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因"
          "由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只结"
          "解问意建月公系很情者最立代想已通并提直题程展五果料象员位入常文总次品式活设及管特件长求老头基资边流路"
          "级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必先回则任取据处队南给色光门即保治北造百规"
          "热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务")  # fmt: skip
EMOJI = ["🎉", "🌟", "🌈", "💰", "🏡", "❤️", "🌸", "✨", "🎂", "🧧", "🌕", "🍀", "🎊", "💐", "😊"]
PREAMBLES = ["好的，以下是祝福语：", "当然可以！", "以下是为你写的祝福语：", "祝福语如下：", "好的，"]
PARTICLES = ["哦", "啦", "呀", "哟", "呢"]
SYNONYMS = [("您", "你"), ("如意", "顺意"), ("快乐", "愉快"), ("健康", "安康"), ("幸福", "美满"), ("愿", "祝"),
            ("一切", "所有"), ("顺利", "顺遂")]  # fmt: skip
# Clauses whose meaning a negation flips; {n} is where it goes (不, 别, 没, 无) or nothing.
NEGATABLE = ["愿你{n}再为琐事烦恼", "今年{n}用再熬夜加班", "希望你{n}忘初心", "这一年你{n}辜负自己", "愿你{n}被生活琐事打扰",
             "{n}要担心明天的风雨", "工作{n}再那么辛苦", "希望你{n}再孤单", "{n}要让自己太累", "你的努力{n}会白费",
             "愿烦恼{n}再找上门", "{n}要忘记当初的梦想", "愿你的生活{n}再平淡", "考试{n}要紧张", "{n}用为钱发愁"]  # fmt: skip
NEGATIONS = ["不", "别", "没", "无"]
SIZES = [1] * 55 + [2] * 20 + [3] * 12 + [4] * 8 + [5, 6, 7, 8, 6]
_KEY_DROP = re.compile(r"[\W_]+")


def char_edits(rng: random.Random, text: str, common: str, span: int) -> str:
    """1-3 edits of Chinese characters (replace, delete or insert one of `common`), at most one per 8
    characters of `span`: three edits of an 8-character wish make another wish."""
    chars = list(text)
    for _ in range(min(rng.choice((1, 1, 2, 3)), max(1, span // 8))):
        pos = [i for i, c in enumerate(chars) if "\u4e00" <= c <= "\u9fff"]
        if not pos:
            break
        i = rng.choice(pos)
        op = rng.random()
        if op < 0.5:
            chars[i] = rng.choice(common)
        elif op < 0.75:
            del chars[i]
        else:
            chars.insert(i, rng.choice(common))
    return "".join(chars)


def _key(text: str) -> str:
    return _KEY_DROP.sub("", text)


def _same(text: str) -> str:
    """What makes two originals the same wish: the key without a leading 祝 or trailing particles (a copy
    may add or drop those, so two originals differing only there would be one wish under two labels)."""
    return _key(text).removeprefix("祝").rstrip("".join(PARTICLES))


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.phrases = list(IDIOMS)
        while len(self.phrases) < 30000:
            self.phrases.append("".join(rng.choice(COMMON) for _ in range(rng.choice((2, 3, 4, 4)))))

    def name(self) -> str:
        rng = self.rng
        given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
        return (
            rng.choice(SURNAMES) + given if rng.random() < 0.5 else rng.choice(SURNAMES) + rng.choice(TITLES)
        )

    def tail(self, limit: int) -> str:
        """Blessing phrases joined by commas, up to `limit` characters (at least two phrases)."""
        rng = self.rng
        parts: list[str] = []
        text = ""
        while True:
            piece = rng.choice(self.phrases)
            sep = rng.choice("，，、") if parts else ""
            if len(text) + len(sep) + len(piece) > limit and len(parts) >= 2:
                break
            parts.append(piece)
            text += sep + piece
        return text + rng.choice(("！", "。", "~", "！" + rng.choice(PARTICLES) + "~"))

    def slot_wish(self, kind: str) -> tuple[str, list[str], str, str]:
        """A wish with one slot of `kind`, the values for its siblings, and its recipient and scene."""
        rng = self.rng
        limit = rng.choice((16, 24, 36, 48))
        recipient, scene = rng.choice(RELATIONS), rng.choice(SCENES)
        if kind == "name":
            values = list(dict.fromkeys(self.name() for _ in range(3)))  # distinct, in a seeded order
            tpl = rng.choice(
                ("祝{v}{s}快乐，", "亲爱的{v}，{s}快乐！", "{v}，祝你{s}快乐，", "给{v}的{s}祝福：")
            )
            return tpl.replace("{s}", scene) + self.tail(limit), values, "{v}", scene
        if kind == "relation":
            values = rng.sample(RELATIONS, 3)
            tpl = rng.choice(
                ("祝{v}{s}快乐，", "亲爱的{v}，{s}快乐！", "{v}，祝您{s}快乐，", "送给{v}：{s}快乐，")
            )
            return tpl.replace("{s}", scene) + self.tail(limit), values, "{v}", scene
        if kind == "scene":
            values = rng.sample(SCENES, 3)
            tpl = rng.choice(("祝{r}{v}快乐，", "{r}，{v}快乐！", "值此{v}之际，祝{r}", "{v}到了，祝{r}"))
            return tpl.replace("{r}", recipient) + self.tail(limit), values, "{v}", scene
        if kind == "number":
            if rng.random() < 0.5:
                values = [str(v) for v in rng.sample(range(2, 100), 3)]
            else:
                values = [rng.choice(CN_NUM[1:9]) + "十" + rng.choice(("", *CN_NUM[:9])) for _ in range(3)]
                values = list(dict.fromkeys(values))
            tpl = rng.choice(
                (
                    "祝{r}{v}岁生日快乐，",
                    "{r}，结婚{v}周年快乐！",
                    "恭喜{r}考了{v}分，",
                    "{r}，这是我们相识的第{v}年，",
                )
            )
            return tpl.replace("{r}", recipient) + self.tail(limit), values, "{v}", scene
        # negation: the same clause with and without (or with another) negation word
        clause = rng.choice(NEGATABLE)
        values = ["", *rng.sample(NEGATIONS, 2)]
        head = rng.choice(("祝{r}{s}快乐，", "{r}，", ""))
        text = head.replace("{r}", recipient).replace("{s}", scene) + clause.replace("{n}", "{v}") + "，"
        return text + self.tail(limit), values, "{v}", scene

    def short(self) -> tuple[str, str, str]:
        rng = self.rng
        recipient, scene = rng.choice(RELATIONS), rng.choice(SCENES)
        idiom = rng.choice(IDIOMS[:60])
        form = rng.random()
        if form < 0.4:
            text = f"{scene}快乐，{idiom}"
        elif form < 0.7:
            text = f"祝{recipient}{scene}快乐"
        elif form < 0.85:
            text = f"{recipient}，{idiom}"
        else:
            text = f"祝{recipient}{idiom}"
        text += rng.choice(("！", "。", "~", "", "！" + rng.choice(PARTICLES)))
        return text, recipient, scene

    def long(self) -> tuple[str, str, str]:
        rng = self.rng
        recipient, scene = rng.choice(RELATIONS), rng.choice(SCENES)
        head = ""
        if rng.random() < 0.4:
            head = rng.choice(("祝{r}{s}快乐，", "亲爱的{r}，", "{s}快乐！", "愿你", "祝你"))
            head = head.replace("{r}", recipient).replace("{s}", scene)
        return head + self.tail(rng.choice((14, 20, 28, 40, 56))), recipient, scene

    def edit(self, text: str) -> str:
        """A near copy."""
        rng = self.rng
        kind = rng.random()
        if kind < 0.15:  # punctuation
            return text.replace("，", rng.choice((",", "、", "！", " ", "，"))).replace(
                "！", rng.choice(("!", "。", "～"))
            )
        if kind < 0.25:  # emoji
            return text + rng.choice(EMOJI) if rng.random() < 0.7 else rng.choice(EMOJI) + text
        if kind < 0.33:  # preamble or quotes
            return rng.choice(PREAMBLES) + text if rng.random() < 0.7 else "“" + text + "”"
        if kind < 0.43:  # a particle added or a synonym swapped
            hits = [(a, b) for a, b in SYNONYMS if a in text]
            if hits and rng.random() < 0.6:
                a, b = rng.choice(hits)
                return text.replace(a, b, 1)
            end = len(text.rstrip("！。~!"))
            return text[:end] + rng.choice(PARTICLES) + text[end:]
        return char_edits(rng, text, COMMON, len(_key(text)))


def generate(rows: int, seed: int) -> tuple[list[tuple[int, int, bool, str, str, str]], int]:
    """(cluster, kind, is_original, text, recipient, scene) rows in file order, and the cluster count."""
    g = _Gen(seed)
    rng = g.rng
    out: list[tuple[int, int, bool, str, str, str]] = []
    seen: dict[str, int] = {}  # original keys: a generated original that already exists is not a new cluster
    cluster = 0
    while len(out) < rows:
        draw = rng.random()
        if draw < 0.06:
            kind = KINDS[2 + int(rng.random() * 5)]
            text, values, slot, scene = g.slot_wish(kind)
            group = [
                (
                    text.replace(slot, v),
                    v if kind in ("name", "relation") else "",
                    v if kind == "scene" else scene,
                )
                for v in values
            ]
            n_sib = rng.choice((2, 2, 3))
            group = group[:n_sib]
        elif draw < 0.16:
            kind = "short"
            text, rec, sc = g.short()
            group = [(text, rec, sc)]
        else:
            kind = "long"
            text, rec, sc = g.long()
            group = [(text, rec, sc)]
        keys = [_same(t) for t, _, _ in group]
        if any(k in seen for k in keys) or len(set(keys)) < len(keys):
            continue
        for (text, rec, sc), key in zip(group, keys, strict=True):
            seen[key] = cluster
            out.append((cluster, KINDS.index(kind), True, text, rec, sc))
            for _ in range(rng.choice(SIZES) - 1):
                out.append((cluster, KINDS.index(kind), False, g.edit(text), rec, sc))
            cluster += 1
    out = out[:rows]
    rng.shuffle(out)
    return out, cluster


def build(rows: int, seed: int, path: Path, *, axes: bool) -> dict[str, np.ndarray]:
    """Write `rows` records to `path`; returns per row (file order) its true cluster, kind and is-original."""
    data, _ = generate(rows, seed)
    cluster = np.fromiter((r[0] for r in data), dtype=np.int64, count=len(data))
    kind = np.fromiter((r[1] for r in data), dtype=np.int8, count=len(data))
    original = np.fromiter((r[2] for r in data), dtype=bool, count=len(data))
    with open(path, "wb") as f:
        buf: list[bytes] = []
        for i, (_, _, _, text, rec, sc) in enumerate(data):
            record: dict = {"id": f"h{i:09d}"}
            if axes:
                record["axes"] = {"recipient": rec or "朋友", "scene": sc, "style": "自由"}
            record["messages"] = [
                {"role": "user", "content": "写一条祝福语"},
                {"role": "assistant", "content": text},
            ]
            buf.append(orjson.dumps(record))
            if len(buf) >= 65536:
                f.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            f.write(b"\n".join(buf) + b"\n")
    return {"cluster": cluster, "kind": kind, "original": original}


def pair_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, int]:
    """Pair precision, recall, F1 of predicted clusters against true ones; and the true pair count."""

    def pairs(counts: np.ndarray) -> int:
        return int((counts * (counts - 1) // 2).sum())

    if len(pred) == 0:
        return 1.0, 1.0, 1.0, 0
    _, joint = np.unique(np.stack([pred, truth]), axis=1, return_counts=True)
    tp = pairs(joint)
    p_all = pairs(np.unique(pred, return_counts=True)[1])
    t_all = pairs(np.unique(truth, return_counts=True)[1])
    precision = tp / p_all if p_all else 1.0
    recall = tp / t_all if t_all else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, t_all


def score(pred: np.ndarray, scored: np.ndarray, truth: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Overall and per-kind pair P/R/F1, distinct rows removed, and wrongly removed originals per kind.

    `pred[i]` is the row that row i was kept as (itself when kept); rows not `scored` (another rule
    rejected them) are left out. A row is wrongly removed when its kept row is of another true cluster.
    """
    cluster, kind, original = truth["cluster"], truth["kind"], truth["original"]
    rows = np.flatnonzero(scored)
    p, r, f, pairs = pair_scores(pred[rows], cluster[rows])
    wrong = scored & (cluster[pred] != cluster)
    overall = {"precision": p, "recall": r, "f1": f, "true_pairs": pairs, "rows": len(rows),
               "wrongly_removed": int(wrong.sum())}  # fmt: skip
    out: dict[str, dict[str, float]] = {"all": overall}
    for k, name in enumerate(KINDS):
        sel = rows[kind[rows] == k]
        p, r, f, pairs = pair_scores(pred[sel], cluster[sel])
        orig = scored & original & (kind == k)
        out[name] = {"precision": p, "recall": r, "f1": f, "true_pairs": pairs, "rows": len(sel),
                     "originals": int(orig.sum()), "originals_removed": int((orig & wrong).sum())}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--axes", action="store_true")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    truth = build(args.rows, args.seed, args.out, axes=args.axes)
    np.savez(args.out.with_suffix(".truth.npz"), **truth)
    counts = np.bincount(truth["kind"][truth["original"]], minlength=len(KINDS))
    print(
        f"{args.rows:,} rows -> {args.out}; originals per kind: {dict(zip(KINDS, counts.tolist(), strict=True))}"
    )


if __name__ == "__main__":
    main()
