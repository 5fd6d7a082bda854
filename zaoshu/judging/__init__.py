"""Judging: a model scores each record's fit against the recipe's rubric (`zaoshu judge`, `zaoshu eval`)."""

from zaoshu.judging.run import JudgeStats, ajudge, judge
from zaoshu.judging.spec import JudgeSpec, judge_spec
from zaoshu.judging.verdict import parse_pair, parse_score

__all__ = ["JudgeSpec", "JudgeStats", "ajudge", "judge", "judge_spec", "parse_pair", "parse_score"]
