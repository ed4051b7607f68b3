"""``scaling-search ablate``: the paper's Figures 3, 4 and 8 on your data, as resumable stages of a study."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaling_search.cli.study import add_study_args, build_report, printer, quiet_optuna, study_config


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or any(not 0 < v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} must list positive numbers")
    return values


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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    figures = ("3", "4", "8") if args.figure == "all" else (args.figure,)
    if args.config and args.study is None:  # another deployment baseline is another study
        from scaling_search.settings import default_study_name

        default = default_study_name(args.preset, args.data_source or "synthetic")
        args.study = f"{default}-{Path(args.config).stem}"
    config = study_config(args)  # flags and preset checked before torch and Optuna load
    from scaling_search.search import runner

    quiet_optuna()
    runner.ablate(config, figures, widths=args.widths, depths=args.depths, resolutions=args.resolutions,
                  phis=args.phis, base_path=args.config, output=Path(args.output), progress=not args.no_progress,
                  on_event=printer())
    print(f"report: {build_report(config, args.output)}")
    return 0


__all__ = ["register", "run"]
