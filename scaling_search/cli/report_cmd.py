"""``scaling-search ablate`` (the paper's Figures 3, 4 and 8 on your data) and ``scaling-search report``."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaling_search.cli.search_cmd import add_study_args


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or any(not 0 < v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} must list positive numbers")
    return values


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = sorted(set(formats) - {"png", "svg", "pdf"})
    if not formats or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: choose png, svg and/or pdf, comma-separated")
    return formats


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ablate", help="the paper's scaling ablations (Figures 3, 4, 8) on your data",
        description="Proxy-train the paper's ablations as resumable Optuna studies and write their report. Points "
                    "are defined and plotted at deployment scale (B0 at 224 px by default) and trained through the "
                    "study's proxy. CPU defaults trim the paper's multiplier sets; the figures say which were used.")
    add_study_args(parser)
    parser.add_argument("--figure", choices=("3", "4", "8", "all"), default="all", help="which figure (default: all)")
    parser.add_argument("--config", help="the deployment baseline to scale: a spec JSON or an exported model config "
                        "such as reports/<study>/model-phi1.json (default: the study's deployment network)")
    parser.add_argument("--widths", type=_floats, default=(1.0, 1.4, 1.8),
                        help="width multipliers (default 1,1.4,1.8; paper: 1.0,1.4,1.8,2.6,3.8,5.0)")
    parser.add_argument("--depths", type=_floats, default=(1.0, 2.0, 3.0),
                        help="depth multipliers (default 1,2,3; paper: 1,2,3,4,6,8)")
    parser.add_argument("--resolutions", type=_floats, default=(1.0, 1.3, 1.5),
                        help="resolution multipliers (default 1,1.3,1.5; paper: 1.0,1.3,1.5,1.7,1.9,2.2,2.5)")
    parser.add_argument("--phis", type=_floats, default=(1.0, 2.0),
                        help="Figure 8 budgets as phi (deployment MACs ~ 2^phi; default 1,2)")
    parser.set_defaults(handler=run_ablate)

    parser = subparsers.add_parser("report", help="rebuild reports/<study>/ from the storage",
                                   description="Rebuild reports/<study>/ (index.html, figures, CSV tables) "
                                               "from the study's storage alone.")
    parser.add_argument("study", help="study name")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db)")
    parser.add_argument("--output", default="reports", help="reports folder (default: ./reports)")
    parser.add_argument("--static", type=_formats, default=(),
                        help="also write each figure as png, svg and/or pdf (comma-separated) for papers and slides; "
                             "needs pip install 'scaling-search[static]' and Chrome or Chromium (default: none)")
    parser.set_defaults(handler=run_report)


def run_ablate(args: argparse.Namespace) -> int:
    from scaling_search.cli.search_cmd import _quiet_optuna, study_config

    figures = ("3", "4", "8") if args.figure == "all" else (args.figure,)
    if args.config and args.study is None:  # another deployment baseline is another study
        from scaling_search.search.config import default_study_name

        default = default_study_name(args.preset, args.data_source or "synthetic")
        args.study = f"{default}-{Path(args.config).stem}"
    config = study_config(args)  # flags and preset checked before torch and Optuna load
    from scaling_search.search import runner

    _quiet_optuna()
    index = runner.ablate(config, figures, widths=args.widths, depths=args.depths,
                          resolutions=args.resolutions, phis=args.phis, base_path=args.config,
                          output=Path(args.output), progress=not args.no_progress)
    print(f"report: {index}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from scaling_search.report import build_report

    storage = args.storage or f"sqlite:///studies/{args.study}.db"
    print(f"report: {build_report(args.study, storage, Path(args.output), args.static)}")
    return 0
