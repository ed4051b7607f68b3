"""The paper's scaling ablations as point sets for :func:`scaling_search.pipeline.train_points`.

* Figure 3: scale the baseline in one dimension at a time (width, depth, resolution).
* Figure 4: width sweeps on four (depth, resolution) bases.
* Figure 8 / Table 3: depth-only, width-only, resolution-only and compound scaling at equal MAC budgets.

The paper's multiplier sets are :data:`PAPER_WIDTHS`, :data:`PAPER_DEPTHS`, :data:`PAPER_RESOLUTIONS`; CPU
presets trim them (the figures say so).
"""

from __future__ import annotations

from typing import Any

from scaling_search.budget import bisect_phi
from scaling_search.cost import count_cost
from scaling_search.scaling import compound, scale
from scaling_search.spec import NetworkSpec

#: Figure 3 of the paper: w, d and r multipliers of B0.
PAPER_WIDTHS = (1.0, 1.4, 1.8, 2.6, 3.8, 5.0)
PAPER_DEPTHS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
PAPER_RESOLUTIONS = (1.0, 1.3, 1.5, 1.7, 1.9, 2.2, 2.5)
#: Figure 4 of the paper: (depth, resolution) bases of the width sweeps.
FIGURE4_BASES = ((1.0, 1.0), (2.0, 1.0), (1.0, 1.3), (2.0, 1.3))
FIGURES = ("3", "4", "8")


def _point(spec: NetworkSpec, **attrs: Any) -> dict[str, Any]:
    cost = count_cost(spec)
    return {"attrs": {**attrs, "point_macs": cost.macs}, "spec": spec.to_dict()}


def figure3_points(base: NetworkSpec, widths: tuple[float, ...], depths: tuple[float, ...],
                   resolutions: tuple[float, ...], multiple: int) -> list[dict[str, Any]]:
    points = [_point(scale(base, width=w), figure="3", dimension="width", multiplier=w) for w in widths]
    points += [_point(scale(base, depth=d), figure="3", dimension="depth", multiplier=d) for d in depths]
    points += [_point(scale(base, resolution=r, resolution_multiple=multiple), figure="3",
                      dimension="resolution", multiplier=r) for r in resolutions]
    return points


def figure4_points(base: NetworkSpec, widths: tuple[float, ...], multiple: int,
                   bases: tuple[tuple[float, float], ...] = FIGURE4_BASES) -> list[dict[str, Any]]:
    return [
        _point(scale(base, depth=d, width=w, resolution=r, resolution_multiple=multiple), figure="4",
               base_depth=d, base_resolution=r, multiplier=w, dimension="width", series=f"d={d:g}, r={r:g}")
        for d, r in bases for w in widths
    ]


def single_dimension_at(base: NetworkSpec, dimension: str, target_macs: float, multiple: int) -> tuple[float, NetworkSpec]:
    """The largest multiplier of one dimension whose scaled network stays within ``target_macs`` (bisection)."""
    def scaled(log_multiplier: float) -> NetworkSpec:
        return scale(base, resolution_multiple=multiple, **{dimension: 2.0**log_multiplier})

    exponent = bisect_phi(target_macs, lambda x: count_cost(scaled(x)).macs, f"{dimension} MACs")
    return 2.0**exponent, scaled(exponent)


def figure8_points(base: NetworkSpec, coefficients: tuple[float, float, float], phis: tuple[float, ...],
                   multiple: int, source: str) -> list[dict[str, Any]]:
    """Depth-, width-, resolution-only and compound scaling at the MACs of compound scaling for each phi."""
    alpha, beta, gamma = coefficients
    points = []
    for phi in phis:
        compound_spec = compound(base, alpha, beta, gamma, phi, resolution_multiple=multiple)
        target = count_cost(compound_spec).macs
        points.append(_point(compound_spec, figure="8", method=f"compound ({source})", phi=phi,
                             multiplier=None, target_macs=target))
        for dimension in ("depth", "width", "resolution"):
            multiplier, spec = single_dimension_at(base, dimension, target, multiple)
            points.append(_point(spec, figure="8", method=f"{dimension} only", phi=phi, multiplier=multiplier,
                                 target_macs=target))
    return points


__all__ = ["FIGURE4_BASES", "FIGURES", "PAPER_DEPTHS", "PAPER_RESOLUTIONS", "PAPER_WIDTHS", "figure3_points",
           "figure4_points", "figure8_points", "single_dimension_at"]
