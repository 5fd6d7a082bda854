"""`zaoshu eval`: BASE and TUNED answer the same inputs; rules, a judge and a pairwise judge compare them."""

from zaoshu.evaluate.answer import Sampling
from zaoshu.evaluate.run import EvalOptions, evaluate

__all__ = ["EvalOptions", "Sampling", "evaluate"]
