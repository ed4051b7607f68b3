"""Points that cannot be told apart, and how one of them is chosen.

Two points are tied when the difference of their mean accuracies lies within its 95% interval of zero: each
mean's variance is its validation sampling plus, with several seeds, their spread
(:func:`scaling_search.search.confidence.accuracy_variance`), and the two are independent. Among the points
tied with the most accurate, the cheapest to run is chosen: the lowest predicted latency where the machine has a
calibrated latency table, else the fewest activations (Dollar et al. 2021, "Fast and Accurate Model Scaling":
activations, more than FLOPs, track runtime on accelerators). ``tie_break = "none"`` chooses by accuracy alone.

No point has a winner's claim when even the most accurate is not above chance (``1 / classes``) at 95%: the
smoke preset's one epoch on 120 images, say. Then every point is tied, and the choice is by cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from scaling_search.search.confidence import Z95, accuracy_variance
from scaling_search.settings.study import SearchSettings


def _variance(row: dict[str, Any]) -> float:
    variance = accuracy_variance(row["accuracy"], row.get("val_images"), row.get("accuracy_std"), row.get("seeds", 1))
    return variance or 0.0


def standard_error(row: dict[str, Any]) -> float:
    """The standard deviation of a point's mean accuracy (validation sampling and seed spread; 0 if neither)."""
    return math.sqrt(_variance(row))


def interval(row: dict[str, Any]) -> tuple[float, float]:
    """A point's 95% interval of its mean accuracy."""
    half = Z95 * standard_error(row)
    return row["accuracy"] - half, row["accuracy"] + half


def tied_with_best(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose accuracy is not below the most accurate row's at 95% (the best included), best first."""
    ranked = sorted(rows, key=lambda r: (-r["accuracy"], r.get("grid_point", r.get("point", 0))))
    if not ranked:
        return []
    best = ranked[0]
    return [r for r in ranked
            if best["accuracy"] - r["accuracy"] <= Z95 * math.sqrt(_variance(best) + _variance(r))]


def above_chance(row: dict[str, Any], classes: int) -> bool:
    """Whether a point's accuracy is above guessing (``1 / classes``) at 95%."""
    return interval(row)[0] > 1.0 / classes


class Choice(NamedTuple):
    """The chosen row, what decided it (``"accuracy"``, ``"latency"`` or ``"activations"``) and the sentence
    every output prints."""

    row: dict[str, Any]
    decided_by: str
    why: str

    @property
    def summary(self) -> str:
        """``"separated"``, ``"tied: chosen for latency"``, ``"no winner: chosen for activations"``: the sentence's
        head, for one-line answers."""
        if self.why.startswith("separated"):
            return "separated"
        return f"{self.why.split(':')[0]}: chosen for {self.decided_by}"


def latency_predictor(search: SearchSettings, points: list[dict[str, Any]]) -> Callable[[dict[str, Any]], float] | None:
    """The machine's calibrated latency table's prediction (ms) of a row's deployment network (``points``: the
    grid's stored points, indexed by a row's ``grid_point``), or None where the machine has no calibrated table
    for the study's latency device and runtime (``search``: the study's search settings)."""
    from scaling_search.errors import UserError
    from scaling_search.latency import LatencyTable
    from scaling_search.network.spec import NetworkSpec

    try:
        table = LatencyTable.open_calibrated(search.latency_device, 1, runtime=search.latency_runtime)
    except (UserError, RuntimeError):
        return None
    return lambda row: table.predict(NetworkSpec.from_dict(points[row["grid_point"]]["deployment"]))


def cost_key(latency: Callable[[dict[str, Any]], float] | None) -> tuple[str, Callable[[dict[str, Any]], float]]:
    """What the cost tie-break ranks rows by, and its name: predicted latency where a predictor is given, else
    activations."""
    if latency is not None:
        return "latency", latency
    return "activations", lambda row: float(row["activations"])


def choose(tied: list[dict[str, Any]], tie_break: str, latency: Callable[[dict[str, Any]], float] | None,
           winner: bool) -> Choice:
    """One of the ``tied`` rows (best first): by accuracy when it stands alone or ``tie_break`` is ``"none"``, else
    the lowest ``latency(row)`` where a predictor is given, else the fewest ``activations``."""
    best = tied[0]
    if not winner:
        lead = "no winner: no point is above chance at 95%"
    elif len(tied) == 1:
        return Choice(best, "accuracy", "separated: the most accurate, ahead of every other point at 95%")
    else:
        lead = f"tied: {len(tied)} points cannot be told apart at 95%"
    if tie_break == "none":
        return Choice(best, "accuracy", f"{lead}; chosen for accuracy (--tie-break none)")
    if latency is not None:
        costs = {id(row): latency(row) for row in tied}
        row = min(tied, key=lambda r: (costs[id(r)], -r["accuracy"]))
        return Choice(row, "latency", f"{lead}; chosen for latency ({costs[id(row)]:.2f} ms predicted, the lowest "
                                      "of the tied)")
    row = min(tied, key=lambda r: (r["activations"], -r["accuracy"]))
    return Choice(row, "activations", f"{lead}; chosen for activations ({row['activations'] / 1e6:.1f}M, the "
                                      "fewest of the tied; Dollar et al. 2021: activations track runtime)")


__all__ = ["Choice", "above_chance", "choose", "cost_key", "interval", "latency_predictor", "standard_error",
           "tied_with_best"]
