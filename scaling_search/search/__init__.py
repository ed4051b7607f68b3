"""The search: study config, storage, work queue, baseline stage, grid stage, export, ablations, runner.

Data flow (see the README): a deployment-scale candidate is costed at deployment scale and trained through
:func:`scaling_search.proxy.to_proxy`; every trial records both. Public entry points::

    from scaling_search.search import load_study_config, run
    from scaling_search.budget import parse_budget
    result = run(load_study_config("smoke", {}, None, None), parse_budget("2x"))

Names load on first use (torch and Optuna come with the runner), so reading a study's config stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scaling_search.search.candidate import Candidate, Trainer
    from scaling_search.settings.study import DeploymentSettings, SearchSettings, StudyConfig, load_study_config
    from scaling_search.search.runner import (GridResult, Prepared, RunResult, ablate, export, load_grid, prepare,
                                              run)

_LAZY = {"Candidate": "candidate", "Trainer": "candidate", "DeploymentSettings": "config", "SearchSettings": "config",
         "StudyConfig": "config", "load_study_config": "config", "GridResult": "runner", "Prepared": "runner",
         "RunResult": "runner", "ablate": "runner", "export": "runner", "load_grid": "runner", "prepare": "runner",
         "run": "runner"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"scaling_search.search.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'scaling_search.search' has no attribute {name!r}")


__all__ = ["Candidate", "DeploymentSettings", "GridResult", "Prepared", "RunResult", "SearchSettings", "StudyConfig",
           "Trainer", "ablate", "export", "load_grid", "load_study_config", "prepare", "run"]
