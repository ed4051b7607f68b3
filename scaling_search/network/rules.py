"""Published scaling rules, each a pure function from a cost multiplier to depth, width and resolution multipliers.

Every rule answers one question the same way: to multiply a network's FLOPs (MACs) by ``s``, by how much should
its depth ``d``, width ``w`` and input resolution ``r`` grow? Since MACs grow about as ``d * w**2 * r**2`` (Tan &
Le, 2019, Section 3.3), each rule here returns multipliers whose product ``d * w**2 * r**2`` is exactly ``s``;
rounding (whole blocks, channel multiples of 8, whole pixels) then moves the achieved cost, which
:func:`fit_rule` meets by bisection on ``s``, as budgets are met everywhere else (:func:`scaling_search.network.budget.fit_phi`).

The rules:
    - :class:`CompoundRule` -- Tan & Le (2019), Eq. 3: ``d = alpha**phi``, ``w = beta**phi``, ``r = gamma**phi``
      with ``phi = log(s) / log(alpha * beta**2 * gamma**2)``.
    - :class:`FastCompoundRule` -- Dollar, Singh & Girshick (2021), "Fast and Accurate Model Scaling", Section 4:
      width takes the share ``a`` of the FLOPs growth and depth and resolution ``(1 - a) / 2`` each, i.e.
      ``d = s**((1 - a) / 2)``, ``w = s**(a / 2)``, ``r = s**((1 - a) / 4)``. ``a = 1/3`` is uniform scaling;
      ``a = 0.8`` ("dWr", pycls's ``d1_w8_g8_r1``) is the paper's recommendation: activations then grow about as
      ``sqrt(s)``, which tracks GPU runtime better than FLOPs.
    - :class:`CappedResolutionRule` -- EfficientNetV2-style (Tan & Le, 2021, Section 4.3): compound scaling with
      the input resolution capped (480 px at ImageNet scale; a parameter here). The FLOPs the cap refuses go to
      depth, and only to the later stages ("gradually add more layers to later stages").
    - :class:`ResNetRSRule` -- ResNet-RS-style (Bello et al., 2021, Section 7): resolution grows slowly; the
      rest goes to depth where training is long enough to overfit, to width otherwise. The paper states the
      strategy, not a formula: the resolution's share of the FLOPs growth (0.2 by default) is our parameter.
    - :class:`SingleDimensionRule` -- the single-dimension baselines of Tan & Le (2019), Figure 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

from scaling_search.errors import UserError
from scaling_search.network.budget import BudgetFit, fit_phi
from scaling_search.network.family import PAPER_COEFFICIENTS
from scaling_search.network.scaling import check_multiplier, round_repeats, scale
from scaling_search.network.spec import NetworkSpec

DIMENSIONS = ("depth", "width", "resolution")


@dataclass(frozen=True)
class Multipliers:
    """Depth, width and resolution multipliers, and how many of the later stages take extra depth."""

    depth: float
    width: float
    resolution: float
    late_depth: float = 1.0  # extra depth factor of the later half of the stages only (CappedResolutionRule)

    @property
    def flops(self) -> float:
        """The nominal FLOPs multiplier ``d * w**2 * r**2`` (``late_depth`` counted as if on every stage)."""
        return self.depth * self.late_depth * self.width**2 * self.resolution**2


class ScalingRule(Protocol):
    """A rule: ``multipliers(s)`` for a FLOPs multiplier ``s``, and its name and parameters for the record."""

    name: str

    def multipliers(self, s: float) -> Multipliers: ...

    def record(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CompoundRule:
    """Tan & Le (2019), Eq. 3, with coefficients found by the grid (the paper's B0: 1.2, 1.1, 1.15)."""

    alpha: float
    beta: float
    gamma: float
    name: str = "compound"

    def __post_init__(self) -> None:
        if not all(v >= 1 for v in (self.alpha, self.beta, self.gamma)):
            raise ValueError("compound coefficients must be >= 1 (paper Eq. 3)")
        if self.alpha * self.beta**2 * self.gamma**2 <= 1:
            raise ValueError("alpha * beta**2 * gamma**2 must exceed 1, or phi is undefined")

    def multipliers(self, s: float) -> Multipliers:
        check_multiplier("FLOPs", s)
        phi = math.log(s) / math.log(self.alpha * self.beta**2 * self.gamma**2)
        return Multipliers(self.alpha**phi, self.beta**phi, self.gamma**phi)

    def record(self) -> dict[str, Any]:
        return {"rule": self.name, "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma,
                "source": "Tan & Le, 2019, Eq. 3"}


def _check_share(name: str, value: float) -> None:
    """A rule's share of the FLOPs growth lies in [0, 1]."""
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class FastCompoundRule:
    """Dollar, Singh & Girshick (2021): width takes ``width_share`` of the FLOPs growth (0.8: "dWr")."""

    width_share: float = 0.8
    name: str = "fast"

    def __post_init__(self) -> None:
        _check_share("width_share", self.width_share)

    def multipliers(self, s: float) -> Multipliers:
        check_multiplier("FLOPs", s)
        a = self.width_share
        return Multipliers(s ** ((1 - a) / 2), s ** (a / 2), s ** ((1 - a) / 4))

    def record(self) -> dict[str, Any]:
        return {"rule": self.name, "width_share": self.width_share,
                "source": "Dollar, Singh & Girshick, 2021, Fast and Accurate Model Scaling, Section 4"}


@dataclass(frozen=True)
class CappedResolutionRule:
    """EfficientNetV2-style: compound scaling with the resolution capped at ``max_resolution`` px (for a
    baseline at ``base_resolution`` px); the FLOPs above the cap go to the later stages' depth."""

    alpha: float
    beta: float
    gamma: float
    base_resolution: int
    max_resolution: int = 480
    name: str = "v2"

    def __post_init__(self) -> None:
        CompoundRule(self.alpha, self.beta, self.gamma)  # the same checks
        if self.max_resolution < self.base_resolution:
            raise ValueError(f"max_resolution {self.max_resolution} px is below the baseline's "
                             f"{self.base_resolution} px")

    def multipliers(self, s: float) -> Multipliers:
        free = CompoundRule(self.alpha, self.beta, self.gamma).multipliers(s)
        cap = self.max_resolution / self.base_resolution
        if free.resolution <= cap:
            return free
        return replace(free, resolution=cap, late_depth=(free.resolution / cap) ** 2)

    def record(self) -> dict[str, Any]:
        return {"rule": self.name, "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma,
                "max_resolution": self.max_resolution,
                "source": "Tan & Le, 2021, EfficientNetV2, Section 4.3 (resolution capped, depth to later stages)"}


@dataclass(frozen=True)
class ResNetRSRule:
    """ResNet-RS-style: resolution takes ``resolution_share`` of the FLOPs growth; the rest goes to depth when
    ``long_training`` (overfitting possible), to width otherwise (Bello et al., 2021, Section 7)."""

    long_training: bool = False
    resolution_share: float = 0.2
    name: str = "rs"

    def __post_init__(self) -> None:
        _check_share("resolution_share", self.resolution_share)

    def multipliers(self, s: float) -> Multipliers:
        check_multiplier("FLOPs", s)
        resolution = s ** (self.resolution_share / 2)
        rest = s ** (1 - self.resolution_share)
        if self.long_training:
            return Multipliers(rest, 1.0, resolution)
        return Multipliers(1.0, math.sqrt(rest), resolution)

    def record(self) -> dict[str, Any]:
        return {"rule": self.name, "long_training": self.long_training, "resolution_share": self.resolution_share,
                "source": "Bello et al., 2021, Revisiting ResNets, Section 7"}


@dataclass(frozen=True)
class SingleDimensionRule:
    """One dimension alone (Tan & Le, 2019, Figure 3): depth ``s``, width ``sqrt(s)`` or resolution ``sqrt(s)``."""

    dimension: str
    name: str = ""

    def __post_init__(self) -> None:
        if self.dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {', '.join(DIMENSIONS)}, got {self.dimension!r}")
        object.__setattr__(self, "name", self.name or self.dimension)

    def multipliers(self, s: float) -> Multipliers:
        check_multiplier("FLOPs", s)
        root = math.sqrt(s)
        return Multipliers(s if self.dimension == "depth" else 1.0, root if self.dimension == "width" else 1.0,
                           root if self.dimension == "resolution" else 1.0)

    def record(self) -> dict[str, Any]:
        return {"rule": self.name, "source": "Tan & Le, 2019, Figure 3"}


def apply_rule(base: NetworkSpec, rule: ScalingRule, s: float, *, resolution_multiple: int = 1,
               depth_rounding: str = "nearest") -> NetworkSpec:
    """``base`` scaled by ``rule`` for a FLOPs multiplier ``s`` (rounded: whole blocks, channel multiples of 8)."""
    m = rule.multipliers(s)
    scaled = scale(base, depth=m.depth, width=m.width, resolution=m.resolution,
                   resolution_multiple=resolution_multiple, depth_rounding=depth_rounding)
    if m.late_depth == 1.0:
        return scaled
    first_late = len(base.stages) // 2
    stages = tuple(
        replace(stage, repeats=round_repeats(original.repeats, m.depth * m.late_depth, depth_rounding))
        if index >= first_late else stage
        for index, (stage, original) in enumerate(zip(scaled.stages, base.stages)))
    return replace(scaled, stages=stages)


def fit_rule(base: NetworkSpec, rule: ScalingRule, target: float, cost: Callable[[NetworkSpec], float], *,
             tolerance: float = 0.05, resolution_multiple: int = 1,
             depth_rounding: str = "nearest") -> tuple[NetworkSpec, float, BudgetFit]:
    """The network ``rule`` makes from ``base`` whose achieved ``cost`` is closest to ``target``.

    Bisects ``log2(s)`` with :func:`~scaling_search.network.budget.fit_phi` (same grid, same refusal beyond
    ``tolerance``); returns the network, its FLOPs multiplier ``s`` and the fit.
    """

    def network(log2_s: float) -> NetworkSpec:
        return apply_rule(base, rule, 2.0**log2_s, resolution_multiple=resolution_multiple,
                          depth_rounding=depth_rounding)

    fit = fit_phi(target, lambda log2_s: cost(network(log2_s)), tolerance=tolerance)
    return network(fit.phi), 2.0**fit.phi, fit


def parse_rule(name: str, *, coefficients: tuple[float, float, float] | None = None,
               base_resolution: int = 224, max_resolution: int = 480, long_training: bool = False) -> ScalingRule:
    """The rule a user names: compound, fast, v2, rs, width, depth or resolution (compound and v2 need the
    grid's ``coefficients``)."""
    if name in DIMENSIONS:
        return SingleDimensionRule(name)
    if name == "fast":
        return FastCompoundRule()
    if name == "rs":
        return ResNetRSRule(long_training=long_training)
    if name in ("compound", "v2"):
        if coefficients is None:
            raise ValueError(f"rule {name!r} needs the compound coefficients (alpha, beta, gamma)")
        if name == "compound":
            return CompoundRule(*coefficients)
        return CappedResolutionRule(*coefficients, base_resolution=base_resolution, max_resolution=max_resolution)
    raise ValueError(f"unknown scaling rule {name!r}: choose one of {', '.join(RULES)}")


def check_rule(name: str, budget_kind: str, cost: str, base_resolution: int, max_resolution: int = 480) -> None:
    """Refuse, before any work, a rule that cannot meet a budget of ``budget_kind`` under a study's ``cost``
    (only compound scaling fits a latency), or whose parameters are wrong (v2's resolution cap below the
    deployment network's ``base_resolution``)."""
    if name == "compound":
        return
    if budget_kind == "latency" or cost == "latency":
        raise UserError(f"--strategy {name} scales to a MAC budget; drop --cost latency and give a ratio "
                        "or a MAC count, or use --strategy compound for a latency budget")
    if name == "v2":
        try:
            parse_rule("v2", coefficients=PAPER_COEFFICIENTS, base_resolution=base_resolution,
                       max_resolution=max_resolution)
        except ValueError as error:
            raise UserError(f"--max-resolution: {error}") from None


RULES = ("compound", "fast", "v2", "rs", *DIMENSIONS)

__all__ = ["CappedResolutionRule", "CompoundRule", "DIMENSIONS", "FastCompoundRule", "Multipliers", "RULES",
           "ResNetRSRule", "ScalingRule", "SingleDimensionRule", "apply_rule", "check_rule", "fit_rule",
           "parse_rule"]
