"""Compute budgets: ``2x`` / ``1.5x`` (a ratio to the baseline) or an absolute MAC count (``800M``, ``1.2G``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """A parsed budget: ``kind`` is ``"ratio"`` (times the baseline's MACs) or ``"macs"`` (absolute)."""

    kind: str
    value: float
    text: str

    def target_macs(self, baseline_macs: int) -> float:
        return self.value * baseline_macs if self.kind == "ratio" else self.value


def parse_budget(text: str) -> Budget:
    """Parse ``2x``, ``1.5x``, ``800M``, ``1.2G`` or a plain MAC count; one clear error otherwise."""
    match = _PATTERN.match(str(text))
    hint = "use a ratio such as 2x or 1.5x, or a MAC count such as 800M or 1.2G"
    if not match:
        raise ValueError(f"cannot read budget {text!r}: {hint}")
    number, suffix = float(match.group(1)), match.group(2).lower()
    if suffix == "x":
        if number < 1:
            raise ValueError(f"budget {text!r} is below the baseline (ratio < 1): {hint}")
        return Budget("ratio", number, str(text))
    if suffix not in _SUFFIX:
        raise ValueError(f"cannot read budget {text!r}: unknown unit {match.group(2)!r}; {hint}")
    macs = number * _SUFFIX[suffix]
    if macs < 1:
        raise ValueError(f"budget {text!r} must be a positive MAC count")
    return Budget("macs", macs, str(text))


def phi_for_budget(budget: Budget, baseline_macs: int, macs_at_phi: Callable[[float], int]) -> float:
    """The compound coefficient phi for a budget.

    A ratio ``r`` gives ``phi = log2(r)`` exactly as the paper defines it (FLOPS grow by about ``2**phi``).
    An absolute budget is met by bisection on the *achieved* MACs of the scaled, rounded network: the largest
    phi (to 1e-3) whose model fits the budget.
    """
    if budget.kind == "ratio":
        return math.log2(budget.value)
    target = budget.value
    if macs_at_phi(0.0) > target:
        raise ValueError(f"budget {budget.text} is below the baseline's {baseline_macs:,} MACs")
    low, high = 0.0, 1.0
    while macs_at_phi(high) <= target:
        low, high = high, high * 2
        if high > 64:
            raise ValueError(f"budget {budget.text} is out of reach (phi > 64)")
    while high - low > 1e-3:
        middle = (low + high) / 2
        if macs_at_phi(middle) <= target:
            low = middle
        else:
            high = middle
    return round(low, 3)


__all__ = ["Budget", "parse_budget", "phi_for_budget"]
