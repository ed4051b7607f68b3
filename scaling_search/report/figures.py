"""The report's tables and figures: pure functions gather tidy DataFrames, separate ones draw plotly figures.

Following Optuna's visualisation modules, each figure is two functions: one gathers a DataFrame from studies
or exported configs, one draws a plotly figure from it (testable without a browser). :func:`write_pages`
writes every figure as its own HTML page with ``plotly.min.js`` written once beside them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.subplots import make_subplots

from scaling_search.atomic import write_bytes_atomically, write_csv_atomically, write_text_atomically
from scaling_search.network.arch import encode_arch
from scaling_search.search.confidence import Z95, accuracy_variance
from scaling_search.errors import UserError
from scaling_search.network.spec import NetworkSpec


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per finished trial: number, state, value, every scalar user attribute and the deployment
    network's timm-style arch strings."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in _FINISHED or trial.user_attrs.get("idle"):
            continue
        attrs = {k: v for k, v in trial.user_attrs.items() if not isinstance(v, (dict, list))}
        if isinstance(trial.user_attrs.get("accuracy_per_seed"), list):
            attrs["seeds"] = len(trial.user_attrs["accuracy_per_seed"])
        spec = trial.user_attrs.get("spec")
        arch = " ".join(encode_arch(NetworkSpec.from_dict(spec))) if isinstance(spec, dict) else None
        rows.append({"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value, **attrs,
                     "arch": arch})
    return pd.DataFrame(rows)


def _points(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    complete = frame[frame["state"] == "complete"].copy()
    if "accuracy_std" not in complete:
        complete["accuracy_std"] = 0.0
    return complete


def _error_y(frame: pd.DataFrame) -> Any:
    """95% half-widths of each point's accuracy: validation sampling plus, with several seeds, the seed spread
    of the mean (:func:`scaling_search.search.confidence.accuracy_variance`); None where no noise is known."""
    half_widths = []
    for _, row in frame.iterrows():
        val_images = row.get("val_images")
        seeds = row.get("seeds")
        variance = accuracy_variance(float(row["accuracy"]), None if pd.isna(val_images) else float(val_images),
                                     None if pd.isna(row.get("accuracy_std")) else float(row["accuracy_std"]),
                                     1 if seeds is None or pd.isna(seeds) else int(seeds))
        half_widths.append(None if variance is None else Z95 * math.sqrt(variance))
    return None if all(h is None for h in half_widths) else [0.0 if h is None else h for h in half_widths]


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
    """One accuracy-vs-MACs line per value of ``group``, with 95% error bars (validation and seed noise)."""
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


def _from_baseline(frame: pd.DataFrame) -> pd.DataFrame:
    """Every method's line starts from the common baseline point, as in the paper's Figure 8."""
    if not frame.empty and "method" in frame and (frame["method"] == "baseline").any():
        start = frame[frame["method"] == "baseline"]
        methods = [m for m in frame["method"].unique() if m != "baseline"]
        frame = pd.concat([frame[frame["method"] != "baseline"]]
                          + [start.assign(method=m) for m in methods], ignore_index=True)
    return frame


def draw_figure8(frame: pd.DataFrame, note: str = "") -> go.Figure:
    """Each method's line starts from the common baseline point (phi = 0), as in the paper."""
    return _accuracy_lines(_from_baseline(frame), "method", "Figure 8: single-dimension vs compound scaling at "
                           f"equal deployment MACs{_subtitle(note)}", label_multiplier=False)


def draw_comparison(frame: pd.DataFrame, note: str = "") -> go.Figure:
    """Each scaling rule's line from the common baseline through its network at every budget."""
    return _accuracy_lines(_from_baseline(frame), "method", "Scaling rules at equal deployment MACs"
                           f"{_subtitle(note)}", label_multiplier=False)


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


def screen_frame(screen: dict, trials: list[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    """Stage 1's screen, one row per scored candidate (best score first): its sample index, deployment MACs,
    score, and for the candidates stage 1 trained, the trial and its proxy accuracy."""
    frame = pd.DataFrame([{"rank": rank + 1, "sample": row["index"], "macs": row["macs"], "score": row["score"],
                           "trial": None, "accuracy": None} for rank, row in enumerate(screen["rows"])])
    by_params = {tuple(sorted(row["params"].items())): rank for rank, row in enumerate(screen["rows"])}
    for trial in trials:
        rank = by_params.get(tuple(sorted(trial.params.items())))
        if rank is not None and trial.state in _FINISHED:
            frame.at[rank, "trial"] = trial.number
            frame.at[rank, "accuracy"] = trial.user_attrs.get("accuracy")
    return frame


def draw_screen(frame: pd.DataFrame, signal: str) -> go.Figure:
    """Every screened candidate's score against its deployment MACs; the trained ones ringed, with accuracy."""
    trained = frame[frame["trial"].notna()]
    figure = go.Figure(go.Scatter(x=frame["macs"], y=frame["score"], mode="markers", name="scored, untrained",
                                  marker={"color": "lightgray"}, customdata=frame["sample"],
                                  hovertemplate="sample %{customdata}<br>%{x:.3s} MACs<br>score %{y:.1f}"))
    figure.add_trace(go.Scatter(
        x=trained["macs"], y=trained["score"], mode="markers+text", name="trained (proxy val top-1)",
        text=[f"{a:.1%}" if a is not None and a == a else "" for a in trained["accuracy"]],
        textposition="top center", marker={"size": 11, "symbol": "circle-open", "line": {"width": 2}}))
    figure.update_layout(title=f"Stage 1: the screen ({signal} score of each untrained candidate)",
                         xaxis_title="deployment MACs", yaxis_title=f"{signal} score")
    return figure


def draw_grid(frame: pd.DataFrame) -> go.Figure:
    data = _points(frame)
    figure = px.parallel_coordinates(data, dimensions=["alpha", "beta", "gamma", "achieved_ratio", "accuracy"],
                                     color="accuracy", title="Stage 2: the (alpha, beta, gamma) grid")
    return figure


def draw_grid_accuracy(frame: pd.DataFrame) -> go.Figure:
    """Every grid point's proxy accuracy with its 95% error bar, best first, so the winner's lead over the rest
    is read against the noise (hover: coefficients and achieved MACs ratio)."""
    data = _points(frame)
    data = data.sort_values(["accuracy", "point"], ascending=[False, True]) if not data.empty else data
    labels = [f"{a:g}, {b:g}, {g:g}" for a, b, g in zip(data["alpha"], data["beta"], data["gamma"])]
    error = _error_y(data) if not data.empty else None
    figure = go.Figure(go.Scatter(
        x=labels, y=data["accuracy"], mode="markers", name="proxy val top-1",
        error_y=None if error is None else {"type": "data", "array": error},
        text=[f"{r:.3f}x deployment MACs" for r in data["achieved_ratio"]]))
    figure.update_layout(title="Stage 2: grid points by proxy accuracy, with 95% intervals",
                         xaxis_title="alpha, beta, gamma", yaxis_title="proxy val top-1")
    return figure


def decision_frame(decision: dict[str, Any]) -> pd.DataFrame:
    """One row per grid point from ``decision.json``: the highest rung it reached and its mean accuracy there
    over every seed, with its 95% interval, whether it is tied with the best and whether it was chosen; in the
    ladder's order (the top rung first, each rung by accuracy)."""
    reached: dict[int, dict[str, Any]] = {}
    for rung in decision["rungs"]:
        for row in rung["candidates"]:
            if row["accuracy"] is not None:
                reached[row["grid_point"]] = {**row, "rung": rung["rung"], "epochs": rung["regime"]["epochs"],
                                              "proxy_resolution": rung["regime"]["proxy_resolution"]}
    tied = {row["grid_point"] for row in decision["tied"]}
    rows = [{"point": point, "alpha": row["alpha"], "beta": row["beta"], "gamma": row["gamma"], "rung": row["rung"],
             "epochs": row["epochs"], "proxy_resolution": row["proxy_resolution"], "accuracy": row["accuracy"],
             "low": (row.get("interval") or [None, None])[0], "high": (row.get("interval") or [None, None])[1],
             "seeds": row.get("seeds"), "tied": point in tied, "chosen": point == decision["chosen"]["grid_point"]}
            for point, row in reached.items()]
    frame = pd.DataFrame(rows)
    return frame.sort_values(["rung", "accuracy", "point"], ascending=[False, False, True]).reset_index(drop=True)


def draw_decision(frame: pd.DataFrame) -> go.Figure:
    """Every grid point at the highest rung it reached, mean over its seeds with its 95% interval, in the ladder's
    order; the chosen point is a star, the points tied with the best are filled."""
    labels = [f"{a:g}, {b:g}, {g:g}" for a, b, g in zip(frame["alpha"], frame["beta"], frame["gamma"])]
    figure = go.Figure()
    for rung, part in frame.groupby("rung", sort=False):
        index = part.index
        figure.add_trace(go.Scatter(
            x=[labels[i] for i in index], y=part["accuracy"], mode="markers",
            name=f"rung {rung}: {int(part['epochs'].iloc[0])} epoch(s) at {int(part['proxy_resolution'].iloc[0])} px",
            marker={"symbol": ["star" if c else ("circle" if t else "circle-open") for c, t in
                               zip(part["chosen"], part["tied"])], "size": [14 if c else 9 for c in part["chosen"]]},
            error_y={"type": "data", "symmetric": False, "array": part["high"] - part["accuracy"],
                     "arrayminus": part["accuracy"] - part["low"]},
            text=[f"{s} seed(s){'; tied with the best' if t else ''}{'; chosen' if c else ''}"
                  for s, t, c in zip(part["seeds"], part["tied"], part["chosen"])]))
    figure.update_layout(title="Stage 2: the decision ladder (each point at the highest rung it reached, mean over "
                               "its seeds, 95% intervals; star: chosen, filled: tied with the best)",
                         xaxis_title="alpha, beta, gamma", yaxis_title="proxy val top-1")
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

def write_plotly_js(folder: Path) -> Path:
    """``plotly.min.js`` beside the pages, the bundle of the installed plotly: written (atomically) when missing
    or when it differs, so a file truncated by a full disk or left by another plotly is replaced, never kept."""
    from plotly.offline import get_plotlyjs

    path = folder / "plotly.min.js"
    bundle = get_plotlyjs().encode()
    if not path.is_file() or path.stat().st_size != len(bundle) or path.read_bytes() != bundle:
        write_bytes_atomically(path, bundle)
    return path


def write_pages(folder: Path, figures: dict[str, go.Figure], tables: dict[str, pd.DataFrame]) -> None:
    """Write ``<name>.html`` per figure (``plotly.min.js`` once beside them) and ``<name>.csv`` per table, each
    file whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    if figures:
        write_plotly_js(folder)
    for name, figure in figures.items():
        write_text_atomically(folder / f"{name}.html", figure.to_html(include_plotlyjs="directory", full_html=True))
    for name, table in tables.items():
        write_csv_atomically(folder / f"{name}.csv", table.round(6))


STATIC_FORMATS = ("png", "svg", "pdf")


def write_static(folder: Path, figures: dict[str, go.Figure], formats: tuple[str, ...]) -> list[Path]:
    """Every figure as ``<name>.<format>`` for papers and slides, drawn offline by plotly's kaleido in a local
    Chrome or Chromium (Debian's ``chromium`` works). Needs the ``static`` extra."""
    unknown = sorted(set(formats) - set(STATIC_FORMATS))
    if unknown:
        raise UserError(f"static figure format(s) {', '.join(unknown)}: choose from {', '.join(STATIC_FORMATS)}")
    if importlib.util.find_spec("kaleido") is None:  # plotly's write_image uses it
        raise UserError("static figures need kaleido: pip install 'scaling-search[static]'")
    import plotly.io as pio

    # kaleido writes each file itself (its format from its name), so it writes into a private folder beside them,
    # and each file is then renamed into place: a figure is there whole or not at all, like every other file.
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".static-", suffix=".tmp"))
    jobs = [(figure, f"{name}.{extension}") for name, figure in figures.items() for extension in formats]
    try:
        try:  # one batch: kaleido starts the browser once (about 4 s a figure when each starts its own)
            pio.write_images([figure for figure, _ in jobs], [staging / name for _, name in jobs], width=1100,
                             height=600)
        except Exception as error:  # kaleido reports a missing browser in several ways
            if "chrome" in str(error).lower() or "browser" in str(error).lower():
                raise UserError("static figures need Chrome or Chromium (apt-get install chromium); "
                                f"kaleido said: {str(error).splitlines()[0][:120]}") from None
            raise
        for _, name in jobs:
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [folder / name for _, name in jobs]


def load_decision(folder: Path) -> dict[str, Any] | None:
    """``decision.json`` of a report folder (written with the grid's tables), or None where there is none or it
    is not a decision (a damaged file is left for the next ``run``/``export`` to rewrite)."""
    try:
        decision = json.loads((folder / "decision.json").read_text())
    except (OSError, ValueError):
        return None
    return decision if isinstance(decision, dict) and decision.get("format") == "scaling-search/decision" else None


def load_configs(folder: Path) -> list[dict[str, Any]]:
    """The exported model configs of a report folder, each with its file name as ``_file``."""
    return [{**json.loads(p.read_text()), "_file": p.name} for p in sorted(folder.glob("model-phi*.json"))]


__all__ = ["draw_baseline_history", "draw_baseline_scatter", "draw_family", "draw_figure3", "draw_figure4",
           "draw_figure8", "draw_grid", "family_frame", "load_configs", "STATIC_FORMATS", "trials_frame", "write_pages", "write_plotly_js",
           "write_static"]
