"""Exact and near duplicates: edits are caught, hard negatives stay apart, datasketch's MinHash holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clean_builders import read, record, write
from datasketch import MinHash

from zaoshu.cleaners import CleanOptions, NearDupConfig, clean
from zaoshu.cleaners.dedup import SKETCH_COLUMNS, components, near_heads, sketch, veto_batch
from zaoshu.cleaners.minhash import codepoints, lsh_bands, lsh_params, shingle_hash
from zaoshu.cleaners.verify import VETOES
from zaoshu.recipes import load_recipe

BASE = "祝姐姐生日快乐，愿你前程似锦，岁岁平安，万事胜意！"
EDITS = [
    "祝姐姐生日快乐,愿你前程似锦、岁岁平安。万事胜意!",  # punctuation swaps
    "祝姐姐生日快乐🎂，愿你前程似锦，岁岁平安，万事胜意！🎉",  # emoji added
    "祝姐姐生日快乐，愿你前途似锦，岁岁平安，万事胜意！",  # 1 character changed
    "祝姐姐生日快乐，愿你前程似锦，岁岁安，万事胜意呀！",  # 2 characters (one deleted, one added)
    "祝姐姐生日快乐，愿你前程锦绣，岁岁平安，万事顺意！",  # 3 characters changed
    "好的，以下是祝福语：祝姐姐生日快乐，愿你前程似锦，岁岁平安，万事胜意！",  # a preamble
    "“祝姐姐生日快乐，愿你前程似锦，岁岁平安，万事胜意！”",  # quotes
]
HARD_NEGATIVES = [
    "祝妹妹生日快乐，愿你前程似锦，岁岁平安，万事胜意！",  # another recipient
    "祝姐姐春节快乐，愿你前程似锦，岁岁平安，万事胜意！",  # another scene
    "祝哥哥春节快乐，愿你前程似锦，岁岁平安，万事胜意！",
]
DISTINCT = [
    "尊敬的赵老师，值此佳辰，恭祝您福寿安康，桃李满天下。",
    "新春快乐，阖家幸福，财源广进！",
    "愿你乔迁之喜，福满新居，日子红红火火。",
]


@pytest.fixture(scope="module")
def recipe():
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "prompts" / "wishes.yaml")
    # Every text here goes into a record for 姐姐 · 生日: the keyword rules would test the axes, not dedup.
    recipe.clean = {**recipe.clean, "disable": ["off_topic", "wrong_recipient"]}
    return recipe


def _run(tmp_path: Path, texts: list[str], recipe, **options) -> tuple[list[dict], list[dict]]:
    recs = [record(t, style="自由") for t in texts]  # a style without length or emoji rules
    src = write(tmp_path / "in.jsonl", recs)
    out = tmp_path / "out.jsonl"
    stats = clean([src], out, recipe=recipe, options=CleanOptions(**options))
    kept, rejects = read(out), read(tmp_path / "out.rejects.jsonl")
    assert stats.kept + stats.rejected_total == stats.read == len(texts)
    return kept, rejects


def test_edited_copies_are_near_duplicates_of_the_first(tmp_path: Path, recipe) -> None:
    kept, rejects = _run(tmp_path, [BASE, *EDITS, *DISTINCT], recipe)
    first = kept[0]["id"]
    assert [k["messages"][-1]["content"] for k in kept] == [BASE, *DISTINCT]
    assert len(rejects) == len(EDITS)
    for r in rejects:
        assert r["reject"]["reason"] in ("duplicate", "near_duplicate")
        assert r["reject"]["duplicate_of"] == first


def test_same_wish_for_another_recipient_or_scene_is_kept(tmp_path: Path, recipe) -> None:
    kept, rejects = _run(tmp_path, [BASE, *HARD_NEGATIVES, EDITS[2]], recipe)
    assert len(kept) == 1 + len(HARD_NEGATIVES), rejects
    assert rejects[0]["messages"][-1]["content"] == EDITS[2]
    assert rejects[0]["reject"]["duplicate_of"] == kept[0]["id"]


def test_a_text_naming_no_recipient_does_not_chain_two_recipients(tmp_path: Path, recipe) -> None:
    texts = [
        "祝你生日快乐，愿你前程似锦，岁岁平安，万事胜意！",
        "祝姐姐生日快乐，愿你前程似锦，岁岁平安，万事胜意！",
        "祝妹妹生日快乐，愿你前程似锦，岁岁平安，万事胜意！",
    ]
    kept, _ = _run(tmp_path, texts, recipe)
    kept_texts = [k["messages"][-1]["content"] for k in kept]
    assert texts[0] in kept_texts
    # 姐姐 may merge into the neutral text, but 妹妹 must not end in the same cluster as 姐姐
    assert texts[2] in kept_texts


def test_short_wishes_one_edit_apart(tmp_path: Path, recipe) -> None:
    texts = [
        "新年快乐万事如意",
        "新年快乐万事顺意",
        "新年快乐万事如意呀",
        "生日快乐身体健康",
        "中秋快乐阖家团圆",
    ]
    kept, rejects = _run(tmp_path, texts, recipe, lsh_threshold=0.9)  # candidates from deletions alone
    assert {r["messages"][-1]["content"] for r in rejects} == {"新年快乐万事顺意", "新年快乐万事如意呀"}
    assert len(kept) == 3


NO_AXES_SIBLINGS = [
    "祝姐姐生日快乐，愿你前程似锦，岁岁平安，万事胜意！",
    "祝妹妹生日快乐，愿你前程似锦，岁岁平安，万事胜意！",  # a relation (a block of two characters)
    "祝表姐生日快乐，愿你前程似锦，岁岁平安，万事胜意！",  # a relation, one character apart
    "祝姐姐春节快乐，愿你前程似锦，岁岁平安，万事胜意！",  # a scene
    "王老师，祝您教师节快乐，桃李满天下，身体健康，万事如意！",
    "李老师，祝您教师节快乐，桃李满天下，身体健康，万事如意！",  # a surname
    "祝爷爷八十岁生日快乐，福如东海，寿比南山，身体健康！",
    "祝爷爷九十岁生日快乐，福如东海，寿比南山，身体健康！",  # a number
    "愿你今年不再熬夜加班，前程似锦，万事胜意，天天开心！",
    "愿你今年再熬夜加班，前程似锦，万事胜意，天天开心！",  # a negation
]


def test_records_without_axes_keep_siblings_apart_and_edits_together(tmp_path: Path) -> None:
    recs = [
        record(t)
        for t in [*NO_AXES_SIBLINGS, EDITS[2], "祝爷爷八十岁生日快乐，福如东海，寿比南山，身体安康！"]
    ]
    for r in recs:
        del r["axes"]
    src = write(tmp_path / "in.jsonl", recs)
    clean([src], tmp_path / "out.jsonl")
    kept = [r["messages"][-1]["content"] for r in read(tmp_path / "out.jsonl")]
    assert kept == NO_AXES_SIBLINGS
    rejects = read(tmp_path / "out.rejects.jsonl")
    assert [r["reject"]["duplicate_of"] for r in rejects] == [recs[0]["id"], recs[6]["id"]]
    dups = read(tmp_path / "out.dups.jsonl")
    assert [d["vetoes"] for d in dups] == [["block", "number", "negation", "kin", "chain"]] * 2


def test_dups_file_says_why_each_near_duplicate_was_dropped(tmp_path: Path, recipe) -> None:
    kept, rejects = _run(tmp_path, [BASE, EDITS[2], EDITS[0], DISTINCT[0]], recipe)
    lines = read(tmp_path / "out.dups.jsonl")
    near = [r for r in rejects if r["reject"]["reason"] == "near_duplicate"]
    assert [d["id"] for d in lines] == [r["id"] for r in near] and len(lines) == 1
    d = lines[0]
    assert d["kept"] == kept[0]["id"]
    assert d["similarity"] >= 0.85 and d["check"] == "similarity >= 0.85"
    assert d["vetoes"] == ["axis"] and d["vetoed"] is None  # axes known: their guard, not the edit veto
    assert d["file"] == str(tmp_path / "in.jsonl") and d["line"] == 2
    # a rerun writes the same bytes, and a folder input never reads the dups file back in
    first = (tmp_path / "out.dups.jsonl").read_bytes()
    clean([tmp_path / "in.jsonl"], tmp_path / "out.jsonl", recipe=recipe)
    assert (tmp_path / "out.dups.jsonl").read_bytes() == first


def test_the_veto_names_what_it_refused() -> None:
    keys = np.array(
        ["祝姐姐生日快乐", "祝爷爷八十岁生日", "王老师节日快乐", "今年不再熬夜", "祝你前程似锦万事如意"],
        dtype=object,
    )
    other = np.array(
        ["祝妹妹生日快乐", "祝爷爷九十岁生日", "李老师节日快乐", "今年再熬夜", "祝你前途似锦万事如意"],
        dtype=object,
    )
    codes = veto_batch(keys, other)
    assert [VETOES[c - 1] if c else None for c in codes] == ["block", "number", "kin", "negation", None]


def test_no_near_dup_keeps_edits_but_drops_exact(tmp_path: Path, recipe) -> None:
    kept, rejects = _run(tmp_path, [BASE, EDITS[0], EDITS[2]], recipe, near_dup=False)
    assert [r["reject"]["reason"] for r in rejects] == ["duplicate"]
    assert len(kept) == 2


def test_against_a_published_dataset(tmp_path: Path, recipe) -> None:
    published = write(tmp_path / "published.jsonl", [record(BASE, rid="pub1", style="自由")])
    kept, rejects = _run(tmp_path, [EDITS[2], DISTINCT[0]], recipe, against=[published])
    assert [k["messages"][-1]["content"] for k in kept] == [DISTINCT[0]]
    assert rejects[0]["reject"]["duplicate_of"] == "pub1"


@pytest.mark.parametrize("ngram", [1, 2, 3, 5])
def test_batch_signatures_are_datasketch_minhash(ngram: int) -> None:
    keys = ["祝你生日快乐天天开心", "新年好", "好", "祝赵老师桃李满天下身体健康", "ab"]
    cps, offsets = codepoints(keys)
    _, sigs = lsh_bands(
        cps, offsets, ngram=ngram, num_perm=64, bands=14, rows=4, keep_signatures=True, chunk_rows=2
    )
    for i, key in enumerate(keys):
        grams = [key[j : j + ngram] for j in range(max(1, len(key) - ngram + 1))]
        m = MinHash(num_perm=64, seed=1, hashfunc=shingle_hash, scheme="affine32")
        m.update_batch(grams)
        assert (m.hashvalues == sigs[i]).all()


def test_lsh_layout_is_datasketchs() -> None:
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=0.5, num_perm=64)
    assert lsh_params(0.5, 64) == (lsh.b, lsh.r)


def test_union_find_links_chains() -> None:
    head = components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert head.tolist() == [0, 0, 0, 3, 4, 4]


def test_near_heads_on_keys_directly() -> None:
    keys = [
        "祝姐姐生日快乐愿你前程似锦岁岁平安",
        "祝姐姐生日快乐愿你前途似锦岁岁平安",
        "中秋快乐阖家团圆月圆人圆",
    ]
    result = near_heads(keys, NearDupConfig())
    assert result.head.tolist() == [0, 0, 2]
    assert result.similarity[1] >= 0.85


def test_keys_sketched_ahead_give_the_clusters_computed_on_the_spot() -> None:
    """The clean stage sketches keys in its first pass (band hashes, the veto's hashes); near-dup given
    those must find what it finds computing them itself, vetoes included."""
    import polars as pl

    texts = [BASE, *EDITS, *HARD_NEGATIVES, *DISTINCT]
    keys = pl.Series("key", [t.replace("，", "").replace("！", "") for t in texts])
    config = NearDupConfig()
    sketched = sketch(keys, config)
    assert sketched.columns == list(SKETCH_COLUMNS) and sketched["bands"].dtype.shape == (14,)
    given = {c: sketched[c].to_numpy() for c in SKETCH_COLUMNS}
    ahead, on_the_spot = near_heads(keys, config, sketched=given), near_heads(keys, config)
    assert given == {}  # taken as used
    assert ahead.head.tolist() == on_the_spot.head.tolist()
    assert ahead.vetoed == on_the_spot.vetoed and sum(ahead.vetoed.values()) > 0
    assert ahead.head[0] == 0 and len(set(ahead.head.tolist())) > 1
    # an empty key (a row near-dup never sees) is sketched as zeros
    empty = sketch(pl.Series("key", ["", BASE]), config)
    assert not empty["bands"][0].to_numpy().any() and empty["bands"][1].to_numpy().any()


def test_axes_with_more_than_64_values_keep_every_value_apart() -> None:
    """Question 1 and question 65 of a 100-value axis (the same bit in one 64-bit word) stay apart."""
    values = [f"问题{k:03d}" for k in range(100)]  # sorted: value k has index k
    first = "请详细回答关于问题001的内容并且给出理由和例子谢谢"
    other = "请详细回答关于问题065的内容并且给出理由和例子谢谢"
    same = "请详细回答关于问题001的内容并且给出理由和例子谢谢啦"
    keys = [first, other, same]
    apart = near_heads(keys, NearDupConfig(), axis_values={"question": values})
    assert apart.head.tolist() == [0, 1, 0]  # 065 kept, the edit of 001 merged into 001
    # without the guard (and the edit veto, which sees 001 -> 065 as another number) 065 is a near duplicate
    merged = near_heads(keys, NearDupConfig(axis_guard=False, veto=False), axis_values={"question": values})
    assert merged.head.tolist() == [0, 0, 0]


def test_clean_keeps_a_large_axis_apart_through_the_records(tmp_path: Path) -> None:
    texts = {k: f"请详细回答关于问题{k:03d}的内容并且给出理由和例子谢谢" for k in (1, 65, 129)}
    records = [record(t, recipient=f"问题{k:03d}") for k, t in texts.items()]
    # the axis's other values come from the data: 130 distinct recipients in all
    records += [record(f"第{k}条完全不同的内容{k * 37}号文本", recipient=f"问题{k:03d}") for k in range(130)]
    src = write(tmp_path / "raw.jsonl", records)
    stats = clean([src], tmp_path / "o.jsonl", options=CleanOptions())
    kept = {r["messages"][-1]["content"] for r in read(tmp_path / "o.jsonl")}
    assert set(texts.values()) <= kept, stats.summary()
