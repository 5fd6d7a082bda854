"""`zaoshu eval`'s report.html: metrics side by side, a bar chart per style, the inputs where BASE and
TUNED differ most (judge scores, rule verdicts, pairwise consensus, then wording)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from rapidfuzz.distance import Indel

from zaoshu.files import write_text_atomic


def _gap(row: dict[str, Any]) -> float:
    base, tuned = row["base"], row["tuned"]
    gap = 0.0
    sb, st = (base.get("judge") or {}).get("score"), (tuned.get("judge") or {}).get("score")
    if sb is not None and st is not None:
        gap += abs(sb - st)
    if base["rules"]["kept"] != tuned["rules"]["kept"]:
        gap += 2
    winners = {v["winner"] for v in row.get("pairwise", [])}
    if len(winners) == 1 and winners != {"tie"}:
        gap += 1
    return gap + (1 - Indel.normalized_similarity(base["answer"], tuned["answer"]))


def differ_most(rows: list[dict[str, Any]], n: int = 12) -> list[dict[str, Any]]:
    return sorted(rows, key=_gap, reverse=True)[:n]


_HTML = """<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>eval: {{ r.recipe }}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right;vertical-align:top}td.t,th.t{text-align:left}
.bar{display:inline-block;height:.9em;margin-right:.3em}.base{background:#99a}.tuned{background:#4a7}
small{color:#666}</style></head><body>
<h1>eval: {{ r.recipe }}</h1>
<p>{{ r.inputs }} inputs ({{ r.inputs_file }}); sampling {{ r.sampling }}.<br>
BASE: {{ r.models.base.model }}{% if r.models.base.adapter %} + {{ r.models.base.adapter }}{% endif %}<br>
TUNED: {{ r.models.tuned.model }}{% if r.models.tuned.adapter %} + {{ r.models.tuned.adapter }}{% endif %}</p>
{% for note in r.notes %}<p><b>note:</b> {{ note }}</p>{% endfor %}
<h2>metrics</h2><table><tr><th class="t">metric</th><th>BASE</th><th>TUNED</th></tr>
{% for key in keys %}<tr><td class="t">{{ key }}</td><td>{{ r.metrics.base.overall[key] }}</td>
<td>{{ r.metrics.tuned.overall[key] }}</td></tr>{% endfor %}
{% for reason in reasons %}<tr><td class="t">rejected: {{ reason }}</td>
<td>{{ r.metrics.base.overall.rejected_share.get(reason, 0) }}</td>
<td>{{ r.metrics.tuned.overall.rejected_share.get(reason, 0) }}</td></tr>{% endfor %}
{% if r.pairwise %}<tr><td class="t">pairwise win rate of TUNED (both orders)</td>
<td colspan="2">{{ r.pairwise.win_rate_tuned }} (A/B {{ r.pairwise.win_rate_tuned_ab }}, B/A
{{ r.pairwise.win_rate_tuned_ba }}; ties {{ r.pairwise.ties }}; orders agree {{ r.pairwise.orders_agree }};
where TUNED is not longer: {{ r.pairwise.win_rate_tuned_not_longer }} on {{ r.pairwise.inputs_tuned_not_longer }} inputs)</td></tr>{% endif %}
<tr><td class="t">seconds per 100 inputs</td><td>{{ r.seconds_per_100_inputs.base }}</td>
<td>{{ r.seconds_per_100_inputs.tuned }}</td></tr></table>
<h2>rule pass rate per style</h2><table><tr><th class="t">style</th><th class="t">BASE / TUNED</th></tr>
{% for style, m in r.metrics.base.by_style.items() %}{% set t = r.metrics.tuned.by_style[style] %}
<tr><td class="t">{{ style }} <small>n={{ m.n }}</small></td><td class="t">
<span class="bar base" style="width:{{ (m.pass_rate or 0) * 300 }}px"></span>{{ m.pass_rate }}<br>
<span class="bar tuned" style="width:{{ (t.pass_rate or 0) * 300 }}px"></span>{{ t.pass_rate }}
{% if m.judge_mean is not none %}<br><small>judge mean {{ m.judge_mean }} / {{ t.judge_mean }}</small>{% endif %}
</td></tr>{% endfor %}</table>
<h2>where they differ most</h2><table><tr><th class="t">input</th><th class="t">BASE</th><th class="t">TUNED</th></tr>
{% for row in most %}<tr><td class="t">{{ row.input }}</td>
{% for side in ["base", "tuned"] %}{% set a = row[side] %}<td class="t">{{ a.answer }}<br><small>
{% if a.rules.kept %}rules: kept{% else %}rules: {{ a.rules.reason }} ({{ a.rules.detail }}){% endif %}
{% if a.judge and a.judge.score is not none %}; judge {{ a.judge.score }}: {{ a.judge.reason }}{% endif %}
</small></td>{% endfor %}</tr>{% endfor %}</table></body></html>
"""


def write_html(path: Path, result: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    keys = ["n", "pass_rate", "mean_chars", "over_max_chars", "distinct_2", "judge_mean"]
    reasons = sorted(
        set(result["metrics"]["base"]["overall"]["rejected_share"])
        | set(result["metrics"]["tuned"]["overall"]["rejected_share"])
    )
    html = (
        jinja2.Environment(autoescape=True)
        .from_string(_HTML)
        .render(r=result, keys=keys, reasons=reasons, most=differ_most(rows))
    )
    write_text_atomic(path, html)
