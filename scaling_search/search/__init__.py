"""The search: the study context, its stages (baseline, grid, race, references, ablations, comparisons), the
work queue and workers that train them, the export, and the pipelines that run them (:mod:`.runner`).

Data flow (see the README): a deployment-scale candidate is costed at deployment scale and trained through
:func:`scaling_search.network.proxy.to_proxy`; every trial records both. Public entry points::

    from scaling_search.settings import load_study_config
    from scaling_search.search import run
    from scaling_search.network.budget import parse_budget
    result = run(load_study_config("smoke", {}, None, None), parse_budget("2x"))

Names load on first use (torch and Optuna come with the runner), so reading a study's config stays light. The
pipelines named like a stage's module (``baseline``, ``grid``, ``export``, ``fidelity``) are
:mod:`scaling_search.search.runner`'s: ``from scaling_search.search import runner; runner.fidelity(...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scaling_search.search.candidate import Candidate, Trainer
    from scaling_search.search.context import StudyContext, StudyStore
    from scaling_search.search.decision import GridResult, load_grid
    from scaling_search.search.runner import RunResult, ablate, compare, compare_proxies, prepare, run

_LAZY = {"Candidate": "candidate", "Trainer": "candidate", "StudyContext": "context", "StudyStore": "context",
         "GridResult": "decision", "load_grid": "decision", "RunResult": "runner", "ablate": "runner",
         "compare": "runner", "compare_proxies": "runner", "prepare": "runner", "run": "runner"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"scaling_search.search.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'scaling_search.search' has no attribute {name!r}")


__all__ = ["Candidate", "GridResult", "RunResult", "StudyContext", "StudyStore", "Trainer", "ablate", "compare",
           "compare_proxies", "load_grid", "prepare", "run"]
