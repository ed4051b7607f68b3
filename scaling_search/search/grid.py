"""Stage 2: the grid of compound coefficients at deployment scale (paper Eq. 3, phi = 1).

A point (alpha, beta, gamma), all >= 1, is kept when both the nominal product ``alpha * beta**2 * gamma**2``
and the *achieved* ratio of deployment MACs (the baseline scaled and rounded, over the baseline) lie within
``grid_tol`` of 2. Points whose proxies are the same network are trained once; the collision is reported.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import optuna
from optuna.trial import TrialState

from scaling_search.search.confidence import SEPARATED_AT, accuracy_variance, probability_best
from scaling_search.network.cost import count_cost
from scaling_search.errors import UserError
from scaling_search.network.proxy import ProxyTransform
from scaling_search.search.candidate import Candidate
from scaling_search.search.context import StudyContext
from scaling_search.settings.study import DeploymentSettings, StudyConfig
from scaling_search.search.queue import point, prepare_points
from scaling_search.search.storage import DONE
from scaling_search.network.spec import NetworkSpec


class GridPoint(NamedTuple):
    alpha: float
    beta: float
    gamma: float
    nominal_ratio: float   # alpha * beta**2 * gamma**2
    achieved_ratio: float  # deployment MACs of the scaled, rounded network / the baseline's


class Collision(NamedTuple):
    """A triple dropped because its proxy is the network of ``kept``'s; ``same_deployment`` says whether the
    deployment networks are equal too (rounding at deployment scale) or only the proxies."""

    dropped: tuple[float, float, float]
    kept: tuple[float, float, float]
    same_deployment: bool


class Grid(NamedTuple):
    points: list[GridPoint]
    collisions: list[Collision]


def coefficient_grid(baseline: NetworkSpec, transform: ProxyTransform, step: float, tolerance: float,
                     maximum: float = 2.0, deployment: DeploymentSettings = DeploymentSettings()) -> Grid:
    """Every (alpha, beta, gamma) on a ``step`` grid in [1, maximum] that meets the constraint at deployment scale.

    Triples whose proxies are the same network are trained once, under the triple whose nominal product is
    closest to 2; the others are returned as collisions.
    """
    if not 0 < step <= 1:
        raise UserError(f"grid step must be in (0, 1], got {step}")
    if tolerance < 0:
        raise UserError(f"grid tolerance must be >= 0, got {tolerance}")
    count = int(math.floor((maximum - 1.0) / step + 1e-9)) + 1
    values = [round(1.0 + i * step, 6) for i in range(count)]
    base_macs = count_cost(baseline).macs
    by_proxy: dict[NetworkSpec, tuple[GridPoint, NetworkSpec]] = {}
    collisions: list[Collision] = []
    for alpha in values:
        for beta in values:
            for gamma in values:
                nominal = alpha * beta**2 * gamma**2
                if abs(nominal - 2.0) > tolerance:
                    continue
                scaled = deployment.compound(baseline, alpha, beta, gamma, 1.0)
                achieved = count_cost(scaled).macs / base_macs
                if abs(achieved - 2.0) > tolerance:
                    continue
                candidate = Candidate.of(scaled, transform)
                here = GridPoint(alpha, beta, gamma, round(nominal, 6), round(achieved, 6))
                known = by_proxy.get(candidate.proxy)
                if known is None:
                    by_proxy[candidate.proxy] = (here, scaled)
                    continue
                kept, kept_spec = known
                if abs(here.nominal_ratio - 2) < abs(kept.nominal_ratio - 2):
                    by_proxy[candidate.proxy] = (here, scaled)
                    here, kept = kept, here
                collisions.append(Collision(here[:3], kept[:3], scaled == kept_spec))
    points = sorted(p for p, _ in by_proxy.values())
    if not points:
        raise UserError(
            f"the grid is empty: no (alpha, beta, gamma) with step {step} has alpha*beta^2*gamma^2 and a "
            f"deployment MACs ratio both within {tolerance} of 2; raise --grid-tol or lower --grid-step")
    return Grid(points, sorted(collisions))


def grid_of(config: StudyConfig, baseline: NetworkSpec, transform: ProxyTransform) -> Grid:
    search = config.search
    return coefficient_grid(baseline, transform, search.grid_step, search.grid_tol, search.grid_max,
                            config.deployment)


def prepare_grid(ctx: StudyContext, baseline: NetworkSpec) -> optuna.Study:
    """The grid study with every (alpha, beta, gamma) point enqueued once, as Optuna params."""
    config, transform = ctx.config, ctx.transform
    grid = grid_of(config, baseline, transform)
    points = [
        point(Candidate.of(config.deployment.compound(baseline, p.alpha, p.beta, p.gamma, 1.0), transform),
              p._asdict(), {"alpha": p.alpha, "beta": p.beta, "gamma": p.gamma})
        for p in grid.points
    ]
    bounds = {name: (1.0, config.search.grid_max) for name in ("alpha", "beta", "gamma")}
    study = prepare_points(ctx, "grid", points, {"baseline": baseline.to_dict()}, bounds)
    if "collisions" not in study.user_attrs:
        study.set_user_attr("collisions", [c._asdict() for c in grid.collisions])
    return study


def describe_grid_point(attrs: dict[str, Any]) -> str:
    """A grid point in a log line: its coefficients, its deployment MACs ratio and its proxy's resolution."""
    return (f"alpha {attrs.get('alpha'):g} beta {attrs.get('beta'):g} gamma {attrs.get('gamma'):g} "
            f"({attrs.get('achieved_ratio', float('nan')):.3f}x deployment MACs, proxy "
            f"{attrs.get('proxy_resolution')} px)")


def grid_table(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per grid point with its best finished trial (completed first)."""
    rows: dict[int, dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if "point" not in attrs or trial.state not in DONE or attrs.get("idle"):
            continue
        row = {"point": attrs["point"], "trial": trial.number, "state": trial.state.name.lower(),
               "alpha": attrs.get("alpha"), "beta": attrs.get("beta"), "gamma": attrs.get("gamma"),
               "nominal_ratio": attrs.get("nominal_ratio"), "achieved_ratio": attrs.get("achieved_ratio"),
               "resolution": attrs.get("resolution"), "macs": attrs.get("macs"), "params": attrs.get("params"),
               "activations": attrs.get("activations"),
               "proxy_resolution": attrs.get("proxy_resolution"), "proxy_macs": attrs.get("proxy_macs"),
               "accuracy": attrs.get("accuracy", trial.value if trial.state == TrialState.COMPLETE else None),
               "accuracy_std": attrs.get("accuracy_std"), "seeds": len(attrs.get("accuracy_per_seed") or [None]),
               "accuracy_per_seed": attrs.get("accuracy_per_seed"),
               "val_images": attrs.get("val_images"), "train_loss": attrs.get("train_loss"),
               "images_per_s": attrs.get("images_per_s")}
        if attrs["point"] not in rows or (row["state"] == "complete" and rows[attrs["point"]]["state"] != "complete"):
            rows[attrs["point"]] = row
    return [rows[k] for k in sorted(rows)]


def choose_coefficients(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The winning grid point (highest mean accuracy among completed points) and how clearly it won.

    Every completed row gets ``p_best``, its probability of being the best given validation and seed noise
    (:func:`scaling_search.search.confidence.probability_best`); ``separated`` says whether the winner's reaches
    :data:`~scaling_search.search.confidence.SEPARATED_AT` (None when no noise is known). ``noise`` names what the
    probabilities count: with one seed, the validation sampling alone (they overstate the confidence).
    """
    complete = sorted((r for r in rows if r["state"] == "complete" and r["accuracy"] is not None),
                      key=lambda r: (-r["accuracy"], r["point"]))
    if not complete:
        raise UserError("no grid point completed (all pruned or failed); lower the pruning or check the data")
    winner = complete[0]
    summary: dict[str, Any] = {"winner": winner, "runner_up": complete[1] if len(complete) > 1 else None}
    if summary["runner_up"] is not None:
        summary["gap"] = winner["accuracy"] - summary["runner_up"]["accuracy"]
    variances = [accuracy_variance(r["accuracy"], r.get("val_images"), r.get("accuracy_std"), r.get("seeds", 1))
                 for r in complete]
    summary["separated"] = None
    if all(v is not None for v in variances):
        for row, p in zip(complete, probability_best([r["accuracy"] for r in complete], variances)):
            row["p_best"] = p
        summary["p_best"] = winner["p_best"]
        summary["separated"] = winner["p_best"] >= SEPARATED_AT
        seeds = [r.get("seeds", 1) for r in complete]
        summary["noise"] = "validation images and seeds" if min(seeds) > 1 else \
            "validation images, and seeds where a point has more than one (raced)" if max(seeds) > 1 else \
            "validation images only (one seed: training noise not measured, so P(best) is overstated)"
    return summary


__all__ = ["Collision", "Grid", "GridPoint", "choose_coefficients", "coefficient_grid", "grid_of", "grid_table",
           "prepare_grid"]
