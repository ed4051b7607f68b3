"""The landing page, ``reports/<study>/index.html``: the answer first, then the family, the evidence and the files.

Gathering is pure (:func:`gather_answer`, :func:`figure8_verdicts`, :func:`family_rows`) and testable without a
browser; :func:`write_index` lays the page out, embedding every figure with ``plotly.min.js`` loaded once, so
the page reads offline.

Intervals here are 95% intervals of a difference of two proxy accuracies from the validation sampling error
(binomial, ``p (1 - p) / n``) plus, where a point was trained under several seeds, the seed variance of its
mean. With one seed the training noise is not measured, and the page says so.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import plotly.graph_objects as go

from scaling_search.atomic import write_text_atomically
from scaling_search.search.confidence import SEPARATED_AT, Z95, accuracy_variance
from scaling_search.search.fidelity import Fidelity, describe_fidelity, fidelity_sentence
from scaling_search.search.proxy_candidates import Recommendation, describe_recommendation

_NO_FIDELITY = ("Proxy fidelity (how the proxy's ranking holds in a longer regime) is not measured in this study: "
                "'scaling-search fidelity' measures it.")


class Interval(NamedTuple):
    """A difference of two accuracies and its 95% interval (None where no error could be estimated)."""

    difference: float
    low: float | None
    high: float | None
    seeds_measured: bool


def difference_interval(first: dict[str, Any], second: dict[str, Any]) -> Interval:
    """``first`` minus ``second`` proxy accuracy with its 95% interval (rows with accuracy, val_images, std)."""
    variances = [accuracy_variance(row["accuracy"], row.get("val_images"), row.get("accuracy_std"), row.get("seeds", 1))
                 for row in (first, second)]
    difference = first["accuracy"] - second["accuracy"]
    seeds = min(first.get("seeds", 1), second.get("seeds", 1)) > 1
    if any(v is None for v in variances):
        return Interval(difference, None, None, seeds)
    half = Z95 * math.sqrt(sum(v for v in variances if v is not None))
    return Interval(difference, difference - half, difference + half, seeds)


def _points(delta: float) -> str:
    return f"{100 * delta:+.1f}"


def describe_interval(interval: Interval) -> str:
    if interval.low is None or interval.high is None:
        return (f"{_points(interval.difference)} points (no interval: one seed and no recorded validation size, "
                "so no error estimate)")
    source = "seeds and validation sampling" if interval.seeds_measured else \
        "validation sampling only; one seed, so training noise is not measured"
    verdict = "separated" if interval.low > 0 or interval.high < 0 else "not separated"
    return (f"{_points(interval.difference)} points, 95% interval [{_points(interval.low)}, "
            f"{_points(interval.high)}] ({source}): {verdict}")


class Answer(NamedTuple):
    alpha: float
    beta: float
    gamma: float
    product: float
    achieved_ratio: float
    winner_accuracy: float
    versus_runner_up: str | None
    seeds: int
    epochs: int | None
    p_best: float | None = None  # the winner's probability of being the best grid point
    noise: str | None = None  # what p_best counts
    why: str | None = None  # the decision's sentence (how the ladder chose among the tied points)
    winner: bool = True  # False where no point was above chance
    rung: int = 0  # the rung the decision was made at


def gather_answer(configs: list[dict[str, Any]], grid: pd.DataFrame) -> Answer | None:
    """The chosen coefficients and how clearly they won, from the exported configs and the grid's trials."""
    measured = [c for c in configs if c.get("phi") == 1.0] or configs
    if not measured:
        return None
    config = measured[0]
    evidence = config.get("evidence") or {}
    winner, runner_up = evidence.get("grid_winner") or {}, evidence.get("runner_up")
    decision = evidence.get("decision") or {}
    seeds = int(winner.get("seeds") or evidence.get("seeds_per_point") or 1)

    def row(point: dict[str, Any]) -> dict[str, Any]:
        extra = {}
        if not grid.empty and "point" in grid and "val_images" in grid:
            match = grid[grid["point"] == point.get("point")]
            if not match.empty:
                extra["val_images"] = float(match["val_images"].iloc[0])
        return {**point, **extra, "seeds": point.get("seeds") or seeds}

    versus = describe_interval(difference_interval(row(winner), row(runner_up))) if runner_up else None
    alpha, beta, gamma = config["alpha"], config["beta"], config["gamma"]
    return Answer(alpha, beta, gamma, alpha * beta**2 * gamma**2, winner.get("achieved_ratio", float("nan")),
                  winner.get("accuracy", float("nan")), versus, seeds, evidence.get("proxy_epochs"),
                  evidence.get("p_best"), evidence.get("noise"), (decision.get("chosen") or {}).get("why"),
                  decision.get("winner", True), (decision.get("chosen") or {}).get("rung", 0))


def figure8_verdicts(frame: pd.DataFrame) -> list[str]:
    """One sentence per phi of Figure 8: compound minus the best single dimension, with its interval."""
    if frame.empty or "method" not in frame:
        return []
    done = frame[(frame["state"] == "complete") & frame["accuracy"].notna()]
    sentences = []
    for phi, part in done[done["method"] != "baseline"].groupby("phi"):
        compound = part[part["method"].str.startswith("compound")]
        single = part[part["method"].str.endswith(" only")]
        if compound.empty or single.empty:
            continue
        best = single.sort_values("accuracy", ascending=False).iloc[0]
        first = compound.iloc[0]

        interval = difference_interval(_seeded_row(first), _seeded_row(best))
        sentences.append(
            f"At phi = {phi:g} ({first['macs'] / 1e6:,.0f}M deployment MACs), compound scaling reached "
            f"{100 * first['accuracy']:.1f}% proxy val top-1 against {100 * best['accuracy']:.1f}% for the best "
            f"single dimension ({best['method']}): {describe_interval(interval)}.")
    return sentences


def _seeded_row(series: pd.Series) -> dict[str, Any]:
    """A trial row as :func:`difference_interval` reads it (``seeds`` from :func:`trials_frame`)."""
    seeds = series.get("seeds")
    return {"accuracy": series["accuracy"], "val_images": series.get("val_images"),
            "accuracy_std": series.get("accuracy_std"), "seeds": 1 if pd.isna(seeds) else int(seeds)}


def comparison_verdicts(frame: pd.DataFrame, fidelity: str = "") -> list[str]:
    """One sentence per budget of a rule comparison: the best rule minus the runner-up, with its interval.

    Rules that scale to the very same network (v2 is compound wherever its resolution cap does not bind) are
    named together and never compared with each other."""
    if frame.empty or "method" not in frame or "budget" not in frame:
        return []
    done = frame[(frame["state"] == "complete") & frame["accuracy"].notna() & (frame["method"] != "baseline")]

    def network(row: pd.Series) -> tuple[Any, Any]:
        return row.get("arch"), row.get("resolution")

    def named(methods: list[str]) -> str:
        return methods[0] + (f" (and {', '.join(methods[1:])}: the same network)" if len(methods) > 1 else "")

    def costs(row: pd.Series) -> str:
        latency = row.get("latency_ms")
        return f"{row['macs'] / 1e6:,.0f}M MACs" + ("" if latency is None or pd.isna(latency) else
                                                    f", {latency:.1f} ms predicted")

    sentences = []
    for budget, part in done.groupby("budget"):
        groups: list[tuple[pd.Series, list[str]]] = []  # one per distinct network, best first
        for _, row in part.sort_values("accuracy", ascending=False, kind="stable").iterrows():
            twin = next((methods for first, methods in groups if network(first) == network(row)), None)
            if twin is not None:
                twin.append(row["method"])
            else:
                groups.append((row, [row["method"]]))
        if len(groups) < 2:
            continue
        (best, best_methods), (second, second_methods) = groups[0], groups[1]
        interval = difference_interval(_seeded_row(best), _seeded_row(second))
        sentences.append(
            f"At {budget:g}x the baseline's deployment MACs, {named(best_methods)} reached "
            f"{100 * best['accuracy']:.1f}% proxy val top-1 ({costs(best)}) against "
            f"{100 * second['accuracy']:.1f}% for {named(second_methods)} ({costs(second)}), the runner-up: "
            f"{describe_interval(interval)}. {fidelity or _NO_FIDELITY}")
    return sentences


def comparison_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The comparison table: each rule at each budget with accuracy, seeds and deployment costs."""
    if frame.empty or "method" not in frame:
        return []
    done = frame[frame["state"] == "complete"].sort_values(["budget", "accuracy"], ascending=[True, False])
    columns = [c for c in ("budget", "method", "rule_parameters", "accuracy", "accuracy_std", "macs",
                           "budget_error", "params", "activations", "resolution", "latency_ms", "proxy_resolution")
               if c in done]
    rows = done[columns].to_dict("records")
    for row, (_, series) in zip(rows, done.iterrows()):
        row["seeds"] = _seeded_row(series)["seeds"]
    return rows


def family_rows(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exported family at deployment scale, in phi order, with the file of each member."""
    rows = []
    for config in sorted(configs, key=lambda c: c["phi"]):
        spec = config["spec"]
        evidence = config.get("evidence") or {}
        accuracy = (evidence.get("grid_winner") or {}).get("accuracy") if evidence.get("measured_here") else None
        rows.append({
            "file": config.get("_file", ""), "phi": config["phi"], "budget": (config.get("budget") or {}).get("text"),
            "resolution": spec["resolution"], "width_multiplier": config["multipliers"]["width"],
            "blocks": sum(stage["repeats"] for stage in spec["stages"]), "params": config["cost"]["params"],
            "macs": config["cost"]["macs"], "macs_ratio": config["macs_ratio"],
            "latency_ms": (config.get("latency") or {}).get("predicted_ms"),
            "proxy_resolution": config["proxy"]["spec"]["resolution"], "proxy_accuracy": accuracy})
    return rows


# --- writing ---------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.answer { font-size: 1.25em; background: #f1f7ff; padding: 0.8em 1em; border-left: 4px solid #3572c6; }
code { background: #f4f4f4; padding: 0.1em 0.3em; } .note { color: #555; } .wide { overflow-x: auto; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td class='num'>&ndash;</td>"
    if isinstance(value, float):
        return f"<td class='num'>{value:,.4g}</td>"
    if isinstance(value, int):
        return f"<td class='num'>{value:,}</td>"
    return f"<td>{_e(value)}</td>"


def _table(rows: list[dict[str, Any]], link: str | None = None, table_id: str = "") -> str:
    if not rows:
        return "<p class='note'>nothing yet</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(f"<td><a href='{_e(row[c])}'>{_e(row[c])}</a></td>" if c == link and row[c] else _cell(row[c])
                        for c in columns)
        body.append(f"<tr>{cells}</tr>")
    return f"<div class='wide'><table id='{table_id}'><tr>{head}</tr>{''.join(body)}</table></div>"


def _figure(name: str, figure: go.Figure) -> str:
    return f"<div class='figure' id='figure-{_e(name)}'>{figure.to_html(full_html=False, include_plotlyjs=False)}</div>"


def _budget_reference(budget: dict[str, Any]) -> str:
    """", a ratio of the searched baseline's 296.1M MACs (17 blocks, 224 px)": what the budget multiplies."""
    reference = budget.get("reference")
    if not reference:
        return ""
    return _e(f"; {budget['text']} of {reference['network']}: {reference['macs'] / 1e6:,.1f}M MACs, "
              f"{reference['blocks']} blocks at {reference['resolution']} px")


def write_index(folder: Path, study: str, figures: dict[str, go.Figure], tables: dict[str, pd.DataFrame],
                configs: list[dict[str, Any]], fidelities: Sequence[Fidelity] = (),
                comparisons: Sequence[Recommendation] = ()) -> Path:
    """Write ``index.html``: the answer, the family, Figure 8's verdict, the grid, the proxy's fidelity, the
    baseline search, the ablations, the settings and links to every file (``plotly.min.js`` must lie beside
    it)."""
    grid = tables.get("grid_trials", pd.DataFrame())
    answer = gather_answer(configs, grid)
    fidelity = " ".join(fidelity_sentence(f) for f in fidelities)
    parts = [f"<h1>scaling-search: {_e(study)}</h1>"]
    parts.append("<h2>The answer</h2>")
    if answer is None:
        parts.append("<p class='note'>No model exported yet: run <code>scaling-search run</code> or "
                     "<code>export</code>.</p>")
    else:
        parts.append(
            f"<p class='answer' id='coefficients'>alpha = {answer.alpha:g}, beta = {answer.beta:g}, gamma = "
            f"{answer.gamma:g} &nbsp;&middot;&nbsp; alpha&middot;beta&sup2;&middot;gamma&sup2; = {answer.product:.3f}"
            f" &nbsp;&middot;&nbsp; {answer.achieved_ratio:.3f}&times; the baseline's deployment MACs at phi = 1</p>")
        lead = "Chosen" if answer.winner else "No winner (no point above chance); chosen"
        confidence = (f"{lead}: {100 * answer.winner_accuracy:.1f}% proxy val top-1 at rung {answer.rung}"
                      + (f", {_e(answer.versus_runner_up)} against the runner-up." if answer.versus_runner_up
                         else "."))
        if answer.p_best is not None:
            verdict = "separated from the rest" if answer.p_best >= SEPARATED_AT else \
                f"not separated at {SEPARATED_AT:.0%}"
            confidence += _e(f" P(best) {answer.p_best:.2f}, {verdict} (noise counted: {answer.noise}).")
        if answer.why:
            confidence += _e(f" Decision: {answer.why}.")
        parts.append(f"<p id='confidence'>{confidence} Seeds of the chosen point: {answer.seeds}; grid's proxy epochs: "
                     f"{_e(answer.epochs)}. {_e(fidelity or _NO_FIDELITY)}</p>")
        budgeted = [c for c in configs if c.get("budget")]
        if budgeted:
            member = budgeted[0]
            parts.append(f"<p>Train next, at deployment scale: <code>scaling-search train --config "
                         f"{_e(member.get('_file'))} --data &lt;your data&gt;</code> (budget {_e(member['budget']['text'])}, "
                         f"{member['cost']['macs'] / 1e6:,.1f}M MACs, {member['budget']['relative_error']:+.1%} of the "
                         f"budget{_budget_reference(member['budget'])}).</p>")
    parts.append("<h2>The family at deployment scale</h2>")
    parts.append(_table(family_rows(configs), link="file", table_id="family"))
    if "family" in figures:
        parts.append(_figure("family", figures["family"]))
    if "fig8" in figures:
        parts.append("<h2>Figure 8: compound against single-dimension scaling</h2>")
        parts.extend(f"<p class='verdict'>{_e(sentence)}</p>" for sentence in figure8_verdicts(tables["fig8_trials"]))
        parts.append(_figure("fig8", figures["fig8"]))
    if "compare" in figures:
        parts.append("<h2>Scaling rules compared on this data</h2>")
        frame = tables["compare_trials"]
        parts.extend(f"<p class='verdict'>{_e(sentence)}</p>" for sentence in comparison_verdicts(frame, fidelity))
        parts.append(_figure("compare", figures["compare"]))
        parts.append(_table(comparison_rows(frame), table_id="comparison"))
        if frame.attrs.get("latency_note"):
            parts.append(f"<p class='note' id='comparison-latency'>{_e(frame.attrs['latency_note'])}</p>")
    if "grid" in figures:
        parts.append("<h2>The coefficient grid (phi = 1)</h2>")
        parts.append(_figure("grid", figures["grid"]))
        if "decision" in tables:
            parts.append("<h3>The decision ladder</h3><ul id='ladder'>"
                         + "".join(f"<li>{_e(line)}</li>" for line in tables["decision"].attrs["lines"]) + "</ul>")
        if "grid_accuracy" in figures:
            parts.append(_figure("grid_accuracy", figures["grid_accuracy"]))
        if "decision" in tables:  # every point's mean over all its seeds at the highest rung it reached
            parts.append(_table(tables["decision"].to_dict("records"), table_id="decision"))
        else:  # a grid exported before decision.json existed: its trials
            columns = [c for c in ("point", "alpha", "beta", "gamma", "nominal_ratio", "achieved_ratio", "resolution",
                                   "macs", "proxy_resolution", "proxy_macs", "accuracy", "accuracy_std", "seeds",
                                   "val_images") if c in grid]
            parts.append(_table(grid[columns].sort_values("point").to_dict("records"), table_id="grid"))
    if fidelities:
        parts.append("<h2>Proxy fidelity: the grid's ranking against a longer regime</h2>")
        for result in fidelities:
            lines = describe_fidelity(result).splitlines()
            parts.append(f"<p class='verdict'>{_e(lines[0])}</p><ul>"
                         + "".join(f"<li>{_e(line.strip())}</li>" for line in lines[1:]) + "</ul>")
        for comparison in comparisons:  # fidelity --candidates
            lines = describe_recommendation(comparison).splitlines()
            parts.append(f"<p class='verdict' id='proxies'>Candidate {_e(lines[0])}</p><ul>"
                         + "".join(f"<li>{_e(line.strip())}</li>" for line in lines[1:-1]) + "</ul>"
                         + f"<p class='verdict'>{_e(lines[-1])}</p>")
    if "baseline_history" in figures:
        parts.append("<h2>Stage 1: the baseline search</h2>")
        parts.append(_figure("baseline_history", figures["baseline_history"]))
        parts.append(_figure("baseline_scatter", figures["baseline_scatter"]))
    if "baseline_screen" in figures:
        screen = tables["baseline_screen"]
        parts.append(f"<p>Stage 1 scored {len(screen)} candidates untrained and trained the "
                     f"{int(screen['trial'].notna().sum())} best-scored: "
                     "<a href='baseline_screen.csv'>baseline_screen.csv</a>.</p>")
        parts.append(_figure("baseline_screen", figures["baseline_screen"]))
    for name, title in (("fig3", "Figure 3: scaling one dimension"), ("fig4", "Figure 4: width on other bases")):
        if name in figures:
            parts.append(f"<h2>{title}</h2>{_figure(name, figures[name])}")
    settings = folder / "study.json"
    if settings.exists():
        parts.append("<h2>Study settings and provenance</h2>")
        body = json.loads(settings.read_text())  # the storage URL is masked where study.json is written
        rows = [{"table": table, "key": key, "value": json.dumps(value)}
                for table, values in body.items() if isinstance(values, dict) for key, value in values.items()]
        rows = [{"table": "", "key": k, "value": v} for k, v in body.items() if not isinstance(v, dict)] + rows
        parts.append(_table(rows, table_id="settings"))
    files = sorted(p.name for p in folder.iterdir() if p.suffix in (".csv", ".json") or
                   (p.suffix == ".html" and p.name != "index.html"))
    parts.append("<h2>Files</h2><ul id='files'>" + "".join(f"<li><a href='{_e(n)}'>{_e(n)}</a></li>" for n in files)
                 + "</ul>")
    return write_text_atomically(
        folder / "index.html",
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>scaling-search: {_e(study)}</title><style>{_STYLE}</style>"
        "<script src='plotly.min.js'></script></head><body>" + "\n".join(parts) + "</body></html>\n")


__all__ = ["Answer", "Interval", "comparison_rows", "comparison_verdicts", "describe_interval",
           "difference_interval", "family_rows", "figure8_verdicts",
           "gather_answer", "write_index"]
