"""What a storage holds: every study, its stages (``<study>:<stage>``, each an Optuna study), and their trials."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import NamedTuple

import optuna

from scaling_search.search.storage import open_for_reading


class StageSummary(NamedTuple):
    """One stage of a study: its Optuna study name, its objective's name and its trials by state."""

    storage: str
    study: str
    stage: str
    optuna_name: str
    metric: str | None
    trials: dict[str, int]


def catalog(url: str) -> list[StageSummary]:
    """Every stage stored at ``url``, by study then stage (creates nothing; one-line errors)."""
    storage = open_for_reading(url)
    rows = []
    for name in sorted(optuna.get_all_study_names(storage)):
        study = optuna.load_study(study_name=name, storage=storage)
        states = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False))
        metric = (study.metric_names or [None])[0]
        parent, _, stage = name.rpartition(":")
        rows.append(StageSummary(url, parent or name, stage if parent else "", name, metric, dict(states)))
    return rows


def local_storages(folder: Path = Path("studies")) -> list[str]:
    """The default storages of this directory's studies: ``sqlite:///studies/<study>.db``."""
    return [f"sqlite:///{path.as_posix()}" for path in sorted(folder.glob("*.db"))]


__all__ = ["StageSummary", "catalog", "local_storages"]
