"""How well a latency predictor ranks and sizes networks: the figures latency-predictor papers report.

HELP (Lee et al., 2021) and nn-Meter (Zhang et al., 2021) score a predictor on networks it was not fitted on by
the share of predictions within +-10% of the measurement and by rank correlation (Spearman's rho, Kendall's
tau) with the measured latencies; HELP reports FLOPs-vs-latency rho ~ 0.83 on a Xeon CPU, the baseline every
user already has. Rank correlations come from SciPy.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PredictorScore:
    """A predictor's figures on ``networks`` networks against reference latencies."""

    name: str
    networks: int
    within_10pct: float  # share of networks predicted within +-10% of the reference
    median_abs_error: float  # median |predicted / reference - 1|
    spearman: float
    kendall: float


def score_predictor(name: str, predicted: Sequence[float], reference: Sequence[float]) -> PredictorScore:
    """Score ``predicted`` against ``reference`` (same networks, same order). Rank figures need no scale:
    pass MACs as ``predicted`` to score plain MACs as a ranking of latency."""
    from scipy import stats

    if len(predicted) != len(reference) or len(reference) < 2:
        raise ValueError("need two or more (predicted, reference) pairs of equal length")
    errors = [abs(p / r - 1) for p, r in zip(predicted, reference)]
    return PredictorScore(name, len(errors), sum(e <= 0.10 for e in errors) / len(errors), statistics.median(errors),
                          float(stats.spearmanr(predicted, reference).statistic),
                          float(stats.kendalltau(predicted, reference).statistic))


__all__ = ["PredictorScore", "score_predictor"]
