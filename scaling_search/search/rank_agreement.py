"""How faithfully a cheap signal ranks candidates against a reference regime: the figures proxy studies report.

EcoNAS (Zhou et al., 2020) and the NAS-Bench-201 proxy studies score a reduced-training proxy by the rank
correlation of its accuracies with those of a longer regime over the same candidates: Kendall's tau (the
share of concordant minus discordant pairs) and Spearman's rho, plus whether the proxy's best candidates are
the reference's. With a dozen candidates those figures are noisy, so each comes with a bootstrap interval that
counts every source of noise: candidates are resampled with replacement, and each resampled candidate's two
values are drawn again from their own measurement noise (seed spread and validation sampling, given as
standard deviations), so a ranking that only seed noise produced does not look sure. A resample whose signal
or reference has no spread says nothing about ranks and is dropped. Where the reference itself gives every
candidate the same value (a proxy trained at chance), no ranking can be scored: the figures are undefined
(None), not zero.

Whether tau is above chance at all is a permutation test (one-sided: the share of the reference's orderings
that agree with the signal at least as well; exact up to :data:`EXACT_PERMUTATIONS_UP_TO` candidates). Its
smallest possible p-value is 1/n!: with three candidates 1/6, so no tau of three can be significant. A
bootstrap over so few candidates is degenerate (most resamples repeat one ordering), so below
:data:`MIN_INTERVAL_CANDIDATES` no interval is reported and ``note`` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: Bootstrap resamples behind every interval; the 2.5th and 97.5th percentiles make a 95% interval.
RESAMPLES = 2000
CONFIDENCE = 0.95
#: Fewer candidates than this get no bootstrap interval (see the module's docstring).
MIN_INTERVAL_CANDIDATES = 6
#: Up to this many candidates the permutation test enumerates every ordering (8! = 40,320); above, it draws
#: :data:`PERMUTATIONS` of them.
EXACT_PERMUTATIONS_UP_TO = 8
PERMUTATIONS = 20_000


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
    p_value: float | None = None  # permutation test of tau > 0
    min_p_value: float | None = None  # the smallest p-value this many candidates can give (1/n!)
    note: str | None = None  # why an interval is missing, or what it counts

    @property
    def significant(self) -> bool:
        """Whether tau is above chance at 5% (never where the candidates are too few to tell)."""
        return self.p_value is not None and self.p_value < 1 - CONFIDENCE

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


def permutation_p_value(signal: Any, reference: Any, seed: int = 0) -> float:
    """One-sided permutation p-value of Kendall's tau: the share of orderings of ``reference`` whose tau with
    ``signal`` is at least the observed one (every ordering up to :data:`EXACT_PERMUTATIONS_UP_TO` candidates,
    else :data:`PERMUTATIONS` random ones, counting the observed ordering)."""
    import itertools

    import numpy as np

    x, y = np.asarray(signal, dtype=float), np.asarray(reference, dtype=float)
    observed, _ = correlations(x, y)
    n = len(x)
    if n <= EXACT_PERMUTATIONS_UP_TO:
        orders = np.array(list(itertools.permutations(range(n))))
    else:
        generator = np.random.default_rng(seed)
        orders = generator.permuted(np.tile(np.arange(n), (PERMUTATIONS, 1)), axis=1)
    taus, _ = correlations(np.broadcast_to(x, (len(orders), n)), y[orders])
    hits = int((taus >= observed - 1e-12).sum())
    return hits / len(orders) if n <= EXACT_PERMUTATIONS_UP_TO else (hits + 1) / (len(orders) + 1)


def rank_agreement(signal: Sequence[float], reference: Sequence[float], seed: int = 0,
                   resamples: int = RESAMPLES, signal_sd: Sequence[float] | None = None,
                   reference_sd: Sequence[float] | None = None) -> RankAgreement:
    """Kendall's tau and Spearman's rho of ``signal`` against ``reference`` (same candidates, same order), with
    bootstrap intervals that redraw each value from its noise (``signal_sd``, ``reference_sd``: standard
    deviations, None for noiseless values), a permutation p-value, and top-1 and top-3 agreement.
    Deterministic for a given ``seed``."""
    import math

    import numpy as np

    if len(signal) != len(reference) or len(reference) < 3:
        raise ValueError("need three or more (signal, reference) pairs of equal length")
    x, y = np.asarray(signal, dtype=float), np.asarray(reference, dtype=float)
    n = len(x)
    if np.ptp(y) == 0 or np.ptp(x) == 0:  # nothing to rank, or a signal that ranks nothing ("best" is arbitrary)
        return RankAgreement(n, None, None, None, None, None, None)
    k = min(3, len(reference))
    top1 = bool(y[max(range(n), key=lambda i: (x[i], -i))] == y.max())
    overlap = len(_top(signal, k) & _top(reference, k)) / k
    tau, rho = correlations(x, y)
    p_value, smallest = permutation_p_value(x, y, seed), 1 / math.factorial(n)
    if n < MIN_INTERVAL_CANDIDATES:
        note = (f"{n} candidates are too few for an interval (needs {MIN_INTERVAL_CANDIDATES}); "
                + (f"no tau of {n} can be significant (smallest p-value 1/{n}! = {smallest:.2f})"
                   if smallest >= 1 - CONFIDENCE else f"the permutation p-value is {p_value:.3f}"))
        return RankAgreement(n, tau, None, rho, None, top1, overlap, p_value, smallest, note)
    generator = np.random.default_rng(seed)
    rows = generator.integers(0, n, size=(resamples, n))
    xs, ys = x[rows], y[rows]
    noisy = []
    for values, sd, name in ((xs, signal_sd, "signal"), (ys, reference_sd, "reference")):
        if sd is not None:
            values += generator.normal(0.0, np.asarray(sd, dtype=float)[rows])
            noisy.append(name)
    spread = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
    taus, rhos = correlations(xs[spread], ys[spread]) if spread.any() else ([], [])
    note = ("interval: candidates resampled" + (f", each {' and '.join(noisy)} value redrawn from its seed and "
                                                 "validation noise" if noisy else ", measurement noise not counted"))
    return RankAgreement(n, tau, _interval(taus), rho, _interval(rhos), top1, overlap, p_value, smallest, note)


def _interval(values: Any) -> tuple[float, float] | None:
    """The central :data:`CONFIDENCE` share of bootstrap values (None if every resample was dropped)."""
    import numpy as np

    if len(values) == 0:
        return None
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


__all__ = ["CONFIDENCE", "EXACT_PERMUTATIONS_UP_TO", "MIN_INTERVAL_CANDIDATES", "PERMUTATIONS", "RESAMPLES",
           "permutation_p_value", "RankAgreement", "correlations", "rank_agreement"]
