"""The decision of stage 2: the finished grid, every seed of every point (the grid's and the race's) merged, and
the chosen coefficients with their probability of being the best (:func:`~.grid.choose_coefficients`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from scaling_search.errors import UserError
from scaling_search.network.spec import NetworkSpec
from scaling_search.search.context import StudyStore
from scaling_search.search.grid import choose_coefficients
from scaling_search.search.race import raced_rows
from scaling_search.settings.study import mask_credentials


@dataclass(frozen=True)
class GridResult:
    """A finished grid: its study, one row per point (all seeds merged), the choice, the baseline it scaled."""

    study: optuna.Study
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    collisions: list[dict[str, Any]]

    @property
    def baseline(self) -> NetworkSpec:
        """The deployment baseline the grid scaled (stage 1's choice, or the network as given)."""
        return NetworkSpec.from_dict(self.study.user_attrs["baseline"])

    @property
    def coefficients(self) -> tuple[float, float, float]:
        winner = self.summary["winner"]
        return winner["alpha"], winner["beta"], winner["gamma"]


def load_grid(store: StudyStore) -> GridResult:
    """The finished grid of a study, with its winner; refuses an unfinished one."""
    config = store.config
    study = store.stage("grid")
    if study is None or "points" not in study.user_attrs:
        raise UserError(f"study {config.name!r} has no coefficient grid in {mask_credentials(config.storage)}; "
                        "run 'scaling-search grid' (or 'run') first")
    rows = raced_rows(store, study)  # the grid's seeds and the race's extra ones
    expected = len(study.user_attrs["points"])
    diverged = {t.user_attrs.get("point"): t.user_attrs["error"] for t in study.get_trials(deepcopy=False)
                if t.state == TrialState.FAIL and "error" in t.user_attrs}
    if len(rows) < expected and diverged:  # a rerun with these settings would train them to the same NaN
        first = next(iter(diverged.values()))
        raise UserError(f"stage 2 of study {config.name!r}: the training of {len(diverged)} of {expected} grid points "
                        f"diverged ({first}); lower [train] lr or check the data, under a new --study name")
    if len(rows) < expected:
        raise UserError(f"stage 2 of study {config.name!r} has {len(rows)} of {expected} points finished; "
                        "rerun 'scaling-search grid' (or 'run') to finish it")
    return GridResult(study, rows, choose_coefficients(rows), list(study.user_attrs.get("collisions", [])))


__all__ = ["GridResult", "load_grid"]
