"""The decision of stage 2: the finished grid and ladder, every seed of every point merged, the points tied with the
best at the top rung, and the one chosen among them (:mod:`scaling_search.search.ties`).

:class:`Decision` is what ``run`` prints, what an exported config's ``evidence`` records, what the report shows
and what ``decision.json`` holds: one object, so the four cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from scaling_search.errors import UserError
from scaling_search.network.spec import NetworkSpec
from scaling_search.search.confidence import SEPARATED_AT
from scaling_search.search.context import StudyStore
from scaling_search.search.grid import choose_coefficients, grid_table
from scaling_search.search.ladder import RungResult, load_ladder
from scaling_search.search.rank_agreement import rank_agreement
from scaling_search.search.ties import (Choice, above_chance, choose, interval, latency_predictor, standard_error,
                                        tied_with_best)
from scaling_search.settings.study import mask_credentials

DECISION_FORMAT = "scaling-search/decision"


def rung_fidelity(below: RungResult, above: RungResult, seed: int) -> dict[str, Any]:
    """How the lower rung ranked the points it promoted, against the higher rung's ranking of them (Kendall tau,
    its interval and permutation p-value, counting each point's noise in both; :mod:`~.rank_agreement`)."""
    lower = {r["grid_point"]: r for r in below.rows}
    pairs = [(lower[r["grid_point"]], r) for r in above.rows if r["grid_point"] in lower]
    record: dict[str, Any] = {"from_rung": below.index, "to_rung": above.index, "n": len(pairs)}
    if len(pairs) < 3:
        return {**record, "kendall_tau": None, "kendall_interval": None, "p_value": None,
                "note": f"n = {len(pairs)}: too few candidates to rank (needs 3)"}
    score = rank_agreement([b["accuracy"] for b, _ in pairs], [a["accuracy"] for _, a in pairs], seed,
                           signal_sd=[standard_error(b) for b, _ in pairs],
                           reference_sd=[standard_error(a) for _, a in pairs])
    return {**record, "kendall_tau": score.kendall_tau, "kendall_interval": score.kendall_interval,
            "p_value": score.p_value, "note": score.note}


@dataclass(frozen=True)
class Decision:
    """The ladder's rungs (rung 0 is the grid), the fidelity between consecutive rungs, the points tied with the
    best at the top rung, the chosen one and why; ``winner`` is False where no point is above chance."""

    rungs: list[RungResult]
    fidelity: list[dict[str, Any]]
    tied: list[dict[str, Any]]
    choice: Choice
    winner: bool
    tie_break: str
    chance: float

    @property
    def chosen(self) -> dict[str, Any]:
        return self.choice.row

    def to_dict(self) -> dict[str, Any]:
        def coefficients(row: dict[str, Any]) -> dict[str, Any]:
            return {"alpha": row["alpha"], "beta": row["beta"], "gamma": row["gamma"], "grid_point": row["grid_point"]}

        def measured(row: dict[str, Any]) -> dict[str, Any]:
            return {**coefficients(row), "accuracy": row["accuracy"], "interval": row.get("interval"),
                    "seeds": row.get("seeds", 1)}

        return {"format": DECISION_FORMAT, "rungs": [rung.to_dict() for rung in self.rungs],
                "fidelity": self.fidelity, "tied": [measured(row) for row in self.tied],
                "chosen": {**measured(self.chosen), "rung": self.rungs[-1].index, "decided_by": self.choice.decided_by,
                           "why": self.choice.why},
                "winner": self.winner, "tie_break": self.tie_break, "chance": self.chance}


def describe_decision(decision: dict[str, Any]) -> list[str]:
    """A decision (:meth:`Decision.to_dict`, or ``decision.json``) as lines: each rung's regime and what it
    promoted, the fidelity between rungs, the tied set and the decision's sentence. ``run`` prints them and the
    report shows them, so the two say the same."""
    from scaling_search.search.fidelity import describe_tau, regime_text

    def point(row: dict[str, Any]) -> str:
        return f"({row['alpha']:g}, {row['beta']:g}, {row['gamma']:g})"

    lines = []
    top = decision["rungs"][-1]["rung"]
    for rung in decision["rungs"]:
        done = [r for r in rung["candidates"] if r["accuracy"] is not None]
        seeds = sorted({r.get("seeds") or 1 for r in done})
        seed_text = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
        head = f"rung {rung['rung']}: {len(done)} point(s), {regime_text(rung['regime'])}, {seed_text} seed(s)"
        if rung["rung"] < top:
            by_point = {r["grid_point"]: r for r in done}
            head += " -> promoted " + ", ".join(point(by_point[i]) for i in rung["promoted"])
            promotion = rung.get("promotion") or {}
            if promotion.get("could_be_best", 0) > promotion.get("cap", 0) and promotion.get("order") != "accuracy":
                head += (f" ({promotion['could_be_best']} could still be best, at most {promotion['cap']} climb: the "
                         f"most accurate, then the cheapest by {promotion['order']})")
        else:
            head += " (top rung: the decision is made here)" if top else " (no rungs above: the grid decides)"
        lines.append(head)
    for measured in decision["fidelity"]:
        text = (describe_tau(measured["kendall_tau"], measured["kendall_interval"], measured["p_value"], measured["n"])
                if measured["kendall_tau"] is not None else measured["note"])
        lines.append(f"fidelity rung {measured['from_rung']} -> {measured['to_rung']} over {measured['n']} point(s): "
                     f"{text}")
    tied = "; ".join(f"{point(r)} {100 * r['accuracy']:.1f}% [{100 * r['interval'][0]:.1f}, "
                     f"{100 * r['interval'][1]:.1f}]" for r in decision["tied"])
    lines.append(f"tied with the best at rung {top} (95%): {tied}")
    chosen = decision["chosen"]
    lines.append(f"decision: {chosen['why']}: alpha={chosen['alpha']:g} beta={chosen['beta']:g} "
                 f"gamma={chosen['gamma']:g}")
    return lines


def decide(store: StudyStore, grid: optuna.Study, rungs: list[RungResult]) -> Decision:
    """The points tied with the best at the top rung, and the one chosen by the study's tie-break."""
    config = store.config
    top = [r for r in rungs[-1].rows if r["state"] == "complete" and r["accuracy"] is not None]
    for rung in rungs:
        for row in rung.rows:
            if row["accuracy"] is not None:
                row["interval"] = list(interval(row))
        choose_coefficients([r for r in rung.rows if r["state"] == "complete" and r["accuracy"] is not None])
    classes = len((grid.user_attrs.get("data") or {}).get("classes") or []) or \
        int(NetworkSpec.from_dict(grid.user_attrs["baseline"]).num_classes)
    winner = any(above_chance(row, classes) for row in top)
    tied = tied_with_best(top) if winner else sorted(top, key=lambda r: (-r["accuracy"], r["grid_point"]))
    latency = (latency_predictor(config.search, grid.user_attrs["points"])
               if config.search.tie_break == "cost" and len(tied) > 1 else None)
    seed = config.search.seed
    fidelity = [rung_fidelity(rungs[i], rungs[i + 1], seed) for i in range(len(rungs) - 1)]
    return Decision(rungs, fidelity, tied, choose(tied, config.search.tie_break, latency, winner), winner,
                    config.search.tie_break, 1.0 / classes)


@dataclass(frozen=True)
class GridResult:
    """A finished grid and ladder: the grid's study, one row per grid point (its seeds merged, and the highest rung
    it reached), the decision, the summary of the top rung, the baseline it scaled."""

    study: optuna.Study
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    collisions: list[dict[str, Any]]
    decision: Decision

    @property
    def baseline(self) -> NetworkSpec:
        """The deployment baseline the grid scaled (stage 1's choice, or the network as given)."""
        return NetworkSpec.from_dict(self.study.user_attrs["baseline"])

    @property
    def coefficients(self) -> tuple[float, float, float]:
        chosen = self.decision.chosen
        return chosen["alpha"], chosen["beta"], chosen["gamma"]


def _grid_rows(decision: Decision) -> list[dict[str, Any]]:
    """One row per grid point: rung 0's (every seed), then its standing on the ladder: the highest rung it reached
    and its accuracy, spread and seeds there, whether it is tied with the best, whether it was chosen."""
    reached = {row["grid_point"]: (rung.index, row) for rung in decision.rungs for row in rung.rows}
    tied = {row["grid_point"] for row in decision.tied}
    rows = []
    for row in decision.rungs[0].rows:
        rung, top = reached[row["grid_point"]]
        rows.append({**row, "rung": rung, "rung_accuracy": top["accuracy"], "rung_std": top.get("accuracy_std"),
                     "rung_seeds": top.get("seeds", 1), "rung_interval": top.get("interval"),
                     "tied": row["grid_point"] in tied, "chosen": row["grid_point"] == decision.chosen["grid_point"]})
    return rows


def load_grid(store: StudyStore) -> GridResult:
    """The finished grid and ladder of a study, with its decision; refuses an unfinished one."""
    config = store.config
    study = store.stage("grid")
    if study is None or "points" not in study.user_attrs:
        raise UserError(f"study {config.name!r} has no coefficient grid in {mask_credentials(config.storage)}; "
                        "run 'scaling-search grid' (or 'run') first")
    check_grid_finished(store, study)
    rungs = load_ladder(store, study)
    decision = decide(store, study, rungs)
    top = [r for r in rungs[-1].rows if r["state"] == "complete" and r["accuracy"] is not None]
    summary = choose_coefficients(top)
    others = [r for r in sorted(top, key=lambda r: (-r["accuracy"], r["grid_point"])) if r is not decision.chosen]
    summary.update(winner=decision.chosen, runner_up=others[0] if others else None,
                   p_best=decision.chosen.get("p_best"))
    if others:
        summary["gap"] = decision.chosen["accuracy"] - others[0]["accuracy"]
    if summary.get("p_best") is not None:
        summary["separated"] = summary["p_best"] >= SEPARATED_AT
    return GridResult(study, _grid_rows(decision), summary, list(study.user_attrs.get("collisions", [])), decision)


def check_grid_finished(store: StudyStore, study: optuna.Study) -> None:
    """Refuse a grid with unfinished points: one whose training diverged (a rerun would repeat it) or that a rerun
    finishes."""
    config = store.config
    finished = grid_table(study)
    expected = len(study.user_attrs["points"])
    diverged = {t.user_attrs.get("point"): t.user_attrs["error"] for t in study.get_trials(deepcopy=False)
                if t.state == TrialState.FAIL and "error" in t.user_attrs}
    if len(finished) < expected and diverged:  # a rerun with these settings would train them to the same NaN
        first = next(iter(diverged.values()))
        raise UserError(f"stage 2 of study {config.name!r}: the training of {len(diverged)} of {expected} grid points "
                        f"diverged ({first}); lower [train] lr or check the data, under a new --study name")
    if len(finished) < expected:
        raise UserError(f"stage 2 of study {config.name!r} has {len(finished)} of {expected} points finished; "
                        "rerun 'scaling-search grid' (or 'run') to finish it")


__all__ = ["DECISION_FORMAT", "Decision", "GridResult", "check_grid_finished", "decide", "describe_decision",
           "load_grid", "rung_fidelity"]
