"""How faithfully a cheap signal ranks candidates against a reference regime: the figures proxy studies report.

EcoNAS (Zhou et al., 2020) and the NAS-Bench-201 proxy studies score a reduced-training proxy by the rank
correlation of its accuracies with those of a longer regime over the same candidates: Kendall's tau (the
share of concordant minus discordant pairs) and Spearman's rho, plus whether the proxy's best candidates are
the reference's. With a dozen candidates those figures are noisy, so each comes with a bootstrap interval over
candidates (pairs resampled with replacement); a resample whose signal or reference has no spread says
nothing about ranks and is dropped. Where the reference itself gives every candidate the same value (a proxy
trained at chance), no ranking can be scored: the figures are undefined (None), not zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: Bootstrap resamples behind every interval; the 2.5th and 97.5th percentiles make a 95% interval.
RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class RankAgreement:
    """A signal's ranking of ``candidates`` against the reference's (higher is better in both); the figures are
    None where they are undefined (no spread in the signal or the reference)."""

    candidates: int
    kendall_tau: float | None
    kendall_interval: tuple[float, float] | None
    spearman_rho: float | None
    spearman_interval: tuple[float, float] | None
    top1_agrees: bool | None  # the signal's best candidate is one of the reference's best
    top3_overlap: float | None  # share of the reference's top 3 among the signal's top 3

    @property
    def defined(self) -> bool:
        return self.kendall_tau is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def correlations(signal: Any, reference: Any) -> tuple[Any, Any]:
    """Kendall's tau-b and Spearman's rho (average ranks for ties) of each row of ``signal`` against the same row
    of ``reference``: arrays of shape (n,) or (rows, n), every row with some spread. The formulas SciPy's
    ``kendalltau`` and ``spearmanr`` compute, vectorised over rows so thousands of bootstrap resamples take
    milliseconds (tests/test_rank_agreement.py checks them against SciPy)."""
    import numpy as np

    x, y = np.atleast_2d(np.asarray(signal, dtype=float)), np.atleast_2d(np.asarray(reference, dtype=float))
    dx = np.sign(x[:, :, None] - x[:, None, :])  # dx[r, i, j]: how candidate i compares with j
    dy = np.sign(y[:, :, None] - y[:, None, :])
    tau = (dx * dy).sum(axis=(1, 2)) / np.sqrt((dx != 0).sum(axis=(1, 2)) * (dy != 0).sum(axis=(1, 2)))

    def average_ranks(d: Any) -> Any:
        return (d > 0).sum(axis=2) + ((d == 0).sum(axis=2) + 1) / 2

    rx, ry = average_ranks(dx), average_ranks(dy)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    rho = (rx * ry).sum(axis=1) / np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    if np.ndim(signal) == 1:
        return float(tau[0]), float(rho[0])
    return tau, rho


def _top(values: Sequence[float], k: int) -> set[int]:
    return set(sorted(range(len(values)), key=lambda i: (-values[i], i))[:k])


def rank_agreement(signal: Sequence[float], reference: Sequence[float], seed: int = 0,
                   resamples: int = RESAMPLES) -> RankAgreement:
    """Kendall's tau and Spearman's rho of ``signal`` against ``reference`` (same candidates, same order), with
    bootstrap intervals, and top-1 and top-3 agreement. Deterministic for a given ``seed``."""
    import numpy as np

    if len(signal) != len(reference) or len(reference) < 3:
        raise ValueError("need three or more (signal, reference) pairs of equal length")
    x, y = np.asarray(signal, dtype=float), np.asarray(reference, dtype=float)
    if np.ptp(y) == 0 or np.ptp(x) == 0:  # nothing to rank, or a signal that ranks nothing ("best" is arbitrary)
        return RankAgreement(len(x), None, None, None, None, None, None)
    k = min(3, len(reference))
    top1 = bool(y[max(range(len(x)), key=lambda i: (x[i], -i))] == y.max())
    overlap = len(_top(signal, k) & _top(reference, k)) / k
    tau, rho = correlations(x, y)
    rows = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    xs, ys = x[rows], y[rows]
    spread = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
    taus, rhos = correlations(xs[spread], ys[spread]) if spread.any() else ([], [])
    return RankAgreement(len(x), tau, _interval(taus), rho, _interval(rhos), top1, overlap)


def _interval(values: Any) -> tuple[float, float] | None:
    """The central :data:`CONFIDENCE` share of bootstrap values (None if every resample was dropped)."""
    import numpy as np

    if len(values) == 0:
        return None
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


__all__ = ["CONFIDENCE", "RESAMPLES", "RankAgreement", "correlations", "rank_agreement"]
