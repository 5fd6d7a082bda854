"""The judge's report: score distribution overall, per style and per axis value and cell, the lowest-scored
samples, and (with a sample) the estimated share under the threshold. JSON for tools, HTML for people."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jinja2
import orjson

from zaoshu.files import write_bytes_atomic, write_text_atomic
from zaoshu.records import assistant_text


def _dist(scores: list[int], threshold: int) -> dict[str, Any]:
    counts = Counter(scores)
    return {
        "n": len(scores),
        "mean": round(sum(scores) / len(scores), 3) if scores else None,
        "under": sum(1 for s in scores if s < threshold),
        "scores": {str(s): counts.get(s, 0) for s in range(1, 6)},
    }


def build_report(judged: list[dict[str, Any]], stats: Any, samples: int = 10) -> dict[str, Any]:
    threshold = stats.threshold
    by_style: dict[str, list[int]] = defaultdict(list)
    by_value: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    by_cell: dict[str, list[int]] = defaultdict(list)
    for record in judged:
        score = record["meta"]["judge"]["score"]
        axes = record.get("axes") or {}
        by_style[str(axes.get("style", ""))].append(score)
        for axis, value in axes.items():
            if axis != "style":
                by_value[axis][str(value)].append(score)
        by_cell[" · ".join(str(v) for v in axes.values())].append(score)
    low = sorted(judged, key=lambda r: r["meta"]["judge"]["score"])[:samples]
    cells = {k: _dist(v, threshold) for k, v in by_cell.items()}
    worst = dict(sorted(cells.items(), key=lambda kv: (kv[1]["mean"], kv[0]))[:30])
    return {
        "summary": stats.to_dict(),
        "overall": _dist([r["meta"]["judge"]["score"] for r in judged], threshold),
        "by_style": {k: _dist(v, threshold) for k, v in sorted(by_style.items())},
        "by_axis_value": {
            axis: {k: _dist(v, threshold) for k, v in sorted(values.items())}
            for axis, values in by_value.items()
        },
        "worst_cells": worst,
        "low_samples": [
            {
                "id": r["id"],
                "axes": r.get("axes"),
                "reply": assistant_text(r),
                "score": r["meta"]["judge"]["score"],
                "reason": r["meta"]["judge"].get("reason"),
            }
            for r in low
        ],
    }


_HTML = """<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>judge report</title>
<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td.t{text-align:left}
.bar{display:inline-block;height:.8em;background:#4a7}</style></head><body>
<h1>judge report</h1>
<p>read {{ s.read }}, judged {{ s.judged }}{% if s.sample %} (a seeded sample of {{ s.sample }}){% endif %},
kept {{ s.kept }}, rejected {{ s.rejected }} (judge_low: score &lt; {{ s.threshold }}), failed {{ s.failed }};
mean score {{ s.mean_score }}; judge {{ s.provider }} / {{ s.model }}.</p>
{% if s.under_share is not none %}<p>share under the threshold: {{ '%.1f' % (100 * s.under_share) }} %
(95 % interval {{ '%.1f' % (100 * s.under_ci95[0]) }}–{{ '%.1f' % (100 * s.under_ci95[1]) }} %)</p>{% endif %}
{% macro table(title, rows) %}<h2>{{ title }}</h2><table><tr><th class="t"></th><th>n</th><th>mean</th>
<th>under</th>{% for i in range(1, 6) %}<th>{{ i }}</th>{% endfor %}<th class="t"></th></tr>
{% for name, d in rows.items() %}<tr><td class="t">{{ name }}</td><td>{{ d.n }}</td><td>{{ d.mean }}</td>
<td>{{ d.under }}</td>{% for i in range(1, 6) %}<td>{{ d.scores[i|string] }}</td>{% endfor %}
<td class="t"><span class="bar" style="width:{{ (d.mean or 0) * 20 }}px"></span></td></tr>{% endfor %}
</table>{% endmacro %}
{{ table("overall", {"all": r.overall}) }}
{{ table("by style", r.by_style) }}
{% for axis, rows in r.by_axis_value.items() %}{{ table("by " ~ axis, rows) }}{% endfor %}
{{ table("lowest cells", r.worst_cells) }}
<h2>lowest-scored samples</h2><table><tr><th class="t">axes</th><th>score</th><th class="t">reply</th>
<th class="t">judge's reason</th></tr>{% for x in r.low_samples %}<tr><td class="t">{{ x.axes }}</td>
<td>{{ x.score }}</td><td class="t">{{ x.reply }}</td><td class="t">{{ x.reason }}</td></tr>{% endfor %}
</table></body></html>
"""


def write_report(
    judged: list[dict[str, Any]], stats: Any, json_path: Path, html_path: Path
) -> dict[str, Any]:
    report = build_report(judged, stats)
    write_bytes_atomic(json_path, orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    env = jinja2.Environment(autoescape=True)
    write_text_atomic(html_path, env.from_string(_HTML).render(r=report, s=stats))
    return report
