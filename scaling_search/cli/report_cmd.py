"""``scaling-search ablate`` (the paper's Figures 3, 4 and 8 on your data) and ``scaling-search report``."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any



def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} must list positive numbers")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    from scaling_search.cli.search_cmd import _add_common

    parser = subparsers.add_parser(
        "ablate", help="the paper's scaling ablations (Figures 3, 4, 8) on your data",
        description="Proxy-train the paper's ablations as resumable Optuna studies and write their report. "
                    "CPU defaults trim the paper's multiplier sets; the figures say which were used.")
    _add_common(parser)
    parser.add_argument("--figure", choices=("3", "4", "8", "all"), default="all")
    parser.add_argument("--config", help="the baseline to scale: a spec JSON or an exported model config such as "
                        "reports/<study>/model-phi0.json (default: B0 at the preset's proxy width and resolution; "
                        "a config keeps its own resolution)")
    parser.add_argument("--widths", type=_floats, default=(1.0, 1.4, 1.8),
                        help="width multipliers (paper: 1.0,1.4,1.8,2.6,3.8,5.0)")
    parser.add_argument("--depths", type=_floats, default=(1.0, 2.0, 3.0), help="depth multipliers (paper: 1,2,3,4,6,8)")
    parser.add_argument("--resolutions", type=_floats, default=(1.0, 1.3, 1.5),
                        help="resolution multipliers (paper: 1.0,1.3,1.5,1.7,1.9,2.2,2.5)")
    parser.add_argument("--phis", type=_floats, default=(1.0, 2.0), help="Figure 8 budgets as phi (MACs ~ 2^phi)")
    parser.set_defaults(handler=run_ablate)

    parser = subparsers.add_parser("report", help="rebuild reports/<study>/ from the storage",
                                   description="Rebuild reports/<study>/ (index.html, figures, CSV tables) "
                                               "from the study's storage alone.")
    parser.add_argument("study", help="study name")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db)")
    parser.add_argument("--output", default="reports")
    parser.set_defaults(handler=run_report)


def _trimmed(label: str, values: tuple[float, ...], paper: tuple[float, ...]) -> str:
    """``"width 1, 1.4 of the paper's 1, 1.4, ..., 5"`` when a preset trimmed the paper's set, else ``""``."""
    def listed(numbers: tuple[float, ...]) -> str:
        return ", ".join(f"{v:g}" for v in numbers)

    return "" if tuple(values) == tuple(paper) else f"{label} {listed(values)} of the paper's {listed(paper)}"


def run_ablate(args: argparse.Namespace) -> int:
    from scaling_search import ablate, pipeline
    from scaling_search.cli.search_cmd import _per_worker_threads, _prepare, _with_workers
    from scaling_search.family import PAPER_COEFFICIENTS
    from scaling_search.spec import load_spec

    base_config = load_spec(args.config) if args.config else None  # a bad file fails before data is loaded
    config, data = _prepare(args)
    if base_config is None:
        base = pipeline.proxy_baseline(config, data)
    else:
        base = replace(base_config, num_classes=data.num_classes, input_channels=data.channels)
    config = _per_worker_threads(config)
    multiple = config.proxy.resolution_multiple
    figures = ("3", "4", "8") if args.figure == "all" else (args.figure,)
    coefficients, source = _study_coefficients(config) or (PAPER_COEFFICIENTS, "paper")
    on = f"baseline {Path(args.config).name}" if args.config else ""
    widths = _trimmed("width", args.widths, ablate.PAPER_WIDTHS)
    notes = {
        "3": "; ".join(filter(None, (on, widths, _trimmed("depth", args.depths, ablate.PAPER_DEPTHS),
                                     _trimmed("resolution", args.resolutions, ablate.PAPER_RESOLUTIONS)))),
        "4": "; ".join(filter(None, (on, widths))),
        "8": "; ".join(filter(None, (on, f"alpha, beta, gamma = {', '.join(f'{c:g}' for c in coefficients)} "
                                         f"from the {source}"))),
    }
    for figure in figures:
        if figure == "3":
            points = ablate.figure3_points(base, args.widths, args.depths, args.resolutions, multiple)
        elif figure == "4":
            points = ablate.figure4_points(base, args.widths, multiple)
        else:
            points = ablate.figure8_points(base, coefficients, args.phis, multiple, source)
        study = pipeline.prepare_points(config, f"fig{figure}", points,
                                        {"baseline": base.to_dict(), "note": notes[figure]})

        def describe(attrs: dict[str, Any]) -> str:
            label = attrs.get("method") or f"{attrs.get('dimension')} x{attrs.get('multiplier')}"
            return f"{label} ({attrs.get('point_macs', 0):,} MACs)"

        _with_workers(f"fig{figure}", config, config.search.workers, None,
                      lambda: pipeline.train_points(config, data, study, f"figure {figure}", describe,
                                                    progress=not args.no_progress))
    index = build_report(config.name, config.storage, Path(args.output))
    print(f"report: {index}")
    return 0


def _study_coefficients(config) -> tuple[tuple[float, float, float], str] | None:
    """The winning coefficients of this study's grid, when a finished run exists in the same storage."""
    import optuna

    from scaling_search import pipeline

    try:
        study = optuna.load_study(study_name=f"{config.name}:grid", storage=pipeline.open_storage(config))
        winner = pipeline.choose_coefficients(pipeline.grid_table(study))["winner"]
    except (KeyError, ValueError):
        return None
    return (winner["alpha"], winner["beta"], winner["gamma"]), f"study's grid (trial {winner['trial']})"


def build_report(name: str, storage_url: str, output: Path) -> Path:
    """Gather every stage and figure study of ``name`` from the storage, draw them, write the folder."""
    import optuna

    from scaling_search import report

    folder = output / name
    figures, tables = {}, {}
    for stage in ("baseline", "grid", "fig3", "fig4", "fig8"):
        try:
            study = optuna.load_study(study_name=f"{name}:{stage}", storage=storage_url)
        except KeyError:
            continue
        frame = report.trials_frame(study)
        if frame.empty:
            continue
        tables[f"{stage}_trials"] = frame
        note = study.user_attrs.get("note", "")
        if stage == "baseline":
            figures["baseline_history"] = report.draw_baseline_history(frame)
            figures["baseline_scatter"] = report.draw_baseline_scatter(frame)
        elif stage == "grid":
            figures["grid"] = report.draw_grid(frame)
        else:
            figures[stage] = getattr(report, f"draw_figure{stage[3:]}")(frame, note)
    configs = report.load_configs(folder)
    if configs:
        figures["family"] = report.draw_family(configs)
    if not figures:
        raise ValueError(f"no finished trials of study {name!r} in {storage_url}")
    return report.write_report(folder, f"scaling-search report: {name}", figures, tables)


def run_report(args: argparse.Namespace) -> int:
    from scaling_search import pipeline

    storage = args.storage or f"sqlite:///studies/{args.study}.db"
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
        raise ValueError(f"no study database at {storage}; give --storage or run the study first")
    _ = pipeline  # storage URL is opened by optuna directly: no heartbeat needed to read
    index = build_report(args.study, storage, Path(args.output))
    print(f"report: {index}")
    return 0
