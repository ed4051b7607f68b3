"""The paper's scaling ablations as point sets at deployment scale, trained through the study's proxy.

* Figure 3: scale the baseline in one dimension at a time (width, depth, resolution).
* Figure 4: width sweeps on four (depth, resolution) bases.
* Figure 8 / Table 3: depth-only, width-only, resolution-only and compound scaling at equal deployment MACs,
  every curve starting from the common baseline point (phi = 0), as in the paper.

Every point is a deployment-scale spec (the MACs axis is deployment MACs, as the paper plots B0-scale FLOPS);
its proxy is what is trained. The paper's multiplier sets are :data:`PAPER_WIDTHS`, :data:`PAPER_DEPTHS`,
:data:`PAPER_RESOLUTIONS`; CPU presets trim them (the figures say so).
"""

from __future__ import annotations

import math
from typing import Any

from scaling_search.network.budget import fit_phi
from scaling_search.network.cost import count_cost
from scaling_search.network.proxy import ProxyTransform
from scaling_search.search.candidate import Candidate
from scaling_search.settings.study import DeploymentSettings
from scaling_search.search.queue import point
from scaling_search.network.spec import NetworkSpec

#: Figure 3 of the paper: w, d and r multipliers of B0.
PAPER_WIDTHS = (1.0, 1.4, 1.8, 2.6, 3.8, 5.0)
PAPER_DEPTHS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
PAPER_RESOLUTIONS = (1.0, 1.3, 1.5, 1.7, 1.9, 2.2, 2.5)
#: Figure 4 of the paper: (depth, resolution) bases of the width sweeps.
FIGURE4_BASES = ((1.0, 1.0), (2.0, 1.0), (1.0, 1.3), (2.0, 1.3))
FIGURES = ("3", "4", "8")


def costed_point(spec: NetworkSpec, transform: ProxyTransform, **attrs: Any) -> dict[str, Any]:
    """A queue entry for ``spec`` trained as its proxy, with its deployment and proxy MACs recorded."""
    candidate = Candidate.of(spec, transform)
    return point(candidate, {**attrs, "point_macs": count_cost(spec).macs,
                             "point_proxy_macs": count_cost(candidate.proxy).macs})


def figure3_points(base: NetworkSpec, deployment: DeploymentSettings, transform: ProxyTransform,
                   widths: tuple[float, ...], depths: tuple[float, ...],
                   resolutions: tuple[float, ...]) -> list[dict[str, Any]]:
    points = [costed_point(deployment.scale(base, width=w), transform, figure="3", dimension="width", multiplier=w)
              for w in widths]
    points += [costed_point(deployment.scale(base, depth=d), transform, figure="3", dimension="depth", multiplier=d)
               for d in depths]
    points += [costed_point(deployment.scale(base, resolution=r), transform, figure="3", dimension="resolution",
                      multiplier=r) for r in resolutions]
    return points


def figure4_points(base: NetworkSpec, deployment: DeploymentSettings, transform: ProxyTransform,
                   widths: tuple[float, ...],
                   bases: tuple[tuple[float, float], ...] = FIGURE4_BASES) -> list[dict[str, Any]]:
    return [
        costed_point(deployment.scale(base, depth=d, width=w, resolution=r), transform, figure="4", base_depth=d,
               base_resolution=r, multiplier=w, dimension="width", series=f"d={d:g}, r={r:g}")
        for d, r in bases for w in widths
    ]


def single_dimension_at(base: NetworkSpec, deployment: DeploymentSettings, dimension: str,
                        target_macs: float) -> tuple[float, NetworkSpec]:
    """The multiplier of one dimension whose scaled deployment network's MACs are closest to ``target_macs``."""
    def scaled(log_multiplier: float) -> NetworkSpec:
        return deployment.scale(base, **{dimension: 2.0**log_multiplier})

    fit = fit_phi(target_macs, lambda x: count_cost(scaled(x)).macs, tolerance=math.inf)
    return 2.0**fit.phi, scaled(fit.phi)


def figure8_points(base: NetworkSpec, deployment: DeploymentSettings, transform: ProxyTransform,
                   coefficients: tuple[float, float, float], phis: tuple[float, ...],
                   source: str) -> list[dict[str, Any]]:
    """The baseline (phi = 0), then at each phi compound scaling and each single dimension at its MACs."""
    alpha, beta, gamma = coefficients
    base_macs = count_cost(base).macs
    points = [costed_point(base, transform, figure="8", method="baseline", phi=0.0, multiplier=1.0, target_macs=base_macs)]
    for phi in phis:
        compound_spec = deployment.compound(base, alpha, beta, gamma, phi)
        target = count_cost(compound_spec).macs
        points.append(costed_point(compound_spec, transform, figure="8", method=f"compound ({source})", phi=phi,
                             multiplier=None, target_macs=target))
        for dimension in ("depth", "width", "resolution"):
            multiplier, spec = single_dimension_at(base, deployment, dimension, target)
            points.append(costed_point(spec, transform, figure="8", method=f"{dimension} only", phi=phi,
                                 multiplier=multiplier, target_macs=target))
    return points


def describe_point(attrs: dict[str, Any]) -> str:
    """An ablation or comparison point in a log line: its method or dimension and multiplier, and its deployment
    MACs."""
    label = attrs.get("method") or f"{attrs.get('dimension')} x{attrs.get('multiplier'):g}"
    if attrs.get("figure") == "compare" and label != "baseline":
        label = f"{label} at {attrs.get('budget'):g}x"
    return f"{label} ({attrs.get('point_macs', 0) / 1e6:,.1f}M deployment MACs)"


__all__ = ["FIGURE4_BASES", "FIGURES", "PAPER_DEPTHS", "PAPER_RESOLUTIONS", "PAPER_WIDTHS", "costed_point",
           "describe_point", "figure3_points", "figure4_points", "figure8_points", "single_dimension_at"]
