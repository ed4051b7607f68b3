"""``scaling-search ablate`` (the paper's Figures 3, 4 and 8 on your data), ``scaling-search compare`` (published
scaling rules at equal cost on your data) and ``scaling-search report``."""

from __future__ import annotations

import argparse
import sys
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


def _ratios(text: str) -> tuple[float, ...]:
    from scaling_search.budget import parse_budget
    from scaling_search.errors import UserError

    try:
        budgets = [parse_budget(part.strip()) for part in text.split(",") if part.strip()]
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not budgets or any(b.kind != "ratio" or b.value <= 1 for b in budgets):
        raise argparse.ArgumentTypeError(f"{text!r}: give ratios above 1 to the baseline's deployment MACs, "
                                         "comma-separated, such as 2x,4x")
    return tuple(sorted({b.value for b in budgets}))


def _rule_names(text: str) -> tuple[str, ...]:
    from scaling_search.rules import RULES

    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in RULES]
    if len(names) < 2 or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: name two or more of {', '.join(RULES)}, comma-separated")
    return names


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

    parser = subparsers.add_parser(
        "compare", help="published scaling rules compared at equal deployment MACs on your data",
        description="Scale the deployment baseline to each budget by each rule -- compound (Tan & Le 2019), fast "
                    "compound (Dollar et al. 2021), EfficientNetV2-style capped resolution, ResNet-RS-style, and "
                    "the single dimensions -- train every network through the study's proxy with the study's "
                    "seeds, and report accuracy against deployment MACs, a table and a verdict per budget. "
                    "Compound and v2 use the study's grid coefficients when a finished run exists, else the "
                    "paper's. Resumable like every study.")
    add_study_args(parser)
    parser.add_argument("--strategies", type=_rule_names, default=("compound", "fast", "v2", "rs", "width", "depth",
                                                                    "resolution"),
                        help="rules to compare, comma-separated (default: compound,fast,v2,rs,width,depth,resolution)")
    parser.add_argument("--budget", type=_ratios, default=(2.0, 4.0),
                        help="budgets as ratios to the baseline's deployment MACs, comma-separated (default: 2x,4x)")
    parser.add_argument("--max-resolution", type=int, default=480,
                        help="v2: the resolution cap in pixels (EfficientNetV2: 480 at ImageNet scale; default 480)")
    parser.add_argument("--long-training", action="store_true",
                        help="rs: training is long enough to overfit, so the rule scales depth (default: width)")
    parser.set_defaults(handler=run_compare)

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

    parser = subparsers.add_parser("dashboard", help="serve a study's stages in optuna-dashboard on this machine",
                                   description="Serve every stage of a study (baseline, grid, figures, comparisons) "
                                               "in optuna-dashboard, on localhost: trials, params (alpha, beta, gamma; "
                                               "figure, method, multiplier), plots. Needs pip install "
                                               "'scaling-search[dashboard]'. Ctrl-C stops it.")
    parser.add_argument("study", help="study name")
    parser.add_argument("--storage", help="Optuna storage URL or journal file (default: sqlite:///studies/<study>.db)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    parser.set_defaults(handler=run_dashboard)


def run_ablate(args: argparse.Namespace) -> int:
    from scaling_search.cli.search_cmd import _quiet_optuna, study_config

    figures = ("3", "4", "8") if args.figure == "all" else (args.figure,)
    if args.config and args.study is None:  # another deployment baseline is another study
        from scaling_search.settings.study import default_study_name

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


def run_compare(args: argparse.Namespace) -> int:
    from scaling_search.cli.search_cmd import _quiet_optuna, study_config

    config = study_config(args)  # flags and preset checked before torch and Optuna load
    from scaling_search.search import runner

    _quiet_optuna()
    index = runner.compare(config, args.strategies, args.budget, max_resolution=args.max_resolution,
                           long_training=args.long_training, output=Path(args.output),
                           progress=not args.no_progress)
    print(f"report: {index}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from scaling_search.report import build_report

    storage = args.storage or f"sqlite:///studies/{args.study}.db"
    print(f"report: {build_report(args.study, storage, Path(args.output), args.static)}")
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    import optuna

    from scaling_search.errors import UserError
    from scaling_search.settings.study import mask_credentials
    from scaling_search.search.storage import open_for_reading

    try:
        import optuna_dashboard
    except ImportError:
        raise UserError("the dashboard needs optuna-dashboard: pip install 'scaling-search[dashboard]'") from None
    url = args.storage or f"sqlite:///studies/{args.study}.db"
    storage = open_for_reading(url)
    stages = sorted(name for name in optuna.get_all_study_names(storage) if name.startswith(f"{args.study}:"))
    if not stages:
        raise UserError(f"no study {args.study!r} in {mask_credentials(url)}; give its --storage or run it first")
    print(f"dashboard: http://{args.host}:{args.port}/dashboard ({', '.join(stages)}); Ctrl-C stops it",
          file=sys.stderr, flush=True)
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    except OSError as error:
        raise UserError(f"cannot serve on {args.host}:{args.port} ({error.strerror}); choose another --port") from None
    return 0
