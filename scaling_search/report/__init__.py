"""Reports rebuilt from the storage alone: ``reports/<study>/index.html`` leads with the answer, then the family,
the evidence and every figure, table and config (offline: plotly.min.js is written once beside the pages).

:mod:`scaling_search.report.figures` gathers tidy tables and draws plotly figures; :mod:`scaling_search.report.page`
lays out the landing page.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from scaling_search.errors import UserError
from scaling_search.report.figures import (decision_frame, draw_baseline_history, draw_baseline_scatter,
                                           draw_comparison, draw_decision, draw_family, draw_figure3, draw_figure4,
                                           draw_figure8, draw_grid, draw_grid_accuracy, draw_screen, family_frame,
                                           load_configs, load_decision, screen_frame, trials_frame, write_pages,
                                           write_static)
from scaling_search.report.page import write_index
from scaling_search.search.decision import describe_decision
from scaling_search.search.fidelity import stored_fidelities
from scaling_search.search.proxy_candidates import stored_comparisons
from scaling_search.search.screen import ATTR as SCREEN_ATTR


def with_predicted_latency(frame: pd.DataFrame, latency: dict) -> pd.DataFrame:
    """A comparison's trials with a ``latency_ms`` column (each point's stored prediction) when the comparison
    has one; the frame's ``attrs["latency_note"]`` says where the numbers come from, or why there are none."""
    frame = frame.copy()
    if "ms" in latency and "point" in frame:
        predicted = dict(enumerate(latency["ms"]))
        frame["latency_ms"] = frame["point"].map(lambda index: predicted.get(int(index)))
        frame.attrs["latency_note"] = (f"latency_ms: predicted at batch {latency['batch']} on {latency['device']} "
                                       f"({latency['runtime']}) from this machine's calibrated latency table.")
    elif "missing" in latency:
        frame.attrs["latency_note"] = f"No latency column: {latency['missing']}."
    return frame


def build_report(name: str, storage_url: str, output: Path, static: tuple[str, ...] = ()) -> Path:
    """Gather every stage and figure study of ``name`` from the storage, draw them, write the folder (and each
    figure as a static file in every format of ``static``, e.g. ``("png", "svg")``)."""
    from sqlalchemy.exc import SQLAlchemyError

    from scaling_search.search.storage import open_for_reading
    from scaling_search.settings.study import check_study_name

    from scaling_search.atomic import check_writable_folder

    folder = check_writable_folder(output) / check_study_name(name)  # a name is never a path: it stays under output
    figures, tables = {}, {}
    storage = open_for_reading(storage_url)
    for stage in ("baseline", "grid", "fig3", "fig4", "fig8", "compare"):
        try:
            study = optuna.load_study(study_name=f"{name}:{stage}", storage=storage)
        except KeyError:
            continue
        except SQLAlchemyError as error:  # a database without Optuna's tables, or unreadable
            raise UserError(f"cannot read study {name!r} from the storage ({str(error).splitlines()[0][:160]})") from None
        frame = trials_frame(study)
        if frame.empty:
            continue
        if stage == "compare":
            frame = with_predicted_latency(frame, study.user_attrs.get("predicted_latency") or {})
        tables[f"{stage}_trials"] = frame
        note = study.user_attrs.get("note", "")
        if stage == "baseline":
            figures["baseline_history"] = draw_baseline_history(frame)
            figures["baseline_scatter"] = draw_baseline_scatter(frame)
            screen = study.user_attrs.get(SCREEN_ATTR)
            if screen and screen.get("rows"):
                tables["baseline_screen"] = screen_frame(screen, study.get_trials(deepcopy=False))
                figures["baseline_screen"] = draw_screen(tables["baseline_screen"], screen["signal"])
        elif stage == "grid":
            figures["grid"] = draw_grid(frame)
            figures["grid_accuracy"] = draw_grid_accuracy(frame)
        else:
            figures[stage] = {"fig3": draw_figure3, "fig4": draw_figure4, "fig8": draw_figure8,
                              "compare": draw_comparison}[stage](frame, note)
    fidelities = stored_fidelities(name, storage)
    comparisons = stored_comparisons(name, storage)
    for fidelity in fidelities:
        tables[f"fidelity_e{fidelity.reference['epochs']}_r{fidelity.reference['proxy_resolution']}"] = \
            pd.DataFrame(fidelity.candidates)
    decision = load_decision(folder)
    if decision is not None and "grid" in figures:
        tables["decision"] = decision_frame(decision)
        tables["decision"].attrs["lines"] = describe_decision(decision)
        figures["grid_accuracy"] = draw_decision(tables["decision"])
    configs = load_configs(folder)
    if configs:
        figures["family"] = draw_family(configs)
        tables["family"] = family_frame(configs)
    if not figures:
        raise UserError(f"no finished trials of study {name!r} in the storage")
    write_pages(folder, figures, tables)
    if static:
        write_static(folder, figures, static)
    return write_index(folder, name, figures, tables, configs, fidelities, comparisons)


__all__ = ["build_report", "draw_baseline_history", "draw_baseline_scatter", "draw_comparison", "draw_family", "draw_figure3",
           "draw_figure4", "draw_figure8", "draw_grid", "draw_grid_accuracy", "family_frame", "load_configs", "trials_frame",
           "write_index", "write_pages", "write_static"]
