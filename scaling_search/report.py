"""Reports rebuilt from the storage alone: tidy pandas tables, plotly figures, one offline ``index.html``.

Following Optuna's visualisation modules, each figure is two pure functions: one gathers a DataFrame from
studies, one draws a plotly figure from the DataFrame (testable without a browser). :func:`write_report`
writes every figure as its own HTML page with ``plotly.min.js`` written once beside them, so the folder
reads offline.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.subplots import make_subplots

from scaling_search.errors import UserError

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per finished trial: number, state, value and every scalar user attribute."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in _FINISHED or trial.user_attrs.get("idle"):
            continue
        attrs = {k: v for k, v in trial.user_attrs.items() if not isinstance(v, (dict, list))}
        rows.append({"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value, **attrs})
    return pd.DataFrame(rows)


def _points(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    complete = frame[frame["state"] == "complete"].copy()
    if "accuracy_std" not in complete:
        complete["accuracy_std"] = 0.0
    return complete


def _error_y(frame: pd.DataFrame) -> Any:
    return frame["accuracy_std"] if frame["accuracy_std"].fillna(0).gt(0).any() else None


# --- Figure 3 --------------------------------------------------------------------------------------------

def _subtitle(note: str) -> str:
    """A figure's note (trimmed multiplier sets, coefficients used) as a second, smaller title line."""
    return f"<br><sup>{note.strip()}</sup>" if note.strip() else ""


def draw_figure3(frame: pd.DataFrame, note: str = "") -> go.Figure:
    data = _points(frame)
    figure = make_subplots(rows=1, cols=3, subplot_titles=("width (w)", "depth (d)", "resolution (r)"),
                           shared_yaxes=True)
    for column, dimension in enumerate(("width", "depth", "resolution"), start=1):
        part = data[data["dimension"] == dimension].sort_values("macs")
        error = _error_y(part) if not part.empty else None
        figure.add_trace(go.Scatter(
            x=part["macs"], y=part["accuracy"], mode="lines+markers", name=dimension,
            text=[f"{dimension[0]}={m:g}" for m in part["multiplier"]],
            error_y=None if error is None else {"type": "data", "array": list(error)}), row=1, col=column)
        figure.update_xaxes(title_text="deployment MACs", row=1, col=column)
    figure.update_yaxes(title_text="proxy val top-1", row=1, col=1)
    figure.update_layout(title=f"Figure 3: scaling one dimension of the baseline{_subtitle(note)}", showlegend=False)
    return figure


# --- Figures 4 and 8 -------------------------------------------------------------------------------------

def _accuracy_lines(frame: pd.DataFrame, group: str, title: str, label_multiplier: bool) -> go.Figure:
    """One accuracy-vs-MACs line per value of ``group``, error bars where seeds were repeated."""
    data = _points(frame).sort_values([group, "macs"]) if not frame.empty else frame
    figure = go.Figure()
    for name, part in (data.groupby(group, sort=False) if not data.empty else ()):
        error = _error_y(part)
        figure.add_trace(go.Scatter(
            x=part["macs"], y=part["accuracy"], mode="lines+markers", name=name,
            text=[f"w={m:g}" for m in part["multiplier"]] if label_multiplier else None,
            error_y=None if error is None else {"type": "data", "array": list(error)}))
    figure.update_layout(title=title, xaxis_title="deployment MACs", yaxis_title="proxy val top-1")
    return figure


def draw_figure4(frame: pd.DataFrame, note: str = "") -> go.Figure:
    return _accuracy_lines(frame, "series", f"Figure 4: width scaling on different depth/resolution bases{_subtitle(note)}",
                           label_multiplier=True)


def draw_figure8(frame: pd.DataFrame, note: str = "") -> go.Figure:
    """Each method's line starts from the common baseline point (phi = 0), as in the paper."""
    if not frame.empty and "method" in frame and (frame["method"] == "baseline").any():
        start = frame[frame["method"] == "baseline"]
        methods = [m for m in frame["method"].unique() if m != "baseline"]
        frame = pd.concat([frame[frame["method"] != "baseline"]]
                          + [start.assign(method=m) for m in methods], ignore_index=True)
    return _accuracy_lines(frame, "method", "Figure 8: single-dimension vs compound scaling at equal deployment "
                           f"MACs{_subtitle(note)}", label_multiplier=False)


# --- a run's stages --------------------------------------------------------------------------------------

def draw_baseline_history(frame: pd.DataFrame) -> go.Figure:
    data = frame.sort_values("trial")
    figure = go.Figure(go.Scatter(x=data["trial"], y=data["value"], mode="markers", name="reward"))
    best = data["value"].cummax()
    figure.add_trace(go.Scatter(x=data["trial"], y=best, mode="lines", name="best so far"))
    figure.update_layout(title="Stage 1: reward acc * (MACs / target)^w per trial", xaxis_title="trial",
                         yaxis_title="reward")
    return figure


def draw_baseline_scatter(frame: pd.DataFrame) -> go.Figure:
    data = _points(frame)
    figure = px.scatter(data, x="macs", y="accuracy", hover_data=["trial"], title="Stage 1: searched baselines")
    figure.update_layout(xaxis_title="deployment MACs", yaxis_title="proxy val top-1")
    return figure


def draw_grid(frame: pd.DataFrame) -> go.Figure:
    data = _points(frame)
    figure = px.parallel_coordinates(data, dimensions=["alpha", "beta", "gamma", "achieved_ratio", "accuracy"],
                                     color="accuracy", title="Stage 2: the (alpha, beta, gamma) grid")
    return figure


def family_frame(configs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per exported config at deployment scale, in phi order."""
    rows = [{"phi": c["phi"], "resolution": c["spec"]["resolution"], "macs": c["cost"]["macs"],
             "params": c["cost"]["params"], "macs_ratio": c["macs_ratio"],
             "budget": (c.get("budget") or {}).get("text"), "proxy_resolution": c["proxy"]["spec"]["resolution"],
             "proxy_macs": c["proxy"]["cost"]["macs"]} for c in configs]
    return pd.DataFrame(rows).sort_values("phi").reset_index(drop=True)


def draw_family(configs: list[dict[str, Any]]) -> go.Figure:
    frame = family_frame(configs)
    figure = go.Figure(go.Scatter(x=frame["phi"], y=frame["macs"], mode="lines+markers", name="deployment MACs",
                                  text=[f"{r}px, {p:,} params" for r, p in zip(frame["resolution"], frame["params"])]))
    winner = (configs[0].get("evidence") or {}).get("grid_winner") or {}
    if winner.get("accuracy") is not None and (frame["phi"] == 1).any():
        figure.add_annotation(x=1, y=float(frame[frame["phi"] == 1]["macs"].iloc[0]),
                              text=f"grid winner at phi=1: {winner['accuracy']:.3f} proxy val top-1")
    figure.update_layout(title="Stage 3: the exported family (deployment scale)", xaxis_title="phi",
                         yaxis_title="deployment MACs")
    return figure


# --- writing ---------------------------------------------------------------------------------------------

def write_report(folder: Path, title: str, figures: dict[str, go.Figure], tables: dict[str, pd.DataFrame]) -> Path:
    """Write ``<name>.html`` per figure, ``<name>.csv`` per table and an ``index.html`` linking them all."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, figure in figures.items():
        figure.write_html(folder / f"{name}.html", include_plotlyjs="directory", full_html=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
    links = "\n".join(f'<li><a href="{html.escape(n)}.html">{html.escape(f.layout.title.text or n)}</a></li>'
                      for n, f in figures.items())
    csvs = "\n".join(f'<li><a href="{html.escape(n)}.csv">{html.escape(n)}.csv</a> ({len(t)} rows)</li>'
                     for n, t in tables.items())
    index = folder / "index.html"
    index.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><h2>Figures</h2><ul>{links}</ul><h2>Tables</h2><ul>{csvs}</ul>"
        "</body></html>\n")
    return index


def load_configs(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("model-phi*.json"))]


def build_report(name: str, storage_url: str, output: Path) -> Path:
    """Gather every stage and figure study of ``name`` from the storage, draw them, write the folder."""
    from sqlalchemy.exc import SQLAlchemyError

    from scaling_search.search.storage import open_for_reading

    folder = output / name
    figures, tables = {}, {}
    storage = open_for_reading(storage_url)
    for stage in ("baseline", "grid", "fig3", "fig4", "fig8"):
        try:
            study = optuna.load_study(study_name=f"{name}:{stage}", storage=storage)
        except KeyError:
            continue
        except SQLAlchemyError as error:  # a database without Optuna's tables, or unreadable
            raise UserError(f"cannot read study {name!r} from the storage ({str(error).splitlines()[0][:160]})") from None
        frame = trials_frame(study)
        if frame.empty:
            continue
        tables[f"{stage}_trials"] = frame
        note = study.user_attrs.get("note", "")
        if stage == "baseline":
            figures["baseline_history"] = draw_baseline_history(frame)
            figures["baseline_scatter"] = draw_baseline_scatter(frame)
        elif stage == "grid":
            figures["grid"] = draw_grid(frame)
        else:
            figures[stage] = {"fig3": draw_figure3, "fig4": draw_figure4, "fig8": draw_figure8}[stage](frame, note)
    configs = load_configs(folder)
    if configs:
        figures["family"] = draw_family(configs)
        tables["family"] = family_frame(configs)
    if not figures:
        raise UserError(f"no finished trials of study {name!r} in the storage")
    return write_report(folder, f"scaling-search report: {name}", figures, tables)


__all__ = ["build_report", "draw_baseline_history", "draw_baseline_scatter", "draw_family", "draw_figure3", "draw_figure4",
           "draw_figure8", "draw_grid", "family_frame", "load_configs", "trials_frame", "write_report"]
