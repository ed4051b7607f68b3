"""Compute budgets: a ratio to the baseline (``2x``, ``1.5x``), a MAC count (``800M``, ``1.2G``) or a latency
(``25ms``, ``0.5s``), and the compound coefficient phi that meets one."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

_MAC_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_TIME_SUFFIX = {"ms": 1.0, "s": 1000.0, "us": 1e-3}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_HINT = "use a ratio such as 2x or 1.5x, a MAC count such as 800M or 1.2G, or a latency such as 25ms"


@dataclass(frozen=True)
class Budget:
    """A parsed budget: ``kind`` is ``"ratio"`` (times the baseline's cost), ``"macs"`` or ``"latency"`` (ms)."""

    kind: str
    value: float
    text: str

    def target(self, baseline_cost: float) -> float:
        """The budget in the unit of ``baseline_cost`` (MACs, or ms for a latency budget)."""
        return self.value * baseline_cost if self.kind == "ratio" else self.value

    def target_macs(self, baseline_macs: int) -> float:
        return self.target(baseline_macs)


def parse_budget(text: str) -> Budget:
    """Parse ``2x``, ``1.5x``, ``800M``, ``1.2G``, a plain MAC count, or ``25ms``; one clear error otherwise."""
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(f"cannot read budget {text!r}: {_HINT}")
    number, suffix = float(match.group(1)), match.group(2).lower()
    if suffix == "x":
        if number < 1:
            raise ValueError(f"budget {text!r} is below the baseline (ratio < 1): {_HINT}")
        return Budget("ratio", number, str(text))
    if suffix in _TIME_SUFFIX:
        if number <= 0:
            raise ValueError(f"budget {text!r} must be a positive latency")
        return Budget("latency", number * _TIME_SUFFIX[suffix], str(text))
    if suffix not in _MAC_SUFFIX:
        raise ValueError(f"cannot read budget {text!r}: unknown unit {match.group(2)!r}; {_HINT}")
    macs = number * _MAC_SUFFIX[suffix]
    if macs < 1:
        raise ValueError(f"budget {text!r} must be a positive MAC count")
    return Budget("macs", macs, str(text))


def bisect_phi(target: float, cost_at_phi: Callable[[float], float], what: str) -> float:
    """The largest phi (to 1e-3) whose scaled network's cost is within ``target``; cost must grow with phi."""
    if cost_at_phi(0.0) > target:
        raise ValueError(f"the budget ({target:,.6g}) is below the baseline's {what} ({cost_at_phi(0.0):,.6g})")
    low, high = 0.0, 1.0
    while cost_at_phi(high) <= target:
        low, high = high, high * 2
        if high > 64:
            raise ValueError(f"the budget ({target:,.6g}) is out of reach (phi > 64)")
    while high - low > 1e-3:
        middle = (low + high) / 2
        if cost_at_phi(middle) <= target:
            low = middle
        else:
            high = middle
    return math.floor(low * 1000) / 1000  # rounding down keeps the result within budget


def phi_for_budget(budget: Budget, baseline_macs: int, macs_at_phi: Callable[[float], int],
                   latency_at_phi: Callable[[float], float] | None = None) -> float:
    """The compound coefficient phi for a budget.

    With MACs as the cost, a ratio ``r`` gives ``phi = log2(r)`` exactly as the paper defines it (FLOPS grow by
    about ``2**phi``), and an absolute MAC count is met by bisection on the *achieved* MACs of the scaled,
    rounded network. With ``latency_at_phi`` given (``--cost latency``), ratios and latency budgets are met by
    bisection on the predicted latency instead.
    """
    if budget.kind == "latency" and latency_at_phi is None:
        raise ValueError(f"budget {budget.text} is a latency: use it with --cost latency")
    if latency_at_phi is not None:
        if budget.kind == "macs":
            raise ValueError(f"budget {budget.text} is a MAC count: use it without --cost latency")
        return bisect_phi(budget.target(latency_at_phi(0.0)), latency_at_phi, "predicted latency (ms)")
    if budget.kind == "ratio":
        return math.log2(budget.value)
    return bisect_phi(budget.value, macs_at_phi, "MACs")


__all__ = ["Budget", "bisect_phi", "parse_budget", "phi_for_budget"]
