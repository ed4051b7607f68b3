"""Compute budgets at deployment scale, and the scaling coefficient phi that meets one.

A budget is a ratio to the deployment baseline's cost (``2x``, ``0.5x``), a MAC count (``800M``, ``1.2G``) or a
latency (``25ms``, ``0.5s``). For every kind, phi is found by bisection on the *achieved* cost of the scaled,
rounded deployment network (rounding makes cost a step function of phi, so ``phi = log2(ratio)`` can miss by
far: 9x instead of 4x at proxy sizes), and the network is accepted only within a relative tolerance of the
target; otherwise :class:`BudgetMiss` names the closest achievable cost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scaling_search.errors import UserError

if TYPE_CHECKING:
    from scaling_search.network.spec import NetworkSpec

_MAC_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_TIME_SUFFIX = {"ms": 1.0, "s": 1000.0, "us": 1e-3}
_PATTERN = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_HINT = "use a ratio such as 2x or 0.5x, a MAC count such as 800M or 1.2G, or a latency such as 25ms"

#: Default relative tolerance of an exported network's cost around its budget (+-5%).
BUDGET_TOLERANCE = 0.05
#: phi is searched on a grid of this step, so an exported phi is exactly its 3-decimal label.
PHI_STEP = 1e-3
#: |phi| beyond this is out of reach (2**16 times the baseline's cost in MACs).
PHI_LIMIT = 16.0


@dataclass(frozen=True)
class Budget:
    """A parsed budget: ``kind`` is ``"ratio"`` (times the baseline's cost), ``"macs"`` or ``"latency"`` (ms)."""

    kind: str
    value: float
    text: str

    def target(self, baseline_cost: float) -> float:
        """The budget in the unit of ``baseline_cost`` (MACs, or ms for a latency budget)."""
        return self.value * baseline_cost if self.kind == "ratio" else self.value


def parse_budget(text: str) -> Budget:
    """Parse ``2x``, ``0.5x``, ``800M``, ``1.2G``, a plain MAC count, or ``25ms``; one clear error otherwise."""
    match = _PATTERN.match(str(text))
    if not match:
        raise UserError(f"cannot read budget {text!r}: {_HINT}")
    number, suffix = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(number) or number <= 0:
        raise UserError(f"budget {text!r} must be a positive, finite number: {_HINT}")
    if suffix == "x":
        if not 2.0**-PHI_LIMIT <= number <= 2.0**PHI_LIMIT:
            raise UserError(f"budget {text!r} is out of reach: ratios from 2^-{PHI_LIMIT:g} to 2^{PHI_LIMIT:g}")
        return Budget("ratio", number, str(text))
    if suffix in _TIME_SUFFIX:
        return Budget("latency", number * _TIME_SUFFIX[suffix], str(text))
    if suffix not in _MAC_SUFFIX:
        raise UserError(f"cannot read budget {text!r}: unknown unit {match.group(2)!r}; {_HINT}")
    macs = number * _MAC_SUFFIX[suffix]
    if macs < 1 or not math.isfinite(macs):
        raise UserError(f"budget {text!r} must be a positive MAC count")
    return Budget("macs", macs, str(text))


@dataclass(frozen=True)
class BudgetFit:
    """The phi whose scaled network's achieved cost is closest to ``target`` (relative error)."""

    phi: float
    target: float
    achieved: float

    @property
    def relative_error(self) -> float:
        return self.achieved / self.target - 1.0


class BudgetMiss(UserError):
    """No phi lands within tolerance of the budget: rounding jumps over it. Carries the closest fit."""

    def __init__(self, message: str, fit: BudgetFit) -> None:
        super().__init__(message)
        self.fit = fit


def fit_phi(target: float, cost_at_phi: Callable[[float], float], *, tolerance: float = BUDGET_TOLERANCE,
            what: str = "MACs", unit: Callable[[float], str] = lambda v: f"{v:,.0f}") -> BudgetFit:
    """Bisect phi (on a 0.001 grid, negative too) for the achieved cost closest to ``target``.

    ``cost_at_phi`` must not decrease with phi (true of scaled MACs and of a latency table). The two phis
    either side of the crossing are compared and the closer one (the cheaper one on a tie) is kept.

    Raises:
        BudgetMiss: the closest achievable cost is more than ``tolerance`` (relative) from the target, or
            (whatever the tolerance) the target lies beyond phi = +-16.
    """
    if not (target > 0 and math.isfinite(target)):
        raise UserError(f"the budget must be a positive, finite {what} value, got {target}")
    limit = int(round(PHI_LIMIT / PHI_STEP))
    cache: dict[int, float] = {}

    def cost(k: int) -> float:
        if k not in cache:
            cache[k] = float(cost_at_phi(k * PHI_STEP))
        return cache[k]

    # Bracket outward from phi = 0 (phi +-1, +-2, +-4, ...), so a latency table is never asked about networks
    # far from the answer; invariant once bracketed: cost(low) <= target < cost(high).
    step = int(round(1 / PHI_STEP))
    low = high = None
    if cost(0) <= target:
        low = 0
        while high is None:
            probe = min(limit, low + step)
            if cost(probe) > target:
                high = probe
            else:
                low, step = probe, step * 2
                if probe == limit:
                    break
    else:
        high = 0
        while low is None:
            probe = max(-limit, high - step)
            if cost(probe) <= target:
                low = probe
            else:
                high, step = probe, step * 2
                if probe == -limit:
                    break
    if low is None or high is None:  # beyond phi = +-16: out of reach whatever the tolerance
        end = high if low is None else low
        fit = BudgetFit(round(end * PHI_STEP, 3), target, cost(end))
        raise BudgetMiss(f"the budget ({unit(target)} {what}) lies beyond phi = {fit.phi:+g}, where the scaled "
                         f"network costs {unit(fit.achieved)}; choose a budget within reach", fit)
    else:
        while high - low > 1:
            middle = (low + high) // 2
            if cost(middle) <= target:
                low = middle
            else:
                high = middle
        candidates = [low, high]
    best = min(candidates, key=lambda k: (abs(cost(k) / target - 1.0), cost(k)))
    fit = BudgetFit(round(best * PHI_STEP, 3), target, cost(best))
    if abs(fit.relative_error) > tolerance:
        neighbours = ", ".join(f"{unit(cost(k))} at phi {k * PHI_STEP:.3f}" for k in candidates)
        raise BudgetMiss(
            f"no scaled network lands within {tolerance:.0%} of the budget ({unit(target)} {what}): the closest "
            f"is {unit(fit.achieved)} ({fit.relative_error:+.1%}; {neighbours}); choose another budget or "
            f"widen --budget-tol", fit)
    return fit


def fit_budget(baseline: NetworkSpec, member: Callable[[float], NetworkSpec], budget: Budget,
               predict_ms: Callable[[NetworkSpec], float] | None = None,
               tolerance: float = BUDGET_TOLERANCE) -> BudgetFit:
    """The phi whose network ``member(phi)`` meets ``budget`` within ``tolerance`` (bisection, phi < 0 too).

    Ratios and MAC counts are met on achieved MACs; with ``predict_ms`` (a calibrated latency table's
    prediction), ratios and latencies on the predicted latency.

    Raises:
        BudgetMiss: rounding makes the budget unreachable within tolerance (names the closest achieved value).
    """
    from scaling_search.network.cost import count_cost

    cost: Callable[[NetworkSpec], float]
    if predict_ms is not None:
        if budget.kind == "macs":
            raise UserError(f"budget {budget.text} is a MAC count: use a ratio or a latency with --cost latency")
        cost, what, unit = predict_ms, "ms predicted latency", (lambda v: f"{v:.2f}")
    else:
        if budget.kind == "latency":
            raise UserError(f"budget {budget.text} is a latency: add --cost latency")
        cost, what, unit = (lambda spec: float(count_cost(spec).macs)), "deployment MACs", _macs
    return fit_phi(budget.target(cost(baseline)), lambda phi: cost(member(phi)), tolerance=tolerance, what=what,
                   unit=unit)


def _macs(value: float) -> str:
    return f"{value / 1e6:,.1f}M"


def parse_family(text: str | None) -> list[float] | None:
    """``"0:7"`` -> phi 0..7; ``"-1:2"`` -> -1..2; ``"0,1,2.5"`` -> those values."""
    if not text:
        return None
    try:
        if ":" in text and not text.startswith(":"):
            low, high = (int(part) for part in text.split(":"))
            if high < low or high - low > 32:
                raise ValueError
            return [float(p) for p in range(low, high + 1)]
        values = [float(part) for part in text.split(",")]
        if any(abs(v) > 16 for v in values):
            raise ValueError
        return values
    except ValueError:
        raise UserError(f"cannot read --family {text!r}: use a range such as 0:7 or -1:3, or a list such as "
                        "0,1,2.5 (|phi| <= 16)") from None


__all__ = ["BUDGET_TOLERANCE", "PHI_LIMIT", "PHI_STEP", "Budget", "BudgetFit", "BudgetMiss", "fit_budget", "fit_phi", "parse_budget",
           "parse_family"]
