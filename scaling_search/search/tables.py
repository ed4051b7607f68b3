"""The study's files beside its exports: ``study.json``, ``<stage>_trials.csv`` for stages 1 and 2, and
``grid_summary.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaling_search.atomic import write_csv_atomically, write_json_atomically
from scaling_search.search.context import StudyStore

#: Trial attributes left out of the CSVs: whole specs, which the configs and the storage hold.
_SPEC_COLUMNS = ("user_attrs_spec", "user_attrs_proxy_spec")


def write_tables(store: StudyStore, folder: Path, grid_rows: list[dict[str, Any]] | None = None,
                 decision: dict[str, Any] | None = None) -> None:
    """``study.json`` (the config the study ran with), every table and, for a decided grid, ``decision.json``, each
    written atomically (a kill or a full disk leaves the previous file, never half of one)."""
    import pandas as pd

    store.config.write(folder)
    for stage in ("baseline", "grid"):
        study = store.stage(stage)
        if study is None:
            continue
        frame = study.trials_dataframe(attrs=("number", "value", "state", "duration", "params", "user_attrs"))
        write_csv_atomically(folder / f"{stage}_trials.csv",
                             frame.drop(columns=[c for c in frame.columns if c in _SPEC_COLUMNS]))
    if grid_rows is not None:
        write_csv_atomically(folder / "grid_summary.csv", pd.DataFrame(grid_rows))
    if decision is not None:
        write_json_atomically(folder / "decision.json", decision)


__all__ = ["write_tables"]
