"""The decision ladder: every grid point at the cheapest rung, the ones that could still be best promoted to rungs
of higher fidelity, seeds added at the top, the decision made there.

Rung 0 is the grid itself (the study's proxy regime). Each rung a preset names (``[search] rungs``,
:class:`scaling_search.settings.ladder.Rung`) trains the points promoted from the rung below under its regime:
more epochs, then a larger proxy resolution or width. Promotion is successive halving (Li et al. 2018,
"Hyperband") with the noise counted: a point climbs when it could still be the best of its rung -- its P(best)
is at least :data:`PROMOTE_P`, or it is statistically tied with the best (:func:`~.ties.tied_with_best`) --
and a rung takes at most a third of the rung below (:func:`~scaling_search.settings.ladder.promotion_cap`):
the most accurate first, then, under the cost tie-break, the cheapest of the others that could still be best
(their order by accuracy is noise; :func:`promote`). Cheap rungs only eliminate: the decision is made at the
top rung, where each point trains under the rung's seeds (``seeds = 2`` counts seed noise in the decision; one
seed counts the validation noise alone, and says so) and racing (:mod:`scaling_search.search.race`) adds seeds
to the leaders until the winner is separated or the race's budget is spent.

Every rung is a stage of the study (``<name>:rung<k>-e<epochs>-r<px>-w<width>-s<seeds>``): resumable, shared by
workers, its promoted points fixed by the stored results below it, so an interrupted ladder resumes with the same
decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, NamedTuple

import optuna

from scaling_search.errors import UserError
from scaling_search.search.context import StudyContext, StudyStore
from scaling_search.search.fidelity import regime
from scaling_search.search.fidelity_points import regime_points
from scaling_search.search.grid import choose_coefficients, describe_grid_point, grid_table
from scaling_search.search.queue import prepare_points, train_stage
from scaling_search.search.race import raced_rows
from scaling_search.search.ties import cost_key, latency_predictor, tied_with_best
from scaling_search.search.workers import with_worker_threads, with_workers
from scaling_search.settings.ladder import Rung, promotion_cap, regime_stage
from scaling_search.settings.study import StudyConfig

#: A point whose probability of being the best of its rung is at least this climbs (as racing's leaders do).
PROMOTE_P = 0.05


def rung_config(config: StudyConfig, rung: int) -> StudyConfig:
    """The config that trains rung ``rung`` (0: the grid, the study's own), under the rung's seeds."""
    return config if rung == 0 else config.search.rungs[rung - 1].config(config)


def rung_stage(config: StudyConfig, rung: int) -> str:
    """The stage that holds rung ``rung``: ``grid``, then ``rung1-e6-r40-w0.5-s2`` (seeds last) and so on."""
    if rung == 0:
        return "grid"
    trained = rung_config(config, rung)
    return f"{regime_stage(f'rung{rung}', trained)}-s{trained.search.repeats}"


def race_stage(config: StudyConfig) -> str:
    """The stage of the extra seeds raced at the top rung (``race`` on the grid itself, as before rungs)."""
    top = len(config.search.rungs)
    return "race" if top == 0 else f"race-{rung_stage(config, top)}"


def cost_factor(config: StudyConfig, rung: Rung) -> float:
    """A rung's training cost per point over the grid's: epochs times the proxy's pixels and channels squared."""
    trained = rung.config(config)
    return (rung.epochs * (trained.proxy.resolution / config.proxy.resolution) ** 2
            * (trained.proxy.width / config.proxy.width) ** 2)


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    complete = [r for r in rows if r["state"] == "complete" and r["accuracy"] is not None]
    return sorted(complete, key=lambda r: (-r["accuracy"], r["grid_point"]))


def could_be_best(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A rung's finished rows that could still be its best, most accurate first: P(best) >= :data:`PROMOTE_P`
    (set on every finished row) or tied with the best at 95%."""
    ranked = _ranked(rows)
    if not ranked:
        return []
    choose_coefficients(ranked)  # sets each row's p_best
    tied = {r["grid_point"] for r in tied_with_best(ranked)}
    return [r for r in ranked if r.get("p_best", 0.0) >= PROMOTE_P or r["grid_point"] in tied]


class Promotion(NamedTuple):
    """What a rung promotes (grid points, in climbing order), how many of its points could still be best, and the
    rung's cap (:func:`~scaling_search.settings.ladder.promotion_cap`)."""

    points: list[int]
    could_be_best: int
    cap: int


def promote(rows: list[dict[str, Any]], cost: Callable[[dict[str, Any]], float] | None = None) -> Promotion:
    """The grid points of a rung that could still be best (P(best) >= :data:`PROMOTE_P` or tied with the best), at
    most :func:`promotion_cap` of them and never fewer than two.

    When more could be best than the cap takes, the most accurate climbs first, and then, where ``cost`` is given
    (the cost tie-break's key: :func:`~.ties.cost_key`), the cheapest of the others: among points the rung cannot
    tell apart, their order by accuracy is noise, and the cheap ones are those the tie-break would choose should
    they stay tied above. Without ``cost`` (``tie_break = "none"``) they climb by accuracy.
    """
    ranked = _ranked(rows)
    cap = promotion_cap(len(ranked))
    could = could_be_best(ranked)
    keep = could
    if cost is not None and len(could) > cap:
        keep = [could[0], *sorted(could[1:], key=lambda r: (cost(r), -r["accuracy"], r["grid_point"]))]
    keep = keep[:cap]
    for row in ranked:  # two at least: a rung decides between candidates
        if len(keep) >= min(2, len(ranked)):
            break
        if row not in keep:
            keep.append(row)
    return Promotion([r["grid_point"] for r in keep], len(could), cap)


def contenders(rows: list[dict[str, Any]], cost: Callable[[dict[str, Any]], float] | None = None) -> list[int]:
    """The grid points :func:`promote` takes from a rung, in climbing order."""
    return promote(rows, cost).points


@dataclass(frozen=True)
class RungResult:
    """One rung of a finished ladder: its regime, a row per point it trained (every seed merged, keyed by the
    grid point), the grid points it promoted to the rung above (none at the top), and how they were chosen
    (``{"order", "could_be_best", "cap"}``: when more could be best than the cap, the most accurate first and
    the rest by ``order``; None at the top, and on rungs stored before this was recorded)."""

    index: int
    stage: str
    regime: dict[str, Any]
    rows: list[dict[str, Any]]
    promoted: list[int]
    promotion: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        keys = ("grid_point", "alpha", "beta", "gamma", "accuracy", "accuracy_std", "seeds", "accuracy_per_seed",
                "val_images", "p_best", "interval")
        return {"rung": self.index, "stage": self.stage, "regime": self.regime, "promoted": self.promoted,
                "promotion": self.promotion, "candidates": [{k: row.get(k) for k in keys} for row in self.rows]}


def _rows(store: StudyStore, study: optuna.Study, raced: bool, points: list[int] | None) -> list[dict[str, Any]]:
    """A rung's rows keyed by grid point (a rung above the grid holds the promoted points in order)."""
    rows = raced_rows(store, study, race_stage(store.config)) if raced else grid_table(study)
    for row in rows:
        row["grid_point"] = row["point"] if points is None else points[row["point"]]
    return rows


def climb(ctx: StudyContext, grid: optuna.Study) -> None:
    """Train every rung above the grid on the points promoted from below, each as a worker-shared stage.

    Racing at the top rung is the caller's (it needs the top rung's context: :func:`rung_context`).
    """
    config, below = ctx.config, grid
    promoted_below: list[int] | None = None
    for index in range(1, len(config.search.rungs) + 1):
        stage = rung_stage(config, index)
        stored = ctx.store.stage(stage)
        promotion: dict[str, Any] | None = None
        if stored is not None and "promoted" in stored.user_attrs:
            # fixed when the rung was made: a latency table calibrated since must not move a study's ladder
            promoted = list(stored.user_attrs["promoted"])
        else:
            order, key = promotion_order(config, grid)
            chosen = promote(_rows(ctx.store, below, False, promoted_below), key)
            promoted = chosen.points
            promotion = {"order": order, "could_be_best": chosen.could_be_best, "cap": chosen.cap}
        rung_ctx = rung_context(ctx, index)
        points = regime_points(grid.user_attrs["points"], rung_ctx.transform)
        entries = [{**points[i], "attrs": {**points[i]["attrs"], "grid_point": i}} for i in promoted]
        identity = {"baseline": grid.user_attrs["baseline"], "promoted": promoted}
        below = prepare_points(rung_ctx, stage, entries, identity)
        if "promotion" not in below.user_attrs and promotion is not None:
            below.set_user_attr("promotion", promotion)  # how the points were chosen, for the decision's lines
        promoted_below = list(below.user_attrs["promoted"])
        with_workers(rung_ctx, partial(train_stage, stage, f"rung {index}", describe_grid_point))


def promotion_order(config: StudyConfig, grid: optuna.Study) -> tuple[str, Callable[[dict[str, Any]], float] | None]:
    """How a rung orders the points that could still be best beyond its cap (:func:`promote`): by the cost
    tie-break's key (``"latency"`` where the machine has a calibrated table, else ``"activations"``), or by
    ``"accuracy"`` under ``tie_break = "none"``."""
    if config.search.tie_break != "cost":
        return "accuracy", None
    return cost_key(latency_predictor(config.search, grid.user_attrs["points"]))


def rung_context(ctx: StudyContext, index: int) -> StudyContext:
    """The context that trains rung ``index``: its regime's config and proxy transform, the same data and storage.

    Above the grid a point's accuracy after its last epoch is all the ladder reads (promotion, ties, racing, the
    stage-1 confirmation) and no pruner reads the others (a regime's stages never prune): such a rung evaluates
    the last epoch alone.
    """
    config = rung_config(ctx.config, index)
    if index > 0 and config.search.pruner == "none":
        config = replace(config, train=replace(config.train, evaluate_every_epoch=False))
    return ctx.derive(config=with_worker_threads(config), transform=config.proxy_transform(ctx.network))


def load_ladder(store: StudyStore, grid: optuna.Study) -> list[RungResult]:
    """Every rung of a finished ladder, from the storage (racing's seeds merged at the top); refuses a rung that is
    missing or unfinished."""
    config = store.config
    top = len(config.search.rungs)
    studies: list[tuple[optuna.Study, list[int] | None]] = [(grid, None)]
    for index in range(1, top + 1):
        study = store.stage(rung_stage(config, index))
        if study is None or "points" not in study.user_attrs:
            raise UserError(f"study {config.name!r}: rung {index} of the decision ladder "
                            f"({config.search.rungs[index - 1].describe(config)}) is not trained yet; rerun "
                            "'scaling-search grid' (or 'run') to climb it, or give the --rungs it was run with")
        studies.append((study, list(study.user_attrs["promoted"])))
    results = []
    for index, (study, points) in enumerate(studies):
        rows = _rows(store, study, index == top, points)
        expected = len(study.user_attrs["points"])
        if index and len([r for r in rows if r["state"] == "complete"]) < expected:
            raise UserError(f"study {config.name!r}: rung {index} of the decision ladder has {len(rows)} of "
                            f"{expected} points finished; rerun 'scaling-search grid' (or 'run') to finish it")
        promoted = studies[index + 1][1] or [] if index < top else []
        promotion = studies[index + 1][0].user_attrs.get("promotion") if index < top else None
        results.append(RungResult(index, rung_stage(config, index), regime(study.user_attrs["settings"]), rows,
                                  list(promoted), promotion))
    return results


__all__ = ["PROMOTE_P", "Promotion", "RungResult", "climb", "contenders", "cost_factor", "could_be_best", "load_ladder",
           "promote", "promotion_order", "race_stage", "rung_config", "rung_context", "rung_stage"]
