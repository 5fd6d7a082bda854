"""Benchmark of `zaoshu clean` on seeded short Chinese wishes with known near-duplicate clusters.

    python3 benchmarks/clean.py                     # held-out set, 1,000,000 rows without axes (the bars)
    python3 benchmarks/clean.py --axes              # the same set with axes
    python3 benchmarks/clean.py --rows 10000000 --no-score   # 10M rows (2.2 GB): wall, rows/s, peak RSS
    python3 benchmarks/clean.py --set wishes        # the recipe's set with axes, per-row baseline on 100,000

Builds the records (cached under /tmp by rows and seed), runs the whole stage (`zaoshu.cleaners.clean`,
with prompts/wishes.yaml) in a child process to measure its rows/s and peak RSS, scores the duplicates
it found against the known clusters (pairs: precision, recall, F1), and measures on a sample the
per-row datasketch loop (`MinHash` per text, `MinHashLSH.query` / `insert`) and our batch signatures
fed into datasketch's `MinHashLSH` index instead of the numpy banding. Prints each figure with its bar.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from heldout import char_edits, pair_scores

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "prompts" / "wishes.yaml"

RECIPIENTS = ["赵老师", "大舅", "大伯", "李总", "邻居赵大妈", "母亲", "姐姐", "妹妹", "哥哥", "弟弟", "爷爷", "奶奶",
              "外公", "外婆", "伯母", "叔叔", "阿姨", "堂兄", "堂妹", "表哥", "表妹", "导师", "同学", "同事", "领导",
              "邻居", "老板", "医生"]  # fmt: skip
SCENES = ["生日", "春节", "元宵节", "端午节", "中秋节", "重阳节", "除夕", "腊八节", "乔迁新居", "周年纪念", "家庭和睦",
          "比赛取得好成绩", "发财", "康复"]  # fmt: skip
IDIOMS = [
    "万事如意",
    "心想事成",
    "前程似锦",
    "岁岁平安",
    "福如东海",
    "寿比南山",
    "阖家幸福",
    "身体健康",
    "工作顺利",
    "步步高升",
    "财源广进",
    "笑口常开",
    "平安喜乐",
    "万事胜意",
    "吉祥如意",
    "鹏程万里",
    "马到成功",
    "一帆风顺",
    "花开富贵",
    "年年有余",
    "喜气洋洋",
    "事业有成",
    "龙马精神",
    "福寿安康",
    "金玉满堂",
    "春风得意",
    "蒸蒸日上",
    "大展宏图",
    "心情愉快",
    "幸福美满",
    "阖家欢乐",
    "健康长寿",
    "青春永驻",
    "学业进步",
    "桃李满天下",
    "好运连连",
    "顺风顺水",
    "福星高照",
    "紫气东来",
    "三阳开泰",
    "五福临门",
    "六六大顺",
    "百事可乐",
    "星光璀璨",
    "灿若星河",
    "云蒸霞蔚",
    "前途无量",
    "光彩照人",
    "温暖如春",
    "团团圆圆",
    "甜甜蜜蜜",
    "开开心心",
    "平平安安",
    "快快乐乐",
    "喜上眉梢",
    "神采奕奕",
    "精神焕发",
]
COMMON = ("的一是在不了有和人这中大为上个我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说种面而方后多定"
          "行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因"
          "由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结"
          "解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路"
          "级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规"
          "热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务")  # fmt: skip
EMOJI = ["🎉", "🌟", "🌈", "💰", "🏡", "❤️", "🌸", "✨", "🎂", "🧧", "🌕", "🍀", "🎊", "💐", "😊"]
PREAMBLES = ["好的，以下是祝福语：", "当然可以！", "以下是为你写的祝福语：", "祝福语如下：", "好的，"]
PARTICLES = ["哦", "啦", "呀", "哟"]
LIMITS = {"正常": 17, "小红书": 44, "严肃": 88}


def _phrases(rng: random.Random, n: int) -> list[str]:
    """Idioms plus pseudo-phrases of common characters: enough distinct content for 1M bases."""
    out = list(IDIOMS)
    while len(out) < n:
        out.append("".join(rng.choice(COMMON) for _ in range(rng.choice((2, 3, 4)))))
    return out


def _base(
    rng: random.Random, style: str, phrases: list[str], recipient: str, scene: str
) -> tuple[str, bool, bool]:
    """A wish; says whether it names the recipient and the scene (hard negatives swap those)."""
    limit = LIMITS[style]
    name_r = rng.random() < 0.5
    name_s = rng.random() < 0.6
    head = ""
    if name_r:
        head += recipient + "，" if rng.random() < 0.5 else "祝" + recipient
    elif rng.random() < 0.5:
        head += rng.choice(("祝你", "愿你", "祝您", "希望你"))
    if name_s:
        head += (
            scene + "快乐"
            if scene in ("生日", "春节", "元宵节", "端午节", "中秋节", "重阳节", "腊八节")
            else scene
        )
        head += "，"
    parts = []
    text = head
    while True:
        piece = rng.choice(phrases)
        sep = rng.choice("，，、") if parts else ""
        # short wishes always get two phrases: one-phrase bases collide with each other at 1M rows
        if len(text) + len(sep) + len(piece) + 2 > limit and len(parts) >= (2 if style == "正常" else 1):
            break
        parts.append(piece)
        text += sep + piece
        if style == "正常" and len(parts) >= 2:
            break
    text += rng.choice(("！", "。", "~", "！" + rng.choice(PARTICLES) + "~"))
    if style == "小红书":
        text += "".join(rng.choice(EMOJI) for _ in range(rng.choice((1, 1, 2))))
    return text, name_r, name_s


def _edit(rng: random.Random, text: str, style: str) -> str:
    """A near-duplicate: punctuation swaps, emoji changes, 1-3 character edits, a preamble or quotes."""
    kind = rng.random()
    if kind < 0.15:
        return text.replace("，", rng.choice((",", "、", "！", " "))).replace(
            "！", rng.choice(("!", "。", "～"))
        )
    if kind < 0.25 and style != "严肃":
        emo = [e for e in EMOJI if e in text]
        if emo and (style != "小红书" or sum(text.count(e) for e in emo) > 1):
            return text.replace(emo[0], "", 1)
        if style != "小红书" or sum(text.count(e) for e in EMOJI) < 2:
            return text + rng.choice(EMOJI)
    if kind < 0.35:
        return rng.choice(PREAMBLES) + text if rng.random() < 0.7 else "“" + text + "”"
    return char_edits(rng, text, COMMON, len(text))


def _excluded(recipient: str, scene: str) -> bool:
    elders = {"爷爷", "奶奶", "外公", "外婆", "邻居赵大妈"}
    return (scene in ("工作升职", "谈判顺利") and recipient in elders) or (
        recipient in ("老板", "李总") and scene == "工作升职"
    )


def build(rows: int, seed: int, path: Path) -> np.ndarray:
    """Write `rows` records to `path`; returns the true cluster id of every row (file order)."""
    rng = random.Random(seed)
    phrases = _phrases(rng, 20000)
    texts: list[tuple[int, str, str, str, str]] = []  # (cluster, text, recipient, scene, style)
    cluster = 0
    # Two bases that come out the same wish (short ones often do at 1M rows) are one true cluster.
    seen: dict[str, int] = {}
    sizes = [1] * 55 + [2] * 20 + [3] * 12 + [4] * 8 + [5, 6, 7, 8, 6]
    while len(texts) < rows:
        style = rng.choice(("正常", "小红书", "严肃"))
        recipient, scene = rng.choice(RECIPIENTS), rng.choice(SCENES)
        if _excluded(recipient, scene):
            continue
        base, name_r, name_s = _base(rng, style, phrases, recipient, scene)
        groups = [(base, recipient, scene)]
        if (name_r or name_s) and rng.random() < 0.15:  # hard negative: same wish, another recipient/scene
            r2 = rng.choice([r for r in RECIPIENTS if r != recipient]) if name_r else recipient
            s2 = rng.choice([s for s in SCENES if s != scene]) if name_s and not name_r else scene
            if not _excluded(r2, s2) and len(r2) == len(recipient):
                groups.append((base.replace(recipient, r2).replace(scene, s2), r2, s2))
        for text, rec, sc in groups:
            size = rng.choice(sizes)
            key = re.sub(r"\W", "", text)
            label = seen.setdefault(key, cluster)
            texts.append((label, text, rec, sc, style))
            for _ in range(size - 1):
                texts.append((label, _edit(rng, text, style), rec, sc, style))
            cluster += 1
    texts = texts[:rows]
    rng.shuffle(texts)
    truth = np.empty(len(texts), dtype=np.int64)
    with open(path, "wb") as f:
        for i, (c, text, rec, sc, style) in enumerate(texts):
            truth[i] = c
            record = {
                "id": f"b{i:08d}",
                "recipe": "wishes",
                "axes": {"recipient": rec, "scene": sc, "style": style},
                "messages": [
                    {"role": "system", "content": "你现在是一个送祝福大师，帮我针对不同人和事情、节日送对应的祝福"},
                    {"role": "user", "content": f"祝{rec}{sc}" + ("" if style == "正常" else f"，{style}风格")},
                    {"role": "assistant", "content": text},
                ],
                "meta": {"provider": "bench", "model": "seeded", "finish_reason": "stop", "attempts": 1,
                         "usage": {"prompt_tokens": 210, "completion_tokens": len(text)}},
            }  # fmt: skip
            f.write(orjson.dumps(record) + b"\n")
    return truth


CHILD = """
import json, resource, sys, time
from pathlib import Path
from zaoshu.cleaners import clean, CleanOptions
from zaoshu.recipes import load_recipe
t0 = resource.getrusage(resource.RUSAGE_SELF)
c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t = time.perf_counter()
stats = clean([Path(sys.argv[1])], Path(sys.argv[2]), recipe=load_recipe(sys.argv[3]) if sys.argv[3] else None,
              options=CleanOptions(workers=int(sys.argv[4])))
wall = time.perf_counter() - t
use = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker processes of both passes (their CPU;
# their ru_maxrss counts the parent's pages copied before the spawn's exec, so memory is sampled instead)
cpu = use.ru_utime + use.ru_stime - t0.ru_utime - t0.ru_stime
cpu += kids.ru_utime + kids.ru_stime - c0.ru_utime - c0.ru_stime
print(json.dumps({"wall": wall, "rss_kb": use.ru_maxrss, "cpu": cpu,
                  "stats": stats.to_dict()}))
"""


def run_clean(data: Path, out: Path, workers: int, recipe: Path | None = RECIPE) -> dict:
    """Run the stage in a child process; adds `tree_rss_kb`: the peak of its RSS and its worker
    processes' together, sampled every 20 ms (each process's own peak can fall at different times)."""
    import psutil

    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data), str(out), str(recipe or ""), str(workers)],
            stdout=stdout, stderr=stderr, text=True,
        )  # fmt: skip
        peak = 0
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:  # a process ended between listing and reading it
                pass
            time.sleep(0.02)
        stdout.seek(0)
        stderr.seek(0)
        if proc.returncode:
            sys.exit(f"clean failed:\n{stderr.read()}")
        result = json.loads(stdout.read().strip().splitlines()[-1])
    result["tree_rss_kb"] = max(peak // 1024, result["rss_kb"])
    return result


def predicted_clusters(rows: int, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Cluster id per input row (the kept head's row) and a mask of rows no other rule rejected.

    Both generators name row i `<letter><i>`, so an id is its row."""
    pred = np.arange(rows)
    scored = np.ones(rows, dtype=bool)
    rejects = out.with_name(out.stem + ".rejects.jsonl")
    with open(rejects, "rb") as f:
        for line in f:
            r = orjson.loads(line)
            i = int(r["id"][1:])
            if r["reject"]["reason"] in ("duplicate", "near_duplicate"):
                pred[i] = int(r["reject"]["duplicate_of"][1:])
            else:
                scored[i] = False
    return pred, scored


def baseline(
    keys: list[str], *, num_perm: int = 128, threshold: float = 0.7
) -> tuple[float, float, np.ndarray]:
    """The per-row datasketch loop: one MinHash per text (3-grams), query then insert into MinHashLSH."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    head = np.arange(len(keys))
    t, c = time.perf_counter(), time.process_time()
    for i, k in enumerate(keys):
        m = MinHash(num_perm=num_perm)
        m.update_batch([k[j : j + 3].encode("utf-8") for j in range(max(1, len(k) - 2))])
        found = lsh.query(m)
        if found:
            head[i] = min(found)
        else:
            lsh.insert(i, m, check_duplication=False)
    return len(keys) / (time.perf_counter() - t), len(keys) / (time.process_time() - c), head


def index_feed(keys: list[str]) -> tuple[float, float]:
    """Our batch signatures into datasketch's MinHashLSH (insert per row) vs the numpy banding: rows/s."""
    from datasketch import MinHash, MinHashLSH

    from zaoshu.cleaners.config import NearDupConfig
    from zaoshu.cleaners.minhash import bucket_pairs, codepoints, lsh_bands, lsh_params

    c = NearDupConfig()
    bands, rows = lsh_params(c.lsh_threshold, c.num_perm)
    cps, offsets = codepoints(keys)
    t = time.perf_counter()
    band_hash, sigs = lsh_bands(cps, offsets, ngram=c.ngram, num_perm=c.num_perm, bands=bands, rows=rows,
                                keep_signatures=True)  # fmt: skip
    t_sig = time.perf_counter() - t
    t = time.perf_counter()
    for j in range(bands):
        bucket_pairs(band_hash[:, j])
    numpy_rate = len(keys) / (t_sig + time.perf_counter() - t)
    lsh = MinHashLSH(threshold=c.lsh_threshold, num_perm=c.num_perm)
    template = MinHash(num_perm=c.num_perm, seed=c.seed, scheme="affine32")
    t = time.perf_counter()
    for i in range(len(keys)):
        template.hashvalues = sigs[i]  # the index keeps only band hashes, so one object serves
        lsh.query(template)
        lsh.insert(i, template, check_duplication=False)
    index_rate = len(keys) / (t_sig + time.perf_counter() - t)
    return numpy_rate, index_rate


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def heldout_run(args: argparse.Namespace) -> None:
    """The held-out set (benchmarks/heldout.py): bars of the near-duplicate quality and memory goals."""
    import heldout

    tag = "axes" if args.axes else "noaxes"
    data = args.dir / f"heldout-{args.rows}-{args.seed}-{tag}.jsonl"
    truth_path = data.with_suffix(".truth.npz")
    if not (data.exists() and truth_path.exists()):
        t = time.perf_counter()
        np.savez(truth_path, **heldout.build(args.rows, args.seed, data, axes=args.axes))
        print(f"built {args.rows:,} records in {time.perf_counter() - t:.1f}s -> {data}")
    truth = dict(np.load(truth_path))
    out = args.dir / "clean.jsonl"
    result = run_clean(data, out, args.workers, recipe=None)
    stats = result["stats"]
    rate = args.rows / result["wall"]
    main_gb = result["rss_kb"] / 1024**2
    rss_gb = result["tree_rss_kb"] / 1024**2
    print(f"held-out set, {args.rows:,} rows, {'with' if args.axes else 'without'} axes, workers {args.workers} "
          f"(machine shared with other work)")  # fmt: skip
    print(f"  {stats['read']:,} read, {stats['kept']:,} kept, rejected {stats['rejected']}")
    print(f"  stage seconds: {stats['seconds']}  peak RSS MB after each: {stats['peak_rss_mb']}")
    wall_bar = 20 * args.rows / 1_000_000
    rss_bar = 1.0 if args.rows <= 1_000_000 else 4.0
    print(f"wall                   {result['wall']:>10.1f} s       (bar <= {wall_bar:.0f} s)  "
          f"{verdict(result['wall'] <= wall_bar)}  {result['wall'] / wall_bar:.2f} of the bar; {rate:,.0f} rows/s "
          f"(bar >= 50,000); {result['cpu']:.1f} CPU s, all processes")  # fmt: skip
    print(f"  load average when it ended: {os.getloadavg()[0]:.2f} (2 cores: above 2, other work took turns)")
    print(f"peak RSS               {rss_gb:>10.2f} GB      (bar <= {rss_bar:.1f})  {verdict(rss_gb <= rss_bar)}  "
          f"{rss_gb / rss_bar:.2f} of the bar; main and worker processes together, sampled (main alone "
          f"{main_gb:.2f})")  # fmt: skip
    if args.no_score:
        return
    pred, scored = predicted_clusters(args.rows, out)
    scores = heldout.score(pred, scored, truth)
    a = scores["all"]
    print(f"  {a['true_pairs']:,} true pairs among {a['rows']:,} rows scored; "
          f"{a['wrongly_removed']:,} rows removed as copies of another true cluster")  # fmt: skip
    print(
        f"precision              {a['precision']:>10.4f}         (bar >= 0.99)   {verdict(a['precision'] >= 0.99)}"
    )
    print(
        f"recall                 {a['recall']:>10.4f}         (bar >= 0.98)   {verdict(a['recall'] >= 0.98)}"
    )
    print(f"F1                     {a['f1']:>10.4f}         (bar >= 0.985)  {verdict(a['f1'] >= 0.985)}")
    sib = sum(scores[k]["originals"] for k in heldout.KINDS[2:])
    sib_bad = sum(scores[k]["originals_removed"] for k in heldout.KINDS[2:])
    short = scores["short"]
    sib_share = sib_bad / max(sib, 1)
    short_share = short["originals_removed"] / max(short["originals"], 1)
    print(f"hard-negative siblings removed {sib_bad:,} of {sib:,} ({sib_share:.1%}; bar <= 5%)  "
          f"{verdict(sib_share <= 0.05)}")  # fmt: skip
    print(f"short originals removed {short['originals_removed']:,} of {short['originals']:,} ({short_share:.1%}; "
          f"bar <= 5%)  {verdict(short_share <= 0.05)}")  # fmt: skip
    print("per kind:            precision  recall      F1   true pairs  originals  wrongly removed")
    for k in heldout.KINDS:
        s = scores[k]
        print(f"  {k:<18} {s['precision']:>9.4f} {s['recall']:>7.4f} {s['f1']:>7.4f} {s['true_pairs']:>12,} "
              f"{s['originals']:>10,} {s['originals_removed']:>16,}")  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps({"wall": result["wall"], "rss_gb": rss_gb, "scores": scores}, indent=1)
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument(
        "--set", choices=("heldout", "wishes"), default="heldout",
        help="heldout: benchmarks/heldout.py, scored per kind, no recipe; wishes: the recipe's axes, "
        "the per-row datasketch comparison",
    )  # fmt: skip
    ap.add_argument("--axes", action="store_true", help="heldout: records carry axes")
    ap.add_argument("--no-score", action="store_true", help="heldout: wall and RSS only (for 10M rows)")
    ap.add_argument("--json", type=Path, help="heldout: write the scores here")
    ap.add_argument("--sample", type=int, default=100_000, help="rows for the per-row datasketch loop")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/zaoshu-bench-clean"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.set == "heldout":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        heldout_run(args)
        return
    data = args.dir / f"wishes-{args.rows}-{args.seed}.jsonl"
    truth_path = data.with_suffix(".truth.npy")
    if not (data.exists() and truth_path.exists()):
        t = time.perf_counter()
        np.save(truth_path, build(args.rows, args.seed, data))
        print(f"built {args.rows} records in {time.perf_counter() - t:.1f}s -> {data}")
    truth = np.load(truth_path)
    out = args.dir / "clean.jsonl"

    texts = []
    sample_rows = min(args.sample, args.rows)
    with open(data, "rb") as f:
        for _, line in zip(range(sample_rows), f, strict=False):
            texts.append(orjson.loads(line)["messages"][-1]["content"])
    import polars as pl

    from zaoshu.cleaners.normalize import key_expr, normalize_frame

    keys = pl.select(key_expr(normalize_frame(pl.Series(texts))["text"])).to_series().to_list()
    # The machine is shared: the per-row loop runs right before and right after the stage, and the
    # ratio uses their mean; CPU seconds (less sensitive to other load) are printed beside wall time.
    before_rate, before_cpu, base_head = baseline(keys)
    result = run_clean(data, out, args.workers)
    after_rate, after_cpu, _ = baseline(keys)
    base_rate = (before_rate + after_rate) / 2
    base_cpu_rate = (before_cpu + after_cpu) / 2
    stats = result["stats"]
    rate = args.rows / result["wall"]
    rss_gb = result["tree_rss_kb"] / 1024**2  # main and worker processes together
    pred, scored = predicted_clusters(args.rows, out)
    precision, recall, f1, true_pairs = pair_scores(pred[scored], truth[scored])

    bp, br, bf, _ = pair_scores(base_head, truth[:sample_rows])
    numpy_rate, index_rate = index_feed(keys)
    ratio = rate / base_rate
    cpu_rate = args.rows / result["cpu"]

    print(
        f"rows {args.rows:,}  workers {args.workers}  (machine shared: ratios within this run are what count)"
    )
    print(f"  {stats['read']:,} read, {stats['kept']:,} kept, {stats['normalized']:,} normalized, "
          f"rejected {stats['rejected']}")  # fmt: skip
    # normalize + rules run beside the parse (their laps are what is left after it) and the write pass
    # beside the report (its lap is what is left after the report)
    print(f"  stage seconds (wall, in order; overlapping stages count once): {stats['seconds']}")
    print(f"whole clean stage      {rate:>10,.0f} rows/s  (bar >= 40,000 at 1M)  {verdict(rate >= 40_000)}")
    print(f"per-row datasketch     {base_rate:>10,.0f} rows/s  on {sample_rows:,} rows (3-grams, 128 perm, LSH 0.7; "
          f"P {bp:.3f} R {br:.3f} F1 {bf:.3f}); before {before_rate:,.0f}, after {after_rate:,.0f}")  # fmt: skip
    print(f"ratio to per-row loop  {ratio:>10.1f} x       (bar >= 8)  {verdict(ratio >= 8)}")
    print(f"  by CPU time: stage {cpu_rate:,.0f} rows per CPU-second ({result['cpu']:.1f} s on up to 2 cores), "
          f"per-row loop {base_cpu_rate:,.0f}: {cpu_rate / base_cpu_rate:.1f} x")  # fmt: skip
    print(f"peak RSS               {rss_gb:>10.2f} GB      (bar <= 1.5)  {verdict(rss_gb <= 1.5)}")
    print(f"duplicates: {true_pairs:,} true pairs among {int(scored.sum()):,} rows scored")
    print(f"precision              {precision:>10.4f}         (bar >= 0.97)  {verdict(precision >= 0.97)}")
    print(f"recall                 {recall:>10.4f}")
    print(f"F1                     {f1:>10.4f}         (bar >= 0.95)  {verdict(f1 >= 0.95)}")
    print(f"LSH index, {sample_rows:,} rows: batch signatures + numpy banding {numpy_rate:,.0f} rows/s; "
          f"same signatures fed to datasketch MinHashLSH.query/insert {index_rate:,.0f} rows/s")  # fmt: skip


if __name__ == "__main__":
    main()
