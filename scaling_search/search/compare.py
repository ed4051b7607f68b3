"""Scaling rules compared on the user's data: each rule's network at each budget, at equal deployment MACs.

Every rule of :mod:`scaling_search.network.rules` scales the same deployment baseline to each budget (a multiple of the
baseline's deployment MACs, met by :func:`scaling_search.network.rules.fit_rule` on the achieved, rounded cost); every
network is trained through the study's proxy like any other point, with the study's seeds. The baseline itself
is the common starting point of every rule's line, as in the paper's Figure 8.

Each network's latency is predicted from this machine's calibrated latency table when one exists
(:func:`point_latencies`), and stored with the comparison: MACs are what the rules are held equal on, latency is
what a user ships against, and the two rank networks differently.
"""

from __future__ import annotations

import math
from typing import Any

from scaling_search.network.cost import count_cost
from scaling_search.network.proxy import ProxyTransform
from scaling_search.network.rules import ScalingRule, fit_rule
from scaling_search.search.ablations import costed_point
from scaling_search.settings.study import DeploymentSettings
from scaling_search.network.spec import NetworkSpec


def _parameters(rule: ScalingRule) -> str:
    """A rule's parameters as one short string (trial tables keep scalars only)."""
    return ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in rule.record().items() if key not in ("rule", "source"))


def compare_points(base: NetworkSpec, deployment: DeploymentSettings, transform: ProxyTransform,
                   rules: list[ScalingRule], budgets: tuple[float, ...]) -> list[dict[str, Any]]:
    """The baseline, then for each budget (a ratio to the baseline's deployment MACs) each rule's network."""
    base_macs = count_cost(base).macs
    points = [costed_point(base, transform, figure="compare", method="baseline", budget=1.0, phi=0.0, multiplier=1.0,
                     s=1.0, rule_parameters="", source="")]
    for budget in budgets:
        for rule in rules:
            spec, s, fit = fit_rule(base, rule, budget * base_macs, lambda n: count_cost(n).macs,
                                    tolerance=math.inf, resolution_multiple=deployment.resolution_multiple,
                                    depth_rounding=deployment.depth_rounding)
            points.append(costed_point(spec, transform, figure="compare", method=rule.name, budget=budget,
                                 phi=math.log2(budget), multiplier=None, s=s, budget_error=fit.relative_error,
                                 rule_parameters=_parameters(rule), source=rule.record()["source"]))
    return points


def point_latencies(points: list[dict[str, Any]], device: str, runtime: str) -> dict[str, Any]:
    """Each point's deployment network's predicted latency at batch 1, from this machine's calibrated table
    (parts it lacks are measured first, together, and saved): ``{"ms": [...], "device", "runtime", "batch"}``.

    Without a calibrated table: ``{"missing": <what to run>}``. A raw sum of part latencies is not a latency,
    so no number is given rather than an uncalibrated one.
    """
    from scaling_search.latency import LatencyTable, describe_device

    table = LatencyTable.open(device, 1, runtime=runtime)
    described = describe_device(table.device)
    if not table.calibrated:
        flag = "" if runtime == "torch" else f" --runtime {runtime}"
        return {"missing": f"no calibrated latency table for {described} ({runtime}) on this machine: run "
                           f"'scaling-search latency calibrate --device {device}{flag}', then this comparison again"}
    specs = [NetworkSpec.from_dict(entry["deployment"]) for entry in points]
    table.fill(specs)
    return {"ms": [round(table.predict(spec, measure_missing=False), 3) for spec in specs], "device": described,
            "runtime": runtime, "batch": 1}


__all__ = ["compare_points", "point_latencies"]
