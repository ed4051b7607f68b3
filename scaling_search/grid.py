"""The stage-2 grid of compound coefficients (paper Eq. 3: alpha * beta^2 * gamma^2 ~= 2, all >= 1)."""

from __future__ import annotations

from typing import NamedTuple

from scaling_search.cost import count_cost
from scaling_search.scaling import compound
from scaling_search.spec import NetworkSpec

CONSTRAINTS = ("nominal", "achieved")


class GridPoint(NamedTuple):
    alpha: float
    beta: float
    gamma: float
    nominal_ratio: float   # alpha * beta**2 * gamma**2
    achieved_ratio: float  # MACs of the scaled, rounded network / MACs of the baseline


def coefficient_grid(
    baseline: NetworkSpec,
    step: float,
    tolerance: float,
    constraint: str = "nominal",
    maximum: float = 2.0,
    resolution_multiple: int = 1,
) -> list[GridPoint]:
    """All (alpha, beta, gamma) on a grid of ``step`` in [1, maximum] whose MACs ratio is within ``tolerance`` of 2.

    ``constraint="nominal"`` filters on the product ``alpha * beta**2 * gamma**2``; ``"achieved"`` on the
    measured ratio after width, depth and resolution rounding, which at proxy sizes can differ a lot.
    Triples that round to the same network appear once.
    """
    if not 0 < step <= 1:
        raise ValueError(f"grid step must be in (0, 1], got {step}")
    if tolerance < 0:
        raise ValueError(f"grid tolerance must be >= 0, got {tolerance}")
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}, got {constraint!r}")
    count = int(round((maximum - 1.0) / step)) + 1
    values = [round(1.0 + i * step, 6) for i in range(count)]
    base_macs = count_cost(baseline).macs
    by_network: dict[NetworkSpec, GridPoint] = {}
    for alpha in values:
        for beta in values:
            for gamma in values:
                nominal = alpha * beta**2 * gamma**2
                if constraint == "nominal" and abs(nominal - 2.0) > tolerance:
                    continue
                scaled = compound(baseline, alpha, beta, gamma, 1.0, resolution_multiple=resolution_multiple)
                achieved = count_cost(scaled).macs / base_macs
                if constraint == "achieved" and abs(achieved - 2.0) > tolerance:
                    continue
                point = GridPoint(alpha, beta, gamma, round(nominal, 6), round(achieved, 6))
                # Rounding maps some coefficient triples to the same network: train it once, under the
                # triple whose nominal product is closest to 2.
                known = by_network.get(scaled)
                if known is None or abs(point.nominal_ratio - 2) < abs(known.nominal_ratio - 2):
                    by_network[scaled] = point
    points = sorted(by_network.values())
    if not points:
        raise ValueError(
            f"the grid is empty: no (alpha, beta, gamma) with step {step} has a {constraint} MACs ratio within "
            f"{tolerance} of 2; raise --grid-tol or lower --grid-step"
        )
    return points


__all__ = ["CONSTRAINTS", "GridPoint", "coefficient_grid"]
