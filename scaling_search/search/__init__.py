"""The search: study config, storage, work queue, baseline stage, grid stage, export, ablations, runner.

Data flow (see the README): a deployment-scale candidate is costed at deployment scale and trained through
:func:`scaling_search.proxy.to_proxy`; every trial records both. Public entry points::

    from scaling_search.search import load_study_config, run
    from scaling_search.budget import parse_budget
    result = run(load_study_config("smoke", {}, None, None), parse_budget("2x"))
"""

from __future__ import annotations

from scaling_search.search.candidate import Candidate, Trainer
from scaling_search.search.config import DeploymentSettings, SearchSettings, StudyConfig, load_study_config
from scaling_search.search.runner import GridResult, Prepared, RunResult, ablate, export, load_grid, prepare, run

__all__ = ["Candidate", "DeploymentSettings", "GridResult", "Prepared", "RunResult", "SearchSettings", "StudyConfig",
           "Trainer", "ablate", "export", "load_grid", "load_study_config", "prepare", "run"]
